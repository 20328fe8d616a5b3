//! Builds the gateway from its settings: binds both listeners (port 0 works,
//! for tests), prepares the broker connection, and runs until shut down.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use common::amqp::{AmqpConnector, ConfirmedPublisher};
use common::ops::{Readiness, ReadinessCheck};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::routes;
use crate::settings::GatewaySettings;
use crate::state::AppState;

/// How long in-flight requests may take to finish after a shutdown request.
const SHUTDOWN_GRACE_SECS: u64 = 10;

pub struct Application {
    port: u16,
    ops_port: u16,
    server: Server,
    ops_server: Server,
    connector: Arc<AmqpConnector>,
}

impl Application {
    pub async fn build(settings: GatewaySettings) -> std::io::Result<Application> {
        let listener = TcpListener::bind(settings.gateway_addr)?;
        let ops_listener = TcpListener::bind(settings.ops_addr)?;
        let connector = settings.amqp.connector("gateway");
        // Connect now so the first request does not pay for it; a broker that
        // is down is not fatal (the gateway answers 503 until it is back).
        if let Err(error) = connector.connection().await {
            tracing::warn!(message = "Broker not reachable at start.", %error);
        }
        let state = web::Data::new(AppState {
            publisher: Arc::new(ConfirmedPublisher::new(
                connector.clone(),
                settings.amqp.publish_timeout,
            )),
            topology: settings.amqp.topology(),
            lt_tokens: settings.lt_tokens,
            lt_email_pointer: settings.lt_email_pointer,
            max_body_bytes: settings.max_body_bytes,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
        });
        let port = listener.local_addr()?.port();
        let ops_port = ops_listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .service(web::resource("/webhooks/lt").route(web::post().to(routes::lt::receive)))
                .default_service(web::to(routes::not_found))
        })
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .listen(listener)?
        .run();
        let ops_server = common::ops::serve(ops_listener, readiness(connector.clone()))?;
        Ok(Application {
            port,
            ops_port,
            server,
            ops_server,
            connector,
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
        shutdown.cancelled().await;
        handle.stop(true).await;
        ops_handle.stop(true).await;
        let _ = server.await;
        let _ = ops_server.await;
        self.connector.close().await;
        tracing::info!(message = "Gateway stopped.");
        Ok(())
    }
}

/// The gateway is ready while it can take requests. Broker state is reported
/// but does not fail readiness: every gateway shares the broker, so taking
/// one out of a load balancer helps nobody (and LINA calls will be spooled).
fn readiness(connector: Arc<AmqpConnector>) -> ReadinessCheck {
    Arc::new(move || {
        let broker = connector.is_connected();
        Box::pin(async move {
            Readiness {
                ready: true,
                checks: BTreeMap::from([("broker", broker)]),
            }
        })
    })
}
