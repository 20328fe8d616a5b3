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
    pub workers: Vec<Child>,
    pub gateway_url: String,
    pub gateway_ops: String,
    /// The ops listener of each worker.
    pub worker_ops: Vec<String>,
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
    /// The gateway and `workers` worker processes.
    pub async fn start(workers: usize) -> anyhow::Result<System> {
        Self::start_with(workers, &[]).await
    }

    /// `start`, with more settings for the gateway.
    pub async fn start_with(
        workers: usize,
        gateway_env: &[(&str, String)],
    ) -> anyhow::Result<System> {
        let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let db_name = format!("intake_t_{unique}");
        let db_url = intake_tests::database::create(&db_name).await;
        // Migrated up front, so a run can register a store before any worker starts.
        let pool = common::db::pool(&secrecy::SecretString::from(db_url.clone()), 1)?;
        common::db::run_migrations(&pool).await?;
        pool.close();
        let prefix = format!("t_{unique}");
        let spool_dir = std::env::temp_dir().join(format!("intake-bench-spool-{unique}"));
        let (http, gateway_ops_port) = (free_port(), free_port());
        let mut command = Command::new(binary("gateway"));
        command
            .env("INTAKE_AMQP_URL", intake_tests::amqp_url())
            .env("INTAKE_QUEUE_PREFIX", &prefix)
            .env("INTAKE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .env("INTAKE_GATEWAY_ADDR", format!("127.0.0.1:{http}"))
            .env("INTAKE_OPS_ADDR", format!("127.0.0.1:{gateway_ops_port}"))
            .env("INTAKE_LT_TOKENS", LT_TOKEN)
            .env("INTAKE_LINA_PATH_SECRETS", LINA_SECRET)
            .env("INTAKE_SPOOL_DIR", &spool_dir)
            .envs(gateway_env.iter().map(|(name, value)| (name, value)));
        let gateway = command.spawn()?;
        let mut system = System {
            gateway,
            workers: Vec::new(),
            gateway_url: format!("http://127.0.0.1:{http}"),
            gateway_ops: format!("http://127.0.0.1:{gateway_ops_port}"),
            worker_ops: Vec::new(),
            db_name,
            db_url,
            prefix,
            spool_dir,
        };
        system.wait_ready(&system.gateway_ops).await?;
        system.add_workers(workers).await?;
        Ok(system)
    }

    /// Starts `count` more worker processes and waits until they are ready.
    pub async fn add_workers(&mut self, count: usize) -> anyhow::Result<()> {
        for _ in 0..count {
            let port = free_port();
            let mut command = Command::new(binary("worker"));
            command
                .arg("run")
                .env("INTAKE_AMQP_URL", intake_tests::amqp_url())
                .env("INTAKE_QUEUE_PREFIX", &self.prefix)
                .env("INTAKE_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .env("INTAKE_DATABASE_URL", &self.db_url)
                .env("INTAKE_OPS_ADDR", format!("127.0.0.1:{port}"))
                .env(
                    "INTAKE_SUBJECT_HASH_KEY",
                    "bench-subject-hash-key-0123456789",
                )
                .env("INTAKE_MAIL_OUTBOX_DIR", mail_dir(self.unique()));
            self.workers.push(command.spawn()?);
            let ops = format!("http://127.0.0.1:{port}");
            self.wait_ready(&ops).await?;
            self.worker_ops.push(ops);
        }
        Ok(())
    }

    fn unique(&self) -> &str {
        self.prefix.trim_start_matches("t_")
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

    /// The processes whose CPU a run counts: the gateway, the workers, this
    /// machine's PostgreSQL and RabbitMQ, and the load generator.
    pub fn processes(&self) -> crate::cpu::Processes {
        let mut processes = crate::cpu::Processes::services();
        if let Some(pid) = self.gateway.id() {
            processes.add(crate::cpu::Role::Gateway, pid as i32);
        }
        for pid in self.workers.iter().filter_map(Child::id) {
            processes.add(crate::cpu::Role::Worker, pid as i32);
        }
        processes
    }

    /// Peak resident memory (VmHWM) of a child, in MiB.
    pub fn peak_rss_mib(child: &Child) -> f64 {
        Self::child_memory_mib(child, "VmHWM:")
    }

    /// Resident memory now (VmRSS) of a process, in MiB.
    pub fn rss_mib(pid: u32) -> f64 {
        memory_mib(pid, "VmRSS:")
    }

    fn child_memory_mib(child: &Child, field: &str) -> f64 {
        child.id().map_or(0.0, |pid| memory_mib(pid, field))
    }

    pub async fn stop(mut self) {
        let _ = self.gateway.kill().await;
        for worker in &mut self.workers {
            let _ = worker.kill().await;
        }
        intake_tests::database::drop(&self.db_name).await;
        let topology = common::amqp::Topology::new(
            self.prefix.clone(),
            common::settings::default_retry_delays(),
        );
        intake_tests::broker::delete(&topology.queue_names(), &topology.exchange_names()).await;
        let _ = std::fs::remove_dir_all(&self.spool_dir);
        let _ = std::fs::remove_dir_all(mail_dir(self.unique()));
    }
}

/// A memory field of /proc/<pid>/status, in MiB (0 when unreadable).
fn memory_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
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
