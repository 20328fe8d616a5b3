//! JSON checks every sender's payload goes through.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonError {
    Invalid,
    /// An object names the same key twice: which value counts would differ
    /// between parsers (ours keeps the last, another may keep the first), so
    /// such a body is refused rather than interpreted.
    DuplicateKey,
}

/// The UTF-8 byte-order mark some platforms put before a JSON text.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `body` without a leading UTF-8 byte-order mark: RFC 8259 §8.1 lets a
/// parser ignore one, and LT, which gives up after a few resends, would lose
/// an application over it. The gateway stores the body without it too.
pub fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(BOM).unwrap_or(body)
}

/// Parses JSON (a leading byte-order mark ignored), refusing duplicate keys
/// at any depth. Nesting is bounded by serde_json's recursion limit: at
/// most `MAX_NESTING` arrays and objects inside each other (the document
/// itself counts), one more is `Invalid`.
pub fn parse(body: &[u8]) -> Result<Value, JsonError> {
    match serde_json::from_slice::<UniqueKeys>(without_bom(body)) {
        Ok(UniqueKeys(value)) => Ok(value),
        Err(error) if error.to_string().starts_with(DUPLICATE) => Err(JsonError::DuplicateKey),
        Err(_) => Err(JsonError::Invalid),
    }
}

const DUPLICATE: &str = "duplicate key";

/// serde_json's key for a number kept as text (`arbitrary_precision`).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// The deepest nesting accepted (serde_json refuses its 128th level).
pub const MAX_NESTING: usize = 127;

/// A JSON value whose objects never repeat a key.
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // With `arbitrary_precision`, serde_json hands a number over as a
            // one-entry map holding its text (as its own `Value` reads it).
            if fields.is_empty() && key == NUMBER_TOKEN {
                let text: String = map.next_value()?;
                return text
                    .parse::<Number>()
                    .map(Value::Number)
                    .map_err(de::Error::custom);
            }
            let UniqueKeys(value) = map.next_value()?;
            if fields.insert(key, value).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(fields))
    }
}

/// Whether a number is beyond what PostgreSQL's `jsonb` (a `numeric`) can
/// hold: more than 131,072 digits before the decimal point or more than
/// 16,383 after it, exponent applied (`1e131072`, `1e-16384`). The worker
/// would be refused such a payload forever, so the gateway refuses it.
pub fn contains_unstorable_number(value: &Value) -> bool {
    match value {
        Value::Number(number) => !fits_numeric(number.as_str()),
        Value::Array(items) => items.iter().any(contains_unstorable_number),
        Value::Object(fields) => fields.values().any(contains_unstorable_number),
        Value::Null | Value::Bool(_) | Value::String(_) => false,
    }
}

/// PostgreSQL's `numeric` input limits, for a JSON number's text.
fn fits_numeric(text: &str) -> bool {
    const MAX_BEFORE_POINT: i64 = 131_072;
    const MAX_AFTER_POINT: i64 = 16_383;
    let text = text.trim_start_matches('-');
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, "0"),
    };
    let Ok(exponent) = exponent.trim_start_matches('+').parse::<i64>() else {
        return false; // an exponent beyond i64 is beyond numeric too
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = || integer.bytes().chain(fraction.bytes());
    let after_point = (fraction.len() as i64).saturating_sub(exponent).max(0);
    let before_point = match digits().position(|digit| digit != b'0') {
        Some(first) => (integer.len() as i64)
            .saturating_add(exponent)
            .saturating_sub(first as i64),
        None => 0,
    };
    after_point <= MAX_AFTER_POINT && before_point <= MAX_BEFORE_POINT
}

