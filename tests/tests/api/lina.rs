//! LINA's personalData webhook: the URL secret, validation with quarantine,
//! consent and withdrawal applied under the same ordering and erasure rules
//! as LT, unknown stores dead-lettered until registered. Invalid calls and
//! their quarantine: `bad_input.rs`.

use std::time::Duration;

use common::amqp::WorkQueue;
use common::{Envelope, EventKind};
use intake_tests::stall::StallingRelay;
use intake_tests::{
    TestOptions, broker, eventually, example, personal_strings, spawn_app, spawn_app_with, until,
};

const STORE: &str = "48138367-3eba-4772-b2bf-6bbd11840efb";
const MIRCO: &str = "c6425258-a870-498d-8173-6c2341c934e0";
const JURGEN: &str = "0d1e2f3a-4b5c-4d6e-8f70-819203a4b5c6";

fn gateway_only() -> TestOptions {
    TestOptions {
        start_worker: false,
        ..TestOptions::default()
    }
}

async fn quarantined(app: &intake_tests::TestApp) -> u32 {
    broker::depth(&app.topology.quarantine_queue()).await
}

#[tokio::test]
async fn a_wrong_or_missing_secret_gets_a_plain_404_and_nothing_is_published() {
    let app = spawn_app_with(gateway_only()).await;
    for secret in ["wrong-secret", "test-lina-path-secre", ""] {
        let response = app
            .lina_request(secret)
            .header("Content-Type", "application/json")
            .body(example("lina/consent.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "secret {secret:?}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "not_found");
    }
    assert_eq!(app.depth(WorkQueue::Lina).await, 0);
    assert_eq!(quarantined(&app).await, 0);
}

#[tokio::test]
async fn a_consent_is_stored_with_umlauts_intact_and_a_withdrawal_erases_it() {
    let app = spawn_app().await;
    app.add_store(STORE).await;
    assert_eq!(
        app.post_lina(&example("lina/consent-umlaut.json"))
            .await
            .status(),
        200
    );
    let employee = eventually("the consent is stored", Duration::from_secs(10), || {
        app.employee(STORE, JURGEN)
    })
    .await;
    assert_eq!(
        employee,
        [
            Some("Jürgen".to_owned()),
            Some("Weiß-Großmann".to_owned()),
            Some("j.weiss@example.de".to_owned()),
            Some("Küche".to_owned())
        ]
    );

    let withdrawal = format!(r#"{{"delete":true,"webhook":"{STORE}","userUuid":"{JURGEN}"}}"#);
    assert_eq!(app.post_lina(&withdrawal).await.status(), 200);
    eventually(
        "the employee is erased",
        Duration::from_secs(10),
        || async { app.employee(STORE, JURGEN).await.is_none().then_some(()) },
    )
    .await;
    let dump = app.dump().await;
    let consent: serde_json::Value =
        serde_json::from_str(&example("lina/consent-umlaut.json")).unwrap();
    for value in personal_strings(&consent) {
        if value != STORE {
            assert!(!dump.contains(&value), "the dump still contains {value:?}");
        }
    }
}

#[tokio::test]
async fn duplicates_and_out_of_order_delivery_leave_no_data_and_a_later_consent_is_stored() {
    let app = spawn_app().await;
    app.add_store(STORE).await;
    let consent = Envelope::new(
        EventKind::LinaConsent,
        STORE.parse().ok(),
        example("lina/consent.json").into_bytes(),
    );
    tokio::time::sleep(Duration::from_millis(2)).await;
    let withdrawal = Envelope::new(
        EventKind::LinaWithdrawal,
        STORE.parse().ok(),
        example("lina/delete.json").into_bytes(),
    );
    let stats = app.worker.as_ref().unwrap().stats.clone();

    // The withdrawal (newer) arrives first, then the consent twice.
    app.publish(&withdrawal).await;
    app.publish(&consent).await;
    app.publish(&consent).await;
    eventually("all three are settled", Duration::from_secs(10), || async {
        (stats.events_applied() + stats.events_stale() + stats.events_duplicate() == 3)
            .then_some(())
    })
    .await;
    assert_eq!(app.employee(STORE, MIRCO).await, None);
    assert_eq!(stats.events_stale() + stats.events_duplicate(), 2);

    // The same consent, given again later: stored (LINA never resends, so
    // a body seen before is a new consent).
    assert_eq!(
        app.post_lina(&example("lina/consent.json")).await.status(),
        200
    );
    eventually("the new consent is stored", Duration::from_secs(10), || {
        app.employee(STORE, MIRCO)
    })
    .await;
}

#[tokio::test]
async fn an_unknown_store_is_dead_lettered_until_it_is_added_and_replayed() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_lina(&example("lina/consent.json")).await.status(),
        200
    );
    app.wait_for_dead_letters(WorkQueue::Lina, 1).await;
    let listing = app.dlq(&["list", "--queue", "lina"]).await.unwrap();
    assert!(listing.contains("unknown_webhook"), "{listing}");

    app.add_store(STORE).await;
    let replayed = app
        .dlq(&["replay", "--reason", "unknown_webhook"])
        .await
        .unwrap();
    assert!(replayed.contains("replayed 1"), "{replayed}");
    eventually("applied after the replay", Duration::from_secs(10), || {
        app.employee(STORE, MIRCO)
    })
    .await;
}

