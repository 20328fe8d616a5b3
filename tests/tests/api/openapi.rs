//! `openapi/intake.yaml` is true to the gateway: it names exactly the routes
//! the gateway serves and every error code it can answer with (read from the
//! source, so a new route or code fails here until it is described), and
//! Schemathesis, run against the real gateway, finds no answer the
//! description does not allow (status, body, headers), no 5xx, no
//! schema-valid body refused and no schema-invalid body accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use intake_tests::app::{LINA_SECRET, TEST_TOKEN};
use intake_tests::{TestOptions, spawn_app_with};
use serde_json::Value;

/// The Schemathesis executable (`st`); `scripts/test` installs a pinned
/// version into a virtualenv and sets this.
const SCHEMATHESIS_ENV: &str = "INTAKE_TEST_SCHEMATHESIS";

/// Test cases per operation and phase: a few hundred requests, a few seconds.
const MAX_EXAMPLES: &str = "150";

/// A fixed seed: the same requests on every run of the pinned version.
const SEED: &str = "1";

/// However slow the machine, Schemathesis never holds the suite for longer.
const SCHEMATHESIS_TIMEOUT: Duration = Duration::from_secs(180);

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    let full = repository(path);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", full.display()))
}

fn spec() -> Value {
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("openapi/intake.yaml")).expect("openapi/intake.yaml is YAML");
    serde_json::to_value(yaml).unwrap()
}

/// The string literal after each `marker` (which ends with its opening
/// quote): the paths of `web::resource("…")`, the codes of `=> "…"`.
fn quoted_after(source: &str, marker: &str) -> BTreeSet<String> {
    source
        .split(marker)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The body of `fn code` in a source file: every code the type can give.
fn codes_in(path: &str) -> BTreeSet<String> {
    let source = read(path);
    let body = source
        .split("pub fn code(")
        .nth(1)
        .and_then(|rest| rest.split("\n    }\n").next())
        .unwrap_or_else(|| panic!("no `pub fn code` in {path}"));
    let codes = quoted_after(body, "=> \"");
    assert!(!codes.is_empty(), "no codes found in {path}");
    codes
}

/// Follows a local `$ref` (`#/components/…`).
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => spec
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {reference}")),
        None => node,
    }
}

/// Every `error` code an OpenAPI node allows (`enum` or `const` of an
/// `error` property), references followed.
fn documented_codes(spec: &Value, node: &Value, codes: &mut BTreeSet<String>) {
    let node = resolve(spec, node);
    if let Some(error) = node.pointer("/properties/error") {
        let allowed = error.get("enum").and_then(Value::as_array).cloned();
        let constant = error.get("const").cloned().map(|value| vec![value]);
        for code in allowed.or(constant).unwrap_or_default() {
            codes.insert(code.as_str().unwrap().to_owned());
        }
    }
    let children: Vec<&Value> = match node {
        Value::Object(fields) => fields.values().collect(),
        Value::Array(items) => items.iter().collect(),
        _ => Vec::new(),
    };
    for child in children {
        documented_codes(spec, child, codes);
    }
}

fn operation_codes(spec: &Value, path: &str) -> BTreeSet<String> {
    let operation = &spec["paths"][path]["post"];
    assert!(operation.is_object(), "no POST {path} in the description");
    let mut codes = BTreeSet::new();
    documented_codes(spec, operation, &mut codes);
    codes
}

#[test]
fn the_description_covers_every_route_and_every_error_code_of_the_gateway() {
    let spec = spec();
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1"
    );

    let served = quoted_after(&read("gateway/src/routes/mod.rs"), "_ROUTE: &str = \"");
    let described: BTreeSet<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        described, served,
        "the described routes are the served ones"
    );
    for path in &described {
        let methods: Vec<&String> = spec["paths"][path].as_object().unwrap().keys().collect();
        assert_eq!(methods, ["post"], "{path} takes POST only (others get 405)");
    }

    let lt = operation_codes(&spec, "/webhooks/lt");
    let lina = operation_codes(&spec, "/webhooks/lina/{secret}");
    let lt_payload = codes_in("common/src/senders/lt.rs");
    let lina_payload = codes_in("common/src/senders/lina.rs");
    assert!(
        lt_payload.is_subset(&lt),
        "LT payload codes missing from POST /webhooks/lt: {:?}",
        lt_payload.difference(&lt).collect::<Vec<_>>()
    );
    assert!(
        lina_payload.is_subset(&lina),
        "LINA payload codes missing from POST /webhooks/lina/{{secret}}: {:?}",
        lina_payload.difference(&lina).collect::<Vec<_>>()
    );

    // Every code the gateway can answer with is described, and the
    // description names no code the gateway never gives.
    let mut emitted = codes_in("gateway/src/error.rs");
    emitted.extend(lt_payload);
    emitted.extend(lina_payload);
    let documented: BTreeSet<String> = lt.union(&lina).cloned().collect();
    assert_eq!(
        documented,
        emitted,
        "described but never emitted: {:?}; emitted but not described: {:?}",
        documented.difference(&emitted).collect::<Vec<_>>(),
        emitted.difference(&documented).collect::<Vec<_>>()
    );

    // LT resends on 503: it is told when.
    let retry_after = &spec["paths"]["/webhooks/lt"]["post"]["responses"]["503"]["headers"]["Retry-After"]
        ["required"];
    assert_eq!(retry_after, true, "LT's 503 carries Retry-After");
}

