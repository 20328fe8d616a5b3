//! A LINA body as the gateway sees it: arbitrary bytes into `lina::read_call`,
//! the one call the route makes. Beyond "never panics": it agrees with
//! `lina::parse` (the worker's), for an accepted body its hints (which
//! decide the event kind and the tenant) agree with the parse, and the body
//! survives the trip to the worker.
#![no_main]

use common::senders::json::{self, contains_nul};
use common::senders::lina::{self, LinaPayload};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let call = lina::read_call(body);
    assert_eq!(
        call.payload,
        lina::parse(body),
        "the gateway and the worker agree"
    );
    let (withdrawal, webhook) = (call.withdrawal, call.webhook);
    if let Ok(payload) = call.payload {
        assert_eq!(
            withdrawal,
            payload.is_withdrawal(),
            "the kind matches the parse"
        );
        assert_eq!(
            webhook,
            Some(payload.webhook()),
            "the tenant matches the parse"
        );
        check_accepted(body, &payload);
    }
});

fn check_accepted(body: &[u8], payload: &LinaPayload) {
    // The gateway stores the body without a byte-order mark.
    let plain: Value = serde_json::from_slice(common::senders::json::without_bom(body))
        .expect("accepted bodies are JSON");
    let parsed = json::parse(body).expect("accepted bodies are JSON");
    assert!(!contains_nul(&parsed), "no NUL reaches PostgreSQL");
    // Any form `Uuid::parse_str` takes (braces, URN, upper case) names the same person.
    let named = |field: &str| plain[field].as_str().and_then(|text| text.parse().ok());
    assert_eq!(named("userUuid"), Some(payload.user()));
    assert_eq!(named("webhook"), Some(payload.webhook()));
    if let LinaPayload::Consent(consent) = payload {
        assert_eq!(
            plain,
            consent.data.to_value(),
            "kept as serde_json reads it"
        );
    }
    // The worker parses the stored body again and must see the same call.
    let stored = serde_json::to_vec(&plain).expect("a Value serialises");
    assert_eq!(lina::parse(&stored).as_ref(), Ok(payload));
}
