//! Request bodies: JSON only, and never more than the configured limit in memory.

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{HttpMessage, HttpRequest, web};
use bytes::BytesMut;
use futures_util::StreamExt;

use crate::error::GatewayError;

/// `Content-Type: application/json`, with or without parameters (charset).
pub fn require_json(request: &HttpRequest) -> Result<(), GatewayError> {
    match request.mime_type() {
        Ok(Some(mime)) if mime.essence_str() == "application/json" => Ok(()),
        _ => Err(GatewayError::UnsupportedMediaType),
    }
}

/// Reads the body, refusing (413) as soon as it is known to exceed `limit`:
/// from `Content-Length` before reading, or while streaming a chunked body.
pub async fn read_limited(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, GatewayError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| GatewayError::IncompleteBody)?;
        if body.len() + chunk.len() > limit {
            return Err(GatewayError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
