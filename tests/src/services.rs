//! Faults on the shared services, each undone by a guard on every path
//! (also when the test panics). Tests using these run alone (`faults`).

use std::process::Command;
use std::time::Duration;

fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn broker_port_open() -> bool {
    std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().unwrap(),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// RabbitMQ's application stopped (the node stays up); started again on drop.
pub struct BrokerOutage {
    ended: bool,
}

impl BrokerOutage {
    pub fn begin() -> Self {
        rabbitmqctl(&["stop_app"]);
        BrokerOutage { ended: false }
    }

    /// Starts the broker again and waits until it takes connections.
    pub fn end(mut self) {
        self.restart();
    }

    fn restart(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        rabbitmqctl(&["start_app"]);
        // The port opens before every part of the node has started.
        rabbitmqctl(&["await_startup", "--timeout", "60"]);
        for _ in 0..600 {
            if broker_port_open() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("RabbitMQ did not come back within 60 s");
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        self.restart();
    }
}

/// A memory alarm on the broker (it blocks publishers); lifted on drop.
pub struct MemoryAlarm {
    previous: String,
}

impl MemoryAlarm {
    pub fn raise() -> Self {
        let previous = rabbitmqctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."]);
        // Only a plain fraction can be restored as it was; anything else
        // gets RabbitMQ's default.
        let previous = if previous.parse::<f64>().is_ok() {
            previous
        } else {
            "0.4".into()
        };
        rabbitmqctl(&["set_vm_memory_high_watermark", "0.0000001"]);
        MemoryAlarm { previous }
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        rabbitmqctl(&["set_vm_memory_high_watermark", &self.previous]);
    }
}

fn psql_admin(commands: &[&str]) {
    let mut psql = Command::new("psql");
    psql.arg(crate::admin_database_url()).arg("-qX");
    for command in commands {
        psql.arg("-c").arg(command);
    }
    let output = psql.output().expect("psql runs");
    assert!(
        output.status.success(),
        "psql {commands:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The whole PostgreSQL read-only, as a standby is after a failover:
/// `default_transaction_read_only = on` and a reload, which reaches the
/// sessions already open too. Undone on drop (and by
/// `scripts/clean-test-leftovers` after a killed run).
pub struct ReadOnlyDatabase {
    ended: bool,
}

impl ReadOnlyDatabase {
    pub fn begin() -> Self {
        psql_admin(&[
            "ALTER SYSTEM SET default_transaction_read_only = on",
            "SELECT pg_reload_conf()",
        ]);
        ReadOnlyDatabase { ended: false }
    }

    pub fn end(mut self) {
        self.restore();
    }

    fn restore(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        psql_admin(&[
            "SET default_transaction_read_only = off",
            "ALTER SYSTEM RESET default_transaction_read_only",
            "SELECT pg_reload_conf()",
        ]);
    }
}

impl Drop for ReadOnlyDatabase {
    fn drop(&mut self) {
        self.restore();
    }
}

/// A small tmpfs (a disk that can really fill up), unmounted on every
/// path, also when the test fails. Mounting needs root.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir =
            std::env::temp_dir().join(format!("intake-tmpfs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Fills the disk with a file, then gives `leave_free` bytes back, so
    /// that whatever writes next runs out of space soon; delete the file
    /// to free the space.
    pub fn fill_leaving(&self, leave_free: u64) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let written = file.metadata().unwrap().len();
        file.set_len(written.saturating_sub(leave_free)).unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