#[tokio::test]
async fn a_consent_replayed_after_a_newer_withdrawal_is_dropped() {
    let app = spawn_app().await;
    // Unknown store: the consent is dead-lettered.
    assert_eq!(
        app.post_lina(&example("lina/consent.json")).await.status(),
        200
    );
    app.wait_for_dead_letters(WorkQueue::Lina, 1).await;
    app.add_store(STORE).await;
    assert_eq!(
        app.post_lina(&example("lina/delete.json")).await.status(),
        200
    );
    let stats = app.worker.as_ref().unwrap().stats.clone();
    until("the withdrawal is applied", &stats, |stats| {
        stats.erasures() == 1
    })
    .await;

    app.dlq(&["replay", "--reason", "unknown_webhook"])
        .await
        .unwrap();
    until(
        "the replayed consent is dropped as stale",
        &stats,
        |stats| stats.events_stale() == 1,
    )
    .await;
    assert_eq!(app.employee(STORE, MIRCO).await, None);
}

#[tokio::test]
async fn a_consent_and_a_withdrawal_applied_by_two_workers_at_once_never_leave_personal_data() {
    const EMPLOYEES: usize = 120;
    let app = spawn_app_with(TestOptions {
        prefetch: 1,
        batch_size: 1,
        ..TestOptions::default()
    })
    .await;
    app.add_store(STORE).await;
    let second = app.spawn_worker().await;
    let users: Vec<String> = (0..EMPLOYEES)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let consent = |user: &str, bereich: &str| {
        let body = format!(
            r#"{{"webhook":"{STORE}","userUuid":"{user}","userVorname":"Anna","userName":"Muster","userEmail":"a@example.de","bereich":"{bereich}"}}"#
        );
        Envelope::new(
            EventKind::LinaConsent,
            STORE.parse().ok(),
            body.into_bytes(),
        )
    };
    for user in &users {
        app.publish(&consent(user, "Service")).await;
    }
    let settled = |count: u64| {
        let first = app.worker.as_ref().unwrap().stats.clone();
        let second = second.stats.clone();
        async move {
            eventually(
                &format!("{count} settled"),
                Duration::from_secs(30),
                || async {
                    let total: u64 = [&first, &second]
                        .iter()
                        .map(|s| s.events_applied() + s.events_stale() + s.events_duplicate())
                        .sum();
                    (total >= count).then_some(())
                },
            )
            .await
        }
    };
    settled(EMPLOYEES as u64).await;
    for user in &users {
        let withdrawal = format!(r#"{{"delete":true,"webhook":"{STORE}","userUuid":"{user}"}}"#);
        app.publish(&consent(user, "Küche")).await;
        app.publish(&Envelope::new(
            EventKind::LinaWithdrawal,
            STORE.parse().ok(),
            withdrawal.into_bytes(),
        ))
        .await;
    }
    settled(3 * EMPLOYEES as u64).await;
    let left = app.count("SELECT count(*) FROM lina_employee").await;
    assert_eq!(left, 0, "every withdrawal (the newer event) wins");
    second.stop().await;
}

#[tokio::test]
async fn a_lina_call_the_broker_never_confirms_is_spooled_after_the_deadline_and_applied_once() {
    let relay = StallingRelay::to_broker().await;
    let app = spawn_app_with(TestOptions {
        gateway_amqp_url: Some(relay.amqp_url()),
        lina_spool_after: Duration::from_millis(300),
        ..TestOptions::default()
    })
    .await;
    app.add_store(STORE).await;
    assert_eq!(
        app.post_lina(&example("lina/consent.json")).await.status(),
        200
    );
    eventually(
        "the first consent is stored",
        Duration::from_secs(10),
        || app.employee(STORE, MIRCO),
    )
    .await;

    // The broker's end hangs: the publish is never confirmed.
    relay.stall();
    let started = std::time::Instant::now();
    let response = app.post_lina(&example("lina/consent-umlaut.json")).await;
    let waited = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "answered after {waited:?}: the spool deadline, not the 5 s publish timeout"
    );
    assert_eq!(app.spool_segments(), 1, "the call waits in the spool");

    // The connection dies; the gateway reconnects and drains its spool.
    relay.cut();
    eventually(
        "the spooled consent is stored",
        Duration::from_secs(15),
        || app.employee(STORE, JURGEN),
    )
    .await;
    let stats = app.worker.as_ref().unwrap().stats.clone();
    until("both events settled", &stats, |stats| {
        stats.events_applied() + stats.events_duplicate() >= 2
    })
    .await;
    assert_eq!(stats.events_applied(), 2, "each consent applied once");
}
