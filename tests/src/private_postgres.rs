//! A PostgreSQL server of the test's own (its own data directory and port,
//! run as the `postgres` user, TLS with a CA the test made), never the
//! machine's: stopped and removed on drop, on every path.

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
        let dir = std::env::temp_dir().join(format!("intake-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = PrivatePostgres {
            dir: dir.clone(),
            port: crate::smtp::free_port(),
        };
        let data = dir.join("data");
        chown_postgres(&dir);
        assert!(
            as_postgres(
                &bin("initdb"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-A",
                    "trust",
                    "-U",
                    "postgres"
                ]
            ),
            "initdb"
        );
        for (name, pem) in [
            ("server.crt", &ca.server_cert_pem),
            ("server.key", &ca.server_key_pem),
        ] {
            let path = data.join(name);
            std::fs::write(&path, pem).unwrap();
            chown_postgres(&path);
            set_mode(&path, 0o600);
        }
        let options = format!(
            "-p {} -c ssl=on -c listen_addresses=127.0.0.1 -k {}",
            server.port,
            dir.display()
        );
        assert!(
            as_postgres(
                &bin("pg_ctl"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-o",
                    &options,
                    "-w",
                    "-l",
                    dir.join("log").to_str().unwrap(),
                    "start"
                ]
            ),
            "pg_ctl start"
        );
        server
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
        let data = self.dir.join("data");
        as_postgres(
            &bin("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
