//! A clean-up that runs even when the test process cannot run its own: a
//! small shell process, in a session of its own, waits for the test
//! process to end (a pass, a panic, an abort, or nextest's kill on a
//! timeout) and then runs its script. The helpers' `Drop` cleans up first
//! on the ordinary paths; the script then finds nothing left to do.

use std::process::{Command, Stdio};

/// Runs `script` (`sh`) once this process has ended.
pub fn after_this_process(script: &str) {
    let watch = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {script}",
        pid = std::process::id()
    );
    let spawned = Command::new("setsid")
        .args(["sh", "-c", &watch])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    assert!(spawned.is_ok(), "the clean-up watcher starts");
}
