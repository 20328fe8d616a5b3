//! `spawn_app`: the real gateway and worker, in-process, on port 0, with a
//! fresh database and queue prefix of their own.

use std::sync::Arc;
use std::time::Duration;

use common::amqp::{Topology, WorkQueue};
use common::settings::AmqpSettings;
use gateway::settings::{GatewaySettings, HttpTimeouts};
use gateway::source::SourceRules;
use gateway::startup::Application;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use worker::context::WorkerStats;
use worker::settings::WorkerSettings;
use worker::startup::Worker;

use crate::{broker, database};

/// The subject hash key of every test worker.
pub const TEST_SUBJECT_HASH_KEY: &str = "test-subject-hash-key-0123456789";

/// The LINA URL secret of the test gateways.
pub const LINA_SECRET: &str = "test-lina-path-secret";

/// The first of the test tokens; `TestApp::post_lt` uses it.
pub const TEST_TOKEN: &str = "test-token-current";

#[derive(Clone, Debug)]
pub struct TestOptions {
    pub start_worker: bool,
    pub lt_tokens: Vec<String>,
    pub max_body_bytes: usize,
    pub prefetch: u16,
    pub batch_size: usize,
    pub batch_linger: Duration,
    pub publish_timeout: Duration,
    pub max_in_flight: usize,
    /// LINA's URL secrets (empty: the LINA endpoint is off).
    pub lina_secrets: Vec<String>,
    /// The spool directory; `None`: a fresh one, removed with the app.
    pub spool_dir: Option<std::path::PathBuf>,
    pub spool_max_bytes: u64,
    pub lina_spool_after: Duration,
    /// The gateway's broker URL, when it must differ from the worker's (a
    /// relay in between); `None`: the app's broker.
    pub gateway_amqp_url: Option<String>,
    /// The broker of the whole app (gateway, worker, the test's own looks),
    /// e.g. a cluster of the test's own; `None`: the test broker.
    pub amqp_url: Option<String>,
    /// TLS material for `amqp_url` (`amqps://` nodes).
    pub amqp_tls: common::amqp::AmqpTls,
    /// The queue prefix (a test that declares the queues itself first);
    /// `None`: a fresh one.
    pub queue_prefix: Option<String>,
    /// Where the test's database is created (a URL whose user may create
    /// databases; its query is kept in the app's URL); `None`: the test
    /// server (`INTAKE_TEST_DATABASE_URL`).
    pub database_admin_url: Option<String>,
    /// `None`: e-mails are written as .eml files to `TestApp::mail_dir`.
    pub smtp_url: Option<String>,
    pub templates_dir: Option<std::path::PathBuf>,
    /// The gateway's slow- and idle-client timeouts (its production defaults).
    pub http_timeouts: HttpTimeouts,
    /// Source allowlists and trusted proxies (default: any source).
    pub sources: SourceRules,
    /// `INTAKE_LT_RESEND_WINDOW` of the test workers.
    pub lt_resend_window: Duration,
    /// `INTAKE_ERASURE_CLOCK_MARGIN` of the test workers and admin commands.
    pub erasure_clock_margin: Duration,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            start_worker: true,
            lt_tokens: vec![TEST_TOKEN.into(), "test-token-next".into()],
            max_body_bytes: 64 * 1024,
            prefetch: 64,
            batch_size: 32,
            batch_linger: Duration::from_millis(5),
            publish_timeout: Duration::from_secs(5),
            max_in_flight: 256,
            lina_secrets: vec![LINA_SECRET.into()],
            spool_dir: None,
            spool_max_bytes: 64 * 1024 * 1024,
            lina_spool_after: Duration::from_secs(1),
            gateway_amqp_url: None,
            amqp_url: None,
            amqp_tls: Default::default(),
            queue_prefix: None,
            database_admin_url: None,
            smtp_url: None,
            templates_dir: None,
            http_timeouts: HttpTimeouts::default(),
            sources: SourceRules::default(),
            lt_resend_window: Duration::from_secs(3600),
            erasure_clock_margin: Duration::from_secs(2),
        }
    }
}

