//! Luotettava Työntekijä's payload: only what LT documents is required
//! (`mydatashare_user_id`; an e-mail unless revoked); everything else is kept
//! as received.

use super::json::{self, Json, JsonError, contains_nul, contains_unstorable_number};

/// Longest `mydatashare_user_id` we accept, in characters (as JSON Schema's
/// `maxLength` counts, so openapi/intake.yaml can state the rule exactly); LT's
/// are UUIDs, this is generous.
pub const MAX_USER_ID_LEN: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LtStatus {
    /// Any status other than `updated` or `revoked`, including none: LT does
    /// not document the word it uses for a first share.
    New,
    Updated,
    Revoked,
}

impl LtStatus {
    fn from_payload(status: Option<&Json<'_>>) -> LtStatus {
        match status.and_then(Json::as_str) {
            Some("updated") => LtStatus::Updated,
            Some("revoked") => LtStatus::Revoked,
            _ => LtStatus::New,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            LtStatus::New => "new",
            LtStatus::Updated => "updated",
            LtStatus::Revoked => "revoked",
        }
    }
}

/// A validated LT payload, borrowing from the body it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct LtPayload<'a> {
    pub user_id: String,
    pub status: LtStatus,
    /// Present unless the status is `revoked`.
    pub email: Option<String>,
    pub profile: Json<'a>,
}

impl LtPayload<'_> {
    pub fn is_revocation(&self) -> bool {
        self.status == LtStatus::Revoked
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LtPayloadError {
    #[error("the body is not valid JSON")]
    InvalidJson,
    #[error("an object in the body names the same key twice")]
    DuplicateKey,
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("`mydatashare_user_id` is missing")]
    MissingUserId,
    #[error("`mydatashare_user_id` must be a non-blank string of at most 256 characters")]
    InvalidUserId,
    #[error("no e-mail string at the configured location")]
    MissingEmail,
    #[error("the body contains a NUL character, which cannot be stored")]
    UnstorableText,
    #[error(
        "a number in the body is beyond what can be stored (131,072 digits before the point, 16,383 after)"
    )]
    UnstorableNumber,
}

impl LtPayloadError {
    /// The machine-readable reason given to the sender.
    pub fn code(self) -> &'static str {
        match self {
            LtPayloadError::InvalidJson => "invalid_json",
            LtPayloadError::DuplicateKey => "duplicate_key",
            LtPayloadError::NotAnObject => "not_an_object",
            LtPayloadError::MissingUserId => "missing_user_id",
            LtPayloadError::InvalidUserId => "invalid_user_id",
            LtPayloadError::MissingEmail => "missing_email",
            LtPayloadError::UnstorableText => "unstorable_text",
            LtPayloadError::UnstorableNumber => "unstorable_number",
        }
    }
}

/// Parses and validates an LT body; `email_pointer` is a JSON pointer
/// (`INTAKE_LT_EMAIL_POINTER`, default `/email`).
pub fn parse<'a>(body: &'a [u8], email_pointer: &str) -> Result<LtPayload<'a>, LtPayloadError> {
    let profile = json::parse(body).map_err(|error| match error {
        JsonError::Invalid => LtPayloadError::InvalidJson,
        JsonError::DuplicateKey => LtPayloadError::DuplicateKey,
    })?;
    if !profile.is_object() {
        return Err(LtPayloadError::NotAnObject);
    }
    let user_id = match profile.get("mydatashare_user_id") {
        None | Some(Json::Null) => return Err(LtPayloadError::MissingUserId),
        Some(Json::String(id)) if valid_user_id(id) => id.to_string(),
        Some(_) => return Err(LtPayloadError::InvalidUserId),
    };
    if contains_nul(&profile) {
        return Err(LtPayloadError::UnstorableText);
    }
    if contains_unstorable_number(&profile) {
        return Err(LtPayloadError::UnstorableNumber);
    }
    let status = LtStatus::from_payload(profile.get("status"));
    let email = match status {
        LtStatus::Revoked => None,
        LtStatus::New | LtStatus::Updated => Some(
            profile
                .pointer(email_pointer)
                .and_then(Json::as_str)
                .filter(|email| !email.trim().is_empty())
                .ok_or(LtPayloadError::MissingEmail)?
                .to_owned(),
        ),
    };
    Ok(LtPayload {
        user_id,
        status,
        email,
        profile,
    })
}

