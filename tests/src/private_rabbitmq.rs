//! RabbitMQ nodes of the test's own: one, or a cluster of three on
//! loopback (the clustering guide's "cluster on a single machine"), never
//! the machine's broker. Each node has its own name, ports, config and env
//! files (so `/etc/rabbitmq`, which binds 5672, is never read), an empty
//! plugin list, data and log directories; all share one Erlang cookie in a
//! home directory of their own. `+sbwt none` keeps four Erlang VMs from
//! spinning on two cores. Every node is killed and its directory removed on
//! drop, and by `crate::reaper` when the test process ends without dropping
//! (and by `scripts/clean-test-leftovers`: the directories are
//! `$TMPDIR/intake-rmq-*`). The nodes register with the machine's epmd
//! (127.0.0.1:4369, the machine's broker keeps one running); on a machine
//! without one, the first node would start an epmd that outlives the test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::test_ca::TestCa;

const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

/// Ports a node may not take: the machine's broker (5672, and 25672 for
/// its distribution) and the range CLI tools bind (35672–35682).
fn usable(port: u16) -> bool {
    !(port == 5672 || port == 25672 || (35672..=35682).contains(&port))
}

fn free_port() -> u16 {
    loop {
        let port = crate::smtp::free_port();
        if usable(port) {
            return port;
        }
    }
}

struct Node {
    name: String,
    /// The `rabbitmq_prometheus` listener, where the plugin is on.
    prometheus_port: Option<u16>,
    amqp_port: u16,
    tls_port: Option<u16>,
    dir: PathBuf,
    server: Option<Child>,
}

pub struct PrivateRabbit {
    dir: PathBuf,
    nodes: Vec<Node>,
}

impl PrivateRabbit {
    /// One node, plain AMQP only.
    pub async fn single() -> PrivateRabbit {
        PrivateRabbit::start(1, None).await
    }

    /// `count` nodes joined in one cluster, each also listening for
    /// `amqps://` with a certificate for `localhost` signed by `ca`.
    pub async fn start(count: usize, ca: Option<&TestCa>) -> PrivateRabbit {
        PrivateRabbit::start_with(count, ca, false, false).await
    }

    /// One node whose TLS listener takes only clients with a certificate
    /// `ca` signed (`ssl_options.fail_if_no_peer_cert = true`).
    pub async fn requiring_client_certificates(ca: &TestCa) -> PrivateRabbit {
        PrivateRabbit::start_with(1, Some(ca), true, false).await
    }

    /// One node with the `rabbitmq_prometheus` plugin on a port of its own
    /// (per-queue series at `/metrics/per-object`: only this node's queues).
    pub async fn with_prometheus() -> PrivateRabbit {
        PrivateRabbit::start_with(1, None, false, true).await
    }

    async fn start_with(
        count: usize,
        ca: Option<&TestCa>,
        require_client_certificate: bool,
        prometheus: bool,
    ) -> PrivateRabbit {
        let unique = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let dir = std::env::temp_dir().join(format!("intake-rmq-{unique}"));
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        crate::reaper::after_this_process(&format!(
            "for f in {dir}/node*/pid; do [ -f \"$f\" ] && kill -9 \"$(cat \"$f\")\"; done; rm -rf {dir}",
            dir = dir.display()
        ));
        write_private(&home.join(".erlang.cookie"), &format!("INTAKETEST{unique}"));
        if let Some(ca) = ca {
            std::fs::write(dir.join("ca.pem"), &ca.ca_pem).unwrap();
            std::fs::write(dir.join("server.pem"), &ca.server_cert_pem).unwrap();
            write_private(&dir.join("server.key"), &ca.server_key_pem);
        }
        let names: Vec<String> = (1..=count)
            .map(|n| format!("intake-t-{unique}-{n}@localhost"))
            .collect();
        let mut cluster = PrivateRabbit {
            dir: dir.clone(),
            nodes: Vec::new(),
        };
        for (index, name) in names.iter().enumerate() {
            let node = Node {
                name: name.clone(),
                amqp_port: free_port(),
                tls_port: ca.map(|_| free_port()),
                prometheus_port: prometheus.then(free_port),
                dir: dir.join(format!("node{}", index + 1)),
                server: None,
            };
            std::fs::create_dir_all(&node.dir).unwrap();
            // A node that is not the first joins the first on its first boot.
            let peers = if index == 0 { &[][..] } else { &names[..1] };
            let tls = ca.map(|_| Tls {
                dir: &dir,
                require_client_certificate,
            });
            write_config(&node, peers, tls);
            cluster.nodes.push(node);
        }
        // The first alone, then the others, which join it as they boot.
        cluster.launch(0).await;
        for index in 1..count {
            cluster.launch(index).await;
        }
        cluster.await_running_nodes(count).await;
        cluster
    }

