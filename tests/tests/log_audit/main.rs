//! No personal data or secret in the logs (DESIGN.md, invariant 6).
//!
//! `scripts/test` runs this last, with `INTAKE_TEST_LOG_DIR` holding the logs
//! of the whole run (every test process and every binary the tests started);
//! run alone, it audits the logs of its own workload.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use intake_tests::app::{TEST_SUBJECT_HASH_KEY, TEST_TOKEN};
use intake_tests::{eventually, example, personal_strings, spawn_app};

const EXAMPLES: [&str; 7] = [
    "lt/new.json",
    "lt/updated.json",
    "lt/revoked.json",
    "lt/new-en-minimal.json",
    "lina/consent.json",
    "lina/consent-umlaut.json",
    "lina/delete.json",
];

#[tokio::test]
async fn the_logs_of_the_whole_run_hold_no_personal_data_or_secrets() {
    let own_dir = tempdir();
    let dir = intake_tests::logs::dir().unwrap_or_else(|| own_dir.clone());
    intake_tests::logs::init_into(&dir);
    produce_logs().await;

    let logs = read_logs(&dir);
    let lines = logs.lines().count();
    assert!(
        lines >= 20,
        "only {lines} log lines were captured in {}",
        dir.display()
    );
    assert!(
        logs.contains(r#""message":"Event processed.""#) && logs.contains(r#""subject":"#),
        "the per-event log lines were captured"
    );
    for forbidden in forbidden_strings() {
        assert!(!logs.contains(&forbidden), "the logs contain {forbidden:?}");
    }
    if let Some(address) = find_email_address(&logs) {
        panic!("the logs contain an e-mail address: {address}");
    }
    // The bad-input and HTTP-edge tests send malformed heads: actix's own
    // ERROR line for each is counted and written at debug instead.
    let dispatcher_errors = logs
        .lines()
        .filter(|line| {
            line.contains(r#""level":"ERROR""#) && line.contains("actix_http::h1::dispatcher")
        })
        .count();
    assert_eq!(
        dispatcher_errors, 0,
        "actix's refusals reached the error log"
    );
    // A message the broker returned (the consumer-cancel test makes some):
    // lapin prints it whole, body bytes and headers, which no filter of
    // strings would recognise.
    assert!(
        !logs.contains("lapin::returned_messages") && !logs.contains("BasicReturnMessage"),
        "a returned message was logged whole"
    );
    println!("audited {lines} log lines in {}", dir.display());
}

/// Everything the fixtures carry that identifies a person, and every secret.
fn forbidden_strings() -> Vec<String> {
    let mut forbidden: Vec<String> = EXAMPLES
        .iter()
        .flat_map(|path| personal_strings(&serde_json::from_str(&example(path)).unwrap()))
        .filter(|value| !is_uuid(value))
        .collect();
    forbidden.extend([
        TEST_TOKEN.to_owned(),
        "test-token-next".to_owned(),
        TEST_SUBJECT_HASH_KEY.to_owned(),
    ]);
    forbidden
}

/// Ids are kept out of the forbidden list only where they are LINA's store
/// and user uuids, which the worker's logs never print either, but which
/// could legitimately equal an event id by shape; LT's user id is checked.
fn is_uuid(value: &str) -> bool {
    uuid::Uuid::parse_str(value).is_ok() && !value.starts_with("7f3c2a9e")
}

/// A workload that goes through every logging path: accepted, refused,
/// applied, erased, duplicate, dead-lettered.
async fn produce_logs() {
    let app = spawn_app().await;
    for path in [
        "lt/new.json",
        "lt/updated.json",
        "lt/new.json",
        "lt/revoked.json",
        "lt/new-en-minimal.json",
    ] {
        let response = app.post_lt_until_accepted(&example(path)).await;
        assert_eq!(response.status(), 200);
    }
    app.post_lt(r#"{"mydatashare_user_id":"x","email":"refused@example.fi","pad":"\u0000"}"#)
        .await;
    app.lt_request()
        .header("Authorization", "Bearer wrong-secret-token")
        .send()
        .await
        .unwrap();
    app.db
        .batch_execute(
            "ALTER TABLE lt_application ADD CONSTRAINT no_en CHECK (profile->>'language' <> 'en')",
        )
        .await
        .unwrap();
    let stats = app.worker.as_ref().unwrap().stats.clone();
    eventually(
        "the workload is processed",
        Duration::from_secs(20),
        || async {
            let settled =
                stats.events_applied() + stats.events_duplicate() + stats.events_dead_lettered();
            (settled >= 5).then_some(())
        },
    )
    .await;
}

fn read_logs(dir: &Path) -> String {
    let mut logs = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        logs.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        logs.push('\n');
    }
    logs
}

/// The first `local@domain.tld` in `text`, if any.
fn find_email_address(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices('@') {
        let local_ok = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
        let domain_ok = |b: u8| b.is_ascii_alphanumeric() || b".-".contains(&b);
        let start = (0..at).rev().take_while(|&i| local_ok(bytes[i])).last()?;
        let end = (at + 1..bytes.len())
            .take_while(|&i| domain_ok(bytes[i]))
            .last()?
            + 1;
        let domain = &text[at + 1..end];
        let tld = domain.rsplit('.').next().unwrap_or("");
        if domain.contains('.') && tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()) {
            return Some(text[start..end].to_owned());
        }
    }
    None
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "intake-log-audit-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_address_finder_finds_addresses_and_only_addresses() {
    assert_eq!(
        find_email_address("x a.b@example.fi y").as_deref(),
        Some("a.b@example.fi")
    );
    assert_eq!(
        find_email_address("amqp://guest:guest@127.0.0.1:5672"),
        None
    );
    assert_eq!(find_email_address("no at sign"), None);
}
