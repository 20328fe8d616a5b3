//! `bench`: measurements of the intake on this machine, with its real
//! RabbitMQ, PostgreSQL and a loopback SMTP server; each run uses its own
//! database and queue prefix and removes them afterwards. Results and the
//! commands that produced them are in BENCHMARKS.md.
#![forbid(unsafe_code)]

mod email;

use clap::Parser;

#[derive(clap::Parser)]
#[command(
    name = "bench",
    about = "Measure the intake on this machine (run with --release)."
)]
enum Bench {
    /// Acknowledgement e-mails per second through one worker to a loopback SMTP server
    Email(email::EmailArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Bench::parse() {
        Bench::Email(args) => email::run(args).await,
    }
}
