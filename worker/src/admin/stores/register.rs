//! Registering our webhook URL for a store with LINA's Third Party API:
//! `POST {base}/extern/personal/registerWebhook` with
//! `{"hookKey": "personalData", "url": …}`; the answer repeats both and adds
//! the webhook's `uuid`, which identifies the store in every later call.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

/// How to reach LINA's Third Party API.
#[derive(Clone, Debug)]
pub struct LinaApi {
    pub base: String,
    pub key: SecretString,
    /// The header that carries the API key.
    pub key_header: String,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(
        "LINA refused our API key (HTTP {0}); check INTAKE_LINA_API_KEY and INTAKE_LINA_API_KEY_HEADER"
    )]
    Unauthorized(u16),
    #[error("LINA answered HTTP {0}; nothing was registered")]
    Status(u16),
    #[error(
        "LINA did not answer within {0:?}; nothing was stored (check in LINA whether the webhook exists)"
    )]
    Timeout(Duration),
    #[error("cannot reach LINA: {0}")]
    Unreachable(String),
    #[error("LINA's answer carries no webhook uuid; nothing was stored")]
    NoUuid,
    #[error("the API key is not a valid header value")]
    BadKey,
}

/// Asks LINA to send `personalData` for a store to `url`; returns the webhook uuid.
pub async fn call_register(api: &LinaApi, url: &str) -> Result<Uuid, RegisterError> {
    let client = reqwest::Client::builder()
        .timeout(api.timeout)
        .build()
        .map_err(|error| RegisterError::Unreachable(error.to_string()))?;
    let endpoint = format!(
        "{}/extern/personal/registerWebhook",
        api.base.trim_end_matches('/')
    );
    let key = reqwest::header::HeaderValue::from_str(api.key.expose_secret())
        .map_err(|_| RegisterError::BadKey)?;
    let response = client
        .post(endpoint)
        .header(api.key_header.as_str(), key)
        .json(&json!({"hookKey": "personalData", "url": url}))
        .send()
        .await
        .map_err(|error| classify(api, error))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(RegisterError::Unauthorized(status.as_u16()));
    }
    if !status.is_success() {
        return Err(RegisterError::Status(status.as_u16()));
    }
    let body: Value = response
        .json()
        .await
        .map_err(|error| classify(api, error))?;
    body.get("uuid")
        .and_then(Value::as_str)
        .and_then(|uuid| Uuid::parse_str(uuid).ok())
        .ok_or(RegisterError::NoUuid)
}

fn classify(api: &LinaApi, error: reqwest::Error) -> RegisterError {
    if error.is_timeout() {
        RegisterError::Timeout(api.timeout)
    } else if error.is_decode() {
        RegisterError::NoUuid
    } else {
        // Without the URL: it is ours, but keep errors short and plain.
        RegisterError::Unreachable(error.without_url().to_string())
    }
}

/// Registers with LINA, then remembers the store. Nothing is stored unless
/// LINA answered with a uuid.
pub async fn register(
    pool: &common::db::DbPool,
    api: &LinaApi,
    url: &str,
    label: &str,
) -> Result<Uuid, super::LinaError> {
    let uuid = call_register(api, url).await?;
    super::add_webhook(pool, uuid, label).await?;
    Ok(uuid)
}
