//! The real `gateway` and `worker` executables of a chaos scenario, to be
//! killed with SIGKILL and started again.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::TestApp;
use crate::app::{LINA_SECRET, TEST_SUBJECT_HASH_KEY, TEST_TOKEN};

/// Starts a worker process on `app`'s database and queues, sending its
/// e-mails to `smtp_url`. Its pool and e-mail concurrency are small: two of
/// them share PostgreSQL with the other tests.
pub fn start_worker(app: &TestApp, smtp_url: &str) -> Child {
    Command::new(crate::binaries::path("worker"))
        .arg("run")
        .env("INTAKE_DATABASE_URL", &app.db_url)
        .env("INTAKE_AMQP_URL", crate::amqp_url())
        .env("INTAKE_QUEUE_PREFIX", app.topology.prefix())
        .env("INTAKE_OPS_ADDR", "127.0.0.1:0")
        .env("INTAKE_RETRY_DELAYS", retry_delays(app))
        .env("INTAKE_PUBLISH_TIMEOUT", "2s")
        .env("INTAKE_SUBJECT_HASH_KEY", TEST_SUBJECT_HASH_KEY)
        .env("INTAKE_SMTP_URL", smtp_url)
        .env("INTAKE_SMTP_TIMEOUT", "5s")
        .env("INTAKE_EMAIL_CONCURRENCY", EMAIL_CONCURRENCY.to_string())
        .env("INTAKE_DATABASE_POOL_SIZE", "8")
        .env("INTAKE_OUTBOX_SWEEP_INTERVAL", "1s")
        .env("INTAKE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(crate::logs::stderr_for("worker"))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// E-mails a worker process sends at once: the most one SIGKILL can duplicate.
pub const EMAIL_CONCURRENCY: usize = 6;

/// Starts a gateway process on `port` with its LINA spool in `spool_dir`.
pub fn start_gateway(app: &TestApp, port: u16, spool_dir: &Path) -> Child {
    Command::new(crate::binaries::path("gateway"))
        .env("INTAKE_AMQP_URL", crate::amqp_url())
        .env("INTAKE_QUEUE_PREFIX", app.topology.prefix())
        .env("INTAKE_GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("INTAKE_OPS_ADDR", "127.0.0.1:0")
        .env("INTAKE_RETRY_DELAYS", retry_delays(app))
        .env("INTAKE_LT_TOKENS", TEST_TOKEN)
        .env("INTAKE_LINA_PATH_SECRETS", LINA_SECRET)
        .env("INTAKE_SPOOL_DIR", spool_dir)
        .env("INTAKE_PUBLISH_TIMEOUT", "2s")
        .env("INTAKE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(crate::logs::stderr_for("gateway"))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until something answers HTTP on `base`.
pub async fn wait_listening(http: &reqwest::Client, base: &str) {
    crate::eventually("the gateway listens", Duration::from_secs(30), || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

/// The test app's delay tiers, as the binaries' setting.
fn retry_delays(app: &TestApp) -> String {
    app.amqp
        .retry_delays
        .iter()
        .map(|delay| format!("{}s", delay.as_secs()))
        .collect::<Vec<_>>()
        .join(",")
}
