//! Subjects: the people events are about, known to the database, logs and
//! metrics only by a keyed hash (`INTAKE_SUBJECT_HASH_KEY`), so that an
//! erased person leaves nothing that leads back to them.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::senders::json::Json;

/// A subject's keyed hash: what `subject_state` and `erasure_log` store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubjectKey(pub [u8; 32]);

impl SubjectKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<SubjectKey> {
        bytes.try_into().ok().map(SubjectKey)
    }
}

/// Logs show the first 16 hex digits: enough to follow one subject through
/// the logs, nothing to find the person by.
impl std::fmt::Display for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubjectKey({self})")
    }
}

/// A keyed hash of a body, to recognise a resend of one already applied.
pub type BodyHash = [u8; 32];

/// Shortest `INTAKE_SUBJECT_HASH_KEY` accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

#[derive(Clone)]
pub struct SubjectHasher {
    key: SecretString,
}

impl SubjectHasher {
    pub fn new(key: SecretString) -> Self {
        SubjectHasher { key }
    }

    /// An LT applicant, by `mydatashare_user_id`.
    pub fn lt(&self, user_id: &str) -> SubjectKey {
        SubjectKey(self.mac(&[b"lt\0", user_id.as_bytes()]))
    }

    /// A LINA employee: store (webhook uuid) and user uuid, case-folded.
    pub fn lina(&self, webhook: &str, user: &str) -> SubjectKey {
        let webhook = webhook.to_ascii_lowercase();
        let user = user.to_ascii_lowercase();
        SubjectKey(self.mac(&[b"lina\0", webhook.as_bytes(), b"\0", user.as_bytes()]))
    }

    /// A body's hash, over its canonical form (keys sorted, no whitespace),
    /// so a resend that only differs in formatting is still recognised.
    pub fn body(&self, body: &Json<'_>) -> BodyHash {
        let mut canonical = Vec::with_capacity(1024);
        body.write_canonical(&mut canonical);
        self.mac(&[b"body\0", &canonical])
    }

    /// The key's fingerprint: a keyed hash of a fixed text, which the
    /// database keeps so that a worker with another key is refused. It
    /// tells nothing about the key itself.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.mac(&[b"fingerprint\0intake subject hash key"])
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length; the settings check the minimum.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
        else {
            return [0; 32];
        };
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed parse should fail loudly
mod tests {
    use super::*;
    use crate::senders::json::parse;
    use serde_json::Value;

    fn hasher(key: &str) -> SubjectHasher {
        SubjectHasher::new(SecretString::from(key.to_owned()))
    }

    /// The body hash as it was taken before `Json`: over serde_json's
    /// serialisation of the parsed `Value`.
    fn hash_as_before(hasher: &SubjectHasher, body: &Value) -> BodyHash {
        hasher.mac(&[b"body\0", &serde_json::to_vec(body).unwrap()])
    }

    /// The body as the hash saw it before numbers were kept as sent: every
    /// number read as an i64, u64 or f64 and printed back.
    fn numbers_as_before(value: &Value) -> Value {
        match value {
            Value::Number(number) => {
                let text = number.as_str();
                let before = text
                    .parse::<i64>()
                    .map(serde_json::Number::from)
                    .or_else(|_| text.parse::<u64>().map(serde_json::Number::from))
                    .ok()
                    .or_else(|| {
                        text.parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                    });
                before.map_or(Value::Null, Value::Number)
            }
            Value::Array(items) => Value::Array(items.iter().map(numbers_as_before).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(key, value)| (key.clone(), numbers_as_before(value)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    proptest::proptest! {
        /// Keeping numbers as sent changes no body hash whose numbers read
        /// back as they were written before (every body serde_json itself
        /// wrote, and every integer), so tombstones and resend hashes
        /// already stored still match; only bodies whose numbers were
        /// rounded or reformatted (1.10, 1e2, 18446744073709551616) hash
        /// differently now, as their stored form differs too.
        #[test]
        fn the_body_hash_is_unchanged_for_numbers_that_round_trip(
            integers in proptest::collection::vec(proptest::num::i64::ANY, 0..4),
            floats in proptest::collection::vec(proptest::num::f64::NORMAL, 0..4),
            big in proptest::num::u64::ANY,
        ) {
            let hasher = hasher("a test key of sixteen bytes");
            let body = serde_json::json!({
                "user": "u-1",
                "integers": integers,
                "floats": floats,
                "big": big,
                "nested": {"x": [1.5, -0.25, 1e-7, 3e300]},
            });
            // As a sender would send it: serde_json's own text.
            let text = body.to_string();
            let sent = parse(text.as_bytes()).unwrap();
            proptest::prop_assert_eq!(
                hasher.body(&sent),
                hash_as_before(&hasher, &numbers_as_before(&sent.to_value()))
            );
        }
    }

    #[test]
    fn numbers_that_do_not_round_trip_hash_as_sent() {
        let hasher = hasher("a test key of sixteen bytes");
        for text in ["1.10", "1e2", "18446744073709551616", "-0"] {
            let text = format!("[{text}]");
            let sent = parse(text.as_bytes()).unwrap();
            assert_ne!(
                hasher.body(&sent),
                hash_as_before(&hasher, &numbers_as_before(&sent.to_value())),
                "{text}"
            );
        }
    }

    #[test]
    fn the_same_subject_hashes_alike_and_sources_apart() {
        let h = hasher("a-key-of-sixteen-bytes");
        assert_eq!(h.lt("u1"), h.lt("u1"));
        assert_ne!(h.lt("u1"), h.lt("u2"));
        assert_eq!(h.lina("ABC", "Def"), h.lina("abc", "def"));
        assert_ne!(h.lina("a", "b"), h.lt("a\0b"));
    }

    #[test]
    fn another_key_gives_other_hashes() {
        assert_ne!(
            hasher("key-one-sixteen!!").lt("u1"),
            hasher("key-two-sixteen!!").lt("u1")
        );
    }

    #[test]
    fn formatting_does_not_change_a_body_hash() {
        let h = hasher("a-key-of-sixteen-bytes");
        let one = parse(br#"{"b": 1, "a": [1, 2]}"#).unwrap();
        let two = parse(br#"{"a":[1,2],"b":1}"#).unwrap();
        let other = parse(br#"{"a":[2,1],"b":1}"#).unwrap();
        assert_eq!(h.body(&one), h.body(&two));
        assert_ne!(h.body(&one), h.body(&other));
    }

    #[test]
    fn the_fingerprint_tells_keys_apart_and_no_subject_hashes_to_it() {
        let one = hasher("key-one-sixteen!!");
        assert_eq!(one.fingerprint(), hasher("key-one-sixteen!!").fingerprint());
        assert_ne!(one.fingerprint(), hasher("key-two-sixteen!!").fingerprint());
        assert_ne!(one.fingerprint(), one.lt("fingerprint").0);
    }

    #[test]
    fn logs_show_a_short_prefix() {
        assert_eq!(
            hasher("a-key-of-sixteen-bytes").lt("u1").to_string().len(),
            16
        );
    }
}
