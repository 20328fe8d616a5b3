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
