//! An LT revocation: the person withdrew the application. Every piece of
//! their personal data goes, in the same transaction that turns their state
//! row into a tombstone (see `jobs::plan`): the application, their unsent
//! acknowledgements, and the `.eml` copies of any (the copies go before the
//! commit: if the transaction then fails, the revocation is retried anyway).

use common::senders::lt::LtPayload;

use super::Prepared;
use crate::email::outbox;
use crate::pipeline::Statement;

const DELETE: &str = "DELETE FROM lt_application WHERE mydatashare_user_id = $1";

pub fn statements<'a>(prepared: &'a Prepared, payload: &'a LtPayload) -> Vec<Statement<'a>> {
    let mut statements = vec![Statement::new(DELETE, vec![Box::new(&payload.user_id)])];
    statements.extend(outbox::erase_statements(&prepared.subject));
    statements
}
