//! The broker goes away and comes back: LT is told to resend while it is
//! away, nothing needs restarting afterwards.

use std::time::{Duration, Instant};

use intake_tests::services::{BrokerOutage, MemoryAlarm};
use intake_tests::{TestOptions, eventually, spawn_app_with};

fn application(user: &str) -> String {
    format!(r#"{{"mydatashare_user_id":"{user}","email":"{user}@example.fi"}}"#)
}

async fn readiness(app: &intake_tests::TestApp, base: &str) -> (u16, serde_json::Value) {
    let response = app.http.get(format!("{base}/readyz")).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn options() -> TestOptions {
    TestOptions {
        publish_timeout: Duration::from_secs(2),
        ..TestOptions::default()
    }
}

#[tokio::test]
async fn while_the_broker_is_down_lt_gets_503_and_everything_recovers_by_itself() {
    let app = spawn_app_with(options()).await;
    let worker_ops = app.worker.as_ref().unwrap().ops_address.clone();
    assert_eq!(app.post_lt(&application("before")).await.status(), 200);
    eventually("applied before the outage", Duration::from_secs(10), || {
        app.application("before")
    })
    .await;

    let outage = BrokerOutage::begin();
    let response = app.post_lt(&application("during")).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "broker_unavailable");
    eventually(
        "the worker reports the broker down",
        Duration::from_secs(10),
        || async {
            let (status, body) = readiness(&app, &worker_ops).await;
            (status == 503 && body["checks"]["broker"] == false).then_some(())
        },
    )
    .await;
    let (status, body) = readiness(&app, &app.gateway_ops).await;
    assert_eq!(status, 200, "the gateway stays ready: {body}");
    assert_eq!(body["checks"]["broker"], false);

    outage.end();
    let back = Instant::now();
    eventually("LT gets 200 again", Duration::from_secs(60), || async {
        (app.post_lt(&application("after")).await.status() == 200).then_some(())
    })
    .await;
    let recovered = back.elapsed();
    eventually("the worker applies again", Duration::from_secs(60), || {
        app.application("after")
    })
    .await;
    let applied = back.elapsed();
    eventually(
        "the worker is ready again",
        Duration::from_secs(30),
        || async { (readiness(&app, &worker_ops).await.0 == 200).then_some(()) },
    )
    .await;
    println!(
        "broker restart: gateway accepting again after {:.2} s, worker applying after {:.2} s",
        recovered.as_secs_f64(),
        applied.as_secs_f64()
    );
}

#[tokio::test]
async fn a_broker_that_blocks_publishers_makes_lt_retry_later_and_the_in_flight_bound_holds() {
    let app = spawn_app_with(TestOptions {
        max_in_flight: 1,
        ..options()
    })
    .await;
    assert_eq!(
        app.post_lt(&application("before-alarm")).await.status(),
        200
    );

    let alarm = MemoryAlarm::raise();
    let during = application("during-alarm");
    let (held, overflow) = tokio::join!(app.post_lt(&during), async {
        // Sent while the first publish waits for a confirm that cannot come.
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.post_lt(&application("overflow")).await
    });
    assert_eq!(held.status(), 503);
    assert!(held.headers().contains_key("retry-after"));
    assert_eq!(overflow.status(), 503);
    assert!(overflow.headers().contains_key("retry-after"));
    let answer: serde_json::Value = overflow.json().await.unwrap();
    assert_eq!(answer["error"], "overloaded");
    drop(alarm);

    eventually("LT gets 200 again", Duration::from_secs(30), || async {
        (app.post_lt(&application("after-alarm")).await.status() == 200).then_some(())
    })
    .await;
    eventually("applied after the alarm", Duration::from_secs(30), || {
        app.application("after-alarm")
    })
    .await;
}
