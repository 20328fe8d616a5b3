//! Statements sent to PostgreSQL all at once, in order, without waiting for
//! each answer (tokio-postgres pipelines the queries of one connection that
//! are in flight together). A batch decides everything it will write before
//! it writes (see `jobs::plan`), so none of its statements needs the answer
//! of an earlier one, and the batch costs one round trip instead of one per
//! statement. PostgreSQL still runs them one after the other, in order.

use std::future::Future;
use std::pin::Pin;

use common::db::Transaction;
use futures_util::future::try_join_all;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use crate::error::JobError;

/// A parameter owned by its statement (or borrowed from the batch).
pub type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// What the rows a statement returns mean to the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Yields {
    /// Nothing to read.
    Nothing,
    /// An acknowledgement created (at most one row: its outbox id).
    Acknowledgement,
    /// The outbox rows of an erased subject (their `.eml` copies go too).
    ErasedOutbox,
    /// A row per personal row an erasure deleted.
    ErasedRows,
}

pub struct Statement<'a> {
    pub sql: &'static str,
    pub params: Vec<Param<'a>>,
    pub yields: Yields,
    /// The parameters' types when the statement is planned at each execution
    /// (see `planned_each_time`); empty: prepared once per connection.
    pub types: &'static [Type],
}

impl<'a> Statement<'a> {
    pub fn new(sql: &'static str, params: Vec<Param<'a>>) -> Self {
        Statement {
            sql,
            params,
            yields: Yields::Nothing,
            types: &[],
        }
    }

    pub fn yielding(mut self, yields: Yields) -> Self {
        self.yields = yields;
        self
    }

    /// Sent unprepared, so PostgreSQL plans it with the actual arguments
    /// and table size every time. For statements that look rows up by an
    /// array of keys (`= ANY($1)`, a join with `unnest`): a prepared
    /// statement's generic plan, made while its table was small (a new
    /// database, the first batches), stays a sequential scan until the next
    /// ANALYZE. Measured: 596 sequential scans of `subject_state`, 4.5
    /// million rows read, in 10 s of the benchmark's half-rate run.
    pub fn planned_each_time(mut self, types: &'static [Type]) -> Self {
        self.types = types;
        self
    }
}

type RowsFuture<'t> =
    Pin<Box<dyn Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 't>>;

/// Sends every statement, in order, without waiting in between, and returns
/// each one's rows. The first failure fails the whole call (PostgreSQL has
/// then aborted the transaction: the caller rolls back).
pub async fn send_all(
    transaction: &Transaction<'_>,
    statements: &[&Statement<'_>],
) -> Result<Vec<Vec<Row>>, JobError> {
    // Preparing is a round trip only the first time a connection sees a
    // statement; afterwards it comes from the connection's cache.
    let mut prepared = Vec::with_capacity(statements.len());
    for statement in statements {
        prepared.push(match statement.types.is_empty() {
            true => Some(transaction.prepare_cached(statement.sql).await?),
            false => None,
        });
    }
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements
        .iter()
        .map(|statement| {
            statement
                .params
                .iter()
                .map(|param| &**param as &(dyn ToSql + Sync))
                .collect()
        })
        .collect();
    // try_join_all polls the queries in order, so they are written to the
    // connection in order, before any answer is read.
    let queries = statements.iter().zip(&prepared).zip(&params).map(
        |((statement, prepared), params)| -> RowsFuture<'_> {
            match prepared {
                Some(prepared) => Box::pin(transaction.query(prepared, params)),
                None => {
                    let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
                        .iter()
                        .copied()
                        .zip(statement.types.iter().cloned())
                        .collect();
                    Box::pin(async move { transaction.query_typed(statement.sql, &typed).await })
                }
            }
        },
    );
    Ok(try_join_all(queries).await?)
}
