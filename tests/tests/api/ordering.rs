//! Ordering and duplicates (DESIGN.md, invariants 3 and 4): applying an
//! event twice equals applying it once; older events never overwrite newer
//! ones; erasure wins over older data, however the events are delivered.

use std::time::Duration;

use common::{Envelope, EventKind};
use intake_tests::{
    TestApp, TestOptions, WorkerHandle, eventually, example, spawn_app, spawn_app_with,
};

const USER: &str = "7f3c2a9e-5b1d-4c8e-9a2f-0e6d4b8c1a37";

/// Waits until the workers have settled `count` events in all.
async fn settled(workers: &[&WorkerHandle], count: u64) {
    eventually(
        &format!("{count} events settled"),
        Duration::from_secs(30),
        || async {
            let total: u64 = workers
                .iter()
                .map(|worker| {
                    let stats = &worker.stats;
                    stats.events_applied() + stats.events_duplicate() + stats.events_stale()
                })
                .sum();
            (total >= count).then_some(())
        },
    )
    .await;
}

fn worker(app: &TestApp) -> &WorkerHandle {
    app.worker.as_ref().unwrap()
}

#[tokio::test]
async fn the_same_body_twice_or_a_redelivered_message_changes_nothing_more_than_once() {
    let app = spawn_app().await;
    assert_eq!(app.post_lt(&example("lt/new.json")).await.status(), 200);
    assert_eq!(app.post_lt(&example("lt/new.json")).await.status(), 200);
    settled(&[worker(&app)], 2).await;
    let once = app.application(USER).await.unwrap();

    // The same message (same event id) delivered twice, as after a crash.
    let envelope = Envelope::new(
        EventKind::LtApplication,
        None,
        example("lt/new-en-minimal.json").into_bytes(),
    );
    app.publish(&envelope).await;
    app.publish(&envelope).await;
    settled(&[worker(&app)], 4).await;

    let stats = &worker(&app).stats;
    assert_eq!(stats.events_applied(), 2);
    assert_eq!(stats.events_duplicate(), 2);
    assert_eq!(
        app.application(USER).await.unwrap(),
        once,
        "same state as once"
    );
    assert_eq!(app.application_count().await, 2);
}

#[tokio::test]
async fn a_resend_of_the_original_application_after_a_revocation_is_dropped() {
    let app = spawn_app().await;
    app.post_lt(&example("lt/new.json")).await;
    settled(&[worker(&app)], 1).await;
    app.post_lt(&example("lt/revoked.json")).await;
    settled(&[worker(&app)], 2).await;
    app.post_lt(&example("lt/new.json")).await;
    settled(&[worker(&app)], 3).await;

    assert_eq!(worker(&app).stats.events_duplicate(), 1);
    assert_eq!(app.application(USER).await, None);
    let dump = app.dump().await;
    assert!(
        !dump.contains("aino.korhonen@example.fi"),
        "nothing personal is stored"
    );
}

#[tokio::test]
async fn a_changed_application_after_a_revocation_is_a_new_application() {
    let app = spawn_app().await;
    app.post_lt(&example("lt/new.json")).await;
    app.post_lt(&example("lt/revoked.json")).await;
    settled(&[worker(&app)], 2).await;
    let mut changed: serde_json::Value = serde_json::from_str(&example("lt/new.json")).unwrap();
    changed["shared_at"] = "2026-11-23T09:00:00Z".into();
    app.post_lt(&changed.to_string()).await;

    let (_, status, profile) = eventually(
        "the re-application is stored",
        Duration::from_secs(10),
        || app.application(USER),
    )
    .await;
    assert_eq!(status, "new");
    assert_eq!(profile["shared_at"], "2026-11-23T09:00:00Z");
    let tombstones = app.tombstones().await;
    assert_eq!(tombstones, 0, "the tombstone became a live state again");
}

#[tokio::test]
async fn an_older_application_delivered_after_a_newer_revocation_leaves_nothing() {
    let app = spawn_app().await;
    let second = app.spawn_worker().await;
    let (application, revocation) = intake_tests::application_then_newer_revocation().await;
    assert!(application.received_at < revocation.received_at);

    app.publish(&revocation).await;
    settled(&[worker(&app), &second], 1).await;
    app.publish(&application).await;
    settled(&[worker(&app), &second], 2).await;

    let stale = worker(&app).stats.events_stale() + second.stats.events_stale();
    assert_eq!(stale, 1, "the older application was dropped as stale");
    assert_eq!(app.application(USER).await, None);
    assert!(!app.dump().await.contains("Korhonen"));
    second.stop().await;
}

