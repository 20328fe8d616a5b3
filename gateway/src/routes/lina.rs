//! `POST /webhooks/lina/{secret}`: LINA's `personalData` webhook (consent or
//! withdrawal). LINA ignores our answer and never resends: every call that
//! passes the secret is kept, valid ones for the worker, invalid ones in the
//! quarantine (with the reason, for ops to fix and replay).

use actix_web::{HttpRequest, HttpResponse, web};
use common::senders::{json, lina};
use common::{Envelope, EventKind};

use crate::body::{
    Unread, read_limited, refuse_repeated_headers, refuse_unread, require_identity_encoding,
    require_json,
};
use crate::error::GatewayError;
use crate::head::{Head, check_lina};
use crate::publish::publish_or_spool;
use crate::spool::{SpoolRecord, Target};
use crate::state::AppState;

pub async fn receive(
    request: HttpRequest,
    secret: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let lina = match check_lina(&Head::of(&request), &secret, &state) {
        Ok(lina) => lina,
        Err(error) => return Err(refuse_unread(payload, error)),
    };
    // A body the client ended early is a LINA 400 like the others: kept
    // (what arrived of it) in the quarantine. Too large or too slow is not.
    let (body, incomplete) = match read_limited(&request, payload, state.body).await {
        Ok(body) => (body, None),
        Err(Unread {
            error: error @ GatewayError::IncompleteBody,
            received,
        }) => (received, Some(error)),
        Err(unread) => return Err(unread.error),
    };
    let body = json::without_bom(&body);
    let call = lina::read_call(body);
    let refusal = incomplete
        .or_else(|| refuse_repeated_headers(request.headers()).err())
        .or_else(|| require_identity_encoding(request.headers()).err())
        .or_else(|| match require_json(request.headers()) {
            Ok(()) => call
                .payload
                .as_ref()
                .err()
                .cloned()
                .map(GatewayError::InvalidLinaPayload),
            Err(_) => Some(GatewayError::LinaUnsupportedMediaType),
        });
    let kind = if call.withdrawal {
        EventKind::LinaWithdrawal
    } else {
        EventKind::LinaConsent
    };
    let envelope = Envelope::new(kind, call.webhook, body.to_vec());
    let id = envelope.id;
    let record = SpoolRecord {
        envelope,
        target: if refusal.is_some() {
            Target::Quarantine
        } else {
            Target::Work
        },
        reason: refusal.as_ref().map(|refusal| refusal.code().to_owned()),
    };
    let stored = publish_or_spool(&state, lina, record).await?;
    if let Some(refusal) = refusal {
        tracing::info!(message = "LINA call refused and quarantined.", event_id = %id, reason = refusal.code());
        return Err(refusal);
    }
    tracing::info!(message = "Event accepted.", event_id = %id, kind = %kind, stored = ?stored);
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "accepted", "id": id})))
}
