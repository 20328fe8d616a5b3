//! The gateway's HTTP edge against clients that hold connections without
//! credentials: a refused request whose chunked body never ends, and a
//! kept-alive connection that sends one byte of its next head and stops.
//! Both are closed within the configured deadlines, while a valid call
//! still gets 200.

use std::time::{Duration, Instant};

use gateway::settings::HttpTimeouts;
use intake_tests::app::{LINA_SECRET, TEST_TOKEN};
use intake_tests::{TestApp, TestOptions, spawn_app_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn timeouts() -> HttpTimeouts {
    HttpTimeouts {
        request_head: Duration::from_secs(2),
        request_body: Duration::from_secs(4),
        keep_alive: Duration::from_secs(2),
        client_disconnect: Duration::from_secs(1),
    }
}

async fn app() -> TestApp {
    spawn_app_with(TestOptions {
        start_worker: false,
        lina_secrets: vec![LINA_SECRET.into()],
        http_timeouts: timeouts(),
        ..TestOptions::default()
    })
    .await
}

fn address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Reads until the end of an answer's head; its status.
async fn read_status(stream: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = stream.read(&mut byte).await.expect("an answer");
        assert_eq!(read, 1, "closed before a whole head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

/// How long until the server closes `stream` (reading and discarding),
/// `None` if it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = [0u8; 4096];
    let closed = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, closed)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// Opens a connection, sends `head` (a chunked request whose body never
/// comes), reads the answer's status and returns the open connection.
async fn refused_with_body_pending(address: &str, head: &str) -> (TcpStream, u16) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let status = read_status(&mut stream).await;
    (stream, status)
}

async fn valid_lt_call_gets_200(app: &TestApp) {
    let response = app
        .post_lt(r#"{"mydatashare_user_id":"edge-1","email":"edge@example.fi"}"#)
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_with_an_unfinished_chunked_body_are_closed_within_the_body_deadline() {
    let app = app().await;
    let address = address(&app);
    let chunked = |request_line: &str, extra: &str| {
        format!("{request_line}\r\nHost: x\r\n{extra}Transfer-Encoding: chunked\r\n\r\n")
    };
    let json = "Content-Type: application/json\r\n";
    let cases = [
        (chunked("POST /webhooks/lt HTTP/1.1", json), 401, 1000),
        (
            chunked(
                "POST /webhooks/lt HTTP/1.1",
                &format!("Authorization: Bearer {TEST_TOKEN}\r\n"),
            ),
            415,
            20,
        ),
        (
            chunked("POST /webhooks/lina/wrong-secret HTTP/1.1", json),
            404,
            20,
        ),
        (chunked("POST /nowhere HTTP/1.1", json), 404, 20),
        (chunked("PUT /webhooks/lt HTTP/1.1", json), 405, 20),
    ];
    let mut held = Vec::new();
    for (head, status, count) in &cases {
        for _ in 0..*count {
            let (stream, answered) = refused_with_body_pending(&address, head).await;
            assert_eq!(answered, *status, "{head:?}");
            held.push(stream);
        }
    }
    valid_lt_call_gets_200(&app).await;
    let deadline = timeouts().request_body;
    let closes = futures_util::future::join_all(
        held.iter_mut()
            .map(|stream| closed_within(stream, deadline + Duration::from_secs(2))),
    )
    .await;
    let open = closes.iter().filter(|closed| closed.is_none()).count();
    let slowest = closes.iter().flatten().max().copied().unwrap_or_default();
    println!(
        "{} refused connections with a body pending: {open} still open, slowest closed after {:.1} s",
        held.len(),
        slowest.as_secs_f64()
    );
    assert_eq!(open, 0, "every refused connection is closed");
    assert!(slowest <= deadline, "closed within the body deadline");
    valid_lt_call_gets_200(&app).await;
}

#[tokio::test]
async fn a_kept_alive_connection_with_one_byte_of_its_next_head_is_closed_within_the_head_timeout()
{
    let app = app().await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    // Any answer will do: no credentials are needed to get one.
    stream
        .write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_status(&mut stream).await, 404);
    let mut body = vec![0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut body)).await;
    stream.write_all(b"P").await.unwrap();
    let head_timeout = timeouts().request_head;
    let closed = closed_within(&mut stream, head_timeout + Duration::from_secs(3)).await;
    let closed = closed.expect("the connection is closed");
    println!(
        "kept-alive connection with one byte of a head: closed after {:.1} s",
        closed.as_secs_f64()
    );
    assert!(
        closed <= head_timeout + Duration::from_millis(500),
        "closed within the head timeout ({closed:?})"
    );
    assert!(
        app.gateway_metrics()
            .await
            .contains(r#"intake_http_connections_closed_total{reason="idle"} 1"#),
        "counted"
    );
}

/// Sends `bytes` on a new connection and returns the answer's status (a
/// server that refuses early may stop reading: a failed write is ignored).
async fn raw_status(address: &str, bytes: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let _ = stream.write_all(bytes).await;
    read_status(&mut stream).await
}

fn refused(metrics: &str, reason: &str) -> u64 {
    let series = format!("intake_http_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn requests_actix_refuses_itself_are_counted_by_reason() {
    let app = app().await;
    let address = address(&app);
    let before = app.gateway_metrics().await;
    assert_eq!(
        raw_status(
            &address,
            b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"
        )
        .await,
        400
    );
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    assert_eq!(raw_status(&address, huge.as_bytes()).await, 431);
    // Half a head, then nothing: 408 after the head timeout.
    assert_eq!(
        raw_status(&address, b"POST /webhooks/lt HTTP/1.1\r\n").await,
        408
    );

    let after = app.gateway_metrics().await;
    for reason in ["malformed_head", "head_too_large", "head_timeout"] {
        assert_eq!(
            refused(&after, reason),
            refused(&before, reason) + 1,
            "{reason} counted once"
        );
    }
}

#[tokio::test]
async fn requests_are_counted_by_the_route_they_matched_not_the_raw_path() {
    let app = app().await;
    let response = app
        .http
        .post(format!("{}/%77ebhooks/lina/{LINA_SECRET}", app.address))
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415, "the LINA route answered");
    let metrics = app.gateway_metrics().await;
    assert!(
        metrics.contains(r#"intake_http_requests_total{source="lina",status="415"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_lina_body_the_client_ended_early_is_answered_400_and_kept_in_the_quarantine() {
    let app = app().await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let head = format!(
        "POST /webhooks/lina/{LINA_SECRET} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(br#"{"webhook":"48138367-3eba"#)
        .await
        .unwrap();
    // The client ends its side: the body stops 175 bytes short.
    stream.shutdown().await.unwrap();
    assert_eq!(read_status(&mut stream).await, 400);
    intake_tests::eventually(
        "the call is quarantined",
        Duration::from_secs(10),
        || async {
            (intake_tests::broker::depth(&app.topology.quarantine_queue()).await == 1).then_some(())
        },
    )
    .await;
    let listing = app.dlq(&["list", "--queue", "quarantine"]).await.unwrap();
    assert!(listing.contains("incomplete_body"), "{listing}");
}

/// Sends a head asking `Expect: 100-continue` and returns the first status
/// line's code: 100 (the body is invited) or the refusal.
async fn first_answer_to_expect(address: &str, head: &str) -> (TcpStream, u16) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let status = read_status(&mut stream).await;
    (stream, status)
}

#[tokio::test]
async fn a_body_is_invited_with_100_continue_only_once_the_head_passed() {
    let app = app().await;
    let address = address(&app);
    let head = |path: &str, extra: &str, length: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
        )
    };
    let token = format!("Authorization: Bearer {TEST_TOKEN}\r\n");
    let lina = format!("/webhooks/lina/{LINA_SECRET}");
    let refused = [
        (head("/webhooks/lt", "", 60), 401),
        (head("/webhooks/lt", &token, 10_000_000), 413),
        (head("/webhooks/lina/wrong-secret", "", 60), 404),
        (head("/nowhere", "", 60), 404),
    ];
    for (request, status) in &refused {
        let (_, answered) = first_answer_to_expect(&address, request).await;
        assert_eq!(answered, *status, "answered at once, no 100: {request:?}");
    }

    let body = r#"{"mydatashare_user_id":"continued-1","email":"c@example.fi"}"#;
    let (mut stream, status) =
        first_answer_to_expect(&address, &head("/webhooks/lt", &token, body.len())).await;
    assert_eq!(
        status, 100,
        "a head that passes is invited to send its body"
    );
    stream.write_all(body.as_bytes()).await.unwrap();
    assert_eq!(read_status(&mut stream).await, 200);

    let (_, status) = first_answer_to_expect(&address, &head(&lina, "", 60)).await;
    assert_eq!(status, 100, "LINA with its secret is invited too");
    // The secret decoded as the handler decodes it (%74 is "t").
    let encoded = format!("/webhooks/lina/%74{}", &LINA_SECRET[1..]);
    let (_, status) = first_answer_to_expect(&address, &head(&encoded, "", 60)).await;
    assert_eq!(status, 100, "a percent-encoded secret is the same secret");
    let metrics = app.gateway_metrics().await;
    assert!(
        metrics.contains(r#"intake_http_requests_total{source="lt",status="401"} 1"#),
        "refusals before the body are counted: {metrics}"
    );
}

#[tokio::test]
async fn an_unknown_expectation_is_417_for_lt_and_ignored_for_lina_whose_call_is_kept() {
    let app = app().await;
    let lt = app
        .lt_request()
        .header("Authorization", format!("Bearer {TEST_TOKEN}"))
        .header("Content-Type", "application/json")
        .header("Expect", "something-else")
        .body(r#"{"mydatashare_user_id":"e-1","email":"e@example.fi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(lt.status(), 417, "LT resends");
    let lina = app
        .lina_request(LINA_SECRET)
        .header("Content-Type", "application/json")
        .header("Expect", "something-else")
        .body(r#"{"webhook":"48138367-3eba-4772-b2bf-6bbd11840efb","userUuid":"c6425258-a870-498d-8173-6c2341c934e0"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(lina.status(), 200, "LINA never resends: its call is taken");
}
