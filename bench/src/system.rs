//! The real system for a benchmark: the release `gateway` and `worker`
//! binaries as separate processes (so each one's memory is its own), on a
//! fresh database and queue prefix that are removed afterwards.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub const LT_TOKEN: &str = "bench-token";
pub const LINA_SECRET: &str = "bench-lina-secret";

pub struct System {
    pub gateway: Child,
    pub worker: Option<Child>,
    pub gateway_url: String,
    pub gateway_ops: String,
    pub worker_ops: String,
    pub db_name: String,
    pub db_url: String,
    pub prefix: String,
    spool_dir: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where the worker writes its .eml files: memory (tmpfs) where there is
/// one, since tens of thousands of files on disk measure the filesystem's
/// inode allocation rather than the intake.
fn mail_dir(unique: &str) -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("intake-bench-mail-{unique}"))
}

/// A sibling of this executable: the release binaries are built together.
fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().join(name)
}

impl System {
    pub async fn start(with_worker: bool) -> anyhow::Result<System> {
        let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let db_name = format!("intake_t_{unique}");
        let db_url = intake_tests::database::create(&db_name).await;
        let prefix = format!("t_{unique}");
        let spool_dir = std::env::temp_dir().join(format!("intake-bench-spool-{unique}"));
        let (http, gateway_ops_port, worker_ops_port) = (free_port(), free_port(), free_port());
        let common = |command: &mut Command| {
            command
                .env("INTAKE_AMQP_URL", intake_tests::amqp_url())
                .env("INTAKE_QUEUE_PREFIX", &prefix)
                .env("INTAKE_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
        };
        let mut worker = None;
        if with_worker {
            let mut command = Command::new(binary("worker"));
            common(&mut command);
            command
                .arg("run")
                .env("INTAKE_DATABASE_URL", &db_url)
                .env("INTAKE_OPS_ADDR", format!("127.0.0.1:{worker_ops_port}"))
                .env(
                    "INTAKE_SUBJECT_HASH_KEY",
                    "bench-subject-hash-key-0123456789",
                )
                .env("INTAKE_MAIL_OUTBOX_DIR", mail_dir(&unique));
            worker = Some(command.spawn()?);
        }
        let mut command = Command::new(binary("gateway"));
        common(&mut command);
        command
            .env("INTAKE_GATEWAY_ADDR", format!("127.0.0.1:{http}"))
            .env("INTAKE_OPS_ADDR", format!("127.0.0.1:{gateway_ops_port}"))
            .env("INTAKE_LT_TOKENS", LT_TOKEN)
            .env("INTAKE_LINA_PATH_SECRETS", LINA_SECRET)
            .env("INTAKE_SPOOL_DIR", &spool_dir);
        let gateway = command.spawn()?;
        let system = System {
            gateway,
            worker,
            gateway_url: format!("http://127.0.0.1:{http}"),
            gateway_ops: format!("http://127.0.0.1:{gateway_ops_port}"),
            worker_ops: format!("http://127.0.0.1:{worker_ops_port}"),
            db_name,
            db_url,
            prefix,
            spool_dir,
        };
        system.wait_ready(&system.gateway_ops).await?;
        if with_worker {
            system.wait_ready(&system.worker_ops).await?;
        }
        Ok(system)
    }

    async fn wait_ready(&self, ops: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(response) = client.get(format!("{ops}/readyz")).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("{ops} did not become ready")
    }

    /// Peak resident memory (VmHWM) of a child, in MiB.
    pub fn peak_rss_mib(child: &Child) -> f64 {
        let Some(pid) = child.id() else { return 0.0 };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kib| kib / 1024.0)
    }

    pub async fn stop(mut self) {
        let _ = self.gateway.kill().await;
        if let Some(worker) = self.worker.as_mut() {
            let _ = worker.kill().await;
        }
        intake_tests::database::drop(&self.db_name).await;
        let topology = common::amqp::Topology::new(
            self.prefix.clone(),
            common::settings::default_retry_delays(),
        );
        intake_tests::broker::delete(&topology.queue_names(), &topology.exchange_names()).await;
        let _ = std::fs::remove_dir_all(&self.spool_dir);
        let unique = self.prefix.trim_start_matches("t_");
        let _ = std::fs::remove_dir_all(mail_dir(unique));
    }
}