pub struct TestApp {
    /// `http://127.0.0.1:<port>` of the gateway's webhooks.
    pub address: String,
    /// `http://127.0.0.1:<port>` of the gateway's ops listener.
    pub gateway_ops: String,
    pub topology: Topology,
    pub db_name: String,
    pub db_url: String,
    /// The server the database was created on (and is dropped from).
    admin_url: String,
    pub spool_dir: std::path::PathBuf,
    /// Where e-mails go as .eml files when no SMTP server is configured.
    pub mail_dir: std::path::PathBuf,
    /// A direct connection to the test's database, for assertions.
    pub db: tokio_postgres::Client,
    pub http: reqwest::Client,
    pub options: TestOptions,
    pub worker: Option<WorkerHandle>,
    pub amqp: AmqpSettings,
    /// The test's own publisher (connects on first use).
    publisher: common::amqp::ConfirmedPublisher,
    gateway_shutdown: CancellationToken,
    gateway: Option<JoinHandle<std::io::Result<()>>>,
}

pub struct WorkerHandle {
    pub ops_address: String,
    pub stats: Arc<WorkerStats>,
    /// The worker's parts, for tests that arm its fault hooks.
    pub context: Arc<worker::context::WorkerContext>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl WorkerHandle {
    /// Shuts the worker down gracefully and waits until it stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// An HTTP client that lets go of an idle connection before the gateway
/// does (its keep-alive is 5 s): reusing one the gateway is closing at that
/// moment fails the request with no answer, a race of the client's, not the
/// product's (seen when a broker stop took 5 s).
fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("the test HTTP client builds")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

pub async fn spawn_app_with(options: TestOptions) -> TestApp {
    crate::logs::init();
    let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let prefix = options
        .queue_prefix
        .clone()
        .unwrap_or_else(|| format!("t_{unique}"));
    let db_name = format!("intake_t_{unique}");
    let admin_url = options
        .database_admin_url
        .clone()
        .unwrap_or_else(crate::admin_database_url);
    let db_url = database::create_in(&admin_url, &db_name).await;
    // Migrated up front, so tests can look at tables before a worker starts.
    let pool = common::db::pool(&SecretString::from(db_url.clone()), 1).unwrap();
    common::db::run_migrations(&pool).await.unwrap();
    pool.close();
    let amqp_url = options.amqp_url.clone().unwrap_or_else(crate::amqp_url);
    let amqp = AmqpSettings {
        url: SecretString::from(amqp_url.clone()),
        tls: options.amqp_tls.clone(),
        queue_prefix: prefix.clone(),
        publish_timeout: options.publish_timeout,
        retry_delays: vec![Duration::from_secs(1), Duration::from_secs(5)],
    };
    let spool_dir = options
        .spool_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("intake-spool-{unique}")));
    let gateway_amqp = AmqpSettings {
        url: SecretString::from(options.gateway_amqp_url.clone().unwrap_or(amqp_url)),
        ..amqp.clone()
    };
    let gateway_settings = GatewaySettings {
        gateway_addr: "127.0.0.1:0".parse().unwrap(),
        ops_addr: "127.0.0.1:0".parse().unwrap(),
        amqp: gateway_amqp,
        lt_tokens: options
            .lt_tokens
            .iter()
            .map(|t| SecretString::from(t.clone()))
            .collect(),
        lt_email_pointer: "/email".into(),
        max_body_bytes: options.max_body_bytes,
        max_in_flight: options.max_in_flight,
        lina_path_secrets: options
            .lina_secrets
            .iter()
            .map(|s| SecretString::from(s.clone()))
            .collect(),
        spool_dir: spool_dir.clone(),
        spool_max_bytes: options.spool_max_bytes,
        lina_spool_after: options.lina_spool_after,
        http: options.http_timeouts,
        sources: options.sources.clone(),
    };
    let application = Application::build(gateway_settings).await.unwrap();
    let address = format!("http://127.0.0.1:{}", application.port());
    let gateway_ops = format!("http://127.0.0.1:{}", application.ops_port());
    let gateway_shutdown = CancellationToken::new();
    let gateway = tokio::spawn(application.run(gateway_shutdown.clone()));
    let mut app = TestApp {
        address,
        gateway_ops,
        topology: amqp.topology(),
        db: database::connect(&db_url).await,
        db_name,
        db_url,
        admin_url,
        spool_dir,
        mail_dir: std::env::temp_dir().join(format!("intake-mail-{unique}")),
        http: test_client(),
        options: options.clone(),
        worker: None,
        publisher: common::amqp::ConfirmedPublisher::new(
            amqp.connector("test"),
            Duration::from_secs(5),
        ),
        amqp,
        gateway_shutdown,
        gateway: Some(gateway),
    };
    if options.start_worker {
        app.worker = Some(app.spawn_worker().await);
    }
    app
}

