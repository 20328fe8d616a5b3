//! `worker lina`: the LINA stores (webhooks) we take data from.
//! Here: adding, listing, removing and registering stores; not here: applying LINA events
//! (`apply/jobs/`) or the erasure a removal runs (`apply/erasure.rs`).
//!
//! A store is registered with LINA's Third Party API (`register`), or added
//! by hand when it was registered elsewhere (`webhooks add`). Events naming
//! a store we do not know are dead-lettered with `unknown_webhook`, never
//! applied blindly; adding the store and replaying recovers them. Removing a
//! store erases its employees' personal data.

mod command;
mod register;
mod webhooks;

pub use command::{LinaArgs, LinaCommand, LinaContext, WebhooksCommand, run};
pub use register::{LinaApi, RegisterError, call_register, register};
pub use webhooks::{Store, add_webhook, list_webhooks, remove_webhook};

#[derive(Debug, thiserror::Error)]
pub enum LinaError {
    #[error("database unavailable: {}", common::db::pool_error(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Shown as its SQLSTATE: the server's text can quote the data.
    #[error("database error: {}", common::db::describe(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("the store {0} is already registered")]
    AlreadyRegistered(uuid::Uuid),
    #[error("no store {0} is registered")]
    UnknownStore(uuid::Uuid),
    #[error("not confirmed: nothing was removed (give --yes, or type the store's uuid when asked)")]
    NotConfirmed,
    #[error("could not erase the store's employees: {0}")]
    Erasure(#[from] crate::error::JobError),
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error(transparent)]
    Settings(#[from] common::settings::SettingsError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}