/// PostgreSQL cannot store U+0000 in `text` or `jsonb`: a payload carrying it
/// would fail forever in the worker, so the gateway refuses it up front.
pub fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || contains_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed parse should fail loudly
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_kept_as_sent() {
        for text in [
            "18446744073709551616",
            "1.10",
            "-0",
            "1e-400",
            "1e+2",
            "0.3333333333333333333333333333333333333333",
        ] {
            let value = parse(format!("[{text}]").as_bytes()).unwrap();
            assert_eq!(serde_json::to_string(&value).unwrap(), format!("[{text}]"));
        }
    }

    #[test]
    fn numbers_beyond_postgresql_numeric_are_found() {
        let fits = |text: &str| !contains_unstorable_number(&parse(text.as_bytes()).unwrap());
        for text in [
            "1e-16383",
            "1e131071",
            "9e131071",
            "1.5e-16382",
            "0",
            "0.0",
            "-12.5e3",
        ] {
            assert!(fits(text), "{text} fits");
        }
        for text in [
            "1e-16384",
            "1e131072",
            "1.55e-16382",
            "0.1e-16383",
            "1e99999999999999999999",
            "0.05e-9223372036854775808",
        ] {
            assert!(!fits(text), "{text} does not fit");
        }
        assert!(!fits(r#"{"a":[1,{"b":1e200000}]}"#));
    }

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn nesting_up_to_the_limit_is_accepted_and_one_more_is_refused() {
        assert!(parse(nested(MAX_NESTING).as_bytes()).is_ok());
        assert_eq!(
            parse(nested(MAX_NESTING + 1).as_bytes()),
            Err(JsonError::Invalid)
        );
        let objects = |depth: usize| format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
        assert!(parse(objects(MAX_NESTING).as_bytes()).is_ok());
        assert_eq!(
            parse(objects(MAX_NESTING + 1).as_bytes()),
            Err(JsonError::Invalid)
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored_and_only_there() {
        assert_eq!(parse(b"\xEF\xBB\xBF{\"a\":1}"), Ok(json!({"a": 1})));
        assert_eq!(without_bom(b"\xEF\xBB\xBF{}"), b"{}");
        assert_eq!(without_bom(b"{}"), b"{}");
        assert_eq!(
            parse(b"\xEF\xBB\xBF\xEF\xBB\xBF{}"),
            Err(JsonError::Invalid)
        );
        assert_eq!(parse(b"{\"a\":1}\xEF\xBB\xBF"), Err(JsonError::Invalid));
    }

    #[test]
    fn finds_nul_in_nested_values_and_keys() {
        assert!(contains_nul(&json!({"a": [{"b": "x\u{0}y"}]})));
        assert!(contains_nul(&json!({"a\u{0}": 1})));
        assert!(!contains_nul(&json!({"a": ["äö", 1, null, true]})));
    }

    /// Found by the fuzz targets (fuzz/): serde_json's default float parsing
    /// may miss the nearest f64 by one step, so a profile stored (written
    /// back as JSON) and read again held a different number than the first
    /// parse. With `float_roundtrip` every number parses to the nearest f64,
    /// as Rust's own parser does, and writing and re-reading is a fixed point.
    #[test]
    fn numbers_parse_to_the_nearest_f64_and_survive_a_round_trip() {
        let long = format!("{}{}", "9".repeat(17), "0".repeat(73));
        for literal in [
            "1e90",
            "28888888888888888888888888888888888888888888",
            &long,
            "0.30000000000000004",
            "2.2250738585072011e-308",
        ] {
            let body = format!(r#"{{"n":{literal}}}"#);
            let parsed = parse(body.as_bytes()).expect("valid JSON");
            let nearest: f64 = literal.parse().expect("a number");
            assert_eq!(parsed["n"].as_f64(), Some(nearest), "{literal}");
            let written = serde_json::to_vec(&parsed).expect("serialises");
            assert_eq!(parse(&written), Ok(parsed), "{literal} round trip");
        }
    }

    #[test]
    fn parses_like_serde_json_but_refuses_duplicate_keys_at_any_depth() {
        let body = br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"\u00e4"}"#;
        assert_eq!(
            parse(body),
            Ok(serde_json::from_slice(body).unwrap_or_default())
        );
        assert_eq!(parse(br#"{"a":1,"a":2}"#), Err(JsonError::DuplicateKey));
        assert_eq!(
            parse(br#"{"a":[{"b":1,"b":1}]}"#),
            Err(JsonError::DuplicateKey)
        );
        assert_eq!(parse(b"{"), Err(JsonError::Invalid));
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(parse(deep.as_bytes()), Err(JsonError::Invalid));
    }
}
