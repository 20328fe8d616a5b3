//! The README's run command works: it starts the system, prints a curl line,
//! and that line stores an application.

use std::process::Stdio;
use std::time::Duration;

use intake_tests::{binaries, broker, database, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Kills the script's whole process group and removes what it created,
/// whatever way the test ends.
struct RunGuard {
    process_group: u32,
    db_name: String,
    prefix: String,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.process_group)])
            .status();
        let topology = common::amqp::Topology::new(
            self.prefix.clone(),
            common::settings::default_retry_delays(),
        );
        let db_name = self.db_name.clone();
        let _ = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                database::drop(&db_name).await;
                broker::delete(&topology.queue_names(), &topology.exchange_names()).await;
            });
        })
        .join();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_run_command_starts_the_system_and_its_curl_line_stores_an_application() {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let db_name = format!("intake_t_{unique}");
    let prefix = format!("t_{unique}");
    let mut child = tokio::process::Command::new(format!("{root}/scripts/run"))
        .current_dir(&root)
        .env_clear()
        .envs(binaries::build_environment())
        .env("INTAKE_DATABASE_URL", database::url_for(&db_name))
        .env("INTAKE_QUEUE_PREFIX", &prefix)
        .env("INTAKE_GATEWAY_ADDR", format!("127.0.0.1:{}", free_port()))
        .env(
            "INTAKE_RUN_GATEWAY_OPS_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("INTAKE_LOG_FORMAT", "json")
        // The shared broker stays as the fault tests expect it (its
        // Prometheus plugin slows `stop_app` by 5 s on RabbitMQ 3.10).
        .env("INTAKE_RUN_BROKER_METRICS", "off")
        .env(
            "INTAKE_RUN_WORKER_OPS_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .stdout(Stdio::piped())
        .stderr(intake_tests::logs::stderr_for("run"))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _guard = RunGuard {
        process_group: child.id().unwrap(),
        db_name: db_name.clone(),
        prefix,
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The first run may compile the binaries.
    let mut metrics_line = None;
    let curl_line = tokio::time::timeout(Duration::from_secs(600), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("Metrics: ") {
                metrics_line = Some(line.clone());
            }
            if line.starts_with("curl ") {
                return line;
            }
        }
        panic!("the run command ended without printing a curl line");
    })
    .await
    .expect("the run command printed a curl line in time");

    let metrics_line = metrics_line.expect("the banner names the metrics endpoints");
    assert!(
        metrics_line.contains("/metrics,") && metrics_line.ends_with("the broker's: off"),
        "{metrics_line}"
    );

    let output = tokio::process::Command::new("bash")
        .args(["-c", &curl_line])
        .current_dir(&root)
        .output()
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "curl answered: {answer}"
    );

    // The banner's last line: the admin commands from a second shell, with
    // this run's settings.
    let admin_line = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with(". ") {
                return line;
            }
        }
        panic!("the run command printed no line for a second shell");
    })
    .await
    .expect("the admin line follows the curl lines");
    let output = tokio::process::Command::new("bash")
        .args(["-c", &admin_line])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .await
        .unwrap();
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && listing.contains("QUEUE"),
        "{admin_line}: {listing} {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let db = database::connect(&database::url_for(&db_name)).await;
    eventually("the example application is stored", Duration::from_secs(20), || async {
        db.query_opt(
            "SELECT 1 FROM lt_application WHERE mydatashare_user_id = '7f3c2a9e-5b1d-4c8e-9a2f-0e6d4b8c1a37'",
            &[],
        )
        .await
        .ok()
        .flatten()
    })
    .await;
}
