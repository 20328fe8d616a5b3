//! The machine's own ceilings, measured the same way the system is used:
//! (a) confirmed 2 KiB publishes to a quorum queue with `in_flight` waiting
//! for confirms; (b) single-row upserts of an application's shape, one
//! commit each, over `connections` connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};

use crate::payload;

#[derive(clap::Args)]
pub struct CeilingArgs {
    /// How long each measurement runs
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Publishes waiting for a confirm at once (as the HTTP load's connections)
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Database connections doing upserts at once (the worker's default
    /// concurrency: `INTAKE_CONSUMERS`, 8)
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
}

/// Confirmed publishes per second.
pub async fn publish_ceiling(duration: Duration, in_flight: usize) -> anyhow::Result<f64> {
    let connection =
        Connection::connect(&intake_tests::amqp_url(), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let queue = format!("bench.ceiling.{}", uuid::Uuid::new_v4().simple());
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.as_str().into(), durable, arguments)
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let body = payload::lt_profile(0);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (channel, body, done, queue) =
            (channel.clone(), body.clone(), done.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let options = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            while Instant::now() < deadline {
                let properties = BasicProperties::default().with_delivery_mode(2);
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        options,
                        body.as_bytes(),
                        properties,
                    )
                    .await?;
                confirm.await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), lapin::Error>(())
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await??;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    connection.close(200, "done".into()).await?;
    Ok(rate)
}

/// Single-row upserts per second, one commit each.
pub async fn upsert_ceiling(
    db_url: &str,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<f64> {
    // The real table, as the migrations make it (storage settings included):
    // the ceiling measures the same rows the worker writes.
    let pool = common::db::pool(&secrecy::SecretString::from(db_url.to_owned()), 1)?;
    common::db::run_migrations(&pool).await?;
    pool.close();
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for worker in 0..connections {
        let (done, db_url) = (done.clone(), db_url.to_owned());
        tasks.push(tokio::spawn(async move {
            let client = intake_tests::database::connect(&db_url).await;
            let statement = client
                .prepare(
                    "INSERT INTO lt_application
                         (mydatashare_user_id, email, status, profile, first_received_at, last_received_at)
                     VALUES ($1, $2, 'new', $3, now(), now())
                     ON CONFLICT (mydatashare_user_id) DO UPDATE SET
                         email = EXCLUDED.email, profile = EXCLUDED.profile,
                         last_received_at = EXCLUDED.last_received_at, updated_at = now()",
                )
                .await?;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let profile: serde_json::Value = serde_json::from_str(&payload::lt_profile(n))?;
                let id = format!("c{worker}-{n}");
                client.execute(&statement, &[&id, &"bench@example.fi", &profile]).await?;
                done.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
