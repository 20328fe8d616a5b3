//! The LT endpoint: authentication, validation, and 200 only once published.

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
async fn bad_bodies_get_400_with_their_reason_and_nothing_is_published() {
    let app = spawn_app_with(gateway_only()).await;
    let cases = [
        ("not json", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        (r#"{"email": "a@example.fi"}"#, "missing_user_id"),
        (
            r#"{"mydatashare_user_id": "", "email": "a@example.fi"}"#,
            "invalid_user_id",
        ),
        (
            r#"{"mydatashare_user_id": 42, "email": "a@example.fi"}"#,
            "invalid_user_id",
        ),
        (
            r#"{"mydatashare_user_id": "u-1", "status": "new"}"#,
            "missing_email",
        ),
        (
            r#"{"mydatashare_user_id": "u-1", "status": "updated"}"#,
            "missing_email",
        ),
    ];
    for (body, reason) in cases {
        let response = app.post_lt(body).await;
        assert_eq!(response.status(), 400, "body {body}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["error"], reason, "body {body}");
    }
    assert_eq!(app.depth(WorkQueue::Lt).await, 0);
}

#[tokio::test]
async fn an_oversize_body_gets_413_and_a_wrong_content_type_415() {
    let app = spawn_app_with(gateway_only()).await;
    let padding = "x".repeat(app.options.max_body_bytes);
    let oversize =
        format!(r#"{{"mydatashare_user_id":"u-1","email":"a@example.fi","pad":"{padding}"}}"#);
    let response = app.post_lt(&oversize).await;
    assert_eq!(response.status(), 413);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "payload_too_large");

    let response = app
        .lt_request()
        .header("Authorization", "Bearer test-token-current")
        .header("Content-Type", "text/plain")
        .body(example("lt/new.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "unsupported_media_type");
    assert_eq!(app.depth(WorkQueue::Lt).await, 0);
}

#[tokio::test]
async fn health_and_readiness_are_served_on_the_ops_listener() {
    let app = spawn_app_with(gateway_only()).await;
    let health = app
        .http
        .get(format!("{}/healthz", app.gateway_ops))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = app
        .http
        .get(format!("{}/readyz", app.gateway_ops))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

#[tokio::test]
async fn duplicate_keys_and_wrong_methods_are_refused_with_a_reason() {
    let app = spawn_app_with(gateway_only()).await;
    // Which of two values counts is a parsing differential: refuse instead.
    for body in [
        r#"{"mydatashare_user_id":"u-1","email":"a@example.fi","email":"b@example.fi"}"#,
        r#"{"mydatashare_user_id":"u-1","email":"a@example.fi","profile":{"x":1,"x":2}}"#,
    ] {
        let response = app.post_lt(body).await;
        assert_eq!(response.status(), 400, "{body}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "duplicate_key", "{body}");
    }
    let lina = app
        .post_lina(r#"{"webhook":"48138367-3eba-4772-b2bf-6bbd11840efb","webhook":"48138367-3eba-4772-b2bf-6bbd11840efc","userUuid":"c6425258-a870-498d-8173-6c2341c934e0"}"#)
        .await;
    assert_eq!(lina.status(), 400);
    assert_eq!(
        lina.json::<serde_json::Value>().await.unwrap()["error"],
        "duplicate_key"
    );

    let get = app
        .http
        .get(format!("{}/webhooks/lt", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(
        get.json::<serde_json::Value>().await.unwrap()["error"],
        "method_not_allowed"
    );
    assert_eq!(app.depth(WorkQueue::Lt).await, 0);
}
