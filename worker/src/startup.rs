//! Builds the worker from its settings (migrations applied, ops listener
//! bound; port 0 works, for tests) and runs its consumers until shut down.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use common::amqp::{ConfirmedPublisher, WorkQueue};
use common::db::{DbError, DbPool};
use common::ops::{MetricsRender, Readiness, ReadinessCheck};
use common::subject::SubjectHasher;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::background::outbox_sweeper::run_sweeper;
use crate::background::retention::run_retention;
use crate::consume::consumer;
use crate::consume::health::ConsumerSlot;
use crate::consume::retry::RetryPolicy;
use crate::context::{WorkerContext, WorkerStats};
use crate::email::{Email, EmailSetupError};
use crate::fault_hooks::FaultHooks;
use crate::metrics::task;
use crate::settings::WorkerSettings;

/// Work queues this worker consumes.
const CONSUMED_QUEUES: [WorkQueue; 3] = [WorkQueue::Lt, WorkQueue::Lina, WorkQueue::Email];

/// Committed batches whose e-mail jobs may be publishing at once.
pub const BACKGROUND_SLOTS: usize = 16;

/// How long in-flight batches may take to finish after a shutdown request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("cannot bind the ops listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("e-mail: {0}")]
    Email(#[from] EmailSetupError),
    #[error("cannot set up the metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("database unavailable: {}", common::db::pool_error(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    HashKey(#[from] crate::apply::hash_key::HashKeyError),
}

pub struct Worker {
    context: Arc<WorkerContext>,
    ops_server: Server,
    ops_port: u16,
}

impl Worker {
    pub async fn build(settings: WorkerSettings) -> Result<Worker, StartupError> {
        let pool = common::db::pool(&settings.database_url, settings.database_pool_size)?;
        let applied = common::db::run_migrations(&pool).await?;
        tracing::info!(message = "Migrations checked.", applied);
        let hasher = SubjectHasher::new(settings.subject_hash_key.clone());
        crate::apply::hash_key::check(&pool.get().await?, &hasher).await?;
        let ops_listener = TcpListener::bind(settings.ops_addr)?;
        let ops_port = ops_listener.local_addr()?.port();
        let connector = settings.amqp.connector("worker");
        let context = Arc::new(WorkerContext {
            pool: pool.clone(),
            topology: settings.amqp.topology(),
            publisher: ConfirmedPublisher::new(connector.clone(), settings.amqp.publish_timeout),
            retry: RetryPolicy::new(settings.amqp.retry_delays.clone()),
            hasher,
            email: Email::new(settings.mail.clone())?,
            connector: connector.clone(),
            settings,
            stats: Arc::new(WorkerStats::new()?),
            background: TaskTracker::new(),
            background_slots: Arc::new(tokio::sync::Semaphore::new(BACKGROUND_SLOTS)),
            faults: FaultHooks::default(),
        });
        context.stats.initialise_parking(
            &context.topology.dead_letter_queues(),
            context.settings.dlq_retention,
        );
        let ops_server = common::ops::serve(
            ops_listener,
            readiness(context.clone()),
            render_metrics(context.clone()),
        )?;
        Ok(Worker {
            context,
            ops_server,
            ops_port,
        })
    }

    pub fn ops_port(&self) -> u16 {
        self.ops_port
    }

    /// The worker's shared context (for tests and tools that drive its parts).
    pub fn context(&self) -> Arc<WorkerContext> {
        self.context.clone()
    }

    pub fn stats(&self) -> Arc<WorkerStats> {
        self.context.stats.clone()
    }

    /// Consumes until `shutdown` is cancelled, then lets every consumer finish
    /// and ack its current batch, and closes the broker connection. Every
    /// task runs supervised (`common::supervise`): restarted and counted
    /// when it ends early.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let tracker = TaskTracker::new();
        let context = &self.context;
        for queue in CONSUMED_QUEUES {
            // The e-mail queue sends concurrently inside each batch instead.
            let consumers = match queue {
                WorkQueue::Email => 1,
                WorkQueue::Lt | WorkQueue::Lina => context.settings.consumers,
            };
            for _ in 0..consumers {
                let slot = ConsumerSlot::new(context.stats.clone(), queue);
                let (consuming, stop) = (context.clone(), shutdown.clone());
                tracker.spawn(supervised(
                    task::consumer(queue),
                    context,
                    &shutdown,
                    move || consumer::run(consuming.clone(), queue, stop.clone(), slot.clone()),
                ));
            }
        }
        let (retained, stop) = (context.clone(), shutdown.clone());
        tracker.spawn(supervised(task::RETENTION, context, &shutdown, move || {
            run_retention(retained.clone(), stop.clone())
        }));
        let (swept, stop) = (context.clone(), shutdown.clone());
        let interval = context.settings.outbox_sweep_interval;
        tracker.spawn(supervised(
            task::OUTBOX_SWEEPER,
            context,
            &shutdown,
            move || run_sweeper(swept.clone(), interval, stop.clone()),
        ));
        tracker.close();
        let ops_handle = self.ops_server.handle();
        let ops_server = tokio::spawn(self.ops_server);
        shutdown.cancelled().await;
        let background = &self.context.background;
        let finished = async {
            tracker.wait().await;
            // Only now can no consumer leave more behind.
            background.close();
            background.wait().await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, finished)
            .await
            .is_err()
        {
            tracing::warn!(
                message = "Consumers did not finish in time; unacked work returns to the queue."
            );
        }
        ops_handle.stop(true).await;
        let _ = ops_server.await;
        self.context.connector.close().await;
        self.context.pool.close();
        tracing::info!(message = "Worker stopped.");
        Ok(())
    }
}

/// `start` under `common::supervise`, its restarts counted in
/// `intake_task_restarts_total{task}`.
fn supervised<F, Fut>(
    task: &'static str,
    context: &Arc<WorkerContext>,
    shutdown: &CancellationToken,
    start: F,
) -> impl std::future::Future<Output = ()> + use<F, Fut>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let stats = context.stats.clone();
    common::supervise::supervise(
        task,
        shutdown.clone(),
        move || stats.task_restarted(task),
        start,
    )
}

/// The metrics, with every queue's depth and consumers read at scrape time.
fn render_metrics(context: Arc<WorkerContext>) -> MetricsRender {
    Arc::new(move || {
        let context = context.clone();
        Box::pin(async move {
            let connection = context.connector.connection().await.ok();
            context
                .stats
                .render(connection.as_deref(), &context.topology)
                .await
        })
    })
}

/// Ready when the broker and the database answer and every consumer is
/// consuming (none down, restarting, or holding a refused batch).
fn readiness(context: Arc<WorkerContext>) -> ReadinessCheck {
    Arc::new(move || {
        let context = context.clone();
        Box::pin(async move {
            let broker = context.connector.is_connected();
            let database = database_answers(&context.pool).await;
            let consumers = context.stats.consumers_not_consuming() == 0;
            Readiness {
                ready: broker && database && consumers,
                checks: BTreeMap::from([
                    ("broker", broker),
                    ("database", database),
                    ("consumers", consumers),
                ]),
            }
        })
    })
}

async fn database_answers(pool: &DbPool) -> bool {
    let check = async {
        let client = pool.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Some(_))
    )
}
