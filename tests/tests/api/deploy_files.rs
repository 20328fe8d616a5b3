//! The deployment files agree with the configuration contract: the
//! environment names they set are ones the binaries read (taken from the
//! binaries' own command-line definitions), required settings are there,
//! secrets come from Secret objects, ports and probes line up. (There is no
//! Docker engine or cluster here: the files are parsed and checked.)

use std::collections::BTreeSet;

use clap::CommandFactory;
use serde_json::Value;

fn root(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("cannot read {full}: {error}"))
}

/// Every YAML document in `text`, merge keys applied, as JSON values.
fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|document| {
            let mut value =
                <serde_yaml_ng::Value as serde::Deserialize>::deserialize(document).unwrap();
            value.apply_merge().unwrap();
            serde_json::to_value(value).unwrap()
        })
        .collect()
}

/// The environment variables a command (and its subcommands) reads.
fn env_names(command: &clap::Command) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|argument| argument.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    for subcommand in command.get_subcommands() {
        names.extend(env_names(subcommand));
    }
    names
}

fn gateway_contract() -> BTreeSet<String> {
    env_names(&gateway::settings::GatewayArgs::command())
}

fn worker_contract() -> BTreeSet<String> {
    env_names(&worker::admin::cli::Cli::command())
}

fn keys(object: &Value) -> BTreeSet<String> {
    object
        .as_object()
        .map(|map| map.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn the_contract_is_read_from_the_binaries() {
    let gateway = gateway_contract();
    assert!(gateway.contains("INTAKE_LT_TOKENS") && gateway.contains("INTAKE_SPOOL_DIR"));
    let worker = worker_contract();
    assert!(worker.contains("INTAKE_DATABASE_URL") && worker.contains("INTAKE_LINA_API_KEY"));
}

#[test]
fn compose_runs_every_service_with_settings_the_binaries_read() {
    let compose = yaml_documents(&root("docker-compose.yml")).remove(0);
    let services = &compose["services"];
    for service in [
        "rabbitmq",
        "postgres",
        "mailpit",
        "prometheus",
        "grafana",
        "gateway",
        "worker",
    ] {
        assert!(services.get(service).is_some(), "compose has no {service}");
    }
    let gateway_env = keys(&services["gateway"]["environment"]);
    let worker_env = keys(&services["worker"]["environment"]);
    let unknown: Vec<_> = gateway_env
        .difference(&gateway_contract())
        .cloned()
        .collect();
    assert!(unknown.is_empty(), "the gateway does not read {unknown:?}");
    let unknown: Vec<_> = worker_env.difference(&worker_contract()).cloned().collect();
    assert!(unknown.is_empty(), "the worker does not read {unknown:?}");
    for required in ["INTAKE_AMQP_URL", "INTAKE_LT_TOKENS"] {
        assert!(
            gateway_env.contains(required),
            "the gateway needs {required}"
        );
    }
    for required in [
        "INTAKE_AMQP_URL",
        "INTAKE_DATABASE_URL",
        "INTAKE_SUBJECT_HASH_KEY",
    ] {
        assert!(worker_env.contains(required), "the worker needs {required}");
    }

    // Ports: the webhooks are published where the gateway listens; the
    // healthchecks and Prometheus use the ops ports the processes bind.
    let gateway = &services["gateway"];
    assert_eq!(
        gateway["environment"]["INTAKE_GATEWAY_ADDR"],
        "0.0.0.0:8080"
    );
    assert_eq!(gateway["ports"][0], "8080:8080");
    assert_eq!(gateway["environment"]["INTAKE_OPS_ADDR"], "0.0.0.0:9180");
    assert!(
        gateway["healthcheck"]["test"]
            .to_string()
            .contains("127.0.0.1:9180/readyz")
    );
    let worker = &services["worker"];
    assert_eq!(worker["environment"]["INTAKE_OPS_ADDR"], "0.0.0.0:9181");
    assert!(
        worker["healthcheck"]["test"]
            .to_string()
            .contains("127.0.0.1:9181/readyz")
    );
    assert!(
        worker.get("ports").is_none() && worker.get("container_name").is_none(),
        "`--scale worker=3` needs a worker without fixed host ports or name"
    );
    assert!(
        gateway["volumes"]
            .to_string()
            .contains(":/var/lib/intake/spool"),
        "the spool is a volume"
    );
    let prometheus = root("ops/prometheus/prometheus.yml");
    assert!(prometheus.contains("gateway:9180") && prometheus.contains("port: 9181"));
    assert!(
        services["grafana"]["volumes"]
            .to_string()
            .contains("ops/grafana/provisioning")
    );
    let dashboard: Value =
        serde_json::from_str(&root("ops/grafana/dashboards/intake.json")).unwrap();
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|panels| panels.len() >= 6)
    );
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|document| document["kind"] == kind && document["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

/// Environment names a container sets, and those it takes from a Secret.
fn container_env(container: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut from_secrets = BTreeSet::new();
    for variable in container["env"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap().to_owned();
        if variable["valueFrom"]["secretKeyRef"].is_object() {
            from_secrets.insert(name.clone());
        }
        names.insert(name);
    }
    (names, from_secrets)
}

fn check_hardened_and_probed(workload: &Value, ops_port_name: &str) {
    let pod = &workload["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = container(workload);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        container["readinessProbe"]["httpGet"]["port"],
        ops_port_name
    );
}

#[test]
fn the_kubernetes_manifests_scale_probe_and_keep_secrets_in_secrets() {
    let mut documents = Vec::new();
    for file in ["gateway.yaml", "worker.yaml", "secret.example.yaml"] {
        documents.extend(yaml_documents(&root(&format!("ops/k8s/{file}"))));
    }

    let gateway = find(&documents, "StatefulSet", "intake-gateway");
    check_hardened_and_probed(gateway, "ops");
    let (names, secrets) = container_env(container(gateway));
    let unknown: Vec<_> = names.difference(&gateway_contract()).cloned().collect();
    assert!(unknown.is_empty(), "the gateway does not read {unknown:?}");
    for secret in [
        "INTAKE_AMQP_URL",
        "INTAKE_LT_TOKENS",
        "INTAKE_LINA_PATH_SECRETS",
    ] {
        assert!(secrets.contains(secret), "{secret} must come from a Secret");
    }
    let spool_dir = container(gateway)["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|variable| variable["name"] == "INTAKE_SPOOL_DIR")
        .map(|variable| variable["value"].clone())
        .unwrap();
    assert_eq!(
        container(gateway)["volumeMounts"][0]["mountPath"],
        spool_dir,
        "the spool is on the volume"
    );
    assert_eq!(
        gateway["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "spool"
    );
    assert!(
        container(gateway)["lifecycle"]["preStop"]
            .to_string()
            .contains("intake_spool_events 0")
    );

    let worker = find(&documents, "Deployment", "intake-worker");
    check_hardened_and_probed(worker, "ops");
    let (names, secrets) = container_env(container(worker));
    let unknown: Vec<_> = names.difference(&worker_contract()).cloned().collect();
    assert!(unknown.is_empty(), "the worker does not read {unknown:?}");
    for secret in [
        "INTAKE_AMQP_URL",
        "INTAKE_DATABASE_URL",
        "INTAKE_SUBJECT_HASH_KEY",
    ] {
        assert!(secrets.contains(secret), "{secret} must come from a Secret");
    }

    let scaler = find(&documents, "ScaledObject", "intake-worker");
    assert_eq!(scaler["spec"]["scaleTargetRef"]["name"], "intake-worker");
    assert!(scaler["spec"]["triggers"].to_string().contains("intake.lt"));
    for name in ["intake-gateway", "intake-worker"] {
        let budget = find(&documents, "PodDisruptionBudget", name);
        assert_eq!(budget["spec"]["selector"]["matchLabels"]["app"], name);
    }
    let secret = find(&documents, "Secret", "intake-secrets");
    for key in [
        "amqp-url",
        "database-url",
        "lt-tokens",
        "lina-path-secrets",
        "subject-hash-key",
    ] {
        assert!(
            secret["stringData"].get(key).is_some(),
            "the Secret has no {key}"
        );
    }
}

#[test]
fn the_cluster_compose_file_lists_three_tls_nodes_and_checks_the_database_certificate() {
    let cluster = yaml_documents(&root("docker-compose.cluster.yml")).remove(0);
    let services = &cluster["services"];
    // The names others reach a node by, as Docker's DNS resolves them (the
    // service's name or an alias), must be its hostname (its node name).
    let hostnames: BTreeSet<String> = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"]
        .iter()
        .map(|service| {
            let hostname = services[service]["hostname"].as_str().unwrap().to_owned();
            let aliases = services[service]["networks"]["default"]["aliases"].to_string();
            assert!(
                *service == hostname || aliases.contains(&format!("\"{hostname}\"")),
                "{service} is not reachable as {hostname}"
            );
            hostname
        })
        .collect();
    let config = root("ops/compose/rabbitmq-cluster.conf");
    for role in ["gateway", "worker"] {
        let environment = &services[role]["environment"];
        let unknown: Vec<_> = keys(environment)
            .difference(&if role == "gateway" {
                gateway_contract()
            } else {
                worker_contract()
            })
            .cloned()
            .collect();
        assert!(unknown.is_empty(), "the {role} does not read {unknown:?}");
        let nodes: Vec<&str> = environment["INTAKE_AMQP_URL"]
            .as_str()
            .unwrap()
            .split(',')
            .collect();
        assert_eq!(nodes.len(), 3, "the {role} lists every node");
        for (node, hostname) in nodes.iter().zip(&hostnames) {
            assert!(
                node.starts_with("amqps://") && node.contains(&format!("@{hostname}:5671/")),
                "{node}"
            );
            assert!(
                config.contains(&format!("rabbit@{hostname}")),
                "{hostname} joins"
            );
        }
        let ca = environment["INTAKE_AMQP_CA_FILE"].as_str().unwrap();
        assert!(ca.starts_with("/etc/intake/tls/"));
        assert!(
            services[role]["volumes"]
                .to_string()
                .contains(":/etc/intake/tls:ro"),
            "the {role} mounts the CA"
        );
    }
    let database = services["worker"]["environment"]["INTAKE_DATABASE_URL"]
        .as_str()
        .unwrap();
    assert!(
        database.contains("sslmode=verify-full")
            && database.contains("sslrootcert=/etc/intake/tls/"),
        "{database}"
    );
}