impl TestApp {
    pub fn worker_settings(&self) -> WorkerSettings {
        WorkerSettings {
            database_url: SecretString::from(self.db_url.clone()),
            ops_addr: "127.0.0.1:0".parse().unwrap(),
            amqp: self.amqp.clone(),
            prefetch: self.options.prefetch,
            batch_size: self.options.batch_size,
            batch_linger: self.options.batch_linger,
            // One consumer per queue: tests that count batches rely on it.
            consumers: 1,
            lt_email_pointer: "/email".into(),
            lt_event_time_pointer: None,
            lt_resend_window: self.options.lt_resend_window,
            erasure_clock_margin: self.options.erasure_clock_margin,
            hold_requeue_after: Duration::from_secs(600),
            subject_hash_key: SecretString::from(TEST_SUBJECT_HASH_KEY),
            database_pool_size: 12,
            outbox_sweep_interval: Duration::from_secs(1),
            retention: None,
            dlq_retention: Duration::from_secs(14 * 24 * 3600),
            retention_interval: Duration::from_secs(3600),
            mail: self.mail_settings(),
        }
    }

    pub fn mail_settings(&self) -> worker::email::MailSettings {
        let mut mail = worker::email::MailSettings::files(self.mail_dir.clone());
        mail.partner_name = "Henkilöstöpalvelu Testi Oy".into();
        // Within the test workers' database pool (12).
        mail.concurrency = 8;
        mail.templates_dir = self.options.templates_dir.clone();
        mail.smtp = self
            .options
            .smtp_url
            .as_ref()
            .map(|url| worker::email::SmtpSettings {
                url: SecretString::from(url.clone()),
                password: None,
                timeout: Duration::from_secs(5),
                tls: worker::email::SmtpTls::default(),
            });
        mail
    }

    /// Starts one more worker process's worth of consumers (in-process).
    pub async fn spawn_worker(&self) -> WorkerHandle {
        self.spawn_worker_with(self.worker_settings()).await
    }

    pub async fn spawn_worker_with(&self, settings: WorkerSettings) -> WorkerHandle {
        let worker = Worker::build(settings).await.unwrap();
        let ops_address = format!("http://127.0.0.1:{}", worker.ops_port());
        let stats = worker.stats();
        let context = worker.context();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(worker.run(shutdown.clone()));
        WorkerHandle {
            ops_address,
            stats,
            context,
            shutdown,
            task,
        }
    }

    /// A POST to the LT endpoint with nothing set: tests add what they test.
    pub fn lt_request(&self) -> reqwest::RequestBuilder {
        self.http.post(format!("{}/webhooks/lt", self.address))
    }

