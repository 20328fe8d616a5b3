//! A sender's body sent to PostgreSQL as `jsonb` in the form it arrived:
//! jsonb's binary input is a version byte (1) followed by the JSON text,
//! which PostgreSQL parses as it would a literal. Serialising the parsed
//! `serde_json::Value` again cost the worker a tenth of its CPU per event
//! (BENCHMARKS.md, issue 19) and gives PostgreSQL nothing it does not
//! already get: jsonb keeps numbers as written either way (1.10 stays 1.10)
//! and drops formatting and key order either way.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// The binary format's version byte, the only one PostgreSQL knows.
const JSONB_VERSION: u8 = 1;

/// JSON text that a sender's parser has accepted (valid UTF-8, valid JSON,
/// no `\u0000`, no number jsonb cannot hold): PostgreSQL refuses anything
/// else, and the batch then sets the event aside like any refused row.
/// `\u` escapes of non-ASCII characters need a UTF8 database (README).
#[derive(Clone, Copy)]
pub struct JsonText<'a>(&'a [u8]);

impl<'a> JsonText<'a> {
    /// A sender's body as the parsers read it: without a leading UTF-8
    /// byte-order mark, which they ignore (RFC 8259 §8.1) and jsonb refuses.
    /// A call quarantined with one before the gateway stripped it is
    /// replayed with it.
    pub fn of_body(body: &'a [u8]) -> Self {
        JsonText(common::senders::json::without_bom(body))
    }
}

impl std::fmt::Debug for JsonText<'_> {
    // Personal data: only its size.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonText({} bytes)", self.0.len())
    }
}

impl ToSql for JsonText<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.reserve(1 + self.0.len());
        out.put_u8(JSONB_VERSION);
        out.put_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_follows_the_version_byte_unchanged() {
        let mut out = BytesMut::new();
        let text = br#"{"a": 1.10}"#;
        assert!(
            JsonText::of_body(text)
                .to_sql(&Type::JSONB, &mut out)
                .is_ok()
        );
        assert_eq!(out[0], 1);
        assert_eq!(&out[1..], text);
        assert!(
            !JsonText::accepts(&Type::JSON),
            "json's binary form has no version byte"
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_not_sent() {
        let mut out = BytesMut::new();
        let body = b"\xEF\xBB\xBF{\"a\": 1}";
        assert!(
            JsonText::of_body(body)
                .to_sql(&Type::JSONB, &mut out)
                .is_ok()
        );
        assert_eq!(&out[1..], b"{\"a\": 1}");
    }
}
