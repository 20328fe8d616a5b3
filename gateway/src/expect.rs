//! `Expect: 100-continue`. Actix answers `100 Continue` before any handler
//! runs, inviting a body the gateway may then refuse unread (no token, a
//! wrong secret, too large). Here the head's checks (`head`) run first: a
//! request that would be refused is answered at once, and its body is never
//! invited; any other gets `100 Continue` and goes on to its handler, which
//! checks the same again.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::{Path, ResourceDef, Url};
use actix_web::http::Method;
use actix_web::{HttpMessage, ResponseError};

use crate::connection::ConnectionWatch;
use crate::error::GatewayError;
use crate::head::{Head, check_lina, check_lt};
use crate::metrics::{GatewayMetrics, source_of};
use crate::routes::{LINA_ROUTE, LT_ROUTE};
use crate::state::AppState;

type Request = actix_http::Request;
type Response = actix_http::Response<BoxBody>;

/// The webhook routes, matched as the app's router matches them.
pub struct Routes {
    lt: ResourceDef,
    lina: ResourceDef,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            lt: ResourceDef::new(LT_ROUTE),
            lina: ResourceDef::new(LINA_ROUTE),
        }
    }
}

/// Lets `request` go on (`100 Continue` is then sent) or answers it now.
pub async fn decide(
    routes: Rc<Routes>,
    state: Arc<AppState>,
    metrics: Arc<GatewayMetrics>,
    mut request: Request,
) -> Result<Request, Response> {
    let Err((route, error)) = check(&routes, &state, &request) else {
        return Ok(request);
    };
    metrics.request(
        source_of(route),
        error.status_code().as_u16(),
        Duration::ZERO,
    );
    if let Some(watch) = request.conn_data::<ConnectionWatch>() {
        watch.response_ready();
    }
    crate::body::hold_payload_until_answered(request.take_payload());
    Err(error.error_response().into())
}

/// The checks the matched route's handler would make before reading the
/// body; the route's pattern with the refusal.
fn check(
    routes: &Routes,
    state: &AppState,
    request: &Request,
) -> Result<(), (Option<&'static str>, GatewayError)> {
    let head = Head {
        headers: request.headers(),
        peer: request.peer_addr(),
    };
    let mut path = Path::new(Url::new(request.uri().clone()));
    let route = if routes.lt.capture_match_info(&mut path) {
        LT_ROUTE
    } else if routes.lina.capture_match_info(&mut path) {
        LINA_ROUTE
    } else {
        return Err((None, GatewayError::NotFound));
    };
    let refused = |error| (Some(route), error);
    if request.method() != Method::POST {
        return Err(refused(GatewayError::MethodNotAllowed));
    }
    match route {
        LT_ROUTE => check_lt(&head, state).map_err(refused),
        _ => {
            // Decoded as the handler's `web::Path` decodes it.
            let (secret,) = path
                .load::<(String,)>()
                .map_err(|_| refused(GatewayError::NotFound))?;
            check_lina(&head, &secret, state)
                .map(|_| ())
                .map_err(refused)
        }
    }
}
