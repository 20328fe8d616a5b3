//! A wrong `INTAKE_SUBJECT_HASH_KEY` is refused (issue 15): it would take
//! every person for someone new and forget their order and tombstones.

use std::time::Duration;

use clap::Parser;
use intake_tests::{eventually, example, spawn_app};
use worker::admin::cli::Cli;
use worker::startup::{StartupError, Worker};

const OTHER_KEY: &str = "another-key-of-thirty-two-bytes!";
const USER: &str = "7f3c2a9e-5b1d-4c8e-9a2f-0e6d4b8c1a37";

async fn build_with_key(app: &intake_tests::TestApp, key: &str) -> Result<Worker, StartupError> {
    let mut settings = app.worker_settings();
    settings.subject_hash_key = key.to_owned().into();
    Worker::build(settings).await
}

fn refusal(result: Result<Worker, StartupError>) -> String {
    match result {
        Ok(_) => panic!("a worker with another hash key started"),
        Err(error) => error.to_string(),
    }
}

/// `worker <args>` as the binary runs an admin command; its exit code.
async fn admin(app: &intake_tests::TestApp, key: &str, args: &[&str]) -> i32 {
    let mail_dir = app.mail_dir.to_string_lossy().into_owned();
    let global = [
        "worker",
        "--database-url",
        &app.db_url,
        "--subject-hash-key",
        key,
        "--mail-outbox-dir",
        &mail_dir,
    ];
    let cli = Cli::try_parse_from(global.iter().chain(args)).unwrap();
    worker::admin::run(cli.command.unwrap(), cli.args).await
}

#[tokio::test]
async fn a_worker_and_an_admin_command_with_another_key_are_refused() {
    let app = spawn_app().await;
    let message = refusal(build_with_key(&app, OTHER_KEY).await);
    assert!(message.contains("INTAKE_SUBJECT_HASH_KEY"), "{message}");
    let export = ["subject", "export", "--lt", USER];
    assert_eq!(admin(&app, OTHER_KEY, &export).await, 2, "export refuses");
    assert_eq!(
        admin(&app, intake_tests::app::TEST_SUBJECT_HASH_KEY, &export).await,
        0,
        "the right key is accepted"
    );
}

#[tokio::test]
async fn a_database_from_before_the_fingerprint_is_checked_against_the_people_it_holds() {
    let app = spawn_app().await;
    app.post_lt(&example("lt/new.json")).await;
    eventually("stored", Duration::from_secs(10), || app.application(USER)).await;
    app.db
        .execute("DELETE FROM intake_setting", &[])
        .await
        .unwrap();

    let message = refusal(build_with_key(&app, OTHER_KEY).await);
    assert!(message.contains("no state rows"), "{message}");
    assert_eq!(app.count("SELECT count(*) FROM intake_setting").await, 0);

    let key = intake_tests::app::TEST_SUBJECT_HASH_KEY;
    assert!(
        build_with_key(&app, key).await.is_ok(),
        "the right key is accepted"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM intake_setting").await,
        1,
        "and its fingerprint recorded"
    );
}
