//! TLS to the SMTP relay with the partner's own CA: STARTTLS and smtps to a
//! server whose certificate a CA of the test signed, trusted through
//! INTAKE_SMTP_CA_FILE alone, and a client certificate for a relay that asks
//! for one. A relay another CA signed, or one offering no STARTTLS, gets
//! nothing: no address crosses the wire in plain text, and the e-mail waits
//! in its delay tiers with a short reason. The settings come from the flags
//! the binary reads.

use std::path::PathBuf;
use std::time::Duration;

use intake_tests::smtp::{self, ServerTls, SmtpServer};
use intake_tests::test_ca::TestCa;
use intake_tests::{TestApp, TestOptions, eventually, example, spawn_app_with, until};
use worker::email::{MailSettings, SmtpSettings};

const AINO: &str = "aino.korhonen@example.fi";

/// A directory of PEM files, removed with it.
struct Files(PathBuf);

impl Files {
    fn new() -> Files {
        let dir =
            std::env::temp_dir().join(format!("intake-smtp-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The mail settings the worker binary makes of these flags.
fn mail_settings(flags: &[&str]) -> Result<MailSettings, String> {
    let cli = <worker::admin::cli::Cli as clap::Parser>::try_parse_from(
        std::iter::once("worker").chain(flags.iter().copied()),
    )
    .unwrap();
    cli.args
        .mail
        .into_settings()
        .map_err(|error| error.to_string())
}

fn smtp_settings(flags: &[&str]) -> SmtpSettings {
    mail_settings(flags).unwrap().smtp.expect("an SMTP relay")
}

/// The gateway and a worker sending through `smtp`.
async fn app_sending_with(smtp: SmtpSettings) -> TestApp {
    let mut app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let mut settings = app.worker_settings();
    settings.mail.smtp = Some(smtp);
    app.worker = Some(app.spawn_worker_with(settings).await);
    app
}

/// A test app whose worker sends through `url`, trusting only `ca_file`.
async fn app_trusting(url: &str, ca_file: &str) -> TestApp {
    app_sending_with(smtp_settings(&[
        "--smtp-url",
        url,
        "--smtp-ca-file",
        ca_file,
    ]))
    .await
}

/// (status, attempts, last_error) of the one outbox row.
async fn outbox_row(app: &TestApp) -> (String, i32, Option<String>) {
    let row = app
        .db
        .query_one("SELECT status, attempts, last_error FROM email_outbox", &[])
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn sent(app: &TestApp) {
    eventually(
        "the row is marked sent",
        Duration::from_secs(10),
        || async { (outbox_row(app).await.0 == "sent").then_some(()) },
    )
    .await;
}

/// The send was tried, failed with `reason`, and waits for its next tier.
async fn retried_with(app: &TestApp, reason: &str) {
    let stats = app.worker.as_ref().unwrap().stats.clone();
    until("the send is retried", &stats, |stats| {
        stats.events_retried() >= 1
    })
    .await;
    let (status, attempts, last_error) = outbox_row(app).await;
    assert_eq!(status, "pending", "waiting for another try");
    assert!(attempts >= 1);
    assert_eq!(last_error.as_deref(), Some(reason));
    assert_eq!(stats.emails_sent(), 0);
}

/// `needle` as lettre writes it (exact case: ciphertext rarely spells it).
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The relay received the example applicant's acknowledgement, and the
/// worker counted it sent.
async fn acknowledged_to_aino(server: &SmtpServer, app: &TestApp) {
    let mail = server.wait_for(1).await.remove(0);
    assert_eq!(mail.to, vec![AINO.to_owned()]);
    sent(app).await;
}

/// No address and no envelope crossed the wire in plain text.
fn nothing_in_plain_text(server: &SmtpServer) {
    let wire = server.wire();
    assert!(!wire.is_empty(), "the client did connect");
    for plain in [AINO, "MAIL FROM", "RCPT TO"] {
        assert!(!contains(&wire, plain), "{plain:?} was sent in plain text");
    }
}

/// A worker sending through `url` with `ca` as `INTAKE_SMTP_CA_FILE`: an
/// application's acknowledgement reaches `server` and its row is sent.
async fn delivered_with_our_ca(server: &SmtpServer, ca: &TestCa, url: &str) {
    let files = Files::new();
    let ca_file = files.write("ca.pem", &ca.ca_pem);
    let app = app_trusting(url, &ca_file).await;
    assert_eq!(app.post_lt(&example("lt/new.json")).await.status(), 200);
    acknowledged_to_aino(server, &app).await;
}

#[tokio::test]
async fn starttls_to_a_relay_our_ca_signed_delivers_the_acknowledgement() {
    let ca = TestCa::generate();
    let server = smtp::start_with_tls(ServerTls::StartTls { ca: &ca });
    let url = format!("smtp://localhost:{}?tls=required", server.port);
    delivered_with_our_ca(&server, &ca, &url).await;
    assert!(
        contains(&server.wire(), "STARTTLS"),
        "upgraded with STARTTLS"
    );
    nothing_in_plain_text(&server);
}

#[tokio::test]
async fn smtps_to_a_relay_our_ca_signed_delivers_the_acknowledgement() {
    let ca = TestCa::generate();
    let server = smtp::start_with_tls(ServerTls::Implicit {
        ca: &ca,
        client_ca: None,
    });
    let url = format!("smtps://localhost:{}", server.port);
    delivered_with_our_ca(&server, &ca, &url).await;
    assert!(
        !contains(&server.wire(), "EHLO"),
        "TLS from the first byte: not even the greeting is plain"
    );
    nothing_in_plain_text(&server);
}

#[tokio::test]
async fn a_relay_another_ca_signed_gets_nothing_and_the_email_is_retried() {
    let ours = TestCa::generate();
    let theirs = TestCa::generate();
    let files = Files::new();
    let ca_file = files.write("ca.pem", &ours.ca_pem);
    for (server, url) in [
        {
            let server = smtp::start_with_tls(ServerTls::StartTls { ca: &theirs });
            let url = format!("smtp://localhost:{}?tls=required", server.port);
            (server, url)
        },
        {
            let server = smtp::start_with_tls(ServerTls::Implicit {
                ca: &theirs,
                client_ca: None,
            });
            let url = format!("smtps://localhost:{}", server.port);
            (server, url)
        },
    ] {
        let app = app_trusting(&url, &ca_file).await;
        app.post_lt(&example("lt/new.json")).await;
        retried_with(&app, "SMTP TLS handshake failed: certificate not trusted").await;
        assert!(server.received().is_empty(), "{url}: nothing arrived");
        nothing_in_plain_text(&server);
    }
}

#[tokio::test]
async fn a_relay_without_starttls_gets_nothing_in_plain_text() {
    let ca = TestCa::generate();
    let server = smtp::start_with_tls(ServerTls::Plain);
    let files = Files::new();
    let url = format!("smtp://localhost:{}?tls=required", server.port);
    let ca_file = files.write("ca.pem", &ca.ca_pem);
    let app = app_trusting(&url, &ca_file).await;
    app.post_lt(&example("lt/new.json")).await;
    retried_with(
        &app,
        "SMTP client: STARTTLS is not supported on this server",
    )
    .await;
    assert!(server.received().is_empty());
    assert!(contains(&server.wire(), "EHLO"), "the client did talk");
    nothing_in_plain_text(&server);
}

#[tokio::test]
async fn a_relay_that_requires_a_client_certificate_takes_ours_and_refuses_none() {
    let ca = TestCa::generate();
    let server = smtp::start_with_tls(ServerTls::Implicit {
        ca: &ca,
        client_ca: Some(&ca),
    });
    let files = Files::new();
    let url = format!("smtps://localhost:{}", server.port);
    let ca_file = files.write("ca.pem", &ca.ca_pem);
    let (cert, key) = ca.client_certificate("intake worker");
    let cert_file = files.write("client.crt", &cert);
    let key_file = files.write("client.key", &key);

    let without = app_trusting(&url, &ca_file).await;
    without.post_lt(&example("lt/new.json")).await;
    let stats = without.worker.as_ref().unwrap().stats.clone();
    until("the send is retried", &stats, |stats| {
        stats.events_retried() >= 1
    })
    .await;
    let (status, _, last_error) = outbox_row(&without).await;
    assert_eq!(status, "pending");
    let last_error = last_error.unwrap();
    assert!(
        last_error.starts_with("SMTP TLS handshake failed: the relay refused it"),
        "{last_error}"
    );
    assert!(server.received().is_empty());

    let with = app_sending_with(smtp_settings(&[
        "--smtp-url",
        &url,
        "--smtp-ca-file",
        &ca_file,
        "--smtp-client-cert",
        &cert_file,
        "--smtp-client-key",
        &key_file,
    ]))
    .await;
    with.post_lt(&example("lt/new.json")).await;
    acknowledged_to_aino(&server, &with).await;
}

#[tokio::test]
async fn missing_or_broken_tls_files_and_a_url_that_could_go_plain_stop_the_start() {
    let files = Files::new();
    let ca = TestCa::generate();
    let ca_file = files.write("ca.pem", &ca.ca_pem);
    let garbage = files.write("garbage.pem", "secret-looking text, not PEM");
    let smtps = "smtps://localhost:465";
    for (flags, names) in [
        (
            vec!["--smtp-ca-file", "/nonexistent/ca.pem"],
            vec!["INTAKE_SMTP_CA_FILE", "/nonexistent/ca.pem"],
        ),
        (
            vec!["--smtp-ca-file", &garbage],
            vec!["INTAKE_SMTP_CA_FILE", "no PEM certificate"],
        ),
        (
            vec!["--smtp-client-cert", &ca_file],
            vec!["INTAKE_SMTP_CLIENT_CERT", "INTAKE_SMTP_CLIENT_KEY"],
        ),
        (
            vec![
                "--smtp-client-cert",
                &ca_file,
                "--smtp-client-key",
                &garbage,
            ],
            vec!["INTAKE_SMTP_CLIENT_KEY", "no PEM private key"],
        ),
    ] {
        let flags: Vec<&str> = ["--smtp-url", smtps].into_iter().chain(flags).collect();
        let error = mail_settings(&flags).expect_err("refused at start");
        for name in names {
            assert!(error.contains(name), "{flags:?}: {error}");
        }
        assert!(
            !error.contains("secret-looking"),
            "no file contents: {error}"
        );
    }
    let error = mail_settings(&["--smtp-ca-file", &ca_file]).expect_err("no relay");
    assert!(error.contains("INTAKE_SMTP_URL"), "{error}");

    // A URL that would send in plain text (or fall back to it): the worker does not start.
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    for url in [
        "smtp://localhost:25",
        "smtp://localhost:587?tls=opportunistic",
    ] {
        let mut settings = app.worker_settings();
        settings.mail.smtp = Some(smtp_settings(&[
            "--smtp-url",
            url,
            "--smtp-ca-file",
            &ca_file,
        ]));
        let error = match worker::startup::Worker::build(settings).await {
            Ok(_) => panic!("{url}: the worker started"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains("INTAKE_SMTP_CA_FILE needs TLS"),
            "{url}: {error}"
        );
    }
}
