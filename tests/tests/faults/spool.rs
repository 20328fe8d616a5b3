//! LINA never resends: while the broker is down its calls are spooled to
//! disk (answered 200 only after fsync), and drained once the broker is back,
//! also by a gateway restarted after being killed.

use std::process::Stdio;
use std::time::{Duration, Instant};

use intake_tests::app::LINA_SECRET;
use intake_tests::services::{BrokerOutage, Tmpfs};
use intake_tests::{TestOptions, binaries, eventually, spawn_app, spawn_app_with};

const STORE: &str = "48138367-3eba-4772-b2bf-6bbd11840efb";

fn consent(user: &str, bereich: &str) -> String {
    format!(
        r#"{{"webhook":"{STORE}","userUuid":"{user}","userVorname":"Anna","userName":"Beispiel","userEmail":"anna@example.de","bereich":"{bereich}"}}"#
    )
}

fn withdrawal(user: &str) -> String {
    format!(r#"{{"delete":true,"webhook":"{STORE}","userUuid":"{user}"}}"#)
}

#[tokio::test]
async fn lina_calls_are_spooled_while_the_broker_is_down_and_applied_in_order_once_it_is_back() {
    let app = spawn_app().await;
    app.add_store(STORE).await;
    let (anna, bert) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );

    let outage = BrokerOutage::begin();
    let mut latencies = Vec::new();
    for body in [
        consent(&anna, "Service"),
        consent(&anna, "Küche"),
        consent(&bert, "Bar"),
        withdrawal(&bert),
    ] {
        let started = Instant::now();
        assert_eq!(
            app.post_lina(&body).await.status(),
            200,
            "LINA is answered 200 while the broker is down"
        );
        latencies.push(started.elapsed());
    }
    assert!(app.spool_segments() >= 1, "the calls wait on disk");
    let ready = app.gateway_ops_get("/readyz").await;
    assert_eq!(
        ready.status(),
        200,
        "the gateway stays ready while it can spool"
    );
    let lt = app
        .post_lt(r#"{"mydatashare_user_id":"u","email":"u@example.fi"}"#)
        .await;
    assert_eq!(lt.status(), 503, "LT, which resends, is told to");

    outage.end();
    let anna_row = eventually(
        "Anna's newest consent is applied",
        Duration::from_secs(60),
        || async {
            let row = app.employee(STORE, &anna).await?;
            (row[3].as_deref() == Some("Küche")).then_some(row)
        },
    )
    .await;
    assert_eq!(anna_row[0].as_deref(), Some("Anna"));
    eventually("the spool is empty", Duration::from_secs(30), || async {
        (app.spool_segments() == 0).then_some(())
    })
    .await;
    assert_eq!(
        app.employee(STORE, &bert).await,
        None,
        "Bert's withdrawal came after his consent"
    );
    latencies.sort();
    println!(
        "LINA answered from the spool: median {:.2} ms, max {:.2} ms (publish attempt + append + fsync)",
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );
}

#[tokio::test]
async fn a_full_spool_refuses_lina_with_503_and_the_gateway_says_it_is_not_ready() {
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        spool_max_bytes: 1,
        ..TestOptions::default()
    })
    .await;
    let outage = BrokerOutage::begin();
    let response = app
        .post_lina(&consent(&uuid::Uuid::new_v4().to_string(), "Bar"))
        .await;
    assert_eq!(response.status(), 503);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "spool_full");
    let ready = app.gateway_ops_get("/readyz").await;
    assert_eq!(
        ready.status(),
        503,
        "neither the broker nor the spool can take events"
    );
    outage.end();
}

