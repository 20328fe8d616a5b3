//! Helpers shared by the end-to-end test binaries: each test gets its own
//! database and queue prefix, runs the real gateway and worker in-process on
//! port 0, and leaves nothing behind.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // test helpers: a failed setup should fail the test loudly

pub mod app;
pub mod binaries;
pub mod broker;
pub mod chaos;
pub mod database;
pub mod logs;
pub mod poll;
pub mod private_postgres;
pub mod private_rabbitmq;
pub mod reaper;
pub mod services;
pub mod smtp;
pub mod stall;
pub mod test_ca;

pub use app::{TestApp, TestOptions, WorkerHandle, spawn_app, spawn_app_with};
pub use poll::{eventually, until};

/// Runs `work` to its end on a runtime of its own, on a thread of its own:
/// for clean-ups in `Drop`, which may run inside or outside a runtime.
pub fn block_on_own_thread(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let cleanup = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work);
    });
    let _ = cleanup.join();
}

/// The worker's `/readyz` turns 200 again, and nothing was dead-lettered or
/// moved to a delay tier from `queues` (the environment-fault tests).
pub async fn assert_recovered_without_dead_letters(
    app: &TestApp,
    queues: &[common::amqp::WorkQueue],
) {
    eventually(
        "ready again",
        std::time::Duration::from_secs(10),
        || async { (app.worker_ops_get("/readyz").await.status() == 200).then_some(()) },
    )
    .await;
    let stats = &app.worker.as_ref().unwrap().stats;
    assert_eq!(stats.events_dead_lettered(), 0);
    assert_eq!(stats.events_retried(), 0, "no event spent a delay tier");
    for queue in queues {
        assert_eq!(app.dead_letters(*queue).await, 0);
    }
}

/// RabbitMQ used by the tests (`INTAKE_TEST_AMQP_URL`).
pub fn amqp_url() -> String {
    std::env::var("INTAKE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A PostgreSQL URL whose user may create databases (`INTAKE_TEST_DATABASE_URL`);
/// each test creates its own database next to the one named here.
pub fn admin_database_url() -> String {
    std::env::var("INTAKE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The example payloads kept in the repository.
pub fn example(path: &str) -> String {
    let full = format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("cannot read {full}: {error}"))
}

/// The LT example application and its revocation as the gateway would
/// have published them, the revocation received later (2 ms): published
/// revocation first, the application then arrives stale.
pub async fn application_then_newer_revocation() -> (common::Envelope, common::Envelope) {
    let application = common::Envelope::new(
        common::EventKind::LtApplication,
        None,
        example("lt/new.json").into_bytes(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let revocation = common::Envelope::new(
        common::EventKind::LtRevocation,
        None,
        example("lt/revoked.json").into_bytes(),
    );
    (application, revocation)
}

/// Every string in a JSON document long enough to identify someone
/// (names, e-mails, phone numbers, free text; not `fi` or `new`).
pub fn personal_strings(value: &serde_json::Value) -> Vec<String> {
    const NOT_PERSONAL: [&str; 4] = ["new", "updated", "revoked", "native"];
    let mut found = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::String(text)
                if text.chars().count() >= 5 && !NOT_PERSONAL.contains(&text.as_str()) =>
            {
                found.push(text.clone());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(fields) => stack.extend(fields.values()),
            _ => {}
        }
    }
    found
}
