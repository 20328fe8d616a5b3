//! LT events applied by the worker: new, updated, revoked; batches.

use std::time::Duration;

use common::amqp::WorkQueue;
use intake_tests::{TestOptions, eventually, example, spawn_app, spawn_app_with, until};

const USER: &str = "7f3c2a9e-5b1d-4c8e-9a2f-0e6d4b8c1a37";

#[tokio::test]
async fn a_new_application_is_stored_with_its_whole_profile() {
    let app = spawn_app().await;
    let sent: serde_json::Value = serde_json::from_str(&example("lt/new.json")).unwrap();
    assert_eq!(app.post_lt(&example("lt/new.json")).await.status(), 200);

    let (email, status, profile) =
        eventually("the application is stored", Duration::from_secs(10), || {
            app.application(USER)
        })
        .await;
    assert_eq!(email, "aino.korhonen@example.fi");
    assert_eq!(status, "new");
    assert_eq!(profile, sent, "the profile is kept exactly as received");
}

#[tokio::test]
async fn numbers_are_stored_as_sent_within_what_jsonb_can_hold() {
    let app = spawn_app().await;
    let long_fraction = format!("0.{}", "3".repeat(10_000));
    let body = format!(
        r#"{{"mydatashare_user_id":"numbers-1","email":"n@example.fi","big":18446744073709551616,"long":{long_fraction},"tiny":1e-400,"scaled":1.10,"negative_zero":-0}}"#
    );
    assert_eq!(app.post_lt(&body).await.status(), 200);
    eventually("stored", Duration::from_secs(10), || {
        app.application("numbers-1")
    })
    .await;
    let stored = |field: &'static str| {
        let app = &app;
        async move {
            let row = app
                .db
                .query_one(
                    "SELECT (profile -> $1)::text FROM lt_application WHERE mydatashare_user_id = 'numbers-1'",
                    &[&field],
                )
                .await
                .unwrap();
            row.get::<_, String>(0)
        }
    };
    assert_eq!(stored("big").await, "18446744073709551616");
    assert_eq!(stored("long").await, long_fraction, "every digit kept");
    assert_eq!(stored("scaled").await, "1.10", "the scale kept");
    assert_eq!(
        stored("tiny").await,
        format!("0.{}1", "0".repeat(399)),
        "jsonb writes exponents out"
    );
    assert_eq!(
        stored("negative_zero").await,
        "0",
        "numeric has no negative zero"
    );
}

#[tokio::test]
async fn an_update_replaces_the_stored_profile() {
    let app = spawn_app().await;
    app.post_lt(&example("lt/new.json")).await;
    eventually("the application is stored", Duration::from_secs(10), || {
        app.application(USER)
    })
    .await;
    assert_eq!(app.post_lt(&example("lt/updated.json")).await.status(), 200);

    let profile = eventually("the update is applied", Duration::from_secs(10), || async {
        let (_, status, profile) = app.application(USER).await?;
        (status == "updated").then_some(profile)
    })
    .await;
    assert_eq!(profile["phone"], "+358 40 765 4321");
    assert_eq!(
        profile["free_text"],
        "Päivitetty: voin muuttaa työn perässä."
    );
}