/// Starts the gateway binary on `port` with the spool in `spool_dir`.
fn start_gateway(app: &intake_tests::TestApp, port: u16) -> tokio::process::Child {
    tokio::process::Command::new(binaries::path("gateway"))
        .env("INTAKE_AMQP_URL", intake_tests::amqp_url())
        .env("INTAKE_QUEUE_PREFIX", app.topology.prefix())
        .env("INTAKE_GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("INTAKE_OPS_ADDR", "127.0.0.1:0")
        .env("INTAKE_LT_TOKENS", "unused-here")
        .env("INTAKE_LINA_PATH_SECRETS", LINA_SECRET)
        .env("INTAKE_SPOOL_DIR", app.spool_dir.join("binary"))
        .env("INTAKE_PUBLISH_TIMEOUT", "2s")
        .stdout(Stdio::null())
        .stderr(intake_tests::logs::stderr_for("gateway"))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_gateway_killed_with_a_non_empty_spool_drains_it_after_a_restart() {
    let app = spawn_app().await;
    app.add_store(STORE).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/webhooks/lina/{LINA_SECRET}");
    let users: Vec<String> = (0..5).map(|_| uuid::Uuid::new_v4().to_string()).collect();

    let outage = BrokerOutage::begin();
    let mut gateway = start_gateway(&app, port);
    eventually("the gateway listens", Duration::from_secs(30), || async {
        app.http.get(&url).send().await.ok().map(|_| ())
    })
    .await;
    for user in &users {
        let response = app
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .body(consent(user, "Service"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    gateway.kill().await.unwrap();
    let spooled = std::fs::read_dir(app.spool_dir.join("binary"))
        .unwrap()
        .count();
    assert!(spooled >= 2, "a segment and the lock file are left behind");

    outage.end();
    let _restarted = start_gateway(&app, port);
    for user in &users {
        eventually(
            "every spooled consent is applied",
            Duration::from_secs(60),
            || app.employee(STORE, user),
        )
        .await;
    }
    eventually(
        "the drained segments are deleted",
        Duration::from_secs(30),
        || async {
            let left = std::fs::read_dir(app.spool_dir.join("binary"))
                .unwrap()
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().starts_with("segment-"))
                .count();
            (left == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn every_lina_call_answered_200_survives_a_full_disk_under_the_spool() {
    let disk = Tmpfs::mount(256 * 1024);
    let spool_dir = disk.path().join("spool");
    let app = spawn_app_with(TestOptions {
        spool_dir: Some(spool_dir),
        ..TestOptions::default()
    })
    .await;
    app.add_store(STORE).await;
    // Most of the disk taken by something else.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 200 * 1024]).unwrap();

    let outage = BrokerOutage::begin();
    let mut accepted = Vec::new();
    let mut refused = 0;
    let post = |user: String| {
        let app = &app;
        async move {
            let response = app.post_lina(&consent(&user, "Spätschicht")).await;
            let status = response.status().as_u16();
            let answer: serde_json::Value = response.json().await.unwrap_or_default();
            (
                user,
                status,
                answer["error"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    // Until the disk is full: some calls get 503 spool_unavailable.
    for _ in 0..400 {
        let (user, status, error) = post(uuid::Uuid::new_v4().to_string()).await;
        match status {
            200 => accepted.push(user),
            503 => {
                assert_eq!(error, "spool_unavailable");
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("unexpected answer {other}"),
        }
    }
    assert!(
        refused >= 5,
        "the disk never filled ({} accepted)",
        accepted.len()
    );
    let before_the_space_came_back = accepted.len();
    // Space comes back; LINA goes on calling.
    std::fs::remove_file(&filler).unwrap();
    for _ in 0..50 {
        let (user, status, _) = post(uuid::Uuid::new_v4().to_string()).await;
        assert_eq!(status, 200, "answered from the spool again");
        accepted.push(user);
    }
    let metrics = app.gateway_metrics().await;
    assert!(
        metrics.contains(&format!("intake_spool_write_failures_total {refused}")),
        "the refusals are counted"
    );
    outage.end();

    eventually(
        "every call answered 200 is applied",
        Duration::from_secs(60),
        || async {
            let stored = app
                .count(&format!(
                    "SELECT count(*) FROM lina_employee WHERE webhook = '{STORE}'"
                ))
                .await;
            (stored as usize == accepted.len()).then_some(())
        },
    )
    .await;
    for user in &accepted {
        assert!(
            app.employee(STORE, user).await.is_some(),
            "a call answered 200 was lost"
        );
    }
    println!(
        "full disk: {} answered 200 before it filled, {refused} refused with 503, 50 after space came back; all {} applied",
        before_the_space_came_back,
        accepted.len()
    );
}
