//! Property tests of the senders' payload rules: whatever bytes arrive,
//! the validators answer (never panic), accept what the contract allows and
//! keep it as sent, and agree with serde_json wherever keys are unique.
#![allow(clippy::unwrap_used)]

use intake_common::senders::json::{self, JsonError};
use intake_common::senders::{lina, lt};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Any text at all: controls, quotes, backslashes, NUL, astral characters.
fn any_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..10).prop_map(String::from_iter)
}

/// A JSON number's text, in every form the grammar allows.
fn number_text() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?"
}

/// Any JSON document whose objects repeat no key.
fn document() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number_text().prop_map(|text| Value::Number(text.parse().unwrap())),
        any_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(any_text(), inner, 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// The same document as another sender might write it: every non-ASCII
/// character and every `/` escaped (both occur only inside strings).
fn escaped(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode but NUL (which PostgreSQL cannot store and is refused on purpose).
    "[^\u{0}]{0,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_get_an_answer_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = lt::parse(&bytes, "/email");
        let _ = lina::parse(&bytes);
        let _ = json::parse(&bytes);
    }

    #[test]
    fn a_valid_lt_application_is_accepted_and_kept_whole(
        id in "[^\u{0}]{1,60}".prop_filter("not blank", |id| !id.trim().is_empty()),
        email in "[a-z0-9.]{1,20}@[a-z]{1,10}\\.fi",
        extra in text(),
        number in any::<i64>(),
    ) {
        let body = json!({"mydatashare_user_id": id, "email": email, "free_text": extra, "n": number});
        let text = body.to_string();
        let parsed = lt::parse(text.as_bytes(), "/email").unwrap();
        prop_assert_eq!(parsed.user_id, id);
        prop_assert_eq!(parsed.email, Some(email));
        prop_assert_eq!(parsed.profile.to_value(), body);
    }

    #[test]
    fn a_lina_consent_with_uuids_is_accepted_whatever_its_names(
        webhook in any::<u128>(),
        user in any::<u128>(),
        first in text(),
        last in text(),
    ) {
        let (webhook, user) = (uuid::Uuid::from_u128(webhook), uuid::Uuid::from_u128(user));
        let body = json!({"webhook": webhook, "userUuid": user, "userVorname": first, "userName": last});
        let text = body.to_string();
        match lina::parse(text.as_bytes()).unwrap() {
            lina::LinaPayload::Consent(consent) => {
                prop_assert_eq!(consent.webhook, webhook);
                prop_assert_eq!(consent.first_name, Some(first));
                prop_assert_eq!(consent.last_name, Some(last));
                prop_assert_eq!(consent.data.to_value(), body);
            }
            lina::LinaPayload::Withdrawal { .. } => prop_assert!(false, "a consent"),
        }
    }

    #[test]
    fn json_parsing_agrees_with_serde_json_when_keys_are_unique(
        keys in proptest::collection::btree_set("[a-z]{1,8}", 0..8),
        value in any::<i32>(),
    ) {
        let object: serde_json::Map<String, Value> = keys.iter().map(|key| (key.clone(), json!(value))).collect();
        let text = Value::Object(object.clone()).to_string();
        prop_assert_eq!(json::parse(text.as_bytes()).unwrap().to_value(), Value::Object(object));
    }

    #[test]
    fn a_repeated_key_is_always_refused(key in "[a-z]{1,8}", first in any::<i32>(), second in any::<i32>()) {
        let text = format!(r#"{{"{key}":{first},"{key}":{second}}}"#);
        prop_assert_eq!(json::parse(text.as_bytes()), Err(JsonError::DuplicateKey));
    }

    /// The body hash is taken over `Json::write_canonical`; before, it was
    /// taken over serde_json's serialisation of the parsed `Value`. They
    /// must agree byte for byte, or stored resend hashes and tombstones
    /// would stop recognising the bodies they were taken from.
    #[test]
    fn the_canonical_form_is_serde_jsons_byte_for_byte(
        value in document(),
        form in 0..3u8,
    ) {
        let text = match form {
            0 => value.to_string(),
            1 => serde_json::to_string_pretty(&value).unwrap(),
            _ => escaped(&value.to_string()),
        };
        let parsed = json::parse(text.as_bytes()).unwrap();
        let mut canonical = Vec::new();
        parsed.write_canonical(&mut canonical);
        prop_assert_eq!(
            String::from_utf8(canonical).unwrap(),
            String::from_utf8(serde_json::to_vec(&value).unwrap()).unwrap()
        );
        prop_assert_eq!(parsed.to_value(), value);
    }
}
