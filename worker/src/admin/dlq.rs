//! The `worker dlq` command line and what it prints.

use std::io::Write;
use std::time::Duration;

use common::EventKind;
use common::settings::AmqpSettings;
use indicatif::{ProgressBar, ProgressStyle};

use crate::dead_letters::{
    DlqError, Filter, ParkedMessage, ParkingQueue, Summary, list, purge, replay, show, total_depth,
};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum DlqCommand {
    /// Count parked messages per queue and list them (id, kind, reason, attempts, age; no personal data)
    List {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Print one parked message's headers (payload redacted unless --reveal)
    Show {
        /// The event id (the message id)
        id: String,
        /// Print the payload too: it may hold personal data
        #[arg(long)]
        reveal: bool,
    },
    /// Send matching messages back to their work queue (same event id, attempt count reset)
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// Say what would be replayed and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete matching messages for good (refuses without --yes)
    Purge {
        #[command(flatten)]
        filter: FilterArgs,
        /// Say what would be purged and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Really delete them
        #[arg(long)]
        yes: bool,
    },
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only this parking queue (repeatable; default: all)
    #[arg(long = "queue", value_enum)]
    pub queues: Vec<ParkingQueue>,
    /// Only this event kind, e.g. lt.application
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<EventKind>,
    /// Only this reason, e.g. unknown_webhook
    #[arg(long)]
    pub reason: Option<String>,
    /// Only messages parked longer ago than this, e.g. 2h
    #[arg(long, value_parser = humantime::parse_duration)]
    pub older_than: Option<Duration>,
    /// Act on at most this many matching messages
    #[arg(long)]
    pub limit: Option<usize>,
}

impl From<FilterArgs> for Filter {
    fn from(args: FilterArgs) -> Self {
        Filter {
            queues: args.queues,
            kind: args.kind,
            reason: args.reason,
            older_than: args.older_than,
            limit: args.limit,
        }
    }
}

fn parse_kind(text: &str) -> Result<EventKind, String> {
    EventKind::parse(text).ok_or_else(|| {
        let known: Vec<_> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
        format!("unknown kind; one of {}", known.join(", "))
    })
}

/// Runs one `worker dlq` command, printing to `out`.
pub async fn run(
    command: DlqCommand,
    settings: &AmqpSettings,
    out: &mut dyn Write,
) -> Result<(), DlqError> {
    match command {
        DlqCommand::List { filter } => print_listing(settings, &filter.into(), out).await,
        DlqCommand::Show { id, reveal } => print_message(&show(settings, &id).await?, reveal, out),
        DlqCommand::Replay { filter, dry_run } => {
            let filter = filter.into();
            let progress = progress_bar(settings, &filter).await?;
            let summary = replay(settings, &filter, dry_run, &progress).await?;
            print_summary(out, "replay", "replayed", &summary)
        }
        DlqCommand::Purge {
            filter,
            dry_run,
            yes,
        } => {
            let filter = filter.into();
            if !yes && !dry_run {
                let counted = purge(settings, &filter, true, &ProgressBar::hidden()).await?;
                return Err(DlqError::PurgeNeedsYes(counted.matched));
            }
            let progress = progress_bar(settings, &filter).await?;
            let summary = purge(settings, &filter, dry_run, &progress).await?;
            print_summary(out, "purge", "purged", &summary)
        }
    }
}

/// The summary at the end: what was (or, in a dry run, would be) done.
fn print_summary(
    out: &mut dyn Write,
    verb: &str,
    done: &str,
    summary: &Summary,
) -> Result<(), DlqError> {
    let action = if summary.dry_run {
        format!("would {verb}")
    } else {
        done.to_owned()
    };
    writeln!(
        out,
        "{action} {} of {} scanned message(s)",
        summary.matched, summary.scanned
    )?;
    Ok(())
}

/// A bar on the terminal for long walks (hidden when stderr is not one).
async fn progress_bar(settings: &AmqpSettings, filter: &Filter) -> Result<ProgressBar, DlqError> {
    let bar = ProgressBar::new(total_depth(settings, filter).await?);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} messages ({eta} left)") {
        bar.set_style(style);
    }
    Ok(bar)
}

async fn print_listing(
    settings: &AmqpSettings,
    filter: &Filter,
    out: &mut dyn Write,
) -> Result<(), DlqError> {
    let listing = list(settings, filter).await?;
    writeln!(out, "{:<40} {:>8}", "QUEUE", "MESSAGES")?;
    for (queue, count) in &listing.counts {
        writeln!(out, "{queue:<40} {count:>8}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<36}  {:<24}  {:<22}  {:<24}  {:>8}  AGE",
        "ID", "QUEUE", "KIND", "REASON", "ATTEMPTS"
    )?;
    for message in &listing.messages {
        writeln!(
            out,
            "{:<36}  {:<24}  {:<22}  {:<24}  {:>8}  {}",
            message.id.as_deref().unwrap_or("-"),
            message.queue,
            message.kind.as_deref().unwrap_or("-"),
            message.reason.as_deref().unwrap_or("-"),
            message
                .attempts
                .map_or("-".into(), |attempts| attempts.to_string()),
            message.age(),
        )?;
    }
    writeln!(out, "{} matching message(s)", listing.messages.len())?;
    Ok(())
}

fn print_message(
    message: &ParkedMessage,
    reveal: bool,
    out: &mut dyn Write,
) -> Result<(), DlqError> {
    writeln!(out, "queue: {}", message.queue)?;
    writeln!(out, "id: {}", message.id.as_deref().unwrap_or("-"))?;
    writeln!(out, "age: {}", message.age())?;
    if let Some(headers) = message.properties.headers() {
        for (key, value) in headers {
            // The envelope's `attempt` is the delay tier it was last
            // published to; `attempts` (dead-lettering's own) says how often
            // it was tried, which is what a person asks: one line, not two.
            if key.as_str() == common::envelope::header::ATTEMPT {
                continue;
            }
            let meaning = match key.as_str() {
                common::dead_letter::ATTEMPTS => " (tries before it was parked)",
                _ => "",
            };
            writeln!(out, "header {key}: {}{meaning}", render(value))?;
        }
    }
    if reveal {
        writeln!(out, "payload:")?;
        writeln!(out, "{}", String::from_utf8_lossy(&message.body))?;
    } else {
        writeln!(
            out,
            "payload: <redacted: {} bytes; --reveal prints it>",
            message.body.len()
        )?;
    }
    Ok(())
}

fn render(value: &lapin::types::AMQPValue) -> String {
    use lapin::types::AMQPValue;
    match value {
        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        AMQPValue::ShortString(text) => text.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}
