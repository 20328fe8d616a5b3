//! The webhook endpoints, one module per sender.

pub mod lina;
pub mod lt;

use actix_web::web;

/// The webhooks' routes (`startup` serves them; metrics label by them).
pub const LT_ROUTE: &str = "/webhooks/lt";
pub const LINA_ROUTE: &str = "/webhooks/lina/{secret}";

use crate::body::refuse_unread;
use crate::error::GatewayError;

/// Unknown paths: a JSON 404 like every other error (the body is never read).
pub async fn not_found(payload: web::Payload) -> Result<actix_web::HttpResponse, GatewayError> {
    Err(refuse_unread(payload, GatewayError::NotFound))
}

/// Any method but POST on a webhook: a JSON 405 naming the method to use.
pub async fn method_not_allowed(
    payload: web::Payload,
) -> Result<actix_web::HttpResponse, GatewayError> {
    Err(refuse_unread(payload, GatewayError::MethodNotAllowed))
}