    /// POSTs `body` to the LINA endpoint the way LINA does.
    pub async fn post_lina(&self, body: &str) -> reqwest::Response {
        self.lina_request(LINA_SECRET)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// A POST to the LINA endpoint with `secret` in the path.
    pub fn lina_request(&self, secret: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/webhooks/lina/{secret}", self.address))
    }

    /// Registers a LINA store (as `worker lina webhooks add` does).
    pub async fn add_store(&self, uuid: &str) {
        let pool = common::db::pool(&SecretString::from(self.db_url.clone()), 1).unwrap();
        worker::admin::stores::add_webhook(&pool, uuid.parse().unwrap(), "Test store")
            .await
            .unwrap();
        pool.close();
    }

    /// The stored employee, if any, as (first name, last name, e-mail, bereich).
    pub async fn employee(&self, webhook: &str, user: &str) -> Option<[Option<String>; 4]> {
        let webhook: uuid::Uuid = webhook.parse().unwrap();
        let user: uuid::Uuid = user.parse().unwrap();
        self.db
            .query_opt(
                "SELECT first_name, last_name, email, bereich FROM lina_employee WHERE webhook = $1 AND user_uuid = $2",
                &[&webhook, &user],
            )
            .await
            .unwrap()
            .map(|row| [row.get(0), row.get(1), row.get(2), row.get(3)])
    }

    /// Segment files waiting in the spool.
    pub fn spool_segments(&self) -> usize {
        spool_segments_in(&self.spool_dir)
    }

    /// POSTs `body` to the LT endpoint the way LT does.
    pub async fn post_lt(&self, body: &str) -> reqwest::Response {
        self.lt_request()
            .header("Authorization", format!("Bearer {TEST_TOKEN}"))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` to the LT endpoint as LT does: resent after a 503 (the
    /// broker not reachable yet, e.g. just after a fault test restarted it)
    /// until the gateway answers something else, for at most 10 s.
    pub async fn post_lt_until_accepted(&self, body: &str) -> reqwest::Response {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let response = self.post_lt(body).await;
            if response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE
                || std::time::Instant::now() > deadline
            {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GETs `path` (`/healthz`, `/readyz`, `/metrics`) from the gateway's
    /// ops listener.
    pub async fn gateway_ops_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.gateway_ops))
            .send()
            .await
            .unwrap()
    }

    /// GETs `path` from the in-process worker's ops listener.
    pub async fn worker_ops_get(&self, path: &str) -> reqwest::Response {
        let worker = self.worker.as_ref().expect("the app runs a worker");
        self.http
            .get(format!("{}{path}", worker.ops_address))
            .send()
            .await
            .unwrap()
    }

    /// The in-process worker's Prometheus metrics, as text.
    pub async fn worker_metrics(&self) -> String {
        self.worker_ops_get("/metrics").await.text().await.unwrap()
    }

    /// The gateway's Prometheus metrics, as text.
    pub async fn gateway_metrics(&self) -> String {
        self.gateway_ops_get("/metrics").await.text().await.unwrap()
    }

    pub fn queue(&self, queue: WorkQueue) -> String {
        self.topology.work_queue(queue)
    }

    /// Ready messages in a work queue.
    pub async fn depth(&self, queue: WorkQueue) -> u32 {
        broker::depth_at(&self.amqp, &self.queue(queue)).await
    }

    /// Runs `worker dlq <args>` against this app's queues; returns its output.
    pub async fn dlq(&self, args: &[&str]) -> Result<String, worker::dead_letters::DlqError> {
        #[derive(clap::Parser)]
        struct DlqCli {
            #[command(subcommand)]
            command: worker::admin::dlq::DlqCommand,
        }
        let cli = <DlqCli as clap::Parser>::try_parse_from(
            std::iter::once("dlq").chain(args.iter().copied()),
        )
        .unwrap_or_else(|error| panic!("bad dlq arguments {args:?}: {error}"));
        let mut out = Vec::new();
        worker::admin::dlq::run(cli.command, &self.amqp, &mut out).await?;
        Ok(String::from_utf8(out).unwrap())
    }

    /// Publishes `envelope` straight to its work queue, confirmed (as the
    /// gateway would, but with an envelope the test built: another order,
    /// the same id twice).
    pub async fn publish(&self, envelope: &common::Envelope) {
        let queue = self.topology.work_queue(envelope.kind.work_queue());
        self.publisher
            .publish("", &queue, &envelope.body, envelope.amqp_properties())
            .await
            .unwrap();
    }

    /// The whole test database as `pg_dump` prints it.
    pub async fn dump(&self) -> String {
        let output = tokio::process::Command::new("pg_dump")
            .args(["--no-owner", "--dbname", &self.db_url])
            .output()
            .await
            .expect("pg_dump runs");
        assert!(
            output.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Waits until the dead-letter queue of `queue` holds `count` messages.
    pub async fn wait_for_dead_letters(&self, queue: WorkQueue, count: u32) {
        crate::eventually(
            &format!("{count} dead letter(s) in {}", queue.as_str()),
            Duration::from_secs(20),
            || async { (self.dead_letters(queue).await == count).then_some(()) },
        )
        .await;
    }

    /// Ready messages in the dead-letter queue of `queue`.
    pub async fn dead_letters(&self, queue: WorkQueue) -> u32 {
        broker::depth_at(&self.amqp, &self.topology.dead_letter_queue(queue)).await
    }

    /// A pool on the test's database (for driving the worker's library parts).
    pub fn pool(&self) -> common::db::DbPool {
        common::db::pool(&SecretString::from(self.db_url.clone()), 2).unwrap()
    }

    /// The subject hasher of the test workers.
    pub fn hasher(&self) -> common::subject::SubjectHasher {
        common::subject::SubjectHasher::new(SecretString::from(TEST_SUBJECT_HASH_KEY))
    }

    /// One retention round of a worker of this app (`INTAKE_RETENTION` =
    /// `retention`), as the background loop runs it; how many were erased.
    pub async fn erase_expired(
        &self,
        retention: Duration,
    ) -> Result<usize, worker::error::JobError> {
        let worker = Worker::build(self.worker_settings()).await.unwrap();
        worker::background::retention::erase_expired(&worker.context(), retention).await
    }

    /// The single number a counting query returns.
    pub async fn count(&self, query: &str) -> i64 {
        self.db.query_one(query, &[]).await.unwrap().get(0)
    }

    /// Subjects whose state row is a tombstone.
    pub async fn tombstones(&self) -> i64 {
        self.count("SELECT count(*) FROM subject_state WHERE erased_at IS NOT NULL")
            .await
    }

    /// The causes in the erasure log, oldest first.
    pub async fn erasure_causes(&self) -> Vec<String> {
        self.db
            .query("SELECT cause FROM erasure_log ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// Stored applications.
    pub async fn application_count(&self) -> i64 {
        self.db
            .query_one("SELECT count(*) FROM lt_application", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// A minimal application of `user_id` is accepted (200) and applied
    /// within 30 s: the path from the gateway through the broker to the
    /// database works.
    pub async fn apply_lt(&self, user_id: &str) {
        let body = serde_json::json!({
            "mydatashare_user_id": user_id,
            "email": format!("{user_id}@example.fi"),
        });
        let response = self.post_lt(&body.to_string()).await;
        assert_eq!(response.status(), 200, "{user_id} accepted");
        crate::eventually("applied", Duration::from_secs(30), || {
            self.application(user_id)
        })
        .await;
    }

    /// The stored application of `user_id`, if any, as (email, status, profile).
    pub async fn application(&self, user_id: &str) -> Option<(String, String, serde_json::Value)> {
        application_in(&self.db, user_id).await
    }
}

impl Drop for TestApp {
    /// Leaves nothing behind: stops the processes, drops the database and
    /// deletes the queues, also when the test failed.
    fn drop(&mut self) {
        self.gateway_shutdown.cancel();
        if let Some(worker) = &self.worker {
            worker.shutdown.cancel();
        }
        if let Some(gateway) = self.gateway.take() {
            gateway.abort();
        }
        let _ = std::fs::remove_dir_all(&self.spool_dir);
        let _ = std::fs::remove_dir_all(&self.mail_dir);
        let db_name = self.db_name.clone();
        let admin_url = self.admin_url.clone();
        // Binaries started by a test declare the default delay tiers too.
        let mut delays = common::settings::default_retry_delays();
        delays.extend(self.amqp.retry_delays.iter().copied());
        let everything = Topology::new(self.topology.prefix(), delays);
        let queues = everything.queue_names();
        let exchanges = everything.exchange_names();
        let amqp = self.amqp.clone();
        crate::block_on_own_thread(async move {
            database::drop_in(&admin_url, &db_name).await;
            broker::delete_at(&amqp, &queues, &exchanges).await;
        });
    }
}

/// The stored application of `user_id` in the database of `db`, if any.
pub async fn application_in(
    db: &tokio_postgres::Client,
    user_id: &str,
) -> Option<(String, String, serde_json::Value)> {
    db.query_opt(
        "SELECT email, status, profile FROM lt_application WHERE mydatashare_user_id = $1",
        &[&user_id],
    )
    .await
    .unwrap()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
}

/// Segment files waiting in a spool directory (0 when it does not exist).
pub fn spool_segments_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().starts_with("segment-"))
                .count()
        })
        .unwrap_or(0)
}
