//! The real `gateway` and `worker` executables, for tests that send signals
//! or kill processes.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Builds both binaries (once per test process; a no-op when up to date)
/// and returns the path of `name`.
pub fn path(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .env_clear()
            .envs(build_environment())
            .args(["build", "--bin", "gateway", "--bin", "worker"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the binaries failed");
    });
    // This test runs from <target>/debug/deps/; the binaries are in <target>/debug/.
    let exe = std::env::current_exe().unwrap();
    let debug_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    debug_dir.join(name)
}

/// The environment a nested `cargo` or script gets: only what finds the
/// toolchain and the target directory. The test runner's own `CARGO_*`
/// variables would change build scripts' fingerprints and make every build
/// recompile the dependencies.
pub fn build_environment() -> Vec<(String, String)> {
    const KEEP: [&str; 6] = [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
    ];
    std::env::vars()
        .filter(|(name, _)| KEEP.contains(&name.as_str()))
        .collect()
}
