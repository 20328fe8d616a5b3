//! The senders' credentials, compared in constant time against every
//! accepted value: LT's bearer token, LINA's URL secret.

use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use subtle::{Choice, ConstantTimeEq};

use crate::error::GatewayError;

/// Accepts `Authorization: Bearer <token>` (scheme in any case) when the token
/// is one of `accepted`. Every accepted token is compared, whichever matches,
/// so timing does not tell which one (or how much of one) was right.
pub fn check_bearer(headers: &HeaderMap, accepted: &[SecretString]) -> Result<(), GatewayError> {
    let token = bearer_token(headers).ok_or(GatewayError::Unauthorized)?;
    if matches_any(token, accepted) {
        Ok(())
    } else {
        Err(GatewayError::Unauthorized)
    }
}

/// LINA's URL secret; anything else is a plain 404 that says nothing about why.
pub fn check_path_secret(secret: &str, accepted: &[SecretString]) -> Result<(), GatewayError> {
    if matches_any(secret, accepted) {
        Ok(())
    } else {
        Err(GatewayError::NotFound)
    }
}

/// Whether `given` equals one of `accepted`; every candidate is compared,
/// whichever matches.
fn matches_any(given: &str, accepted: &[SecretString]) -> bool {
    let matched = accepted.iter().fold(Choice::from(0), |matched, candidate| {
        matched | candidate.expose_secret().as_bytes().ct_eq(given.as_bytes())
    });
    bool::from(matched)
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn tokens() -> Vec<SecretString> {
        vec![
            SecretString::from("old-token"),
            SecretString::from("new-token"),
        ]
    }

    fn check(header: Option<&str>) -> bool {
        let mut request = TestRequest::default();
        if let Some(header) = header {
            request = request.insert_header((AUTHORIZATION, header));
        }
        check_bearer(request.to_http_request().headers(), &tokens()).is_ok()
    }

    #[test]
    fn accepts_any_accepted_token_with_any_case_scheme() {
        assert!(check(Some("Bearer old-token")));
        assert!(check(Some("bearer new-token")));
        assert!(check(Some("BEARER  new-token ")));
    }

    #[test]
    fn refuses_missing_wrong_or_partial_tokens() {
        assert!(!check(None));
        assert!(!check(Some("Bearer")));
        assert!(!check(Some("Bearer wrong")));
        assert!(!check(Some("Bearer new-toke")));
        assert!(!check(Some("Basic new-token")));
    }
}
