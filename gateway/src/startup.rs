//! Builds the gateway from its settings: binds both listeners (port 0 works,
//! for tests), prepares the broker connection, and runs until shut down.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

use std::any::Any;
use std::rc::Rc;

use actix_http::HttpService;
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Server, Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, web};
use common::amqp::{AmqpConnector, ConfirmedPublisher, Topology};
use common::ops::{MetricsRender, Readiness, ReadinessCheck};
use std::time::Instant;

use crate::connection::{ConnectionWatch, IdleLimits, watch_connections};
use crate::expect::{self, Routes};
use crate::metrics::{GatewayMetrics, source_of};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::body::BodyLimits;
use crate::routes::{self, LINA_ROUTE, LT_ROUTE};
use crate::settings::GatewaySettings;
use crate::spool::{Spool, SpoolError, run_drain};
use crate::state::{AppState, LinaState};

/// Connections the kernel queues for the webhook listener before it is
/// accepted (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

/// How long in-flight requests may take to finish after a shutdown request.
const SHUTDOWN_GRACE_SECS: u64 = 10;

/// The spool drainer's name in `intake_task_restarts_total{task}`.
pub const SPOOL_DRAINER: &str = "spool_drainer";

pub struct Application {
    port: u16,
    ops_port: u16,
    server: Server,
    ops_server: Server,
    connector: Arc<AmqpConnector>,
    publisher: Arc<ConfirmedPublisher>,
    topology: Topology,
    spool: Option<Arc<Spool>>,
    metrics: Arc<GatewayMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot bind a listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot open the LINA spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("cannot set up the metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Application {
    pub async fn build(settings: GatewaySettings) -> Result<Application, StartupError> {
        let ops_listener = TcpListener::bind(settings.ops_addr)?;
        let connector = settings.amqp.connector("gateway");
        // Connect now so the first request does not pay for it; a broker that
        // is down is not fatal (the gateway answers 503 until it is back).
        if let Err(error) = connector.connection().await {
            tracing::warn!(message = "Broker not reachable at start.", %error);
        }
        let publisher = Arc::new(ConfirmedPublisher::new(
            connector.clone(),
            settings.amqp.publish_timeout,
        ));
        let spool = match settings.lina_path_secrets.is_empty() {
            true => None,
            false => Some(Arc::new(Spool::open(
                &settings.spool_dir,
                settings.spool_max_bytes,
            )?)),
        };
        let lina = spool.clone().map(|spool| LinaState {
            path_secrets: settings.lina_path_secrets.clone(),
            spool,
            spool_after: settings.lina_spool_after,
        });
        let topology = settings.amqp.topology();
        let metrics = Arc::new(GatewayMetrics::new()?);
        let app_metrics = metrics.clone();
        let state = web::Data::new(AppState {
            publisher: publisher.clone(),
            topology: settings.amqp.topology(),
            lt_tokens: settings.lt_tokens,
            lt_email_pointer: settings.lt_email_pointer,
            body: BodyLimits {
                max_bytes: settings.max_body_bytes,
                timeout: settings.http.request_body,
            },
            sources: settings.sources,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            lina,
            metrics: metrics.clone(),
        });
        let ops_port = ops_listener.local_addr()?.port();
        let listener = webhook_listener(settings.gateway_addr)?;
        let port = listener.local_addr()?.port();
        let idle = IdleLimits {
            before_first_byte: settings.http.keep_alive + settings.http.request_head,
            head: settings.http.request_head,
        };
        let http = settings.http;
        let builder = actix_server::Server::build()
            .disable_signals()
            .shutdown_timeout(SHUTDOWN_GRACE_SECS);
        let shutdown_signal = builder.graceful_shutdown_signal();
        let server = builder.listen("intake-gateway", listener, move || {
            let (state, metrics) = (state.clone(), metrics.clone());
            let routes = Rc::new(Routes::default());
            let decided = (state.clone().into_inner(), metrics.clone());
            let watch = watch_connections(idle, metrics.clone());
            let signal = shutdown_signal.clone();
            let app = webhook_app(state, metrics)
                .into_factory()
                .map_err(|error| error.error_response());
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = signal.clone();
                    async move { signal.notified().await }
                })
                // Slow and idle clients: a head that never completes gets 408
                // and the connection is closed; so is a connection idle past
                // its keep-alive. (The body's deadline is the handlers', see
                // `body::read_limited`; between requests, see `connection`.)
                .client_request_timeout(http.request_head)
                .keep_alive(http.keep_alive)
                .client_disconnect_timeout(http.client_disconnect)
                .on_connect_ext(move |io: &actix_web::rt::net::TcpStream, data| {
                    watch(io as &dyn Any, data)
                })
                // `Expect: 100-continue` only once the head passed (see `expect`).
                .expect(fn_service(move |request| {
                    let (state, metrics) = decided.clone();
                    expect::decide(routes.clone(), state, metrics, request)
                }))
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp()
        })?;
        let server = server.run();
        let ops_server = common::ops::serve(
            ops_listener,
            readiness(connector.clone(), spool.clone()),
            render_metrics(app_metrics.clone(), connector.clone(), spool.clone()),
        )?;
        Ok(Application {
            port,
            ops_port,
            server,
            ops_server,
            connector,
            publisher,
            topology,
            spool,
            metrics: app_metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn ops_port(&self) -> u16 {
        self.ops_port
    }

    /// Serves until `shutdown` is cancelled, then stops taking requests,
    /// lets in-flight publishes finish and closes the broker connection.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let handle = self.server.handle();
        let ops_handle = self.ops_server.handle();
        let server = tokio::spawn(self.server);
        let ops_server = tokio::spawn(self.ops_server);
        // Supervised: a drainer that panicked would leave LINA calls on disk.
        let drain = self.spool.clone().map(|spool| {
            let (publisher, topology) = (self.publisher.clone(), self.topology.clone());
            let stop = shutdown.clone();
            let metrics = self.metrics.clone();
            tokio::spawn(common::supervise::supervise(
                SPOOL_DRAINER,
                shutdown.clone(),
                move || metrics.task_restarted(SPOOL_DRAINER),
                move || {
                    run_drain(
                        spool.clone(),
                        publisher.clone(),
                        topology.clone(),
                        stop.clone(),
                    )
                },
            ))
        });
        shutdown.cancelled().await;
        handle.stop(true).await;
        ops_handle.stop(true).await;
        let _ = server.await;
        let _ = ops_server.await;
        if let Some(drain) = drain {
            let _ = drain.await;
        }
        self.connector.close().await;
        tracing::info!(message = "Gateway stopped.");
        Ok(())
    }
}

/// The webhook app: both senders' routes, every request counted by the
/// route it matched and marked for the connection's watchdog.
fn webhook_app(
    state: web::Data<AppState>,
    metrics: Arc<GatewayMetrics>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .wrap_fn(move |request, service| {
            let watch = request.conn_data::<ConnectionWatch>().cloned();
            if let Some(watch) = &watch {
                watch.request_started();
            }
            let started = Instant::now();
            let response = service.call(request);
            let metrics = metrics.clone();
            async move {
                let response = response.await;
                if let Some(watch) = watch {
                    watch.response_ready();
                }
                let response = response?;
                // By the route matched, not the raw path: an equivalent URL
                // (percent-encoded) counts the same.
                let source = source_of(response.request().match_pattern().as_deref());
                metrics.request(source, response.status().as_u16(), started.elapsed());
                Ok(response)
            }
        })
        .service(
            web::resource(LT_ROUTE)
                .route(web::post().to(routes::lt::receive))
                .default_service(web::to(routes::method_not_allowed)),
        )
        .service(
            web::resource(LINA_ROUTE)
                .route(web::post().to(routes::lina::receive))
                .default_service(web::to(routes::method_not_allowed)),
        )
        .default_service(web::to(routes::not_found))
}

/// The webhook listener, with a backlog of `LISTEN_BACKLOG` rather than a
/// plain `std` listener's 128: a burst of new connections (or a flood of
/// idle ones) overflowed that, and the kernel dropped SYNs, costing real
/// clients a 1 s retransmit.
fn webhook_listener(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

fn render_metrics(
    metrics: Arc<GatewayMetrics>,
    connector: Arc<AmqpConnector>,
    spool: Option<Arc<Spool>>,
) -> MetricsRender {
    Arc::new(move || {
        let text = metrics.render(spool.as_deref(), connector.is_connected());
        Box::pin(async move { text })
    })
}

/// The gateway is ready while it can keep what it is sent: the broker takes
/// events, or the spool still has room for LINA calls. A broker outage alone
/// does not fail readiness: every gateway shares the broker, and a load
/// balancer that dropped the gateways would lose LINA calls.
fn readiness(connector: Arc<AmqpConnector>, spool: Option<Arc<Spool>>) -> ReadinessCheck {
    Arc::new(move || {
        let broker = connector.is_connected();
        let spool_has_room = spool.as_ref().is_none_or(|spool| !spool.is_full());
        let mut checks = BTreeMap::from([("broker", broker)]);
        if spool.is_some() {
            checks.insert("spool_has_room", spool_has_room);
        }
        Box::pin(async move {
            Readiness {
                ready: broker || spool_has_room,
                checks,
            }
        })
    })
}
