//! SIGTERM to a real worker process in the middle of its work: it finishes
//! and acks what it started, exits 0, and nothing is lost or applied twice.

use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use intake_tests::{TestOptions, binaries, eventually, spawn_app_with};
use tokio::io::AsyncReadExt;

const EVENTS: usize = 1500;

#[tokio::test]
async fn sigterm_during_a_batch_loses_nothing_and_applies_nothing_twice() {
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    futures_util::stream::iter(0..EVENTS)
        .for_each_concurrent(32, |n| {
            let app = &app;
            async move {
                let body =
                    format!(r#"{{"mydatashare_user_id":"term-{n}","email":"t{n}@example.fi"}}"#);
                assert_eq!(app.post_lt(&body).await.status(), 200);
            }
        })
        .await;

    let mut worker = tokio::process::Command::new(binaries::path("worker"))
        .arg("run")
        .env("INTAKE_DATABASE_URL", &app.db_url)
        .env("INTAKE_AMQP_URL", intake_tests::amqp_url())
        .env("INTAKE_QUEUE_PREFIX", app.topology.prefix())
        .env("INTAKE_OPS_ADDR", "127.0.0.1:0")
        .env("INTAKE_RETRY_DELAYS", "1s,5s")
        .env(
            "INTAKE_SUBJECT_HASH_KEY",
            intake_tests::app::TEST_SUBJECT_HASH_KEY,
        )
        .env("INTAKE_LOG_FORMAT", "json")
        .env("INTAKE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = worker.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.unwrap();
        text
    });

    eventually(
        "the worker is part-way through",
        Duration::from_secs(30),
        || async { (app.application_count().await >= 100).then_some(()) },
    )
    .await;
    let pid = worker.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), worker.wait())
        .await
        .expect("the worker exits within 15 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let logs = logs.await.unwrap();
    intake_tests::logs::keep("worker", &logs);
    let applied_before = logs.matches(r#""outcome":"applied""#).count();
    assert!(
        applied_before < EVENTS,
        "the signal arrived mid-stream ({applied_before} applied)"
    );
    assert_eq!(
        app.application_count().await as usize,
        applied_before,
        "every applied event was committed"
    );

    let rest = app.spawn_worker().await;
    eventually(
        "every event is applied",
        Duration::from_secs(60),
        || async { (app.application_count().await as usize == EVENTS).then_some(()) },
    )
    .await;
    // The counter moves once the batch is settled, a moment after its commit.
    eventually(
        "the second worker has counted its events",
        Duration::from_secs(10),
        || async {
            (applied_before + rest.stats.events_applied() as usize >= EVENTS).then_some(())
        },
    )
    .await;
    assert_eq!(
        applied_before + rest.stats.events_applied() as usize,
        EVENTS,
        "no event was applied twice"
    );
    assert_eq!(
        rest.stats.events_duplicate(),
        0,
        "every batch the first worker committed, it acked"
    );
    rest.stop().await;
}

#[tokio::test]
async fn sigterm_to_the_gateway_finishes_in_flight_requests_and_every_200_is_published() {
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut gateway = tokio::process::Command::new(binaries::path("gateway"))
        .env("INTAKE_AMQP_URL", intake_tests::amqp_url())
        .env("INTAKE_QUEUE_PREFIX", app.topology.prefix())
        .env("INTAKE_GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("INTAKE_OPS_ADDR", "127.0.0.1:0")
        .env("INTAKE_LT_TOKENS", intake_tests::app::TEST_TOKEN)
        .stdout(Stdio::null())
        .stderr(intake_tests::logs::stderr_for("gateway"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/webhooks/lt");
    eventually("the gateway listens", Duration::from_secs(30), || async {
        app.http.get(&url).send().await.ok().map(|_| ())
    })
    .await;

    let pid = gateway.id().unwrap().to_string();
    let requests = futures_util::stream::iter(0..200).map(|n| {
        let request = app
            .http
            .post(&url)
            .header(
                "Authorization",
                format!("Bearer {}", intake_tests::app::TEST_TOKEN),
            )
            .header("Content-Type", "application/json")
            .body(format!(
                r#"{{"mydatashare_user_id":"gw-{n}","email":"g{n}@example.fi"}}"#
            ));
        async move {
            request
                .send()
                .await
                .map(|response| response.status().as_u16())
                .ok()
        }
    });
    let signal = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
    };
    let (answers, ()) = tokio::join!(requests.buffer_unordered(16).collect::<Vec<_>>(), signal);
    let status = tokio::time::timeout(Duration::from_secs(15), gateway.wait())
        .await
        .expect("the gateway exits within 15 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");

    let accepted = answers
        .iter()
        .filter(|answer| **answer == Some(200))
        .count();
    assert!(
        accepted > 0,
        "some requests were answered before the signal"
    );
    assert!(
        answers
            .iter()
            .all(|answer| matches!(answer, Some(200) | None)),
        "a request was answered with an error: {answers:?}"
    );
    assert_eq!(
        app.depth(common::amqp::WorkQueue::Lt).await as usize,
        accepted,
        "every 200 is a published event"
    );
}
