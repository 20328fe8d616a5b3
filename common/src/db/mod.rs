//! PostgreSQL: a pooled connection factory and the embedded migrations.

mod migrations;
pub mod tls;

use std::time::Duration;

use deadpool_postgres::{
    ClientWrapper, Hook, HookError, Manager, ManagerConfig, Pool, QueueMode, RecyclingMethod,
    Runtime,
};
use secrecy::{ExposeSecret, SecretString};

pub use deadpool_postgres::{Object as Client, Pool as DbPool, Transaction};
pub use migrations::run_migrations;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database URL does not parse")]
    BadUrl,
    #[error("database TLS: {0}")]
    Tls(#[from] tls::TlsSetupError),
    #[error("could not build the database pool: {0}")]
    Build(String),
    #[error("database unavailable: {}", pool_error(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(String),
}

/// How long a caller waits for a connection before the work is retried later.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool that opens connections lazily, so a process starts even while the
/// database is down and recovers by itself when it comes back.
pub fn pool(url: &SecretString, max_size: usize) -> Result<Pool, DbError> {
    let (url, tls) = tls::split(url.expose_secret())?;
    let config: tokio_postgres::Config = url.parse().map_err(|_| DbError::BadUrl)?;
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_config(&tls)?);
    let manager = Manager::from_config(
        config,
        connector,
        ManagerConfig {
            // Fast: a closed connection (a restart, a failover) is dropped;
            // the hook below does the one round trip a check costs.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .post_recycle(Hook::async_fn(|client, _| {
            Box::pin(refuse_read_only(client))
        }))
        .max_size(max_size)
        // The connection used last is handed out first: a worker's steady
        // work stays on as few connections (and PostgreSQL backends) as it
        // needs at once, warm, while the rest sit idle with small buffers.
        // First in, first out would rotate every batch through every
        // connection the pool ever opened.
        .queue_mode(QueueMode::Lifo)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(POOL_TIMEOUT))
        .recycle_timeout(Some(POOL_TIMEOUT))
        .build()
        .map_err(|error| DbError::Build(error.to_string()))
}

/// A pooled connection is handed out again only while its server takes
/// writes: one that went read-only (a standby after a failover behind the
/// same address, a pooler that moved, `default_transaction_read_only`) or
/// does not answer is dropped, and the pool makes a new one, which with
/// `target_session_attrs=read-write` goes to the primary of a multi-host
/// URL. Reusing it would fail every batch with SQLSTATE 25006 for as long
/// as the connection lives.
async fn refuse_read_only(client: &mut ClientWrapper) -> Result<(), HookError> {
    // Bounded as the pool's own steps are: a primary that went silent after
    // a failover must not keep a checkout waiting for TCP to give up.
    let asked = tokio::time::timeout(
        POOL_TIMEOUT,
        client.simple_query("SHOW transaction_read_only"),
    );
    let messages = match asked.await {
        Ok(answer) => answer.map_err(HookError::Backend)?,
        Err(_) => return Err(HookError::message("the server did not answer")),
    };
    let read_only = messages.iter().any(|message| {
        matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("on"))
    });
    if read_only {
        // deadpool does not report a refused recycle: say it here.
        tracing::warn!(
            message =
                "A pooled database connection was dropped: its server no longer takes writes."
        );
        return Err(HookError::message("the server no longer takes writes"));
    }
    Ok(())
}

/// A database error as it may be shown or logged: its SQLSTATE and the
/// names of what it concerns, never the server's message or detail, which
/// can quote the values (`Key (email)=(…) already exists`, `invalid input
/// syntax for type uuid: "…"`).
pub fn describe(error: &tokio_postgres::Error) -> String {
    let Some(db_error) = error.as_db_error() else {
        return with_causes(error);
    };
    let mut text = format!("SQLSTATE {}", db_error.code().code());
    for (what, name) in [
        ("table", db_error.table()),
        ("column", db_error.column()),
        ("constraint", db_error.constraint()),
    ] {
        if let Some(name) = name {
            text.push_str(&format!(", {what} {name}"));
        }
    }
    text
}

/// An error with its causes (`error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer`), for errors that carry no data: connection,
/// TLS and pool failures. Database errors go through `describe`.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let next_text = next.to_string();
        if !text.ends_with(&next_text) {
            text.push_str(": ");
            text.push_str(&next_text);
        }
        cause = next.source();
    }
    text
}

/// A pool error: a backend (database) error is described as `describe` does,
/// anything else with its causes.
pub fn pool_error(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(error) => describe(error),
        other => with_causes(other),
    }
}
