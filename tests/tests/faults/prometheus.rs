//! The ops views against a real Prometheus (Debian's, installed like
//! promtool): it scrapes the test's gateway, worker and broker with the
//! project's own scrape configuration, while a short workload produces
//! every outcome. Then every dashboard panel and alert expression must
//! parse, every metric selector in them must match a series, every exposed
//! `intake_` metric must be named by a panel, an alert or the README, and
//! the broker-down and worker-down alerts must fire (a copy of the rules
//! with `for: 2s`). The broker is a node of the test's own with the
//! `rabbitmq_prometheus` plugin, so its per-queue series are this test's
//! queues only and stopping it disturbs no other test.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use intake_tests::private_rabbitmq::PrivateRabbit;
use intake_tests::{TestApp, TestOptions, eventually, example, smtp, spawn_app_with};
use serde_json::Value;

const STORE: &str = "48138367-3eba-4772-b2bf-6bbd11840efb";

fn root(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("cannot read {full}: {error}"))
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

struct Prometheus {
    url: String,
    dir: PathBuf,
    _server: tokio::process::Child,
}

impl Prometheus {
    /// The project's scrape configuration, its jobs pointed at `targets`
    /// (job → address), scraping every second; the rules with `for: 2s`.
    async fn start(targets: &[(&str, String)]) -> Prometheus {
        let dir =
            std::env::temp_dir().join(format!("intake-prom-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let rules: String = root("ops/prometheus/alerts.yml")
            .lines()
            .map(|line| match line.trim_start().strip_prefix("for:") {
                Some(_) => format!("{}for: 2s", &line[..line.len() - line.trim_start().len()]),
                None => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join("alerts.yml"), rules).unwrap();
        let mut config: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&root("ops/prometheus/prometheus.yml")).unwrap();
        config["global"]["scrape_interval"] = "1s".into();
        config["global"]["evaluation_interval"] = "1s".into();
        let jobs = config["scrape_configs"].as_sequence_mut().unwrap();
        for job in jobs.iter_mut() {
            let name = job["job_name"].as_str().unwrap().to_owned();
            let target = targets
                .iter()
                .find(|(job, _)| *job == name)
                .unwrap_or_else(|| panic!("no target for the job {name}"))
                .1
                .clone();
            let mapping = job.as_mapping_mut().unwrap();
            mapping.remove("dns_sd_configs");
            let statics: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&format!("[{{targets: [\"{target}\"]}}]")).unwrap();
            mapping.insert("static_configs".into(), statics);
        }
        std::fs::write(
            dir.join("prometheus.yml"),
            serde_yaml_ng::to_string(&config).unwrap(),
        )
        .unwrap();
        let port = smtp::free_port();
        let server = tokio::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Its own log names its packager's e-mail address: kept out of
            // the audited logs, which must never hold one.
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts (scripts/test installs it)");
        // Also when this process dies without dropping it.
        intake_tests::reaper::after_this_process(&format!(
            "kill {} 2>/dev/null; rm -rf {}",
            server.id().unwrap_or_default(),
            dir.display()
        ));
        let prometheus = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            _server: server,
        };
        let http = reqwest::Client::new();
        eventually("Prometheus is ready", Duration::from_secs(30), || async {
            let ready = http.get(format!("{}/-/ready", prometheus.url)).send().await;
            ready
                .is_ok_and(|answer| answer.status() == 200)
                .then_some(())
        })
        .await;
        prometheus
    }