    async fn launch(&mut self, index: usize) {
        let env = self.env(index);
        let node = &mut self.nodes[index];
        let log = std::fs::File::create(node.dir.join("stdout.log")).unwrap();
        let mut command = Command::new(format!("{RABBITMQ_BIN}/rabbitmq-server"));
        command
            .envs(env)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        node.server = Some(command.spawn().expect("rabbitmq-server starts"));
        self.await_boot(index).await;
    }

    /// Waits until node `index` has booted (its name registered, the app running).
    async fn await_boot(&self, index: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            if self
                .ctl(index, &["await_startup", "--timeout", "60"])
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {} did not boot: see {}",
                index + 1,
                self.nodes[index].dir.display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn await_running_nodes(&self, count: usize) {
        crate::eventually(
            "every node runs in the cluster",
            Duration::from_secs(60),
            || async {
                let status = self
                    .ctl(0, &["cluster_status", "--formatter", "json"])
                    .await
                    .ok()?;
                let status: serde_json::Value = serde_json::from_str(&status).ok()?;
                let running = status["running_nodes"].as_array()?.len();
                (running == count).then_some(())
            },
        )
        .await;
    }

    /// `127.0.0.1:<port>` of node `index`'s Prometheus listener.
    pub fn prometheus_address(&self, index: usize) -> String {
        let port = self.nodes[index]
            .prometheus_port
            .expect("started with the plugin");
        format!("127.0.0.1:{port}")
    }

    /// `amqp://` URL of node `index`.
    pub fn url(&self, index: usize) -> String {
        format!(
            "amqp://guest:guest@127.0.0.1:{}/%2f",
            self.nodes[index].amqp_port
        )
    }

    /// `amqps://` URL of node `index`, addressed as `host`.
    pub fn tls_url(&self, index: usize, host: &str) -> String {
        let port = self.nodes[index].tls_port.expect("started with TLS");
        format!("amqps://guest:guest@{host}:{port}/%2f")
    }

    /// Every node's `amqp://` URL, comma-separated (`INTAKE_AMQP_URL`).
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|index| self.url(index))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node (index) whose AMQP port is `port`.
    pub fn node_with_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|node| node.amqp_port == port)
    }

    pub fn name(&self, index: usize) -> &str {
        &self.nodes[index].name
    }

    /// kill -9 of node `index`'s Erlang VM.
    pub async fn kill(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        if let Some(pid) = beam_pid(&node.dir) {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .await;
        }
        if let Some(mut server) = node.server.take() {
            let _ = server.kill().await;
            let _ = server.wait().await;
        }
        // Never signal a pid the system may give to someone else.
        let _ = std::fs::remove_file(node.dir.join("pid"));
    }

    /// A clean stop of node `index` (`rabbitmqctl stop`).
    pub async fn stop(&mut self, index: usize) {
        let _ = self.ctl(index, &["stop"]).await;
        if let Some(mut server) = self.nodes[index].server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), server.wait()).await;
            let _ = server.kill().await;
        }
        let _ = std::fs::remove_file(self.nodes[index].dir.join("pid"));
    }

    /// Starts node `index` again (after `kill` or `stop`) and waits until the
    /// cluster runs all its nodes.
    pub async fn restart(&mut self, index: usize) {
        self.launch(index).await;
        self.await_running_nodes(self.nodes.len()).await;
    }

    /// The node (index) where `queue`'s quorum leader runs.
    pub async fn leader_of(&self, queue: &str) -> Option<usize> {
        let alive = (0..self.nodes.len()).find(|&index| self.nodes[index].server.is_some())?;
        let listing = self
            .ctl(alive, &["list_queues", "name", "leader"])
            .await
            .ok()?;
        // Lines of `<name>\t<leader node>`.
        let leader = listing.lines().find_map(|line| {
            let (name, leader) = line.split_once('\t')?;
            (name == queue).then(|| leader.trim().to_owned())
        })?;
        self.nodes.iter().position(|node| node.name == leader)
    }

    /// The node (index) the connection named `name` (its client-provided
    /// name, e.g. `<prefix>:gateway`) is on.
    pub async fn node_of_connection(&self, name: &str) -> Option<usize> {
        let alive = (0..self.nodes.len()).find(|&index| self.nodes[index].server.is_some())?;
        let listing = self
            .ctl(alive, &["list_connections", "pid", "client_properties"])
            .await
            .ok()?;
        // Lines of `<pid>\t<properties as Erlang terms>`, one per connection.
        let named = format!("{{\"connection_name\",\"{name}\"}}");
        let pid = listing
            .lines()
            .find(|line| line.contains(&named))?
            .split('\t')
            .next()?;
        // An Erlang pid prints as `<node@host.N.M.K>`.
        let node = pid.trim_start_matches('<').split('.').next()?;
        self.nodes
            .iter()
            .position(|candidate| candidate.name == node)
    }

    /// `rabbitmqctl -n <node> <args>`: its standard output, or its error.
    pub async fn ctl(&self, index: usize, args: &[&str]) -> Result<String, String> {
        let output = Command::new(format!("{RABBITMQ_BIN}/rabbitmqctl"))
            .envs(self.env(index))
            .args(["-q", "-n", &self.nodes[index].name])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|error| error.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// What the node's scripts read: everything of its own.
    fn env(&self, index: usize) -> Vec<(String, String)> {
        let node = &self.nodes[index];
        let path = |name: &str| node.dir.join(name).display().to_string();
        [
            ("HOME", self.dir.join("home").display().to_string()),
            ("RABBITMQ_NODENAME", node.name.clone()),
            ("RABBITMQ_NODE_PORT", node.amqp_port.to_string()),
            // The distribution port: the AMQP port's neighbour is not known
            // to be free, so a port of its own.
            ("RABBITMQ_DIST_PORT", dist_port(&node.dir).to_string()),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf")),
            ("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_PID_FILE", path("pid")),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "+sbwt none +sbwtdcpu none +sbwtdio none -kernel inet_dist_use_interface {127,0,0,1}"
                    .into(),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }
}

/// The node's distribution port, chosen once and kept in its directory (a
/// restarted node must come back on the same one).
fn dist_port(dir: &Path) -> u16 {
    let file = dir.join("dist_port");
    if let Some(port) = std::fs::read_to_string(&file)
        .ok()
        .and_then(|text| text.trim().parse().ok())
    {
        return port;
    }
    let port = free_port();
    std::fs::write(&file, port.to_string()).unwrap();
    port
}

/// Where a node's TLS files are, and whether it asks clients for a certificate.
struct Tls<'a> {
    dir: &'a Path,
    require_client_certificate: bool,
}