/// The Schemathesis executable, or a failure saying how to get one: this
/// test must never pass by not running.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os(SCHEMATHESIS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{SCHEMATHESIS_ENV} is not set: it names the Schemathesis executable. \
             scripts/test installs it (pinned, in a virtualenv) and sets it; \
             see README, Tests, to run this test alone"
            )
        });
    assert!(
        path.is_file(),
        "{SCHEMATHESIS_ENV}={} is not a file; run scripts/test once to install Schemathesis",
        path.display()
    );
    path
}

/// `intake_http_requests_total` of the gateway, as (source, status) → count,
/// leaving out the series that stand at 0 from the start: only what was
/// answered counts.
async fn requests_by_status(app: &intake_tests::TestApp) -> BTreeMap<(String, String), u64> {
    let text = app.gateway_metrics().await;
    text.lines()
        .filter_map(|line| line.strip_prefix("intake_http_requests_total{"))
        .map(|line| {
            let (labels, count) = line.split_once("} ").unwrap();
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                    .map(|value| value.trim_end_matches('"').to_owned())
                    .unwrap()
            };
            (
                (label("source"), label("status")),
                count.trim().parse().unwrap(),
            )
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}

#[tokio::test]
async fn the_gateway_answers_as_its_openapi_description_says() {
    let st = schemathesis();
    // The gateway alone: whether a LINA store is registered is the worker's
    // question, so the gateway needs no database state to answer.
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    // Hypothesis keeps a `.hypothesis` directory where it runs: a fresh one, removed after.
    let workdir =
        std::env::temp_dir().join(format!("intake-schemathesis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&workdir).unwrap();
    let started = Instant::now();
    let run = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(repository("openapi/schemathesis.toml"))
        .arg("run")
        .arg(repository("openapi/intake.yaml"))
        .args(["--url", &app.address])
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .arg("--no-color")
        // One worker: Schemathesis's threads trip over Python 3.11's `ast`
        // (hypothesis describes lambdas with it) and report flaky errors.
        .args(["--workers", "1"])
        .env("INTAKE_ST_LT_TOKEN", TEST_TOKEN)
        .env("INTAKE_ST_LINA_SECRET", LINA_SECRET)
        .current_dir(&workdir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCHEMATHESIS_TIMEOUT, run).await;
    let _ = std::fs::remove_dir_all(&workdir);
    let output = output
        .expect("Schemathesis finished in time")
        .expect("Schemathesis runs");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Schemathesis found the gateway and openapi/intake.yaml disagreeing ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    let answers = requests_by_status(&app).await;
    let total: u64 = answers.values().sum();
    let server_errors: Vec<_> = answers
        .iter()
        .filter(|((_, status), _)| status.starts_with('5'))
        .collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    // Both operations were exercised, with accepted and refused bodies.
    for (source, status) in [
        ("lt", "200"),
        ("lt", "400"),
        ("lina", "200"),
        ("lina", "400"),
    ] {
        assert!(
            answers.contains_key(&(source.to_owned(), status.to_owned())),
            "no {source} request answered {status}: {answers:?}"
        );
    }
    assert!(total >= 200, "only {total} requests: {answers:?}");
    let cases = stdout
        .lines()
        .find(|line| line.contains(" generated"))
        .unwrap_or("")
        .trim();
    println!(
        "schemathesis: {cases}; the gateway answered {total} requests in {:.1}s: {answers:?}",
        elapsed.as_secs_f64()
    );
}
