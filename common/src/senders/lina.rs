//! LINA's `personalData` webhook: a consent carries the employee's master
//! data, a withdrawal is `{"delete": true, webhook, userUuid}`. `webhook`
//! (the store) and `userUuid` must be UUIDs; the named fields, where present,
//! must be strings; everything is kept as sent, unknown fields included.

use serde_json::Value;
use uuid::Uuid;

use super::json::{self, Json, JsonError, contains_nul, contains_unstorable_number};

/// A validated LINA call, borrowing from the body it was read from.
#[derive(Clone, Debug, PartialEq)]
pub enum LinaPayload<'a> {
    Consent(LinaConsent<'a>),
    Withdrawal { webhook: Uuid, user: Uuid },
}

#[derive(Clone, Debug, PartialEq)]
pub struct LinaConsent<'a> {
    pub webhook: Uuid,
    pub user: Uuid,
    /// `userVorname`
    pub first_name: Option<String>,
    /// `userName`
    pub last_name: Option<String>,
    /// `userEmail`
    pub email: Option<String>,
    /// `bereich`: department or area
    pub bereich: Option<String>,
    /// The whole body as sent.
    pub data: Json<'a>,
}

impl LinaPayload<'_> {
    pub fn webhook(&self) -> Uuid {
        match self {
            LinaPayload::Consent(consent) => consent.webhook,
            LinaPayload::Withdrawal { webhook, .. } => *webhook,
        }
    }

    pub fn user(&self) -> Uuid {
        match self {
            LinaPayload::Consent(consent) => consent.user,
            LinaPayload::Withdrawal { user, .. } => *user,
        }
    }

    pub fn is_withdrawal(&self) -> bool {
        matches!(self, LinaPayload::Withdrawal { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinaPayloadError {
    #[error("the body is not valid JSON")]
    InvalidJson,
    #[error("an object in the body names the same key twice")]
    DuplicateKey,
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("`webhook` must be a UUID")]
    InvalidWebhook,
    #[error("`userUuid` must be a UUID")]
    InvalidUserUuid,
    #[error("`delete` must be a boolean")]
    InvalidDelete,
    #[error("`userVorname`, `userName`, `userEmail` and `bereich` must be strings where present")]
    InvalidField,
    #[error("the body contains a NUL character, which cannot be stored")]
    UnstorableText,
    #[error(
        "a number in the body is beyond what can be stored (131,072 digits before the point, 16,383 after)"
    )]
    UnstorableNumber,
}

impl LinaPayloadError {
    /// The machine-readable reason given to LINA and kept with the quarantined call.
    pub fn code(self) -> &'static str {
        match self {
            LinaPayloadError::InvalidJson => "invalid_json",
            LinaPayloadError::DuplicateKey => "duplicate_key",
            LinaPayloadError::NotAnObject => "not_an_object",
            LinaPayloadError::InvalidWebhook => "invalid_webhook",
            LinaPayloadError::InvalidUserUuid => "invalid_user_uuid",
            LinaPayloadError::InvalidDelete => "invalid_delete",
            LinaPayloadError::InvalidField => "invalid_field",
            LinaPayloadError::UnstorableText => "unstorable_text",
            LinaPayloadError::UnstorableNumber => "unstorable_number",
        }
    }
}

const NAMED_FIELDS: [&str; 4] = ["userVorname", "userName", "userEmail", "bereich"];

pub fn parse(body: &[u8]) -> Result<LinaPayload<'_>, LinaPayloadError> {
    validate(json_value(body)?)
}

/// A call as the gateway sees it, its body parsed once: what it is meant
/// as and which store it names (kept with a quarantined copy too, so a
/// replay reaches the right job), and whether it is valid.
pub struct LinaCall<'a> {
    pub withdrawal: bool,
    pub webhook: Option<Uuid>,
    pub payload: Result<LinaPayload<'a>, LinaPayloadError>,
}

pub fn read_call(body: &[u8]) -> LinaCall<'_> {
    let (hints, payload) = match json_value(body) {
        Ok(json) => (hints(&json), validate(json)),
        // Not JSON we accept (a duplicate key, say): a lenient reading gives
        // the hints for the quarantined copy, nothing more.
        Err(error) => (
            serde_json::from_slice::<Value>(body)
                .map(|value| lenient_hints(&value))
                .unwrap_or_default(),
            Err(error),
        ),
    };
    LinaCall {
        withdrawal: hints.0,
        webhook: hints.1,
        payload,
    }
}

/// Whether a call is meant as a withdrawal, and the store it names.
fn hints(json: &Json<'_>) -> (bool, Option<Uuid>) {
    hints_from(
        json.get("delete").and_then(Json::as_bool),
        json.get("webhook").and_then(Json::as_str),
    )
}

/// The same hints from a body read leniently (a refused one).
fn lenient_hints(value: &Value) -> (bool, Option<Uuid>) {
    hints_from(
        value.get("delete").and_then(Value::as_bool),
        value.get("webhook").and_then(Value::as_str),
    )
}

/// The hints' rule, whichever way the body was read: a withdrawal only
/// when `delete` is `true`, the store only when `webhook` is a UUID.
fn hints_from(delete: Option<bool>, webhook: Option<&str>) -> (bool, Option<Uuid>) {
    (delete.unwrap_or(false), uuid_field(webhook))
}