fn write_config(node: &Node, peers: &[String], tls: Option<Tls<'_>>) {
    let mut config = format!(
        "listeners.tcp.1 = 127.0.0.1:{}\n\
         loopback_users = none\n\
         log.console = false\n\
         log.file.level = warning\n\
         disk_free_limit.absolute = 50MB\n",
        node.amqp_port
    );
    if let (Some(tls), Some(port)) = (tls, node.tls_port) {
        let dir = tls.dir;
        config.push_str(&format!(
            "listeners.ssl.1 = 127.0.0.1:{port}\n\
             ssl_options.cacertfile = {ca}\n\
             ssl_options.certfile = {cert}\n\
             ssl_options.keyfile = {key}\n\
             ssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = {}\n",
            tls.require_client_certificate,
            ca = dir.join("ca.pem").display(),
            cert = dir.join("server.pem").display(),
            key = dir.join("server.key").display(),
        ));
    }
    if !peers.is_empty() {
        config.push_str("cluster_formation.peer_discovery_backend = classic_config\n");
        for (n, peer) in peers.iter().chain([&node.name]).enumerate() {
            config.push_str(&format!(
                "cluster_formation.classic_config.nodes.{} = {peer}\n",
                n + 1
            ));
        }
    }
    let plugins = match node.prometheus_port {
        Some(port) => {
            config.push_str(&format!(
                "prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = {port}\n"
            ));
            "[rabbitmq_prometheus].\n"
        }
        None => "[].\n",
    };
    std::fs::write(node.dir.join("rabbitmq.conf"), config).unwrap();
    std::fs::write(node.dir.join("rabbitmq-env.conf"), "").unwrap();
    std::fs::write(node.dir.join("advanced.config"), "[].\n").unwrap();
    std::fs::write(node.dir.join("enabled_plugins"), plugins).unwrap();
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400)).unwrap();
}

/// The Erlang VM's pid (the server script is its parent, not itself).
fn beam_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(pid) = beam_pid(&node.dir) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
            if let Some(server) = node.server.as_mut() {
                let _ = server.start_kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
