//! Structured logs (JSON by default). What goes into a log line is decided
//! where it is written: ids, kinds, hashed subjects and outcomes, never
//! personal data or secrets (DESIGN.md, invariant 6).
//!
//! Requests the HTTP server refuses before any handler sees them (a
//! malformed head, a head too large, a head too slow) are logged by actix's
//! dispatcher as ERROR lines: anyone could fill the error log and page the
//! on-call. Those lines are counted here instead
//! (`intake_http_refused_total{reason}`) and written at debug, without
//! request content.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, Opts};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Where actix logs the requests it refused itself, matched by call site so
/// that no other event of the dispatcher is counted, hidden or enabled: the
/// ERROR `stream error: …` for a malformed head or one too large (and a
/// client gone mid-request), and the TRACE line for a head too slow (408).
/// `tests/tests/api/http_edge.rs` fails if an actix upgrade moves them.
const DISPATCHER: &str = "actix_http::h1::dispatcher";
const STREAM_ERROR_CALL_SITE: &str = "src/h1/dispatcher.rs:1435";
const SLOW_HEAD_CALL_SITE: &str = "src/h1/dispatcher.rs:1043";

/// Why the HTTP server refused a request before any handler saw it.
pub const HTTP_REFUSAL_REASONS: [&str; 4] =
    ["malformed_head", "head_too_large", "head_timeout", "other"];

/// Requests refused by the HTTP server itself, by reason; registered by
/// the gateway's metrics (every HTTP listener of the process counts).
pub static HTTP_REFUSALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let counter = IntCounterVec::new(
        Opts::new(
            "intake_http_refused_total",
            "Requests the HTTP server refused before any handler saw them: a malformed head (400), a head too large (431), a head too slow (408).",
        ),
        &["reason"],
    )
    .expect("a valid metric");
    for reason in HTTP_REFUSAL_REASONS {
        counter.with_label_values(&[reason]);
    }
    counter
});

/// Installs the global subscriber, logging to stderr; a second call
/// (tests) keeps the first.
pub fn init(filter: &str, format: LogFormat) {
    init_writing(filter, format, std::io::stderr);
}

/// `init`, writing to `writer` (the tests' log files).
pub fn init_writing<W>(filter: &str, format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // The `log` records of dependencies up to the filter's level only: the
    // refusal layer's TRACE call site would otherwise open every record.
    let log_level = match filter.max_level_hint() {
        Some(LevelFilter::OFF) => log::LevelFilter::Off,
        Some(LevelFilter::ERROR) => log::LevelFilter::Error,
        Some(LevelFilter::WARN) => log::LevelFilter::Warn,
        Some(LevelFilter::INFO) => log::LevelFilter::Info,
        Some(LevelFilter::DEBUG) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let output = tracing_subscriber::fmt::layer().with_writer(writer);
    let output = match format {
        LogFormat::Json => output.json().flatten_event(true).boxed(),
        // Colour only where a person reads it: escape codes in a log file
        // or a collector are noise.
        LogFormat::Text => output.with_ansi(stderr_is_terminal()).boxed(),
    };
    let subscriber = tracing_subscriber::registry()
        .with(output.with_filter(filter.and(filter_fn(|metadata| {
            !is_refusal(metadata) && !quotes_messages(metadata)
        }))))
        .with(CountRefusals.with_filter(filter_fn(is_refusal)));
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        let _ = tracing_log::LogTracer::builder()
            .with_max_level(log_level)
            .init();
    }
}

/// Dependency log lines that print a whole message, body and headers
/// included (lapin logs every returned message at WARN): personal data,
/// so never written, whatever the filter. The gateway logs the return
/// itself, by event id.
fn quotes_messages(metadata: &Metadata<'_>) -> bool {
    const QUOTING_TARGETS: [&str; 1] = ["lapin::returned_messages"];
    QUOTING_TARGETS.contains(&metadata.target())
}

/// The admin commands, run by a person from a shell: warnings and errors
/// only (no start-up chatter, no migration lines), as short text on
/// stderr (no targets, no source paths), coloured only on a terminal, so
/// that what a command prints on stdout is all there is to read.
pub fn init_for_people() {
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(stderr_is_terminal())
        .with_filter(LevelFilter::WARN.and(filter_fn(|metadata| !quotes_messages(metadata))));
    if tracing::subscriber::set_global_default(tracing_subscriber::registry().with(output)).is_ok()
    {
        let _ = tracing_log::LogTracer::builder()
            .with_max_level(log::LevelFilter::Warn)
            .init();
    }
}

fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

fn is_refusal(metadata: &Metadata<'_>) -> bool {
    metadata.target() == DISPATCHER
        && match *metadata.level() {
            Level::ERROR => metadata.name().ends_with(STREAM_ERROR_CALL_SITE),
            Level::TRACE => metadata.name().ends_with(SLOW_HEAD_CALL_SITE),
            _ => false,
        }
}

/// Counts the dispatcher's refusals and logs each at debug.
struct CountRefusals;

impl<S: Subscriber> Layer<S> for CountRefusals {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut message = Message::default();
        event.record(&mut message);
        let reason = refusal_reason(&message.0);
        HTTP_REFUSALS.with_label_values(&[reason]).inc();
        tracing::debug!(message = "Request refused by the HTTP server.", reason);
    }
}

/// A refusal's reason from actix's message (`stream error: <DispatchError>`).
fn refusal_reason(message: &str) -> &'static str {
    if message.contains("message head is too large") {
        "head_too_large"
    } else if message.contains("timed out on slow request") {
        "head_timeout"
    } else if message.contains("request parse error") {
        "malformed_head"
    } else {
        "other"
    }
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::refusal_reason;

    #[test]
    fn actix_refusals_are_told_apart() {
        let reason = |text: &str| refusal_reason(&format!("stream error: {text}"));
        assert_eq!(
            reason("request parse error: invalid Header provided"),
            "malformed_head"
        );
        assert_eq!(
            reason("request parse error: message head is too large"),
            "head_too_large"
        );
        assert_eq!(
            refusal_reason("timed out on slow request; replying with 408 and closing connection"),
            "head_timeout"
        );
        assert_eq!(reason("I/O error: broken pipe"), "other");
    }
}
