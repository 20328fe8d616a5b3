//! An LT body as the gateway sees it: arbitrary bytes into `lt::parse` with
//! the default e-mail pointer. Beyond "never panics", an accepted body must
//! be what the contract says and must survive the trip to the worker (which
//! parses the stored profile again).
#![no_main]

use common::senders::json::{Json, contains_nul};
use common::senders::lt::{self, LtPayload, LtStatus, MAX_USER_ID_LEN};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// `INTAKE_LT_EMAIL_POINTER`'s default.
const EMAIL_POINTER: &str = "/email";

fuzz_target!(|body: &[u8]| {
    if let Ok(payload) = lt::parse(body, EMAIL_POINTER) {
        check_accepted(body, &payload);
    }
});

fn check_accepted(body: &[u8], payload: &LtPayload) {
    // Keys are unique, so every JSON parser reads the body the same way.
    // The gateway stores the body without a byte-order mark.
    let plain: Value = serde_json::from_slice(common::senders::json::without_bom(body))
        .expect("accepted bodies are JSON");
    assert_eq!(
        plain,
        payload.profile.to_value(),
        "kept as serde_json reads it"
    );
    assert!(!contains_nul(&payload.profile), "no NUL reaches PostgreSQL");
    // The body hash's input, as it was taken over the parsed `Value`.
    let mut canonical = Vec::new();
    payload.profile.write_canonical(&mut canonical);
    assert_eq!(
        canonical,
        serde_json::to_vec(&plain).expect("a Value serialises"),
        "the canonical form is serde_json's"
    );

    let user_id = &payload.user_id;
    assert!(!user_id.trim().is_empty() && user_id.chars().count() <= MAX_USER_ID_LEN);
    assert_eq!(
        payload
            .profile
            .get("mydatashare_user_id")
            .and_then(Json::as_str),
        Some(payload.user_id.as_str())
    );
    match payload.status {
        LtStatus::Revoked => assert_eq!(payload.email, None),
        LtStatus::New | LtStatus::Updated => {
            let email = payload
                .email
                .as_deref()
                .expect("an application has an e-mail");
            assert!(!email.trim().is_empty());
            assert_eq!(
                payload
                    .profile
                    .pointer(EMAIL_POINTER)
                    .and_then(Json::as_str),
                Some(email)
            );
        }
    }

    // What the worker reads back (the profile re-serialised, as the jsonb
    // column returns it) is accepted as the same payload.
    let stored = serde_json::to_vec(&plain).expect("a Value serialises");
    assert_eq!(lt::parse(&stored, EMAIL_POINTER).as_ref(), Ok(payload));
}
