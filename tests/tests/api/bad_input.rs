//! Bad input to the gateway: one table of every malformed, oversized or
//! ill-sent request, each answered 4xx with a reason and nothing published
//! (a bad LINA call that passed the secret is kept in the quarantine);
//! slow and idle clients answered 408 and closed within the configured
//! timeouts; and the gateway still serving afterwards.

mod raw_http;

use std::time::{Duration, Instant};

use common::amqp::WorkQueue;
use gateway::settings::HttpTimeouts;
use intake_tests::app::{LINA_SECRET, TEST_TOKEN};
use intake_tests::{TestApp, TestOptions, broker, example, spawn_app_with};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use raw_http::{Answer, closed_within, exchange, read_answer, request};

const STORE: &str = "48138367-3eba-4772-b2bf-6bbd11840efb";
const USER: &str = "c6425258-a870-498d-8173-6c2341c934e0";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Sender {
    Lt,
    Lina,
}

/// One bad request and the answer it must get.
struct Case {
    what: &'static str,
    sender: Sender,
    method: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    chunked: bool,
    /// Sent after the sender's own headers (a second copy of one of them).
    extra_headers: Vec<(&'static str, &'static str)>,
    status: u16,
    reason: &'static str,
}

impl Case {
    fn new(
        sender: Sender,
        what: &'static str,
        body: impl Into<Vec<u8>>,
        reason: &'static str,
    ) -> Case {
        Case {
            what,
            sender,
            method: "POST",
            content_type: Some("application/json"),
            body: body.into(),
            chunked: false,
            extra_headers: Vec::new(),
            status: 400,
            reason,
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Case {
        self.extra_headers.push((name, value));
        self
    }

    fn status(mut self, status: u16) -> Case {
        self.status = status;
        self
    }

    fn method(mut self, method: &'static str) -> Case {
        self.method = method;
        self
    }

    fn content_type(mut self, content_type: Option<&'static str>) -> Case {
        self.content_type = content_type;
        self
    }

    fn chunked(mut self) -> Case {
        self.chunked = true;
        self
    }

    /// A LINA call that passed the secret and failed validation is kept.
    fn quarantined(&self) -> bool {
        self.sender == Sender::Lina && matches!(self.status, 400 | 415)
    }

    fn bytes(&self) -> Vec<u8> {
        let authorization = format!("Bearer {TEST_TOKEN}");
        let mut headers = Vec::new();
        let path = match self.sender {
            Sender::Lt => {
                headers.push(("Authorization", authorization.as_str()));
                "/webhooks/lt".to_owned()
            }
            Sender::Lina => format!("/webhooks/lina/{LINA_SECRET}"),
        };
        if let Some(content_type) = self.content_type {
            headers.push(("Content-Type", content_type));
        }
        headers.extend(self.extra_headers.iter().copied());
        request(self.method, &path, &headers, &self.body, self.chunked)
    }
}

fn lt(what: &'static str, body: impl Into<Vec<u8>>, reason: &'static str) -> Case {
    Case::new(Sender::Lt, what, body, reason)
}

fn lina(what: &'static str, body: impl Into<Vec<u8>>, reason: &'static str) -> Case {
    Case::new(Sender::Lina, what, body, reason)
}

fn lt_body(extra: &str) -> String {
    format!(r#"{{"mydatashare_user_id":"u-1","email":"a@example.fi"{extra}}}"#)
}

fn lina_body(extra: &str) -> String {
    format!(r#"{{"webhook":"{STORE}","userUuid":"{USER}"{extra}}}"#)
}

fn deep(depth: usize) -> String {
    format!(r#","x":{}{}"#, "[".repeat(depth), "]".repeat(depth))
}

fn deep_objects(depth: usize) -> String {
    format!(r#","x":{}1{}"#, r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

/// Every bad input, for both senders where it applies. `limit`: the body limit.
fn cases(limit: usize) -> Vec<Case> {
    let huge = "u".repeat(limit - 1024);
    let over = format!(r#"{{"pad":"{}"}}"#, "x".repeat(limit));
    let mut invalid_utf8 = br#"{"mydatashare_user_id":"u-"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid_utf8.extend_from_slice(br#"","email":"a@example.fi"}"#);
    let mut lina_invalid_utf8 =
        format!(r#"{{"webhook":"{STORE}","userUuid":"{USER}","userName":""#).into_bytes();
    lina_invalid_utf8.extend_from_slice(&[0xc0, 0xaf, 0xed, 0xa0, 0x80]);
    lina_invalid_utf8.extend_from_slice(br#""}"#);
    let lt_ok = lt_body("");
    let lina_ok = lina_body("");
    vec![
        // LT
        lt("not JSON", "not json", "invalid_json"),
        lt("malformed UTF-8", invalid_utf8, "invalid_json"),
        lt("truncated JSON", &lt_ok[..lt_ok.len() - 7], "invalid_json"),
        lt(
            "arrays nested 5,000 deep",
            lt_body(&deep(5000)),
            "invalid_json",
        ),
        lt(
            "objects nested 5,000 deep",
            lt_body(&deep_objects(5000)),
            "invalid_json",
        ),
        lt("empty body", "", "invalid_json"),
        lt(
            "a raw NUL byte",
            lt_body(",\"note\":\"a\0b\""),
            "invalid_json",
        ),
        lt(
            "a lone surrogate escape",
            lt_body(r#","note":"\ud800""#),
            "invalid_json",
        ),
        lt("an array", "[1, 2]", "not_an_object"),
        lt(
            "a duplicate key",
            lt_body(r#","email":"b@example.fi""#),
            "duplicate_key",
        ),
        lt(
            "a duplicate nested key",
            lt_body(r#","profile":{"x":1,"x":2}"#),
            "duplicate_key",
        ),
        lt(
            "no user id",
            r#"{"email":"a@example.fi"}"#,
            "missing_user_id",
        ),
        lt(
            "an empty user id",
            r#"{"mydatashare_user_id":"","email":"a@example.fi"}"#,
            "invalid_user_id",
        ),
        lt(
            "a number as user id",
            r#"{"mydatashare_user_id":42,"email":"a@example.fi"}"#,
            "invalid_user_id",
        ),
        lt(
            "a huge user id within the limit",
            format!(r#"{{"mydatashare_user_id":"{huge}","email":"a@example.fi"}}"#),
            "invalid_user_id",
        ),
        lt(
            "a number as e-mail",
            r#"{"mydatashare_user_id":"u-1","email":42}"#,
            "missing_email",
        ),
        lt(
            "no e-mail (new)",
            r#"{"mydatashare_user_id":"u-1","status":"new"}"#,
            "missing_email",
        ),
        lt(
            "no e-mail (updated)",
            r#"{"mydatashare_user_id":"u-1","status":"updated"}"#,
            "missing_email",
        ),
        lt(
            "NUL in a string",
            lt_body(r#","first_name":"An\u0000na""#),
            "unstorable_text",
        ),
        lt(
            "NUL in a key",
            lt_body(r#","x\u0000":1"#),
            "unstorable_text",
        ),
        lt(
            "a number beyond numeric (1e131072)",
            lt_body(r#","x":1e131072"#),
            "unstorable_number",
        ),
        lt(
            "a number with 16,384 decimals",
            lt_body(r#","x":[1,{"y":1e-16384}]"#),
            "unstorable_number",
        ),
        lt("GET", "", "method_not_allowed")
            .method("GET")
            .status(405),
        lt("PUT", lt_ok.clone(), "method_not_allowed")
            .method("PUT")
            .status(405),
        lt("text/plain", lt_ok.clone(), "unsupported_media_type")
            .content_type(Some("text/plain"))
            .status(415),
        lt("no content type", lt_ok.clone(), "unsupported_media_type")
            .content_type(None)
            .status(415),
        lt("a form", lt_ok.clone(), "unsupported_media_type")
            .content_type(Some("application/x-www-form-urlencoded"))
            .status(415),
        lt(
            "over the limit (Content-Length)",
            over.clone(),
            "payload_too_large",
        )
        .status(413),
        lt(
            "over the limit (chunked)",
            over.clone(),
            "payload_too_large",
        )
        .chunked()
        .status(413),
        lt(
            "Authorization twice (right, then wrong)",
            lt_ok.clone(),
            "repeated_header",
        )
        .header("Authorization", "Bearer wrong-token"),
        lt(
            "Content-Type twice (JSON first)",
            lt_ok.clone(),
            "repeated_header",
        )
        .header("Content-Type", "text/plain"),
        lt(
            "a plain body labelled gzip",
            lt_ok.clone(),
            "unsupported_encoding",
        )
        .header("Content-Encoding", "gzip")
        .status(415),
        lt(
            "an unknown expectation",
            lt_ok.clone(),
            "expectation_failed",
        )
        .header("Expect", "something-else")
        .status(417),
        // LINA
        lina("not JSON", "not json", "invalid_json"),
        lina("malformed UTF-8", lina_invalid_utf8, "invalid_json"),
        lina(
            "truncated JSON",
            &lina_ok[..lina_ok.len() - 3],
            "invalid_json",
        ),
        lina(
            "arrays nested 5,000 deep",
            lina_body(&deep(5000)),
            "invalid_json",
        ),
        lina(
            "objects nested 5,000 deep",
            lina_body(&deep_objects(5000)),
            "invalid_json",
        ),
        lina("empty body", "", "invalid_json"),
        lina(
            "a lone surrogate escape",
            lina_body(r#","userName":"\udc00""#),
            "invalid_json",
        ),
        lina("an array", "[1]", "not_an_object"),
        lina(
            "a duplicate key",
            format!(
                r#"{{"webhook":"{STORE}","webhook":"48138367-3eba-4772-b2bf-6bbd11840efc","userUuid":"{USER}"}}"#
            ),
            "duplicate_key",
        ),
        lina(
            "a store that is no UUID",
            format!(r#"{{"webhook":"store-1","userUuid":"{USER}"}}"#),
            "invalid_webhook",
        ),
        lina(
            "a number as store",
            format!(r#"{{"webhook":7,"userUuid":"{USER}"}}"#),
            "invalid_webhook",
        ),
        lina(
            "a number as user",
            format!(r#"{{"webhook":"{STORE}","userUuid":42}}"#),
            "invalid_user_uuid",
        ),
        lina(
            "a huge user within the limit",
            format!(r#"{{"webhook":"{STORE}","userUuid":"{huge}"}}"#),
            "invalid_user_uuid",
        ),
        lina(
            "a string as delete",
            lina_body(r#","delete":"yes""#),
            "invalid_delete",
        ),
        lina(
            "a number as first name",
            lina_body(r#","userVorname":42"#),
            "invalid_field",
        ),
        lina(
            "NUL in a name",
            lina_body(r#","userName":"M\u0000uster""#),
            "unstorable_text",
        ),
        lina(
            "a number beyond numeric (1e131072)",
            lina_body(r#","x":1e131072"#),
            "unstorable_number",
        ),
        lina("GET", "", "method_not_allowed")
            .method("GET")
            .status(405),
        lina("PUT", lina_ok.clone(), "method_not_allowed")
            .method("PUT")
            .status(405),
        lina("text/plain", lina_ok.clone(), "unsupported_media_type")
            .content_type(Some("text/plain"))
            .status(415),
        lina("no content type", lina_ok.clone(), "unsupported_media_type")
            .content_type(None)
            .status(415),
        lina(
            "over the limit (Content-Length)",
            over.clone(),
            "payload_too_large",
        )
        .status(413),
        lina("over the limit (chunked)", over, "payload_too_large")
            .chunked()
            .status(413),
        lina(
            "Content-Type twice (JSON first)",
            lina_ok.clone(),
            "repeated_header",
        )
        .header("Content-Type", "text/plain"),
        lina(
            "a plain body labelled gzip",
            lina_ok.clone(),
            "unsupported_encoding",
        )
        .header("Content-Encoding", "gzip")
        .status(415),
    ]
}

fn host(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

async fn quarantined(app: &TestApp) -> u32 {
    broker::depth(&app.topology.quarantine_queue()).await
}

/// The gateway still does its job: a valid call of each sender gets 200 and
/// the ops listener answers.
async fn still_serving(app: &TestApp) {
    assert_eq!(app.post_lt(&example("lt/new.json")).await.status(), 200);
    assert_eq!(
        app.post_lina(&example("lina/consent.json")).await.status(),
        200
    );
    let health = app.gateway_ops_get("/healthz").await;
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn every_bad_input_is_refused_with_its_reason_and_nothing_is_published() {
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let cases = cases(app.options.max_body_bytes);
    let mut wrong = Vec::new();
    for case in &cases {
        let answer = exchange(&host(&app), case.bytes()).await;
        if answer.status != case.status || answer.reason() != case.reason {
            wrong.push(format!(
                "{:?} {}: expected {} {}, got {} {:?}",
                case.sender,
                case.what,
                case.status,
                case.reason,
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
    }
    println!(
        "bad inputs: {} cases ({} LT, {} LINA)",
        cases.len(),
        cases
            .iter()
            .filter(|case| case.sender == Sender::Lt)
            .count(),
        cases
            .iter()
            .filter(|case| case.sender == Sender::Lina)
            .count()
    );
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));

    assert_eq!(
        app.depth(WorkQueue::Lt).await,
        0,
        "nothing published for LT"
    );
    assert_eq!(
        app.depth(WorkQueue::Lina).await,
        0,
        "nothing reaches LINA's worker"
    );
    let kept: Vec<&Case> = cases.iter().filter(|case| case.quarantined()).collect();
    assert_eq!(quarantined(&app).await, kept.len() as u32);
    let listing = app.dlq(&["list", "--queue", "quarantine"]).await.unwrap();
    for case in kept {
        assert!(listing.contains(case.reason), "{}: {listing}", case.what);
    }

    still_serving(&app).await;
    assert_eq!(app.depth(WorkQueue::Lt).await, 1);
    assert_eq!(app.depth(WorkQueue::Lina).await, 1);
}

#[tokio::test]
async fn a_huge_string_within_the_body_limit_is_accepted_whole() {
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let huge = "ä".repeat((app.options.max_body_bytes - 1024) / 2);
    let answer = app
        .post_lt(&lt_body(&format!(r#","about":"{huge}""#)))
        .await;
    assert_eq!(answer.status(), 200);
    let answer = app
        .post_lina(&lina_body(&format!(r#","bereich":"{huge}""#)))
        .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(app.depth(WorkQueue::Lt).await, 1);
    assert_eq!(app.depth(WorkQueue::Lina).await, 1);
}

/// A request that never finishes: `sent` goes out at once, `trickled` one
/// byte every 200 ms (a slow-loris keeps a connection alive that way).
struct Slow {
    what: &'static str,
    sent: String,
    trickled: &'static str,
    /// `None`: the head's timeout (actix's bare 408); otherwise the body's.
    reason: Option<&'static str>,
}

fn slow_cases() -> Vec<Slow> {
    let lt_head = format!(
        "POST /webhooks/lt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TEST_TOKEN}\r\nContent-Type: application/json\r\n"
    );
    let lina_head = format!(
        "POST /webhooks/lina/{LINA_SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    );
    let head = |sent: String, what, trickled| Slow {
        what,
        sent,
        trickled,
        reason: None,
    };
    let body = |sent: String, what, trickled| Slow {
        what,
        sent,
        trickled,
        reason: Some("request_timeout"),
    };
    vec![
        head(
            format!("{lt_head}Content-Le"),
            "LT head never completed",
            "",
        ),
        head(lina_head.clone(), "LINA head never completed", ""),
        head(
            "POST /webhooks/lt HTTP/1.1\r\n".into(),
            "LT head trickled",
            "Host: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ),
        body(
            format!("{lt_head}Content-Length: 60\r\n\r\n{{\"mydatashare"),
            "LT body never completed",
            "",
        ),
        body(
            format!("{lina_head}Content-Length: 80\r\n\r\n{{\"webhook\""),
            "LINA body never completed",
            "",
        ),
        body(
            format!("{lt_head}Transfer-Encoding: chunked\r\n\r\n5\r\n{{\"myd\r\n"),
            "LT chunked body never completed",
            "",
        ),
        body(
            format!("{lina_head}Content-Length: 90\r\n\r\n"),
            "LINA body trickled",
            "{\"webhook\":\"48138367-3eba-4772-b2bf",
        ),
    ]
}

/// Sends a slow request; returns its answer and how long after the
/// connection opened the answer came and the connection closed.
async fn send_slow(address: String, slow: &Slow) -> (Option<Answer>, Duration, Option<Duration>) {
    let started = Instant::now();
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sent = slow.sent.clone();
    let trickled = slow.trickled.as_bytes().to_vec();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(sent.as_bytes()).await;
        for byte in trickled {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(&[byte]).await.is_err() {
                break;
            }
        }
        // Never finish the request; hold the connection open.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(writer);
    });
    let answer = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut reader))
        .await
        .ok()
        .flatten();
    let answered = started.elapsed();
    let closed = closed_within(&mut reader, Duration::from_secs(5))
        .await
        .map(|_| started.elapsed());
    writing.abort();
    (answer, answered, closed)
}

/// How long after its start a connection timer of actix-http may fire at
/// the earliest. actix computes each deadline from a clock it refreshes
/// every 500 ms (`actix_http::date`), so a deadline can come up to that much
/// early; in CI, a 1 s timeout once fired after 812 ms and a 1 s keep-alive
/// 730 ms after the answer was read.
fn not_before(timeout: Duration) -> Duration {
    timeout.saturating_sub(Duration::from_millis(500))
}

#[tokio::test]
async fn slow_clients_are_answered_408_and_closed_within_the_timeouts() {
    let timeouts = HttpTimeouts {
        request_head: Duration::from_secs(1),
        request_body: Duration::from_secs(1),
        keep_alive: Duration::from_secs(1),
        client_disconnect: Duration::from_millis(500),
    };
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        http_timeouts: timeouts,
        ..TestOptions::default()
    })
    .await;
    let cases = slow_cases();
    let answers =
        futures_util::future::join_all(cases.iter().map(|slow| send_slow(host(&app), slow))).await;
    println!("slow clients: {} cases", cases.len());
    for (slow, (answer, answered, closed)) in cases.iter().zip(answers) {
        let answer = answer.unwrap_or_else(|| panic!("{}: no answer", slow.what));
        assert_eq!(answer.status, 408, "{}: {answer:?}", slow.what);
        assert_eq!(
            answer.reason(),
            slow.reason.unwrap_or_default(),
            "{}",
            slow.what
        );
        assert!(
            answer
                .head
                .to_ascii_lowercase()
                .contains("connection: close"),
            "{}: {}",
            slow.what,
            answer.head
        );
        // Not before the timeout (the trickle kept it busy), and soon after it.
        assert!(
            answered >= not_before(timeouts.request_head) && answered < Duration::from_millis(2500),
            "{}: answered after {answered:?}",
            slow.what
        );
        let closed = closed.unwrap_or_else(|| panic!("{}: still open", slow.what));
        assert!(
            closed < Duration::from_secs(3),
            "{}: closed after {closed:?}",
            slow.what
        );
    }
    assert_eq!(app.depth(WorkQueue::Lt).await, 0);
    assert_eq!(app.depth(WorkQueue::Lina).await, 0);
    assert_eq!(quarantined(&app).await, 0, "an unfinished call is not kept");
    still_serving(&app).await;
}

#[tokio::test]
async fn a_thousand_idle_connections_neither_block_a_valid_request_nor_stay_open() {
    const IDLE: usize = 1000;
    let timeouts = HttpTimeouts {
        request_head: Duration::from_secs(2),
        request_body: Duration::from_secs(2),
        keep_alive: Duration::from_secs(1),
        client_disconnect: Duration::from_millis(500),
    };
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        http_timeouts: timeouts,
        ..TestOptions::default()
    })
    .await;
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    let mut slowest = Duration::ZERO;
    for _ in 0..IDLE {
        let connecting = Instant::now();
        idle.push(TcpStream::connect(host(&app)).await.unwrap());
        slowest = slowest.max(connecting.elapsed());
    }
    let opening = opened.elapsed();
    // A dropped SYN (a full accept queue) costs a client a 1 s retransmit.
    assert!(
        slowest < Duration::from_millis(500),
        "a connect took {slowest:?}"
    );

    let started = Instant::now();
    assert_eq!(app.post_lt(&example("lt/new.json")).await.status(), 200);
    let valid = started.elapsed();
    assert!(
        valid < Duration::from_secs(1),
        "a valid request took {valid:?}"
    );
    still_serving(&app).await;

    // Every idle connection is closed once the head timeout has passed.
    let closes = futures_util::future::join_all(idle.iter_mut().map(|stream| async {
        closed_within(stream, Duration::from_secs(6))
            .await
            .map(|_| opened.elapsed())
    }))
    .await;
    let open = closes.iter().filter(|closed| closed.is_none()).count();
    let last = closes.iter().flatten().max().copied().unwrap_or_default();
    let first = closes.iter().flatten().min().copied().unwrap_or_default();
    println!(
        "{IDLE} idle connections opened in {opening:?}; a valid request took {valid:?}; \
         closed between {first:?} and {last:?} after opening (head timeout 2 s)"
    );
    assert_eq!(open, 0, "{open} idle connections still open");
    assert!(
        first >= not_before(timeouts.request_head),
        "closed early: {first:?}"
    );
    assert!(
        last < opening + Duration::from_secs(4),
        "closed late: {last:?}"
    );

    // A connection kept alive after a request is closed once idle past keep-alive.
    let mut kept = TcpStream::connect(host(&app)).await.unwrap();
    let body = example("lt/new.json");
    let request = format!(
        "POST /webhooks/lt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TEST_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let sent = Instant::now();
    kept.write_all(request.as_bytes()).await.unwrap();
    let answer = read_answer(&mut kept).await.unwrap();
    assert_eq!(answer.status, 200);
    let answered = sent.elapsed();
    let closed = closed_within(&mut kept, Duration::from_secs(4))
        .await
        .expect("closed after the keep-alive timeout");
    println!(
        "kept-alive connection closed {closed:?} after its answer, {answered:?} after sending (keep-alive 1 s)"
    );
    // Not early: measured from the request, which the server's timer cannot
    // precede (less actix's clock tick, see `not_before`). Not late:
    // measured from the answer.
    let since_sent = answered + closed;
    assert!(
        since_sent >= not_before(timeouts.keep_alive),
        "closed {since_sent:?} after the request"
    );
    assert!(
        closed < Duration::from_millis(2500),
        "closed {closed:?} after the answer"
    );
}
