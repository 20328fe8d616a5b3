//! Where test processes log: JSON lines into `INTAKE_TEST_LOG_DIR` (set by
//! `scripts/test`) so that the log audit can read the logs of the whole run,
//! or to stderr when it is unset.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The directory of this run's logs, if there is one.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os("INTAKE_TEST_LOG_DIR").map(PathBuf::from)
}

/// Installs this process's log subscriber (once; later calls do nothing).
pub fn init() {
    match dir() {
        Some(dir) => init_into(&dir),
        None => common::telemetry::init("info", common::telemetry::LogFormat::Json),
    }
}

/// Sends this process's logs, as the binaries write them, into `dir`.
pub fn init_into(dir: &Path) {
    let Ok(file) = open(dir, "test") else {
        return common::telemetry::init("info", common::telemetry::LogFormat::Json);
    };
    common::telemetry::init_writing(
        "info",
        common::telemetry::LogFormat::Json,
        std::sync::Mutex::new(file),
    );
}

/// Where a spawned binary's stderr goes: a file in the log directory, or nowhere.
pub fn stderr_for(name: &str) -> Stdio {
    dir()
        .and_then(|dir| open(&dir, name).ok())
        .map_or_else(Stdio::null, Stdio::from)
}

/// Keeps text a test captured from a process (its stderr) with the run's logs.
pub fn keep(name: &str, text: &str) {
    use std::io::Write;
    if let Some(mut file) = dir().and_then(|dir| open(&dir, name).ok()) {
        let _ = file.write_all(text.as_bytes());
    }
}

fn open(dir: &Path, name: &str) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!(
            "{name}-{}-{}.log",
            std::process::id(),
            &unique[..8]
        )))
}
