//! The gateway's HTTP load through `wrk` (Debian's package; `scripts/bench`
//! installs it): a C load generator takes far less of the shared 2 cores
//! than a Rust client would, so more of them go to the gateway.

use std::time::Duration;

use anyhow::Context;

use crate::payload;
use crate::system::{LINA_SECRET, LT_TOKEN};

pub struct WrkResult {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl WrkResult {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

pub fn available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// `connections` keep-alive connections for `duration`, cycling through 100
/// requests: 90 LT profiles of about 2 KiB and 10 LINA consents.
pub async fn run_for(
    base: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<WrkResult> {
    run_script(base, connections, duration, &lua_script()).await
}

/// wrk as one would run it by hand: one static LT body (`wrk.method`,
/// `wrk.body`, `wrk.headers`, no Lua per request).
pub async fn run_static_lt(
    base: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<WrkResult> {
    let script = format!(
        r#"wrk.method = "POST"
wrk.path = "/webhooks/lt"
wrk.headers["Authorization"] = "Bearer {LT_TOKEN}"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{}]==]
{DONE}"#,
        payload::lt_profile(1)
    );
    run_script(base, connections, duration, &script).await
}

async fn run_script(
    base: &str,
    connections: usize,
    duration: Duration,
    lua: &str,
) -> anyhow::Result<WrkResult> {
    let script = std::env::temp_dir().join(format!("intake-bench-{}.lua", uuid::Uuid::new_v4()));
    std::fs::write(&script, lua)?;
    let output = tokio::process::Command::new("wrk")
        .args(["-t2", &format!("-c{connections}")])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("-s")
        .arg(&script)
        .arg(base)
        .output()
        .await
        .context("wrk runs")?;
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .with_context(|| format!("no result from wrk: {stdout}"))?;
    let fields: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [requests, micros, errors, p50, p99, max] = fields[..] else {
        anyhow::bail!("unexpected wrk result: {line}");
    };
    Ok(WrkResult {
        requests: requests as u64,
        errors: errors as u64,
        seconds: micros / 1e6,
        p50_ms: p50 / 1000.0,
        p99_ms: p99 / 1000.0,
        max_ms: max / 1000.0,
    })
}

fn lua_script() -> String {
    let mut requests = String::new();
    for n in 0..100u64 {
        let (path, auth, body) = if n % 10 == 9 {
            (
                format!("/webhooks/lina/{LINA_SECRET}"),
                String::new(),
                payload::lina_consent(n),
            )
        } else {
            (
                "/webhooks/lt".to_owned(),
                format!("Authorization = \"Bearer {LT_TOKEN}\", "),
                payload::lt_profile(n),
            )
        };
        requests.push_str(&format!(
            "  wrk.format(\"POST\", \"{path}\", {{ {auth}[\"Content-Type\"] = \"application/json\" }}, [==[{body}]==]),\n"
        ));
    }
    format!(
        r#"local requests
local n = 0
function init(args)
  requests = {{
{requests}  }}
end
function request()
  n = n % #requests + 1
  return requests[n]
end
{DONE}"#
    )
}

/// wrk's summary as one line the bench parses.
const DONE: &str = r#"function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"#;
