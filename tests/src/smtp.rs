//! A real SMTP server on loopback (mailin-embedded), for the e-mail tests:
//! it keeps what it receives and can refuse chosen recipients with 550.
//! With TLS (`start_with_tls`): STARTTLS is mailin-embedded's own (OpenSSL);
//! TLS from the first byte (smtps), which mailin-embedded does not do, and
//! a required client certificate are a rustls front that forwards to a
//! plain mailin-embedded on another loopback port. Either way a front taps
//! what the client sent on the wire, so a test can show that no address
//! crossed it in plain text.

use std::net::TcpListener;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use mailin_embedded::response::{NO_MAILBOX, OK};
use mailin_embedded::{Handler, Response, Server, SslConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::test_ca::TestCa;

/// One message as the server received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub to: Vec<String>,
    /// The raw message (headers and MIME body).
    pub data: Vec<u8>,
}

impl Received {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a parsable message")
    }
}

#[derive(Clone)]
struct Inbox {
    received: Arc<Mutex<Vec<Received>>>,
    refused: Arc<Vec<String>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Inbox {
    fn rcpt(&mut self, to: &str) -> Response {
        if self.refused.iter().any(|refused| refused == to) {
            return NO_MAILBOX;
        }
        self.to.push(to.to_owned());
        OK
    }

    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        self.data.clear();
        OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let message = Received {
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
        };
        self.received.lock().unwrap().push(message);
        OK
    }
}

pub struct SmtpServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    /// Every byte clients sent on the wire (TLS servers only).
    wire: Arc<Mutex<Vec<u8>>>,
}

impl SmtpServer {
    /// `smtp://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until at least `count` messages arrived; all of them.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        crate::eventually(
            &format!("{count} e-mail(s) received"),
            std::time::Duration::from_secs(20),
            || async {
                let received = self.received();
                (received.len() >= count).then_some(received)
            },
        )
        .await
    }

    /// What clients sent on the wire, as sent (ciphertext after a handshake).
    pub fn wire(&self) -> Vec<u8> {
        self.wire.lock().unwrap().clone()
    }
}

/// A free loopback port (for a server that starts later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server on `port` (0: any), refusing the addresses in `refused`.
/// It runs until the test process ends.
pub fn start(port: u16, refused: &[&str]) -> SmtpServer {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = serve(listener, refused, SslConfig::None);
    SmtpServer {
        port,
        received,
        wire: Arc::default(),
    }
}

/// How a server from [`start_with_tls`] speaks to its clients. The server
/// certificate is `ca`'s, for `localhost`.
pub enum ServerTls<'a> {
    /// No TLS at all: STARTTLS is not offered.
    Plain,
    /// STARTTLS offered.
    StartTls { ca: &'a TestCa },
    /// TLS from the first byte (smtps); with `client_ca`, a client
    /// certificate signed by it is required.
    Implicit {
        ca: &'a TestCa,
        client_ca: Option<&'a TestCa>,
    },
}

/// A server behind a front on a port of its own that taps the wire.
pub fn start_with_tls(tls: ServerTls<'_>) -> SmtpServer {
    let inner = TcpListener::bind("127.0.0.1:0").unwrap();
    let inner_port = inner.local_addr().unwrap().port();
    let (received, acceptor) = match tls {
        ServerTls::Plain => (serve(inner, &[], SslConfig::None), None),
        ServerTls::StartTls { ca } => {
            let (dir, config) = starttls_files(ca);
            let received = serve(inner, &[], config);
            let _ = std::fs::remove_dir_all(dir);
            (received, None)
        }
        ServerTls::Implicit { ca, client_ca } => (
            serve(inner, &[], SslConfig::None),
            Some(acceptor(ca, client_ca)),
        ),
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let wire = Arc::new(Mutex::new(Vec::new()));
    front(listener, inner_port, acceptor, wire.clone());
    SmtpServer {
        port,
        received,
        wire,
    }
}

fn serve(listener: TcpListener, refused: &[&str], ssl: SslConfig) -> Arc<Mutex<Vec<Received>>> {
    let received = Arc::new(Mutex::new(Vec::new()));
    let inbox = Inbox {
        received: received.clone(),
        refused: Arc::new(refused.iter().map(|address| address.to_string()).collect()),
        to: Vec::new(),
        data: Vec::new(),
    };
    let mut server = Server::new(inbox);
    server
        .with_name("smtp.test")
        .with_ssl(ssl)
        .unwrap()
        // One thread per connection a sender's pool may open (the worker's
        // default is 32; `bench email --concurrency` goes higher). A
        // connection beyond them waits unserved until the client times out.
        .with_num_threads(64)
        .with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    received
}

/// mailin-embedded reads its certificate from files (once, as it starts:
/// the directory can go then).
fn starttls_files(ca: &TestCa) -> (std::path::PathBuf, SslConfig) {
    let dir = std::env::temp_dir().join(format!("intake-smtp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    std::fs::write(&cert_path, &ca.server_cert_pem).unwrap();
    std::fs::write(&key_path, &ca.server_key_pem).unwrap();
    let config = SslConfig::SelfSigned {
        cert_path: cert_path.display().to_string(),
        key_path: key_path.display().to_string(),
    };
    (dir, config)
}

/// The smtps side: `ca`'s certificate for `localhost`, and a client
/// certificate signed by `client_ca` required when there is one.
fn acceptor(ca: &TestCa, client_ca: Option<&TestCa>) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificates = CertificateDer::pem_slice_iter(ca.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(ca.server_key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for root in CertificateDer::pem_slice_iter(client_ca.ca_pem.as_bytes()) {
                roots.add(root.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certificates, key).unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Accepts on `listener` (with TLS when there is an `acceptor`) and
/// forwards each connection to the server on `inner_port`, keeping what
/// the client sent in `wire`. A client whose handshake fails never reaches
/// the server. Runs on a thread and runtime of its own until the test
/// process ends.
fn front(
    listener: TcpListener,
    inner_port: u16,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    wire: Arc<Mutex<Vec<u8>>>,
) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((client, _)) = listener.accept().await {
                let client = Tap {
                    inner: client,
                    wire: wire.clone(),
                };
                tokio::spawn(forward(client, inner_port, acceptor.clone()));
            }
        });
    });
}

async fn forward(mut client: Tap, inner_port: u16, acceptor: Option<tokio_rustls::TlsAcceptor>) {
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", inner_port));
    match acceptor {
        None => {
            if let Ok(mut server) = connect().await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        }
        Some(acceptor) => {
            let Ok(mut client) = acceptor.accept(client).await else {
                return;
            };
            if let Ok(mut server) = connect().await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        }
    }
}

/// A client connection that keeps every byte read from it.
struct Tap {
    inner: tokio::net::TcpStream,
    wire: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            self.wire
                .lock()
                .unwrap()
                .extend_from_slice(&buf.filled()[before..]);
        }
        poll
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
