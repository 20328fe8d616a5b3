//! JSON checks every sender's payload goes through.

use serde_json::Value;

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
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_nul_in_nested_values_and_keys() {
        assert!(contains_nul(&json!({"a": [{"b": "x\u{0}y"}]})));
        assert!(contains_nul(&json!({"a\u{0}": 1})));
        assert!(!contains_nul(&json!({"a": ["äö", 1, null, true]})));
    }
}
