//! The webhook endpoints, one module per sender.

pub mod lina;
pub mod lt;

use crate::error::GatewayError;

/// Unknown paths: a JSON 404 like every other error.
pub async fn not_found() -> Result<actix_web::HttpResponse, GatewayError> {
    Err(GatewayError::NotFound)
}

/// Any method but POST on a webhook: a JSON 405 naming the method to use.
pub async fn method_not_allowed() -> Result<actix_web::HttpResponse, GatewayError> {
    Err(GatewayError::MethodNotAllowed)
}
