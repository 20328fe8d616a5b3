//! A LINA withdrawal: the employee withdrew consent. Their data at that
//! store goes, in the same transaction that turns their state row into a
//! tombstone (see `jobs::plan`).

use uuid::Uuid;

use crate::pipeline::Statement;

const DELETE: &str = "DELETE FROM lina_employee WHERE webhook = $1 AND user_uuid = $2";

pub fn statement<'a>(webhook: &'a Uuid, user: &'a Uuid) -> Statement<'a> {
    Statement::new(DELETE, vec![Box::new(webhook), Box::new(user)])
}
