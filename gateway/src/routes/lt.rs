//! `POST /webhooks/lt`: Luotettava Työntekijä's profile, update or revocation.

use actix_web::{HttpRequest, HttpResponse, web};
use common::senders::{json, lt};
use common::{Envelope, EventKind};

use crate::auth::check_bearer;
use crate::body::{
    read_limited, refuse_repeated_headers, refuse_unknown_expectation, refuse_unread,
    require_identity_encoding, require_json,
};
use crate::error::GatewayError;
use crate::publish::publish_envelope;
use crate::source::check_source;
use crate::state::AppState;

pub async fn receive(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let checked = check_source(
        &request,
        state.sources.lt.as_deref(),
        &state.sources.trusted_proxies,
    )
    .and_then(|()| refuse_repeated_headers(&request))
    .and_then(|()| check_bearer(&request, &state.lt_tokens))
    .and_then(|()| refuse_unknown_expectation(&request))
    .and_then(|()| require_json(&request))
    .and_then(|()| require_identity_encoding(&request));
    if let Err(error) = checked {
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
