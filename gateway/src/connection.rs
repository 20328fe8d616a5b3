//! A deadline for every connection between its requests, kept in front of
//! actix. Actix bounds the first request head (`INTAKE_REQUEST_HEAD_TIMEOUT`)
//! and a kept-alive connection that sends nothing (`INTAKE_KEEP_ALIVE`), but
//! not a connection that, after a response, sends one byte of its next head
//! and stops (actix clears the keep-alive timer at the first byte and arms
//! the head timer for the first request only), nor one that never finishes
//! the chunked body of a refused request (actix drains it for as long as it
//! flows). Neither needs credentials.
//!
//! So each accepted socket gets a watchdog with its own handle on the
//! socket (a duplicate descriptor, `socket2`, watched for readability but
//! never read): once a response is ready, the next request must reach the
//! app within `INTAKE_REQUEST_HEAD_TIMEOUT` of the first byte that arrives
//! after it (and within keep-alive plus that if nothing arrives), or the
//! socket is shut down, which actix sees as the client going away. The
//! watchdog ends with the connection (when actix drops the connection's
//! data), closing its descriptor. Written here because no maintained crate
//! sits between actix-server's accept and actix-http's dispatcher.

use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use tokio::io::Interest;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::GatewayMetrics;

/// Where a connection is between its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before its first response (actix's head timer applies), or while a
    /// request is being handled (the handlers' deadlines apply).
    Busy,
    /// Its last response was ready at this instant.
    Idle(Instant),
}

/// The connection's side of the watchdog, kept in actix's connection data.
#[derive(Clone)]
pub struct ConnectionWatch(Rc<watch::Sender<Phase>>);

impl ConnectionWatch {
    /// A request reached the app.
    pub fn request_started(&self) {
        self.0.send_replace(Phase::Busy);
    }

    /// Its response is ready: the idle deadline runs from now.
    pub fn response_ready(&self) {
        self.0.send_replace(Phase::Idle(Instant::now()));
    }
}

/// The `on_connect` hook: a watchdog for each TCP connection (see the module).
pub fn watch_connections(
    limits: IdleLimits,
    metrics: Arc<GatewayMetrics>,
) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + Clone + 'static {
    move |connection, data| {
        let Some(stream) = connection.downcast_ref::<TcpStream>() else {
            return;
        };
        // Our own descriptor of the same socket (it shares the socket's
        // non-blocking mode), registered with this worker's reactor.
        let Ok(socket) = socket2::SockRef::from(stream).try_clone() else {
            return; // no descriptor to spare: actix's own deadlines still apply
        };
        let Ok(socket) = TcpStream::from_std(socket.into()) else {
            return;
        };
        let (sender, phases) = watch::channel(Phase::Busy);
        data.insert(ConnectionWatch(Rc::new(sender)));
        actix_web::rt::spawn(watchdog(phases, socket, limits, metrics.clone()));
    }
}

/// How long a connection may wait between a response and its next request.
#[derive(Clone, Copy, Debug)]
pub struct IdleLimits {
    /// Before the next request's first byte (actix's keep-alive closes the
    /// connection first when it is on; this is the backstop).
    pub before_first_byte: Duration,
    /// From that byte until the request reaches the app (the head timeout).
    pub head: Duration,
}

async fn watchdog(
    mut phases: watch::Receiver<Phase>,
    socket: TcpStream,
    limits: IdleLimits,
    metrics: Arc<GatewayMetrics>,
) {
    // When bytes arrived since the connection went idle.
    let mut first_byte: Option<Instant> = None;
    loop {
        let phase = *phases.borrow_and_update();
        let deadline = match (phase, first_byte) {
            (Phase::Busy, _) => None,
            (Phase::Idle(_), Some(at)) => Some(at + limits.head),
            (Phase::Idle(since), None) => Some(since + limits.before_first_byte),
        };
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let watching_bytes = matches!(phase, Phase::Idle(_)) && first_byte.is_none();
        tokio::select! {
            changed = phases.changed() => {
                if changed.is_err() {
                    // The connection ended; dropping `socket` closes our descriptor.
                    return;
                }
                if matches!(*phases.borrow(), Phase::Idle(_)) {
                    forget_earlier_bytes(&socket);
                }
                first_byte = None;
            }
            _ = socket.readable(), if watching_bytes => {
                // Not read here (actix reads them): only noted.
                forget_earlier_bytes(&socket);
                first_byte = Some(Instant::now());
            }
            () = expired => {
                let _ = socket2::SockRef::from(&socket).shutdown(std::net::Shutdown::Both);
                metrics.connection_closed("idle");
                tracing::debug!(message = "Connection closed: no next request in time.");
                return;
            }
        }
    }
}

/// Clears the readiness noted so far (a pretend read that would block:
/// tokio then waits for the next arrival), so only bytes that arrive from
/// now on count: those before belong to the request just answered.
fn forget_earlier_bytes(socket: &TcpStream) {
    let _ = socket.try_io(Interest::READABLE, || {
        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
    });
}
