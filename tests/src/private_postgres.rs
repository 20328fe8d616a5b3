//! PostgreSQL servers of the test's own (each its own data directory and
//! port, run as the `postgres` user): one with TLS from a CA the test made,
//! or a primary and a hot standby streaming from it, to be promoted. Never
//! the machine's server: each is stopped and removed on drop, on every path.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::test_ca::TestCa;

pub struct PrivatePostgres {
    dir: PathBuf,
    pub port: u16,
}

fn bin(name: &str) -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL is installed");
    let mut found: Vec<PathBuf> = versions
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin").join(name))
        .filter(|path| path.exists())
        .collect();
    found.sort();
    found.pop().expect("a PostgreSQL binary")
}

fn as_postgres(command: &Path, args: &[&str]) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(command)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl PrivatePostgres {
    /// initdb, the certificates, and a start on a free port with `ssl = on`.
    pub fn start_with_tls(ca: &TestCa) -> PrivatePostgres {
        let server = PrivatePostgres::initdb();
        let data = server.data();
        for (name, pem) in [
            ("server.crt", &ca.server_cert_pem),
            ("server.key", &ca.server_key_pem),
        ] {
            let path = data.join(name);
            std::fs::write(&path, pem).unwrap();
            chown_postgres(&path);
            set_mode(&path, 0o600);
        }
        server.start("-c ssl=on")
    }

    /// A primary and a hot standby streaming from it, replicated
    /// synchronously (`synchronous_standby_names = '*'`): a commit returns
    /// once the standby has it, so a failover loses no committed event.
    /// (initdb's `pg_hba.conf` trusts replication connections from loopback.)
    pub fn start_pair() -> (PrivatePostgres, PrivatePostgres) {
        let primary = PrivatePostgres::initdb()
            .start("-c wal_level=replica -c max_wal_senders=4 -c synchronous_standby_names='*'");
        let standby = PrivatePostgres::start_standby_of(&primary);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while primary
            .psql("SELECT sync_state FROM pg_stat_replication")
            .trim()
            != "sync"
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the standby never became synchronous"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        (primary, standby)
    }

    /// `psql -Atc <sql>` on its `postgres` database: what it printed.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-Atc", sql])
            .output()
            .expect("psql runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A hot standby of `primary` (`pg_basebackup -R`), streaming from it.
    fn start_standby_of(primary: &PrivatePostgres) -> PrivatePostgres {
        let server = PrivatePostgres::new_dir();
        assert!(
            as_postgres(
                &bin("pg_basebackup"),
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary.port.to_string(),
                    "-U",
                    "postgres",
                    "-D",
                    server.data().to_str().unwrap(),
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                ]
            ),
            "pg_basebackup"
        );
        server.start("-c hot_standby=on")
    }

    fn new_dir() -> PrivatePostgres {
        let dir = std::env::temp_dir().join(format!("intake-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        chown_postgres(&dir);
        crate::reaper::after_this_process(&format!(
            "runuser -u postgres -- {pg_ctl} -D {dir}/data -m immediate -w stop; rm -rf {dir}",
            pg_ctl = bin("pg_ctl").display(),
            dir = dir.display()
        ));
        PrivatePostgres {
            dir,
            port: crate::smtp::free_port(),
        }
    }

    fn initdb() -> PrivatePostgres {
        let server = PrivatePostgres::new_dir();
        assert!(
            as_postgres(
                &bin("initdb"),
                &[
                    "-D",
                    server.data().to_str().unwrap(),
                    "-A",
                    "trust",
                    "-U",
                    "postgres"
                ]
            ),
            "initdb"
        );
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn start(self, options: &str) -> PrivatePostgres {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} {options}",
            self.port,
            self.dir.display()
        );
        assert!(
            as_postgres(
                &bin("pg_ctl"),
                &[
                    "-D",
                    self.data().to_str().unwrap(),
                    "-o",
                    &options,
                    "-w",
                    "-l",
                    self.dir.join("log").to_str().unwrap(),
                    "start"
                ]
            ),
            "pg_ctl start (see {})",
            self.dir.join("log").display()
        );
        self
    }

    /// Stops the server at once, as a crash would (`-m immediate`).
    pub fn stop_immediately(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }

    /// Promotes a standby to primary and waits until it takes writes.
    pub fn promote(&self) {
        assert!(self.pg_ctl(&["-w", "promote"]), "pg_ctl promote");
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        let data = self.data();
        let mut all = vec!["-D", data.to_str().unwrap()];
        all.extend_from_slice(args);
        as_postgres(&bin("pg_ctl"), &all)
    }

    /// A URL of its `postgres` database with `query` appended.
    pub fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }
}

fn chown_postgres(path: &Path) {
    let _ = Command::new("chown")
        .arg("postgres:postgres")
        .arg(path)
        .status();
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Also when a start failed half-way: stopping a stopped server is a no-op.
        self.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
