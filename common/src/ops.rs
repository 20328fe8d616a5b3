//! The ops listener every process has: `/healthz` (alive), `/readyz` (able
//! to do its work) and `/metrics` (Prometheus), on its own address so it is
//! never exposed with the webhooks.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use futures_util::future::BoxFuture;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Each dependency and whether it answered.
    pub checks: BTreeMap<&'static str, bool>,
}

/// How long a stopping ops listener waits for open connections.
const OPS_SHUTDOWN_SECS: u64 = 1;

pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Readiness> + Send + Sync>;

/// Renders the process's metrics (refreshing gauges that are read, not counted).
pub type MetricsRender = Arc<dyn Fn() -> BoxFuture<'static, String> + Send + Sync>;

/// Serves the ops endpoints on `listener` until the returned server is stopped.
pub fn serve(
    listener: TcpListener,
    readiness: ReadinessCheck,
    metrics: MetricsRender,
) -> std::io::Result<actix_web::dev::Server> {
    let readiness = web::Data::new(readiness);
    let metrics = web::Data::new(metrics);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(readiness.clone())
            .app_data(metrics.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(render_metrics))
    })
    .workers(1)
    // Its answers take milliseconds; a scraper's kept-alive connection
    // must not hold the process's stop for actix's default 30 s.
    .shutdown_timeout(OPS_SHUTDOWN_SECS)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

async fn render_metrics(render: web::Data<MetricsRender>) -> HttpResponse {
    let text = (render.get_ref())().await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(check: web::Data<ReadinessCheck>) -> HttpResponse {
    let readiness = (check.get_ref())().await;
    if readiness.ready {
        HttpResponse::Ok().json(readiness)
    } else {
        HttpResponse::ServiceUnavailable().json(readiness)
    }
}