#[tokio::test]
async fn an_update_and_a_revocation_applied_by_two_workers_at_once_never_leave_personal_data() {
    const SUBJECTS: usize = 150;
    // One delivery at a time per worker, so the two events of a subject are
    // as likely as possible to be applied at the same moment.
    let app = spawn_app_with(TestOptions {
        prefetch: 1,
        batch_size: 1,
        ..TestOptions::default()
    })
    .await;
    let second = app.spawn_worker().await;
    let body = |n: usize, phone: &str| {
        format!(
            r#"{{"mydatashare_user_id":"race-{n}","email":"race{n}@example.fi","phone":"{phone}"}}"#
        )
    };
    // The subjects exist first: the race is between two events on a live state row.
    for n in 0..SUBJECTS {
        app.publish(&Envelope::new(
            EventKind::LtApplication,
            None,
            body(n, "1").into_bytes(),
        ))
        .await;
    }
    settled(&[worker(&app), &second], SUBJECTS as u64).await;
    assert_eq!(app.application_count().await, SUBJECTS as i64);

    for n in 0..SUBJECTS {
        let update = Envelope::new(EventKind::LtApplication, None, body(n, "2").into_bytes());
        let revocation = Envelope::new(
            EventKind::LtRevocation,
            None,
            format!(r#"{{"mydatashare_user_id":"race-{n}","status":"revoked"}}"#).into_bytes(),
        );
        app.publish(&update).await;
        app.publish(&revocation).await;
    }
    settled(&[worker(&app), &second], 3 * SUBJECTS as u64).await;

    assert_eq!(
        app.application_count().await,
        0,
        "the revocation always wins"
    );
    let live = app
        .count("SELECT count(*) FROM subject_state WHERE erased_at IS NULL")
        .await;
    assert_eq!(live, 0, "every subject ends as a tombstone");
    let both_worked = worker(&app).stats.events_applied() > 0 && second.stats.events_applied() > 0;
    assert!(both_worked, "both workers took part");
    second.stop().await;
}

/// The resend window of the tests below: short, so a change back can come
/// after it.
const WINDOW: Duration = Duration::from_millis(700);

fn phone_body(phone: &str, status: &str) -> String {
    format!(
        r#"{{"mydatashare_user_id":"{USER}","status":"{status}","email":"aino.korhonen@example.fi","phone":"{phone}"}}"#
    )
}

async fn stored_phone(app: &TestApp) -> Option<String> {
    let (_, _, profile) = app.application(USER).await?;
    profile["phone"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_profile_changed_back_after_the_resend_window_ends_at_the_change_back() {
    let app = spawn_app_with(TestOptions {
        lt_resend_window: WINDOW,
        ..TestOptions::default()
    })
    .await;
    let stats = &worker(&app).stats;
    for (n, phone) in ["+358 40 1", "+358 40 2"].into_iter().enumerate() {
        assert_eq!(
            app.post_lt(&phone_body(phone, "updated")).await.status(),
            200
        );
        settled(&[worker(&app)], n as u64 + 1).await;
    }
    tokio::time::sleep(WINDOW + Duration::from_millis(300)).await;
    assert_eq!(
        app.post_lt(&phone_body("+358 40 1", "updated"))
            .await
            .status(),
        200
    );
    settled(&[worker(&app)], 3).await;
    assert_eq!(stats.events_applied(), 3, "the change back is a new event");
    assert_eq!(stored_phone(&app).await.as_deref(), Some("+358 40 1"));
}

/// The same body again inside the window is LT resending it: nothing
/// changes. An earlier body again after a newer one is still the newest
/// write, and its body the data (order-independent: README "Ordering and
/// erasure").
#[tokio::test]
async fn inside_the_resend_window_the_same_body_again_is_a_resend_and_changes_nothing() {
    let app = spawn_app_with(TestOptions {
        lt_resend_window: Duration::from_secs(3600),
        ..TestOptions::default()
    })
    .await;
    let stats = &worker(&app).stats;
    for phone in ["+358 40 1", "+358 40 2", "+358 40 2", "+358 40 1"] {
        assert_eq!(
            app.post_lt(&phone_body(phone, "updated")).await.status(),
            200
        );
    }
    settled(&[worker(&app)], 4).await;
    assert_eq!(stats.events_applied(), 3);
    assert_eq!(
        stats.events_duplicate(),
        1,
        "the second +358 40 2 is a resend"
    );
    assert_eq!(stored_phone(&app).await.as_deref(), Some("+358 40 1"));
    let tombstones = app.tombstones().await;
    assert_eq!(tombstones, 0);
}

#[tokio::test]
async fn an_identical_re_share_after_a_revocation_outside_the_window_is_applied_and_acknowledged() {
    let app = spawn_app_with(TestOptions {
        lt_resend_window: WINDOW,
        ..TestOptions::default()
    })
    .await;
    let stats = &worker(&app).stats;
    let application = phone_body("+358 40 1", "new");
    app.post_lt(&application).await;
    settled(&[worker(&app)], 1).await;
    intake_tests::until("the acknowledgement is written", stats, |stats| {
        stats.emails_sent() == 1
    })
    .await;
    app.post_lt(&example("lt/revoked.json")).await;
    settled(&[worker(&app)], 2).await;
    // Inside the window the same body is LT resending the old application.
    app.post_lt(&application).await;
    settled(&[worker(&app)], 3).await;
    assert_eq!(stats.events_duplicate(), 1);
    assert_eq!(app.application(USER).await, None);

    tokio::time::sleep(WINDOW + Duration::from_millis(300)).await;
    app.post_lt(&application).await;
    let stored = eventually("the re-share is stored", Duration::from_secs(10), || {
        stored_phone(&app)
    })
    .await;
    assert_eq!(stored, "+358 40 1");
    intake_tests::until("the second acknowledgement is written", stats, |stats| {
        stats.emails_sent() == 2
    })
    .await;
}

/// LT decides whether a share is active: an update after a revocation
/// re-creates the application, like a new one (acknowledged again).
#[tokio::test]
async fn an_update_after_a_revocation_re_creates_the_application() {
    let app = spawn_app().await;
    let stats = &worker(&app).stats;
    app.post_lt(&phone_body("+358 40 1", "new")).await;
    settled(&[worker(&app)], 1).await;
    intake_tests::until("the acknowledgement is written", stats, |stats| {
        stats.emails_sent() == 1
    })
    .await;
    app.post_lt(&example("lt/revoked.json")).await;
    settled(&[worker(&app)], 2).await;
    app.post_lt(&phone_body("+358 40 3", "updated")).await;
    settled(&[worker(&app)], 3).await;
    assert_eq!(stats.events_stale(), 0);
    assert_eq!(stored_phone(&app).await.as_deref(), Some("+358 40 3"));
    assert_eq!(app.tombstones().await, 0);
    intake_tests::until("both acknowledgements are written", stats, |stats| {
        stats.emails_sent() == 2
    })
    .await;
}

/// Retention chooses whom to erase without a lock; an applicant updated
/// between the choice and the lock is fresh again, and kept.
#[tokio::test]
async fn retention_keeps_an_applicant_updated_after_being_chosen() {
    let app = spawn_app().await;
    app.post_lt(&phone_body("+358 40 1", "new")).await;
    settled(&[worker(&app)], 1).await;
    app.db
        .execute(
            "UPDATE lt_application SET updated_at = now() - interval '400 days'",
            &[],
        )
        .await
        .unwrap();
    let retention = worker::startup::Worker::build(app.worker_settings())
        .await
        .unwrap();
    let context = retention.context();
    let (chosen, release) = context.faults.hold_retention();
    let year = Duration::from_secs(365 * 24 * 3600);
    let round = worker::background::retention::erase_expired(&context, year);
    let update = async {
        chosen.await.unwrap();
        app.post_lt(&phone_body("+358 40 2", "updated")).await;
        settled(&[worker(&app)], 2).await;
        let _ = release.send(());
    };
    let (erased, ()) = tokio::join!(round, update);
    assert_eq!(erased.unwrap(), 0, "the applicant is fresh again");
    assert_eq!(stored_phone(&app).await.as_deref(), Some("+358 40 2"));
    assert_eq!(app.tombstones().await, 0);
}

/// Retention takes the newest applied key: an update received after the
/// expired data and still waiting (the worker stopped) shows the person is
/// active, and re-creates the application once it is processed.
#[tokio::test]
async fn an_update_waiting_when_retention_erases_applies_after_it() {
    let mut app = spawn_app().await;
    app.post_lt(&phone_body("+358 40 1", "new")).await;
    settled(&[worker(&app)], 1).await;
    app.worker.take().unwrap().stop().await;
    app.post_lt(&phone_body("+358 40 2", "updated")).await;
    app.db
        .execute(
            "UPDATE lt_application SET updated_at = now() - interval '400 days'",
            &[],
        )
        .await
        .unwrap();
    let year = Duration::from_secs(365 * 24 * 3600);
    assert_eq!(app.erase_expired(year).await.unwrap(), 1);
    assert_eq!(app.application(USER).await, None);
    app.worker = Some(app.spawn_worker().await);
    settled(&[worker(&app)], 1).await;
    assert_eq!(worker(&app).stats.events_applied(), 1);
    assert_eq!(stored_phone(&app).await.as_deref(), Some("+358 40 2"));
}
