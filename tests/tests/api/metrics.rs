//! `/metrics` on both processes: after a known mix of events the counters
//! moved by exactly those amounts, and the dead-letter depth matches.

use std::time::Duration;

use intake_tests::{TestApp, eventually, example, spawn_app};

const STORE: &str = "48138367-3eba-4772-b2bf-6bbd11840efb";

async fn scrape(app: &TestApp, base: &str) -> String {
    app.http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `name{labels}` (0 when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn the_counters_move_by_exactly_the_events_sent_and_dead_letters_are_counted() {
    let app = spawn_app().await;
    app.add_store(STORE).await;
    app.db
        .batch_execute("ALTER TABLE lt_application ADD CONSTRAINT refuse CHECK (email <> 'refused@example.fi')")
        .await
        .unwrap();
    let lt = |user: &str, email: &str| {
        format!(r#"{{"mydatashare_user_id":"{user}","email":"{email}"}}"#)
    };
    for body in [
        lt("m-1", "m1@example.fi"),
        lt("m-2", "m2@example.fi"),
        lt("m-1", "m1@example.fi"),
        r#"{"mydatashare_user_id":"m-never","status":"revoked"}"#.to_owned(),
        lt("m-3", "refused@example.fi"),
    ] {
        assert_eq!(app.post_lt(&body).await.status(), 200);
    }
    assert_eq!(app.post_lt("[]").await.status(), 400);
    assert_eq!(
        app.lt_request()
            .header("Authorization", "Bearer nope")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.post_lina(&example("lina/consent.json")).await.status(),
        200
    );
    assert_eq!(
        app.post_lina(&example("lina/delete.json")).await.status(),
        200
    );
    assert_eq!(app.post_lina("{}").await.status(), 400);

    let worker_ops = app.worker.as_ref().unwrap().ops_address.clone();
    let prefix = app.topology.prefix().to_owned();
    let worker = eventually(
        "the worker settled everything",
        Duration::from_secs(20),
        || async {
            let text = scrape(&app, &worker_ops).await;
            (sample(&text, r#"intake_emails_total{outcome="sent"}"#) == 2.0
                && sample(
                    &text,
                    r#"intake_events_total{kind="lina.withdrawal",outcome="erased"}"#,
                ) == 1.0
                && sample(
                    &text,
                    r#"intake_events_total{kind="lt.application",outcome="dead_lettered"}"#,
                ) == 1.0
                // Depths are read at scrape time, counters as they move: wait for both.
                && text.contains(&format!(r#"intake_queue_messages{{queue="{prefix}.lt.dlq"}} 1"#))
                && text.contains(&format!(r#"intake_queue_messages{{queue="{prefix}.quarantine"}} 1"#)))
                .then_some(text)
        },
    )
    .await;
    let expected = [
        (
            r#"intake_events_total{kind="lt.application",outcome="applied"}"#,
            2.0,
        ),
        (
            r#"intake_events_total{kind="lt.application",outcome="duplicate"}"#,
            1.0,
        ),
        (
            r#"intake_events_total{kind="lt.revocation",outcome="erased"}"#,
            1.0,
        ),
        (
            r#"intake_events_total{kind="lina.consent",outcome="applied"}"#,
            1.0,
        ),
        (r#"intake_erasures_total{source="lt"}"#, 1.0),
        (r#"intake_erasures_total{source="lina"}"#, 1.0),
        (r#"intake_emails_total{outcome="sent"}"#, 2.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&worker, series), value, "{series}");
    }
    assert_eq!(
        sample(
            &worker,
            &format!(r#"intake_queue_messages{{queue="{prefix}.lt.dlq"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &worker,
            &format!(r#"intake_queue_messages{{queue="{prefix}.quarantine"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &worker,
            &format!(r#"intake_queue_consumers{{queue="{prefix}.lt"}}"#)
        ),
        1.0
    );
    assert!(sample(&worker, "process_resident_memory_bytes") > 0.0);
    assert!(
        sample(
            &worker,
            r#"intake_event_age_seconds_count{kind="lt.application"}"#
        ) >= 2.0
    );
    for queue in ["lt", "lina", "email"] {
        let batches = format!(r#"intake_worker_batch_seconds_count{{queue="{queue}"}}"#);
        assert!(sample(&worker, &batches) >= 1.0, "{batches}");
    }

    let gateway = app.gateway_metrics().await;
    let expected = [
        (
            r#"intake_http_requests_total{source="lt",status="200"}"#,
            5.0,
        ),
        (
            r#"intake_http_requests_total{source="lt",status="400"}"#,
            1.0,
        ),
        (
            r#"intake_http_requests_total{source="lt",status="401"}"#,
            1.0,
        ),
        (
            r#"intake_http_requests_total{source="lina",status="200"}"#,
            2.0,
        ),
        (
            r#"intake_http_requests_total{source="lina",status="400"}"#,
            1.0,
        ),
        (
            r#"intake_gateway_events_total{kind="lt.application",stored="published"}"#,
            4.0,
        ),
        (
            r#"intake_gateway_events_total{kind="lina.consent",stored="quarantined"}"#,
            1.0,
        ),
        (r#"intake_spool_events"#, 0.0),
        (r#"intake_broker_up"#, 1.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&gateway, series), value, "{series}");
    }
    // Five LT events, two LINA events and one quarantined LINA call.
    assert_eq!(
        sample(&gateway, "intake_publish_confirm_seconds_count"),
        8.0
    );
    assert!(
        !gateway.contains(intake_tests::app::LINA_SECRET),
        "the URL secret never appears"
    );
}

#[tokio::test]
async fn every_known_series_exists_from_the_start_at_zero() {
    let app = spawn_app().await;
    let worker = app.worker_metrics().await;
    let gateway = app.gateway_metrics().await;
    let dlq = app.topology.dead_letter_queue(common::amqp::WorkQueue::Lt);
    for (text, series) in [
        (
            &worker,
            r#"intake_events_total{kind="lt.application",outcome="retried"}"#.to_owned(),
        ),
        (
            &worker,
            r#"intake_events_total{kind="lina.withdrawal",outcome="dead_lettered"}"#.to_owned(),
        ),
        (
            &worker,
            r#"intake_events_total{kind="email.acknowledgement",outcome="retried"}"#.to_owned(),
        ),
        (
            &worker,
            r#"intake_emails_total{outcome="failed"}"#.to_owned(),
        ),
        (
            &worker,
            format!(r#"intake_dead_letters_purged_total{{queue="{dlq}"}}"#),
        ),
        (
            &gateway,
            r#"intake_http_requests_total{source="lt",status="503"}"#.to_owned(),
        ),
        (
            &gateway,
            r#"intake_publish_failures_total{reason="timeout"}"#.to_owned(),
        ),
        (
            &gateway,
            r#"intake_gateway_events_total{kind="lina.consent",stored="spooled"}"#.to_owned(),
        ),
    ] {
        assert!(
            text.lines().any(|line| line == format!("{series} 0")),
            "{series} is missing or not 0"
        );
    }
    // The retention applied is known before the first round (an hour in).
    assert_eq!(
        sample(&worker, "intake_dead_letter_retention_seconds"),
        14.0 * 24.0 * 3600.0
    );
}
