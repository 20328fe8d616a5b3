//! The acknowledgement e-mail of one outbox row, as a message.

use lettre::Message;
use lettre::message::{Mailbox, MultiPart};

use super::outbox::OutboxRow;
use crate::context::WorkerContext;
use crate::error::JobError;

/// Builds the e-mail: text and HTML parts in the applicant's language, the
/// Message-ID derived from the outbox row.
pub fn compose(context: &WorkerContext, row: &OutboxRow) -> Result<Message, JobError> {
    let email = &context.email;
    let settings = &email.settings;
    let to: Mailbox = row
        .recipient
        .as_deref()
        .and_then(|recipient| recipient.parse().ok())
        .ok_or_else(|| {
            JobError::permanent("invalid_address", "the recipient address does not parse")
        })?;
    let rendered = email
        .templates
        .render_acknowledgement(
            &row.language,
            row.first_name.as_deref(),
            &settings.partner_name,
        )
        .map_err(|error| JobError::permanent("template_error", error.to_string()))?;
    let mut builder = Message::builder()
        .from(settings.from.clone())
        .to(to)
        .subject(rendered.subject)
        .message_id(Some(format!(
            "<{}@{}>",
            row.id,
            settings.from.email.domain()
        )));
    if let Some(reply_to) = &settings.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|error| JobError::permanent("unbuildable_email", error.to_string()))
}
