//! E-mails per second: `count` pending outbox rows and their jobs are made
//! ready first; then one worker is started and timed until every e-mail was
//! accepted by a real SMTP server on loopback (mailin-embedded).

use std::time::{Duration, Instant};

use common::{Envelope, EventKind};
use intake_tests::{TestOptions, smtp, spawn_app_with};

#[derive(clap::Args)]
pub struct EmailArgs {
    /// How many e-mails to send
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// SMTP connections at once (INTAKE_EMAIL_CONCURRENCY); unset: the worker's default
    #[arg(long)]
    concurrency: Option<usize>,
}

pub async fn run(args: EmailArgs) -> anyhow::Result<()> {
    let server = smtp::start(0, &[]);
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        smtp_url: Some(server.url()),
        ..TestOptions::default()
    })
    .await;
    app.db
        .execute(
            "INSERT INTO email_outbox (id, subject_key, template, language, recipient, first_name, enqueued_at)
             SELECT gen_random_uuid(), decode(md5(n::text) || md5(n::text), 'hex'), 'acknowledgement', 'fi',
                    'bench' || n || '@example.fi', 'Äijä', now()
             FROM generate_series(1::bigint, $1) AS n",
            &[&(args.count as i64)],
        )
        .await?;
    let ids: Vec<uuid::Uuid> = app
        .db
        .query("SELECT id FROM email_outbox", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for id in &ids {
        let body = serde_json_body(*id);
        app.publish(&Envelope::new(EventKind::EmailAcknowledgement, None, body))
            .await;
    }

    let started = Instant::now();
    // The worker's defaults (INTAKE_PREFETCH, INTAKE_BATCH_SIZE,
    // INTAKE_EMAIL_CONCURRENCY), not the tests' smaller ones: the e-mail
    // queue's one consumer sends each batch in chunks of the concurrency.
    let mut settings = app.worker_settings();
    settings.prefetch = worker::settings::DEFAULT_PREFETCH;
    settings.batch_size = worker::settings::DEFAULT_BATCH_SIZE;
    settings.mail.concurrency = args
        .concurrency
        .unwrap_or(worker::email::DEFAULT_CONCURRENCY);
    settings.database_pool_size = settings.mail.concurrency + 8;
    let settings_concurrency = settings.mail.concurrency;
    let worker = app.spawn_worker_with(settings).await;
    while (worker.stats.emails_sent() as usize) < args.count {
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!(
                "only {} of {} e-mails sent in 10 minutes",
                worker.stats.emails_sent(),
                args.count
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let received = server.received().len();
    println!(
        "e-mails: {} sent in {:.2} s = {:.0} e-mails/s over {} connections (SMTP server received {received})",
        args.count,
        elapsed.as_secs_f64(),
        args.count as f64 / elapsed.as_secs_f64(),
        settings_concurrency,
    );
    worker.stop().await;
    Ok(())
}

fn serde_json_body(id: uuid::Uuid) -> Vec<u8> {
    format!(r#"{{"outbox_id":"{id}"}}"#).into_bytes()
}