fn valid_user_id(id: &str) -> bool {
    !id.trim().is_empty() && id.chars().count() <= MAX_USER_ID_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> &'static str {
        parse(body.as_bytes(), "/email")
            .expect_err("rejected")
            .code()
    }

    #[test]
    fn a_new_application_needs_an_id_and_an_email() {
        let payload = parse(
            br#"{"mydatashare_user_id":"u1","status":"new","email":"a@b.fi","x":[1]}"#,
            "/email",
        )
        .expect("valid");
        assert_eq!(payload.user_id, "u1");
        assert_eq!(payload.status, LtStatus::New);
        assert_eq!(payload.email.as_deref(), Some("a@b.fi"));
        assert_eq!(payload.profile.to_value()["x"][0], 1);
    }

    #[test]
    fn a_revocation_needs_only_the_id() {
        let payload = parse(
            br#"{"mydatashare_user_id":"u1","status":"revoked"}"#,
            "/email",
        )
        .expect("valid");
        assert!(payload.is_revocation());
        assert_eq!(payload.email, None);
    }

    #[test]
    fn any_other_status_or_none_is_a_new_application() {
        for body in [
            r#"{"mydatashare_user_id":"u","email":"a@b"}"#,
            r#"{"mydatashare_user_id":"u","email":"a@b","status":"shared"}"#,
            r#"{"mydatashare_user_id":"u","email":"a@b","status":7}"#,
        ] {
            assert_eq!(
                parse(body.as_bytes(), "/email").map(|p| p.status),
                Ok(LtStatus::New)
            );
        }
    }

    #[test]
    fn the_email_location_is_configurable() {
        let body = br#"{"mydatashare_user_id":"u","contact":{"email":"a@b"}}"#;
        assert!(parse(body, "/contact/email").is_ok());
        assert_eq!(
            parse(body, "/email").map(|p| p.status),
            Err(LtPayloadError::MissingEmail)
        );
    }

    #[test]
    fn the_user_id_is_bounded_in_characters_not_bytes() {
        let body = |id: String| format!(r#"{{"mydatashare_user_id":"{id}","email":"a@b"}}"#);
        assert!(parse(body("ä".repeat(256)).as_bytes(), "/email").is_ok());
        assert_eq!(code(&body("ä".repeat(257))), "invalid_user_id");
    }

    #[test]
    fn bad_bodies_get_their_reason() {
        assert_eq!(code("{"), "invalid_json");
        assert_eq!(code("[]"), "not_an_object");
        assert_eq!(code(r#"{"email":"a@b"}"#), "missing_user_id");
        assert_eq!(
            code(r#"{"mydatashare_user_id":"","email":"a@b"}"#),
            "invalid_user_id"
        );
        assert_eq!(
            code(r#"{"mydatashare_user_id":5,"email":"a@b"}"#),
            "invalid_user_id"
        );
        assert_eq!(
            code(r#"{"mydatashare_user_id":" \t","email":"a@b"}"#),
            "invalid_user_id"
        );
        assert_eq!(code(r#"{"mydatashare_user_id":"u"}"#), "missing_email");
        assert_eq!(
            code(r#"{"mydatashare_user_id":"u","email":7}"#),
            "missing_email"
        );
        assert_eq!(
            code(r#"{"mydatashare_user_id":"u","email":"a\u0000@b"}"#),
            "unstorable_text"
        );
    }
}
