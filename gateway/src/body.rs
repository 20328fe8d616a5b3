//! Request bodies: JSON only, and never more than the configured limit in memory.

use std::time::Duration;

use actix_web::http::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HeaderMap, HeaderName,
};
use actix_web::{HttpRequest, web};
use bytes::BytesMut;
use futures_util::StreamExt;

use crate::error::GatewayError;

/// Headers a request may carry once only: with two, the gateway and
/// whatever stands in front of it could each read a different one (a
/// right token then a wrong one, JSON then something else). A repeated
/// `Content-Length` never gets here: actix refuses the head itself (a bare
/// 400, counted as `malformed_head`).
const SINGLE_HEADERS: [HeaderName; 2] = [AUTHORIZATION, CONTENT_TYPE];

/// Refuses a request that repeats one of `SINGLE_HEADERS` (400 `repeated_header`).
pub fn refuse_repeated_headers(headers: &HeaderMap) -> Result<(), GatewayError> {
    match SINGLE_HEADERS
        .iter()
        .find(|name| headers.get_all(*name).nth(1).is_some())
    {
        Some(name) => Err(GatewayError::RepeatedHeader(name.as_str())),
        None => Ok(()),
    }
}

/// Refuses a body that is not sent as is (415 `unsupported_encoding`): the
/// gateway decodes nothing, so a gzip body would be refused as invalid
/// JSON, and a plain body labelled gzip stored as if it were compressed.
pub fn require_identity_encoding(headers: &HeaderMap) -> Result<(), GatewayError> {
    let identity = headers
        .get_all(CONTENT_ENCODING)
        .flat_map(|value| value.to_str().unwrap_or("?").split(','))
        .all(|coding| coding.trim().eq_ignore_ascii_case("identity"));
    if identity {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedEncoding)
    }
}

/// Refuses an expectation other than `100-continue` (417), as RFC 9110
/// §10.1.1 asks of a server that cannot meet it.
pub fn refuse_unknown_expectation(headers: &HeaderMap) -> Result<(), GatewayError> {
    let known = headers.get_all(EXPECT).all(|value| {
        value
            .to_str()
            .is_ok_and(|value| value.trim().eq_ignore_ascii_case("100-continue"))
    });
    if known {
        Ok(())
    } else {
        Err(GatewayError::ExpectationFailed)
    }
}

/// `Content-Type: application/json`, with or without parameters (charset).
pub fn require_json(headers: &HeaderMap) -> Result<(), GatewayError> {
    let mime = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<actix_web::mime::Mime>().ok());
    match mime {
        Some(mime) if mime.essence_str() == "application/json" => Ok(()),
        _ => Err(GatewayError::UnsupportedMediaType),
    }
}

/// Refuses (413) a body whose declared length is over the limit.
pub fn refuse_declared_too_large(headers: &HeaderMap, limit: usize) -> Result<(), GatewayError> {
    match declared_length(headers) {
        Some(length) if length > limit => Err(GatewayError::PayloadTooLarge),
        _ => Ok(()),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok())
}

/// How much of a body is read, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// The whole body must arrive within this: actix bounds only the
    /// request head, so a client trickling a body (or stopping halfway)
    /// would otherwise hold a connection and a handler forever.
    pub timeout: Duration,
}

/// A body that could not be read whole, with what did arrive.
#[derive(Debug)]
pub struct Unread {
    pub error: GatewayError,
    pub received: BytesMut,
}

impl From<Unread> for GatewayError {
    fn from(unread: Unread) -> Self {
        unread.error
    }
}

/// Reads the body, refusing (413) as soon as it is known to exceed the
/// limit: from `Content-Length` before reading, or while streaming a chunked
/// body; (400) when the client ended it early; and (408) when it has not
/// fully arrived within the timeout.
pub async fn read_limited(
    request: &HttpRequest,
    mut payload: web::Payload,
    limits: BodyLimits,
) -> Result<BytesMut, Unread> {
    let mut received = BytesMut::new();
    let read = tokio::time::timeout(
        limits.timeout,
        read_body(request, &mut payload, limits.max_bytes, &mut received),
    )
    .await
    .unwrap_or(Err(GatewayError::RequestTimeout));
    match read {
        Ok(()) => Ok(received),
        Err(error) => {
            hold_until_answered(payload);
            Err(Unread { error, received })
        }
    }
}

/// Refuses a request before its body is read: the body is held until the
/// answer is out (`hold_until_answered`), so that actix closes the
/// connection instead of draining a body that may never end.
pub fn refuse_unread(payload: web::Payload, error: GatewayError) -> GatewayError {
    hold_until_answered(payload);
    error
}

/// Keeps the unread rest of a refused body alive until the answer is out.
/// Actix decides how to end the connection when it sends the answer: with
/// the payload still held, it closes it (after `INTAKE_CLIENT_DISCONNECT_TIMEOUT`);
/// with the payload dropped, it would wait to drain the rest of a chunked
/// body, which a slow or stalled client never sends, so the connection
/// would stay open for good. The answer is sent on this same worker thread
/// as soon as the handler returns, before this task can run to its end.
fn hold_until_answered(payload: web::Payload) {
    hold_payload_until_answered(payload.into_inner());
}

/// `hold_until_answered` for a payload taken from the request itself.
pub fn hold_payload_until_answered(payload: actix_web::dev::Payload) {
    actix_web::rt::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(payload);
    });
}

async fn read_body(
    request: &HttpRequest,
    payload: &mut web::Payload,
    limit: usize,
    body: &mut BytesMut,
) -> Result<(), GatewayError> {
    refuse_declared_too_large(request.headers(), limit)?;
    body.reserve(declared_length(request.headers()).unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| GatewayError::IncompleteBody)?;
        if body.len() + chunk.len() > limit {
            return Err(GatewayError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(())
}
