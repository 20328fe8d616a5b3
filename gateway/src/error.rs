//! Every way a request can fail, mapped to a status code and a short JSON
//! body in one place: `{"error": "<code>", "message": "<text>"}`.
//! No message ever includes a token or a payload value.

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError};
use common::amqp::PublishError;
use common::senders::lina::LinaPayloadError;
use common::senders::lt::LtPayloadError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    #[error("the body exceeds the size limit")]
    PayloadTooLarge,
    #[error("the body ended before it was complete")]
    IncompleteBody,
    #[error("the body did not arrive in time")]
    RequestTimeout,
    #[error("requests from this address are not accepted")]
    SourceNotAllowed,
    #[error("{0}")]
    InvalidLtPayload(LtPayloadError),
    #[error("{0}")]
    InvalidLinaPayload(LinaPayloadError),
    #[error("the body must be application/json")]
    LinaUnsupportedMediaType,
    #[error("the event could not be stored; it was not kept")]
    SpoolFull,
    #[error("the event could not be written to the spool; it was not kept")]
    SpoolUnavailable,
    #[error("too many requests in flight; try again shortly")]
    Overloaded,
    #[error("the event could not be stored durably; try again")]
    Unavailable(PublishError),
    #[error("the body must be sent without a content encoding")]
    UnsupportedEncoding,
    #[error("only the expectation 100-continue is supported")]
    ExpectationFailed,
    #[error("the {0} header appears more than once")]
    RepeatedHeader(&'static str),
    #[error("no such endpoint")]
    NotFound,
    #[error("this endpoint takes POST")]
    MethodNotAllowed,
}

impl GatewayError {
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Unauthorized => "unauthorized",
            GatewayError::UnsupportedMediaType => "unsupported_media_type",
            GatewayError::PayloadTooLarge => "payload_too_large",
            GatewayError::IncompleteBody => "incomplete_body",
            GatewayError::RequestTimeout => "request_timeout",
            GatewayError::SourceNotAllowed => "source_not_allowed",
            GatewayError::InvalidLtPayload(reason) => reason.code(),
            GatewayError::InvalidLinaPayload(reason) => reason.code(),
            GatewayError::LinaUnsupportedMediaType => "unsupported_media_type",
            GatewayError::SpoolFull => "spool_full",
            GatewayError::SpoolUnavailable => "spool_unavailable",
            GatewayError::Overloaded => "overloaded",
            GatewayError::Unavailable(PublishError::Blocked) => "broker_blocked",
            GatewayError::Unavailable(_) => "broker_unavailable",
            GatewayError::RepeatedHeader(_) => "repeated_header",
            GatewayError::UnsupportedEncoding => "unsupported_encoding",
            GatewayError::ExpectationFailed => "expectation_failed",
            GatewayError::NotFound => "not_found",
            GatewayError::MethodNotAllowed => "method_not_allowed",
        }
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        match self {
            GatewayError::Unauthorized => StatusCode::UNAUTHORIZED,
            GatewayError::UnsupportedMediaType
            | GatewayError::LinaUnsupportedMediaType
            | GatewayError::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            GatewayError::InvalidLinaPayload(_) => StatusCode::BAD_REQUEST,
            GatewayError::SpoolFull | GatewayError::SpoolUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::IncompleteBody
            | GatewayError::InvalidLtPayload(_)
            | GatewayError::RepeatedHeader(_) => StatusCode::BAD_REQUEST,
            GatewayError::Overloaded | GatewayError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::SourceNotAllowed => StatusCode::FORBIDDEN,
            GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            GatewayError::Unauthorized => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer"));
            }
            GatewayError::Overloaded | GatewayError::Unavailable(_) => {
                response.insert_header((RETRY_AFTER, "1"));
            }
            GatewayError::MethodNotAllowed => {
                response.insert_header((ALLOW, "POST"));
            }
            // The rest of a slow body is never read: close the connection
            // rather than leave the client's leftover bytes to be parsed as
            // the next request.
            GatewayError::RequestTimeout => {
                response.force_close();
            }
            _ => {}
        }
        response.json(serde_json::json!({
            "error": self.code(),
            "message": self.to_string(),
        }))
    }
}
