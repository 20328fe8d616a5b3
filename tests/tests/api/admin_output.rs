//! The admin commands as a person runs them from a second shell: what they
//! print on stdout is their answer, and stderr carries warnings and errors
//! only, as short text (no JSON log lines, no start-up or migration
//! chatter, no source paths, no colour codes when not on a terminal).

use intake_tests::app::TEST_SUBJECT_HASH_KEY;
use intake_tests::{TestOptions, amqp_url, binaries, spawn_app_with};

async fn worker(app: &intake_tests::TestApp, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(binaries::path("worker"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("INTAKE_AMQP_URL", amqp_url())
        .env("INTAKE_QUEUE_PREFIX", app.topology.prefix())
        .env("INTAKE_DATABASE_URL", &app.db_url)
        .env("INTAKE_SUBJECT_HASH_KEY", TEST_SUBJECT_HASH_KEY)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn admin_commands_print_their_answer_and_nothing_but_warnings_on_stderr() {
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    for args in [
        &["dlq", "list"][..],
        &["lina", "webhooks", "list"][..],
        &["subject", "export", "--lt", "nobody-at-all"][..],
    ] {
        let output = worker(&app, args).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        for text in [&stdout, &stderr] {
            assert!(
                !text.contains(r#""timestamp""#)
                    && !text.contains(".rs:")
                    && !text.contains('\u{1b}'),
                "{args:?} printed log lines, source paths or colour codes: {text}"
            );
        }
        assert!(
            !stderr.contains("INFO") && !stderr.contains("migration"),
            "{args:?} chattered on stderr: {stderr}"
        );
    }
}
