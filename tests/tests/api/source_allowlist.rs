//! Optional source-IP allowlists per sender, and `X-Forwarded-For` believed
//! only from a trusted proxy. The tests connect from 127.0.0.1.

use common::amqp::WorkQueue;
use gateway::source::{IpNet, SourceRules, parse_cidrs};
use intake_tests::app::{LINA_SECRET, TEST_TOKEN};
use intake_tests::{TestApp, TestOptions, broker, example, spawn_app_with};

fn cidrs(text: &str) -> Option<Vec<IpNet>> {
    parse_cidrs("TEST", text).unwrap()
}

async fn gateway(sources: SourceRules) -> TestApp {
    spawn_app_with(TestOptions {
        start_worker: false,
        sources,
        ..TestOptions::default()
    })
    .await
}

/// POSTs a valid LT application, optionally with an `X-Forwarded-For`.
async fn lt_from(app: &TestApp, forwarded: Option<&str>) -> (u16, String) {
    let mut request = app
        .lt_request()
        .header("Authorization", format!("Bearer {TEST_TOKEN}"))
        .header("Content-Type", "application/json")
        .body(example("lt/new.json"));
    if let Some(forwarded) = forwarded {
        request = request.header("X-Forwarded-For", forwarded);
    }
    answer(request).await
}

/// POSTs a valid LINA consent to `secret`, optionally with an `X-Forwarded-For`.
async fn lina_from(app: &TestApp, secret: &str, forwarded: Option<&str>) -> (u16, String) {
    let mut request = app
        .lina_request(secret)
        .header("Content-Type", "application/json")
        .body(example("lina/consent.json"));
    if let Some(forwarded) = forwarded {
        request = request.header("X-Forwarded-For", forwarded);
    }
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap_or("").to_owned())
}

fn refused() -> (u16, String) {
    (403, "source_not_allowed".into())
}

fn accepted() -> (u16, String) {
    (200, String::new())
}

#[tokio::test]
async fn an_allowed_source_is_served_and_a_refused_one_gets_403_whatever_the_secret() {
    let app = gateway(SourceRules {
        lt: cidrs("127.0.0.0/8"),
        lina: cidrs("192.0.2.0/24, 2001:db8::/32"),
        trusted_proxies: Vec::new(),
    })
    .await;
    assert_eq!(lt_from(&app, None).await, accepted());
    // The source is checked before the secret: the answer is the same for a
    // right and a wrong one, so a refused source learns nothing about it.
    assert_eq!(lina_from(&app, LINA_SECRET, None).await, refused());
    assert_eq!(lina_from(&app, "wrong-secret", None).await, refused());
    let bad = app
        .lina_request(LINA_SECRET)
        .header("Content-Type", "application/json")
        .body("not json");
    assert_eq!(answer(bad).await, refused(), "not even quarantined");

    assert_eq!(app.depth(WorkQueue::Lt).await, 1);
    assert_eq!(app.depth(WorkQueue::Lina).await, 0);
    assert_eq!(broker::depth(&app.topology.quarantine_queue()).await, 0);
    let metrics = app.gateway_metrics().await;
    assert!(
        metrics.contains(r#"intake_http_requests_total{source="lina",status="403"} 3"#),
        "{metrics}"
    );
    assert!(!metrics.contains(LINA_SECRET));
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_rightmost_untrusted_forwarded_address_is_the_client() {
    let app = gateway(SourceRules {
        lt: cidrs("198.51.100.0/24"),
        lina: None,
        trusted_proxies: cidrs("127.0.0.0/8, 10.0.0.0/8").unwrap(),
    })
    .await;
    let cases = [
        (None, refused()),
        (Some("198.51.100.7"), accepted()),
        (Some("198.51.100.7, 10.0.0.2"), accepted()),
        // What the client itself wrote (leftmost) is not believed.
        (Some("198.51.100.7, 203.0.113.5"), refused()),
        (Some("203.0.113.5, 198.51.100.7"), accepted()),
        (Some("nonsense"), refused()),
    ];
    for (forwarded, expected) in cases {
        assert_eq!(lt_from(&app, forwarded).await, expected, "{forwarded:?}");
    }
    // LINA has no allowlist here: any source.
    assert_eq!(
        lina_from(&app, LINA_SECRET, Some("203.0.113.5")).await,
        accepted()
    );
    assert_eq!(app.depth(WorkQueue::Lt).await, 3);
}

#[tokio::test]
async fn from_an_untrusted_peer_x_forwarded_for_is_ignored() {
    let app = gateway(SourceRules {
        lt: cidrs("198.51.100.0/24"),
        lina: cidrs("127.0.0.1"),
        trusted_proxies: Vec::new(),
    })
    .await;
    // The peer (127.0.0.1) is the client, whatever it claims.
    assert_eq!(lt_from(&app, Some("198.51.100.7")).await, refused());
    assert_eq!(
        lina_from(&app, LINA_SECRET, Some("203.0.113.5")).await,
        accepted()
    );
    assert_eq!(app.depth(WorkQueue::Lt).await, 0);
    assert_eq!(app.depth(WorkQueue::Lina).await, 1);
}
