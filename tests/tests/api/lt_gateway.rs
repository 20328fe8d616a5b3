//! The LT endpoint: authentication, 200 only once published, the ops
//! listener. Every bad body, method or content type: `bad_input.rs`.

use common::amqp::WorkQueue;
use intake_tests::{TestOptions, example, spawn_app_with};

fn gateway_only() -> TestOptions {
    TestOptions {
        start_worker: false,
        ..TestOptions::default()
    }
}

#[tokio::test]
async fn a_valid_application_is_answered_200_and_published() {
    let app = spawn_app_with(gateway_only()).await;
    let response = app.post_lt(&example("lt/new.json")).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    assert!(body["id"].is_string());
    assert_eq!(app.depth(WorkQueue::Lt).await, 1);
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401_and_nothing_is_published() {
    let app = spawn_app_with(gateway_only()).await;
    let body = example("lt/new.json");
    let cases = [
        None,
        Some("Bearer wrong-token"),
        Some("Basic test-token-current"),
        Some("Bearer "),
    ];
    for authorization in cases {
        let mut request = app
            .lt_request()
            .header("Content-Type", "application/json")
            .body(body.clone());
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "authorization {authorization:?}");
        let reason: serde_json::Value = response.json().await.unwrap();
        assert_eq!(reason["error"], "unauthorized");
    }
    assert_eq!(app.depth(WorkQueue::Lt).await, 0);
}

#[tokio::test]
async fn the_scheme_is_case_insensitive_and_every_rotated_token_works() {
    let app = spawn_app_with(gateway_only()).await;
    for authorization in ["bearer test-token-current", "Bearer test-token-next"] {
        let response = app
            .lt_request()
            .header("Authorization", authorization)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(example("lt/new.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "authorization {authorization}");
    }
    assert_eq!(app.depth(WorkQueue::Lt).await, 2);
}

#[tokio::test]
async fn health_and_readiness_are_served_on_the_ops_listener() {
    let app = spawn_app_with(gateway_only()).await;
    let health = app.gateway_ops_get("/healthz").await;
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = app.gateway_ops_get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["checks"]["broker"], true);
    // The webhook listener does not serve them.
    let elsewhere = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
}
