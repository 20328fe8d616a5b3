//! `POST /webhooks/lt`: Luotettava Työntekijä's profile, update or revocation.

use actix_web::{HttpRequest, HttpResponse, web};
use common::senders::{json, lt};
use common::{Envelope, EventKind};

use crate::body::{read_limited, refuse_unread};
use crate::error::GatewayError;
use crate::head::{Head, check_lt};
use crate::publish::publish_envelope;
use crate::state::AppState;

pub async fn receive(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    if let Err(error) = check_lt(&Head::of(&request), &state) {
        return Err(refuse_unread(payload, error));
    }
    let body = read_limited(&request, payload, state.body).await?;
    let body = json::without_bom(&body);
    let parsed = lt::parse(body, &state.lt_email_pointer).map_err(|reason| {
        tracing::info!(message = "LT payload refused.", reason = reason.code());
        GatewayError::InvalidLtPayload(reason)
    })?;
    let kind = if parsed.is_revocation() {
        EventKind::LtRevocation
    } else {
        EventKind::LtApplication
    };
    let envelope = Envelope::new(kind, None, body.to_vec());
    publish_envelope(&state, &envelope).await?;
    tracing::info!(message = "Event accepted.", event_id = %envelope.id, kind = %kind);
    // LT checks for exactly 200.
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "accepted",
        "id": envelope.id,
    })))
}