#[tokio::test]
async fn a_revocation_removes_the_application() {
    let app = spawn_app().await;
    app.post_lt(&example("lt/new.json")).await;
    eventually("the application is stored", Duration::from_secs(10), || {
        app.application(USER)
    })
    .await;
    assert_eq!(app.post_lt(&example("lt/revoked.json")).await.status(), 200);

    eventually(
        "the application is gone",
        Duration::from_secs(10),
        || async { app.application(USER).await.is_none().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_batch_of_deliveries_is_applied_in_one_transaction_and_acked_together() {
    let mut app = spawn_app_with(TestOptions {
        start_worker: false,
        batch_size: 10,
        // Long enough that every waiting delivery joins the first batch.
        batch_linger: Duration::from_millis(500),
        ..TestOptions::default()
    })
    .await;
    for n in 0..5 {
        let body = format!(r#"{{"mydatashare_user_id":"batch-{n}","email":"b{n}@example.fi"}}"#);
        assert_eq!(app.post_lt(&body).await.status(), 200);
    }
    assert_eq!(app.depth(WorkQueue::Lt).await, 5);

    let worker = app.spawn_worker().await;
    let stats = worker.stats.clone();
    app.worker = Some(worker);
    until("all five are applied", &stats, |stats| {
        stats.events_applied() == 5
    })
    .await;

    // `updated_at` defaults to now(), which is the start time of the
    // (top-level) transaction: one value means one transaction.
    let transactions: i64 = app
        .db
        .query_one("SELECT count(DISTINCT updated_at) FROM lt_application", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(transactions, 1);
    assert_eq!(stats.batches(), 1);
    assert_eq!(stats.events_dead_lettered(), 0);
    // Once the worker stopped, anything unacked would be back in the queue.
    app.worker.take().unwrap().stop().await;
    assert_eq!(app.depth(WorkQueue::Lt).await, 0);
}

/// As an older gateway quarantined a call (the mark kept) and a replay now
/// brings it back: the worker reads it as the parsers do, without the mark,
/// and so does PostgreSQL, which refuses a mark in jsonb.
#[tokio::test]
async fn an_event_that_still_carries_a_byte_order_mark_is_applied() {
    use common::{Envelope, EventKind};
    let app = spawn_app().await;
    let store: uuid::Uuid = "48138367-3eba-4772-b2bf-6bbd11840efb".parse().unwrap();
    app.add_store(&store.to_string()).await;
    let lt = format!("\u{feff}{}", example("lt/new.json"));
    let lina = format!(
        "\u{feff}{}",
        r#"{"webhook":"48138367-3eba-4772-b2bf-6bbd11840efb","userUuid":"c6425258-a870-498d-8173-6c2341c934e0","userName":"Weiß"}"#
    );
    app.publish(&Envelope::new(
        EventKind::LtApplication,
        None,
        lt.into_bytes(),
    ))
    .await;
    app.publish(&Envelope::new(
        EventKind::LinaConsent,
        Some(store),
        lina.into_bytes(),
    ))
    .await;
    eventually("the application is stored", Duration::from_secs(10), || {
        app.application(USER)
    })
    .await;
    eventually(
        "the employee is stored",
        Duration::from_secs(10),
        || async {
            (app.count("SELECT count(*) FROM lina_employee WHERE last_name = 'Weiß'")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_body_with_a_utf8_byte_order_mark_is_accepted_and_stored_without_it() {
    use lapin::options::BasicGetOptions;
    let mut app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    app.add_store("48138367-3eba-4772-b2bf-6bbd11840efb").await;
    let lt = example("lt/new.json");
    let lina = r#"{"webhook":"48138367-3eba-4772-b2bf-6bbd11840efb","userUuid":"c6425258-a870-498d-8173-6c2341c934e0","userName":"Weiß"}"#;
    assert_eq!(app.post_lt(&format!("\u{feff}{lt}")).await.status(), 200);
    assert_eq!(
        app.post_lina(&format!("\u{feff}{lina}")).await.status(),
        200
    );

    // What waits in the queues has no mark any more.
    let connection = intake_tests::broker::connect().await;
    let channel = connection.create_channel().await.unwrap();
    for (queue, sent) in [(WorkQueue::Lt, lt.as_str()), (WorkQueue::Lina, lina)] {
        let message = channel
            .basic_get(app.queue(queue).as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
            .expect("the event waits in its queue");
        assert_eq!(
            message.delivery.data,
            sent.as_bytes(),
            "stored without the mark"
        );
    }
    let _ = connection.close(200, "done".into()).await;

    app.worker = Some(app.spawn_worker().await);
    eventually("the application is stored", Duration::from_secs(10), || {
        app.application(USER)
    })
    .await;
    eventually("the employee is stored", Duration::from_secs(10), || {
        app.employee(
            "48138367-3eba-4772-b2bf-6bbd11840efb",
            "c6425258-a870-498d-8173-6c2341c934e0",
        )
    })
    .await;
}
