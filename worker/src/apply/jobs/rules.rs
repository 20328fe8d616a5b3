//! What planning needs, as plain values: the keyed hasher, the pointers and
//! the resend window from the settings, and where new ids come from. No
//! pool, broker or mailer: deciding a batch is pure, and its tests are
//! reproducible (`IdSource`).

use std::time::Duration;

use common::subject::SubjectHasher;
use uuid::Uuid;

/// Where the ids planning hands out come from (acknowledgements' outbox ids).
pub trait IdSource: Send + Sync {
    fn next_id(&self) -> Uuid;
}

/// Time-ordered ids, as the worker uses.
pub struct UuidV7;

impl IdSource for UuidV7 {
    fn next_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

pub struct Rules<'a> {
    pub hasher: &'a SubjectHasher,
    /// `INTAKE_LT_EMAIL_POINTER`.
    pub lt_email_pointer: &'a str,
    /// `INTAKE_LT_EVENT_TIME_POINTER`.
    pub lt_event_time_pointer: Option<&'a str>,
    /// `INTAKE_LT_RESEND_WINDOW`.
    pub lt_resend_window: Duration,
    /// `INTAKE_LT_FIRST_NAME_POINTER`, for the acknowledgement.
    pub first_name_pointer: &'a str,
    /// `INTAKE_LT_LANGUAGE_POINTER`, for the acknowledgement.
    pub language_pointer: &'a str,
    pub ids: &'a dyn IdSource,
}
