//! Property tests of the senders' payload rules: whatever bytes arrive,
//! the validators answer (never panic), accept what the contract allows and
//! keep it as sent, and agree with serde_json wherever keys are unique.
#![allow(clippy::unwrap_used)]

use intake_common::senders::json::{self, JsonError};
use intake_common::senders::{lina, lt};
use proptest::prelude::*;
use serde_json::{Value, json};

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
        let parsed = lt::parse(body.to_string().as_bytes(), "/email").unwrap();
        prop_assert_eq!(parsed.user_id, id);
        prop_assert_eq!(parsed.email, Some(email));
        prop_assert_eq!(parsed.profile, body);
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
        match lina::parse(body.to_string().as_bytes()).unwrap() {
            lina::LinaPayload::Consent(consent) => {
                prop_assert_eq!(consent.webhook, webhook);
                prop_assert_eq!(consent.first_name, Some(first));
                prop_assert_eq!(consent.last_name, Some(last));
                prop_assert_eq!(consent.data, body);
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
        prop_assert_eq!(json::parse(text.as_bytes()).unwrap(), Value::Object(object));
    }

    #[test]
    fn a_repeated_key_is_always_refused(key in "[a-z]{1,8}", first in any::<i32>(), second in any::<i32>()) {
        let text = format!(r#"{{"{key}":{first},"{key}":{second}}}"#);
        prop_assert_eq!(json::parse(text.as_bytes()), Err(JsonError::DuplicateKey));
    }
}
