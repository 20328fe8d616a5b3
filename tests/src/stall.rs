//! A TCP relay that can be made to hang: its connections stay open but
//! nothing more is forwarded, as with a broker frozen mid-conversation (as
//! opposed to one that went away, which `services::BrokerOutage` gives).
//! Used from one test's gateway only, so the shared broker is untouched.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct StallingRelay {
    port: u16,
    stalled: Arc<AtomicBool>,
    /// Cancelled to close every connection relayed so far.
    connections: Mutex<CancellationToken>,
}

impl StallingRelay {
    /// Relays 127.0.0.1:<some free port> to the test broker; must run inside
    /// a tokio runtime. The relay lives as long as that runtime.
    pub async fn to_broker() -> Arc<StallingRelay> {
        let url = reqwest::Url::parse(&crate::amqp_url()).unwrap();
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let target = tokio::net::lookup_host((host, url.port().unwrap_or(5672)))
            .await
            .unwrap()
            .next()
            .unwrap();
        StallingRelay::start(target).await
    }

    /// The test broker's URL, through this relay.
    pub fn amqp_url(&self) -> String {
        let mut url = reqwest::Url::parse(&crate::amqp_url()).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }

    /// Relays 127.0.0.1:<some free port> to `target`; must run inside a
    /// tokio runtime. The relay lives as long as that runtime.
    pub async fn start(target: std::net::SocketAddr) -> Arc<StallingRelay> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Arc::new(StallingRelay {
            port: listener.local_addr().unwrap().port(),
            stalled: Arc::new(AtomicBool::new(false)),
            connections: Mutex::new(CancellationToken::new()),
        });
        tokio::spawn(accept(listener, target, relay.clone()));
        relay
    }

    /// From now on nothing is forwarded, on open connections or new ones.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Closes every connection relayed so far and forwards again.
    pub fn cut(&self) {
        let old = std::mem::take(&mut *self.connections.lock().unwrap());
        self.stalled.store(false, Ordering::SeqCst);
        old.cancel();
    }
}

async fn accept(listener: TcpListener, target: std::net::SocketAddr, relay: Arc<StallingRelay>) {
    while let Ok((inbound, _)) = listener.accept().await {
        let Ok(outbound) = TcpStream::connect(target).await else {
            continue;
        };
        let closed = relay.connections.lock().unwrap().clone();
        let (inbound_read, inbound_write) = inbound.into_split();
        let (outbound_read, outbound_write) = outbound.into_split();
        let stalled = relay.stalled.clone();
        tokio::spawn(pump(
            inbound_read,
            outbound_write,
            stalled.clone(),
            closed.clone(),
        ));
        tokio::spawn(pump(outbound_read, inbound_write, stalled, closed));
    }
}

/// Forwards one direction until either side closes or the connection is
/// cut; once stalled, holds both ends open without forwarding until cut.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    stalled: Arc<AtomicBool>,
    closed: CancellationToken,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            _ = closed.cancelled() => return,
            read = from.read(&mut buffer) => read,
        };
        let Ok(n @ 1..) = read else {
            return;
        };
        if stalled.load(Ordering::SeqCst) {
            closed.cancelled().await;
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
