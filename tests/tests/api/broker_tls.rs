//! TLS to RabbitMQ (`amqps://`): a node of the test's own with a TLS
//! listener, a certificate for `localhost` from a CA the test made, and a
//! client certificate required. The gateway and the worker reach it with
//! `INTAKE_AMQP_CA_FILE` and a client certificate, and the broker sees
//! every connection encrypted; without the CA, under a name the certificate
//! is not for, or without a client certificate, nothing connects.

use std::path::PathBuf;
use std::time::Duration;

use common::amqp::AmqpTls;
use common::settings::{AmqpArgs, AmqpSettings, Missing};
use intake_tests::private_rabbitmq::PrivateRabbit;
use intake_tests::test_ca::TestCa;
use intake_tests::{TestOptions, spawn_app_with};
use secrecy::SecretString;

struct CaFile(PathBuf);

impl CaFile {
    fn write(ca: &TestCa) -> CaFile {
        CaFile::with(&ca.ca_pem)
    }

    /// A PEM file holding `text`, removed on drop.
    fn with(text: &str) -> CaFile {
        let path =
            std::env::temp_dir().join(format!("intake-ca-{}.pem", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, text).unwrap();
        CaFile(path)
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn settings(url: String, tls: AmqpTls) -> AmqpSettings {
    AmqpSettings {
        url: SecretString::from(url),
        tls,
        queue_prefix: format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        publish_timeout: Duration::from_secs(5),
        retry_delays: vec![Duration::from_secs(1)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_worker_reach_the_broker_over_tls_with_the_partners_ca_and_only_so() {
    let ca = TestCa::generate();
    let broker = PrivateRabbit::requiring_client_certificates(&ca).await;
    let ca_file = CaFile::write(&ca);
    let (cert, key) = ca.client_certificate("intake");
    let (cert, key) = (CaFile::with(&cert), CaFile::with(&key));
    let tls = AmqpTls::from_files(Some(&ca_file.0), Some(&cert.0), Some(&key.0)).unwrap();

    let app = spawn_app_with(TestOptions {
        amqp_url: Some(broker.tls_url(0, "localhost")),
        amqp_tls: tls.clone(),
        ..TestOptions::default()
    })
    .await;
    app.apply_lt("tls-1").await;
    let connections = broker
        .ctl(
            0,
            &["list_connections", "name", "ssl", "--formatter", "json"],
        )
        .await
        .unwrap();
    let connections: Vec<serde_json::Value> = serde_json::from_str(&connections).unwrap();
    assert!(
        connections.len() >= 2,
        "the gateway and the worker are connected: {connections:?}"
    );
    assert!(
        connections
            .iter()
            .all(|connection| connection["ssl"] == true),
        "every connection is encrypted: {connections:?}"
    );

    // Verification is on: the system's roots alone do not know the CA, and
    // the certificate is for `localhost`, not for 127.0.0.1.
    for (url, tls, what) in [
        (
            broker.tls_url(0, "localhost"),
            AmqpTls::default(),
            "UnknownIssuer",
        ),
        (
            broker.tls_url(0, "127.0.0.1"),
            tls.clone(),
            "not valid for name",
        ),
    ] {
        let connector = settings(url, tls).connector("tls-test");
        let error = connector.connection().await.expect_err("refused");
        let text = common::db::with_causes(&error);
        assert!(text.contains(what), "{what} expected, got: {text}");
    }
}

fn args(url: &str, ca_file: Option<PathBuf>, cert: Option<PathBuf>) -> AmqpArgs {
    AmqpArgs {
        amqp_url: Some(url.into()),
        amqp_url_file: None,
        amqp_ca_file: ca_file,
        amqp_client_cert: cert,
        amqp_client_key: None,
        queue_prefix: "intake".into(),
        publish_timeout: Duration::from_secs(5),
        retry_delays: vec![Duration::from_secs(1)],
    }
}

#[test]
fn broker_tls_settings_that_cannot_work_are_refused_at_start() {
    let ca_file = CaFile::write(&TestCa::generate());
    let refused = |args: AmqpArgs| {
        args.resolve(&mut Missing::default())
            .expect_err("refused")
            .to_string()
    };
    // A CA file says TLS: a plain node in the list would carry events in clear.
    let text = refused(args(
        "amqps://a:5671/%2f,amqp://b:5672/%2f",
        Some(ca_file.0.clone()),
        None,
    ));
    assert!(
        text.contains("INTAKE_AMQP_URL") && text.contains("amqps://"),
        "{text}"
    );
    let text = refused(args(
        "amqps://a/%2f",
        Some("/nonexistent/ca.pem".into()),
        None,
    ));
    assert!(text.contains("INTAKE_AMQP_CA_FILE"), "{text}");
    let text = refused(args("amqps://a/%2f", None, Some(ca_file.0.clone())));
    assert!(text.contains("INTAKE_AMQP_CLIENT_KEY"), "{text}");
    // A file without a certificate in it.
    let empty = CaFile(ca_file.0.with_extension("empty"));
    std::fs::write(&empty.0, "not a certificate\n").unwrap();
    let text = refused(args("amqps://a/%2f", Some(empty.0.clone()), None));
    assert!(text.contains("INTAKE_AMQP_CA_FILE"), "{text}");
    assert!(
        args("amqps://a/%2f", Some(ca_file.0.clone()), None)
            .resolve(&mut Missing::default())
            .is_ok()
    );
}
