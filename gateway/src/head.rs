//! What a request's head decides, before any of its body is read: written
//! once, run by the handlers and, for a request that asks
//! `Expect: 100-continue`, before the body is invited (`expect`).

use std::net::SocketAddr;

use actix_web::HttpRequest;
use actix_web::http::header::HeaderMap;

use crate::auth::{check_bearer, check_path_secret};
use crate::body::{
    refuse_declared_too_large, refuse_repeated_headers, refuse_unknown_expectation,
    require_identity_encoding, require_json,
};
use crate::error::GatewayError;
use crate::source::check_source;
use crate::state::{AppState, LinaState};

/// A request's head: its headers and the peer it came from.
pub struct Head<'a> {
    pub headers: &'a HeaderMap,
    pub peer: Option<SocketAddr>,
}

impl<'a> Head<'a> {
    pub fn of(request: &'a HttpRequest) -> Head<'a> {
        Head {
            headers: request.headers(),
            peer: request.peer_addr(),
        }
    }

    /// The sender's allowlist, `X-Forwarded-For` believed from trusted proxies.
    fn check_source(
        &self,
        allowed: Option<&[crate::source::IpNet]>,
        state: &AppState,
    ) -> Result<(), GatewayError> {
        check_source(
            self.peer,
            self.headers,
            allowed,
            &state.sources.trusted_proxies,
        )
    }
}

/// LT: the source, the headers given once, the token, the expectation,
/// the media type and encoding, the declared size. Nothing LT sends is
/// kept when refused (LT resends).
pub fn check_lt(head: &Head<'_>, state: &AppState) -> Result<(), GatewayError> {
    head.check_source(state.sources.lt.as_deref(), state)?;
    refuse_repeated_headers(head.headers)?;
    check_bearer(head.headers, &state.lt_tokens)?;
    refuse_unknown_expectation(head.headers)?;
    require_json(head.headers)?;
    require_identity_encoding(head.headers)?;
    refuse_declared_too_large(head.headers, state.body.max_bytes)
}

/// LINA: whether the endpoint is on, the source (before the secret, so a
/// refused source cannot tell a valid secret from an invalid one), the
/// secret. Whatever else a LINA call can be refused for is decided with its
/// body, which is then kept in the quarantine; an unknown `Expect` is
/// ignored rather than answered 417 (RFC 9110 allows either), since a call
/// refused before its body is read would be lost.
pub fn check_lina<'s>(
    head: &Head<'_>,
    secret: &str,
    state: &'s AppState,
) -> Result<&'s LinaState, GatewayError> {
    let lina = state.lina.as_ref().ok_or(GatewayError::NotFound)?;
    head.check_source(state.sources.lina.as_deref(), state)?;
    check_path_secret(secret, &lina.path_secrets)?;
    Ok(lina)
}