    /// The result of an instant query, or Prometheus's error.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let answer: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|error| error.to_string())?
            .json()
            .await
            .map_err(|error| error.to_string())?;
        if answer["status"] != "success" {
            return Err(answer["error"].to_string());
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The JSON answer of an API path (`/api/v1/…`).
    async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn metric_names(&self) -> BTreeSet<String> {
        self.get("/api/v1/label/__name__/values").await["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|name| name.as_str().map(str::to_owned))
            .collect()
    }

    /// The firing alerts named `name`, with their labels.
    async fn firing(&self, name: &str) -> Vec<Value> {
        self.get("/api/v1/alerts").await["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|alert| alert["labels"]["alertname"] == name && alert["state"] == "firing")
            .map(|alert| alert["labels"].clone())
            .collect()
    }

    async fn wait_firing(&self, name: &str, label: (&str, &str)) {
        eventually(
            &format!("{name} firing for {label:?}"),
            Duration::from_secs(60),
            || async {
                self.firing(name)
                    .await
                    .iter()
                    .any(|labels| labels[label.0] == label.1)
                    .then_some(())
            },
        )
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An instant result in short: how many series, and their values rounded.
fn values(series: &[Value]) -> String {
    let shown: Vec<String> = series
        .iter()
        .take(4)
        .filter_map(|sample| sample["value"][1].as_str()?.parse::<f64>().ok())
        .map(|value| format!("{value:.3}"))
        .collect();
    let more = if series.len() > 4 { ", …" } else { "" };
    format!("{} series: {}{more}", series.len(), shown.join(", "))
}

/// Every expression of the dashboards and the alert rules, with where it is.
fn expressions() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!(
        "{}/../ops/grafana/dashboards",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    {
        let path = entry.unwrap().path();
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    found.push((format!("panel {}", panel["title"]), expr.to_owned()));
                }
            }
        }
    }
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&root("ops/prometheus/alerts.yml")).unwrap();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            found.push((
                format!("alert {}", rule["alert"].as_str().unwrap()),
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    found
}

/// The metric selectors in a PromQL expression: each metric name of ours,
/// the broker's or the process's (or `up`) with its `{…}` matchers.
fn selectors(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        if bytes[at].is_ascii_alphabetic() || bytes[at] == b'_' {
            while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
                at += 1;
            }
            let name = &expr[start..at];
            let ours = ["intake_", "rabbitmq_", "process_"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                || name == "up";
            if ours {
                let mut selector = name.to_owned();
                if bytes.get(at) == Some(&b'{') {
                    let mut quoted = false;
                    let open = at;
                    while at < bytes.len() {
                        match bytes[at] {
                            b'\\' if quoted => at += 1,
                            b'"' => quoted = !quoted,
                            b'}' if !quoted => break,
                            _ => {}
                        }
                        at += 1;
                    }
                    selector.push_str(&expr[open..=at.min(bytes.len() - 1)]);
                }
                found.push(selector);
            }
        } else if bytes[at] == b'"' {
            // A string (a matcher's value, a label name in a function).
            at += 1;
            while at < bytes.len() && bytes[at] != b'"' {
                at += if bytes[at] == b'\\' { 2 } else { 1 };
            }
        }
        at += 1;
    }
    found
}

/// A workload with every outcome: applied, e-mailed, duplicate, erased,
/// stale, retried (the SMTP server not up yet), dead-lettered (a row the
/// database refuses) and spooled (a LINA call while the broker is down).
async fn every_outcome(app: &TestApp, smtp_port: u16) -> smtp::SmtpServer {
    app.add_store(STORE).await;
    app.db
        .batch_execute("ALTER TABLE lt_application ADD CONSTRAINT refuse_blocked CHECK (email <> 'blocked@example.fi')")
        .await
        .unwrap();
    let body = r#"{"mydatashare_user_id":"prom-1","email":"prom1@example.fi"}"#;
    assert_eq!(app.post_lt(body).await.status(), 200);
    assert_eq!(app.post_lt(body).await.status(), 200);
    app.post_lt(r#"{"mydatashare_user_id":"prom-2","email":"blocked@example.fi"}"#)
        .await;
    let (application, revocation) = intake_tests::application_then_newer_revocation().await;
    app.publish(&revocation).await;
    app.wait_for_dead_letters(common::amqp::WorkQueue::Lt, 1)
        .await;
    app.publish(&application).await;
    let stats = app.worker.as_ref().unwrap().stats.clone();
    intake_tests::until(
        "applied, duplicate, erased, stale, retried",
        &stats,
        |stats| {
            stats.events_applied() >= 2
                && stats.events_duplicate() >= 1
                && stats.events_stale() >= 1
                && stats.events_retried() >= 1
        },
    )
    .await;
    let inbox = smtp::start(smtp_port, &[]);
    eventually("the e-mail is sent", Duration::from_secs(30), || async {
        (!inbox.received().is_empty()).then_some(())
    })
    .await;
    inbox
}

/// What the ops views find in Prometheus now.
struct Views {
    failures: Vec<String>,
    /// One table row per panel or alert: the expression and what it gives.
    table: Vec<String>,
    checked: usize,
}

/// Every panel and alert expression must parse and each of its selectors
/// match a series; every exposed `intake_` metric must be named by a
/// panel, an alert or the README.
async fn check_views(prometheus: &Prometheus) -> Views {
    let mut views = Views {
        failures: Vec::new(),
        table: Vec::new(),
        checked: 0,
    };
    for (place, expr) in expressions() {
        let result = prometheus.query(&expr).await;
        if let Err(error) = &result {
            views
                .failures
                .push(format!("{place}: does not parse: {error}"));
        }
        let mut matched = Vec::new();
        for selector in selectors(&expr) {
            views.checked += 1;
            match prometheus.query(&selector).await {
                Ok(series) if !series.is_empty() => matched.push(series.len()),
                Ok(_) => views
                    .failures
                    .push(format!("{place}: {selector} matches no series")),
                Err(error) => views.failures.push(format!("{place}: {selector}: {error}")),
            }
        }
        views.table.push(format!(
            "| {place} | `{}` | {} | {matched:?} |",
            expr.replace('|', "\\|").replace('\n', " "),
            result.map_or_else(|error| error, |series| values(&series))
        ));
    }
    let named = format!(
        "{}{}{}",
        root("ops/prometheus/alerts.yml"),
        root("README.md"),
        std::fs::read_dir(format!(
            "{}/../ops/grafana/dashboards",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect::<String>()
    );
    for name in prometheus.metric_names().await {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        if name.starts_with("intake_") && !named.contains(base) {
            views.failures.push(format!(
                "{name} is exposed but no panel, alert or README line names it"
            ));
        }
    }
    views
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_finds_every_series_the_ops_views_name_and_the_down_alerts_fire() {
    let mut broker = PrivateRabbit::with_prometheus().await;
    let smtp_port = smtp::free_port();
    let mut app = spawn_app_with(TestOptions {
        amqp_url: Some(broker.url(0)),
        smtp_url: Some(format!("smtp://127.0.0.1:{smtp_port}")),
        ..TestOptions::default()
    })
    .await;
    let worker_ops = host_port(&app.worker.as_ref().unwrap().ops_address);
    let prometheus = Prometheus::start(&[
        ("intake-gateway", host_port(&app.gateway_ops)),
        ("intake-worker", worker_ops.clone()),
        ("rabbitmq", broker.prometheus_address(0)),
    ])
    .await;
    let _inbox = every_outcome(&app, smtp_port).await;
    // A LINA call while the broker is down is spooled; the broker's scrape
    // fails meanwhile.
    broker.stop(0).await;
    let consent = app.post_lina(&example("lina/consent.json")).await;
    assert_eq!(consent.status(), 200);
    prometheus
        .wait_firing("IntakeTargetDown", ("job", "rabbitmq"))
        .await;
    broker.restart(0).await;
    eventually("the spool drained", Duration::from_secs(60), || async {
        (app.spool_segments() == 0).then_some(())
    })
    .await;
    // After its restart the broker reports each quorum queue's figures at
    // that queue's next tick, and the queues come back one by one (the
    // parking queues, without consumers, often last): the views are checked
    // again until every selector matches, or the time is up.
    let lt_queue = app.queue(common::amqp::WorkQueue::Lt);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let views = loop {
        let views = check_views(&prometheus).await;
        if views.failures.is_empty() || tokio::time::Instant::now() >= deadline {
            break views;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    // The table of the closing note: what each expression gives now.
    for line in &views.table {
        println!("{line}");
    }
    assert!(
        views.checked >= 30,
        "only {} selectors found: the extraction broke",
        views.checked
    );
    assert!(views.failures.is_empty(), "{}", views.failures.join("\n"));

    // The worker goes: its scrape fails, and the broker still counts its
    // queues' consumers, now none.
    // Scrapes keep a connection to its ops listener open: the stop is bounded all the same.
    let stop = app.worker.take().unwrap().stop();
    tokio::time::timeout(Duration::from_secs(45), stop)
        .await
        .expect("the worker stops within its grace period");
    prometheus
        .wait_firing("IntakeTargetDown", ("instance", &worker_ops))
        .await;
    prometheus
        .wait_firing("IntakeNoConsumer", ("queue", &lt_queue))
        .await;
}
