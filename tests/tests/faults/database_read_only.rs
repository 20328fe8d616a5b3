//! A database that turned read-only (a failover left the worker on a
//! standby; here `default_transaction_read_only = on` and a reload, on the
//! shared PostgreSQL, so this runs alone): every write fails with SQLSTATE
//! 25006, which is not the events' fault. The batches are held in the
//! worker, which says it is not ready; nothing is dead-lettered or moved to
//! a delay tier, and everything is applied once writes are allowed again.

use std::time::Duration;

use common::amqp::WorkQueue;
use intake_tests::services::ReadOnlyDatabase;
use intake_tests::{TestApp, assert_recovered_without_dead_letters, eventually, spawn_app};

const STORE: &str = "5d0c8f9e-3f7a-4b21-9c55-1a2b3c4d5e6f";

fn application(user: &str) -> String {
    format!(
        r#"{{"mydatashare_user_id":"{user}","email":"{user}@example.fi","first_name":"Testi"}}"#
    )
}

fn consent(user: &str) -> String {
    format!(
        r#"{{"webhook":"{STORE}","userUuid":"{user}","userVorname":"Anna","userName":"Beispiel","userEmail":"anna@example.de","bereich":"Service"}}"#
    )
}

async fn post_both(app: &TestApp, lt: usize, lina: usize) {
    for i in 0..lt {
        let user = format!("ro-{}-{i}", uuid::Uuid::new_v4().simple());
        assert_eq!(app.post_lt(&application(&user)).await.status(), 200);
    }
    for _ in 0..lina {
        let user = uuid::Uuid::new_v4().to_string();
        assert_eq!(app.post_lina(&consent(&user)).await.status(), 200);
    }
}

async fn stored(app: &TestApp) -> i64 {
    app.count("SELECT (SELECT count(*) FROM lt_application) + (SELECT count(*) FROM lina_employee)")
        .await
}

#[tokio::test]
async fn a_read_only_database_holds_the_batches_and_dead_letters_nothing() {
    let app = spawn_app().await;
    app.add_store(STORE).await;
    post_both(&app, 2, 2).await;
    eventually("the first events", Duration::from_secs(20), || async {
        (stored(&app).await == 4).then_some(())
    })
    .await;

    let read_only = ReadOnlyDatabase::begin();
    post_both(&app, 4, 3).await;
    eventually(
        "both queues' batches are held and the worker is not ready",
        Duration::from_secs(20),
        || async {
            let metrics = app.worker_metrics().await;
            let held = ["lt", "lina"].iter().all(|queue| {
                metrics.contains(&format!(
                    r#"intake_worker_consumers{{queue="{queue}",state="held"}} 1"#
                ))
            });
            let ready = app.worker_ops_get("/readyz").await.status() == 200;
            (held && !ready).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = app.worker.as_ref().unwrap().stats.clone();
    assert_eq!(stored(&app).await, 4, "nothing written meanwhile");
    assert_eq!(stats.events_retried(), 0, "no event spent a delay tier");
    assert_eq!(stats.events_dead_lettered(), 0);
    let failures = stats.environment_failures();
    assert!(failures >= 4, "tried again and counted ({failures})");

    read_only.end();
    eventually(
        "everything applied once writable",
        Duration::from_secs(30),
        || async { (stored(&app).await == 11).then_some(()) },
    )
    .await;
    assert_recovered_without_dead_letters(&app, &[WorkQueue::Lt, WorkQueue::Lina]).await;
    println!(
        "read-only database: {failures} held attempts, 7 events applied after it, none dead-lettered"
    );
}