fn json_value(body: &[u8]) -> Result<Json<'_>, LinaPayloadError> {
    json::parse(body).map_err(|error| match error {
        JsonError::Invalid => LinaPayloadError::InvalidJson,
        JsonError::DuplicateKey => LinaPayloadError::DuplicateKey,
    })
}

fn validate(data: Json<'_>) -> Result<LinaPayload<'_>, LinaPayloadError> {
    if !data.is_object() {
        return Err(LinaPayloadError::NotAnObject);
    }
    let field = |name: &str| data.get(name);
    let webhook = uuid_field(field("webhook").and_then(Json::as_str))
        .ok_or(LinaPayloadError::InvalidWebhook)?;
    let user = uuid_field(field("userUuid").and_then(Json::as_str))
        .ok_or(LinaPayloadError::InvalidUserUuid)?;
    if contains_nul(&data) {
        return Err(LinaPayloadError::UnstorableText);
    }
    if contains_unstorable_number(&data) {
        return Err(LinaPayloadError::UnstorableNumber);
    }
    let delete = match field("delete") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(delete)) => *delete,
        Some(_) => return Err(LinaPayloadError::InvalidDelete),
    };
    if delete {
        return Ok(LinaPayload::Withdrawal { webhook, user });
    }
    let text = |name: &str| -> Result<Option<String>, LinaPayloadError> {
        match field(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(text)) => Ok(Some(text.to_string())),
            Some(_) => Err(LinaPayloadError::InvalidField),
        }
    };
    let [first_name, last_name, email, bereich] = NAMED_FIELDS.map(text);
    Ok(LinaPayload::Consent(LinaConsent {
        webhook,
        user,
        first_name: first_name?,
        last_name: last_name?,
        email: email?,
        bereich: bereich?,
        data,
    }))
}

fn uuid_field(text: Option<&str>) -> Option<Uuid> {
    Uuid::parse_str(text?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEBHOOK: &str = "48138367-3eba-4772-b2bf-6bbd11840efb";
    const USER: &str = "c6425258-a870-498d-8173-6c2341c934e0";

    fn consent(extra: &str) -> String {
        format!(
            r#"{{"webhook":"{WEBHOOK}","userUuid":"{USER}","userVorname":"Jürgen","userName":"Weiß","userEmail":"j@example.de","bereich":"Küche"{extra}}}"#
        )
    }

    #[test]
    fn a_consent_keeps_every_field_as_sent() {
        let body = consent(r#","shift":"late""#);
        let Ok(LinaPayload::Consent(consent)) = parse(body.as_bytes()) else {
            panic!("a valid consent");
        };
        assert_eq!(consent.first_name.as_deref(), Some("Jürgen"));
        assert_eq!(consent.last_name.as_deref(), Some("Weiß"));
        assert_eq!(consent.bereich.as_deref(), Some("Küche"));
        assert_eq!(
            consent.data.get("shift").and_then(Json::as_str),
            Some("late"),
            "unknown fields are kept"
        );
    }

    #[test]
    fn a_withdrawal_needs_only_the_ids() {
        let body = format!(r#"{{"delete":true,"webhook":"{WEBHOOK}","userUuid":"{USER}"}}"#);
        let payload = parse(body.as_bytes()).expect("valid");
        assert!(payload.is_withdrawal());
        assert_eq!(payload.user().to_string(), USER);
        assert!(read_call(body.as_bytes()).withdrawal);
    }

    #[test]
    fn bad_calls_get_their_reason() {
        let code = |body: &str| parse(body.as_bytes()).expect_err("invalid").code();
        assert_eq!(code("{"), "invalid_json");
        assert_eq!(code("[]"), "not_an_object");
        assert_eq!(
            code(&format!(r#"{{"webhook":"store-1","userUuid":"{USER}"}}"#)),
            "invalid_webhook"
        );
        assert_eq!(
            code(&format!(r#"{{"webhook":"{WEBHOOK}"}}"#)),
            "invalid_user_uuid"
        );
        assert_eq!(code(&consent(r#","delete":"yes""#)), "invalid_delete");
        assert_eq!(
            code(&format!(
                r#"{{"webhook":"{WEBHOOK}","userUuid":"{USER}","userName":7}}"#
            )),
            "invalid_field"
        );
    }

    #[test]
    fn the_store_of_an_invalid_call_is_still_known() {
        let body = format!(r#"{{"webhook":"{WEBHOOK}","userUuid":"nope"}}"#);
        let call = read_call(body.as_bytes());
        assert_eq!(
            call.webhook.map(|id| id.to_string()).as_deref(),
            Some(WEBHOOK)
        );
        assert_eq!(call.payload.err(), Some(LinaPayloadError::InvalidUserUuid));
        let duplicate = format!(r#"{{"delete":true,"delete":true,"webhook":"{WEBHOOK}"}}"#);
        let call = read_call(duplicate.as_bytes());
        assert!(call.withdrawal, "a refused body keeps its hints");
        assert_eq!(call.payload.err(), Some(LinaPayloadError::DuplicateKey));
    }
}
