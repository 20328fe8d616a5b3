//! `worker lina`: stores added, listed and removed (removal erases the
//! store's employees), and registration with LINA's Third Party API, against
//! a stand-in for LINA on loopback (the real one is not reachable here).

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use intake_tests::{eventually, example, spawn_app};
use secrecy::SecretString;
use worker::admin::stores::{
    LinaApi, LinaCommand, LinaContext, LinaError, RegisterError, WebhooksCommand,
};

const STORE: &str = "48138367-3eba-4772-b2bf-6bbd11840efb";
const MIRCO: &str = "c6425258-a870-498d-8173-6c2341c934e0";

/// How the stand-in answers.
#[derive(Clone)]
enum Answer {
    Registered(&'static str),
    Status(u16),
    Slow,
    NoUuid,
}

/// What the stand-in was sent: the API key header and the body.
type Seen = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

async fn stand_in(answer: Answer) -> (String, Seen, actix_web::dev::ServerHandle) {
    let seen: Seen = Arc::default();
    let recorded = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let answer = answer.clone();
        let recorded = recorded.clone();
        App::new().route(
            "/extern/personal/registerWebhook",
            web::post().to(
                move |request: HttpRequest, body: web::Json<serde_json::Value>| {
                    let answer = answer.clone();
                    let recorded = recorded.clone();
                    async move {
                        let key = request
                            .headers()
                            .get("X-API-Key")
                            .and_then(|v| v.to_str().ok())
                            .map(String::from);
                        recorded.lock().unwrap().push((key, body.0.clone()));
                        match answer {
                            Answer::Registered(uuid) => {
                                HttpResponse::Ok().json(serde_json::json!({
                                    "hookKey": "personalData", "url": body.0["url"], "uuid": uuid
                                }))
                            }
                            Answer::Status(status) => HttpResponse::build(
                                actix_web::http::StatusCode::from_u16(status).unwrap(),
                            )
                            .finish(),
                            Answer::Slow => {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                                HttpResponse::Ok().finish()
                            }
                            Answer::NoUuid => HttpResponse::Ok()
                                .json(serde_json::json!({"hookKey": "personalData"})),
                        }
                    }
                },
            ),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), seen, handle)
}

fn api(base: &str) -> LinaApi {
    LinaApi {
        base: base.to_owned(),
        key: SecretString::from("lina-api-key-for-tests"),
        key_header: "X-API-Key".into(),
        timeout: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn register_stores_the_uuid_lina_returns() {
    let app = spawn_app().await;
    let (base, seen, server) = stand_in(Answer::Registered(STORE)).await;
    let pool = app.pool();
    let url = "https://intake.example/webhooks/lina/secret";
    let uuid = worker::admin::stores::register(&pool, &api(&base), url, "Ravintola Testi")
        .await
        .unwrap();
    assert_eq!(uuid.to_string(), STORE);
    let stores = worker::admin::stores::list_webhooks(&pool).await.unwrap();
    assert_eq!(stores.len(), 1);
    assert_eq!(stores[0].label, "Ravintola Testi");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].0.as_deref(), Some("lina-api-key-for-tests"));
    assert_eq!(
        seen[0].1,
        serde_json::json!({"hookKey": "personalData", "url": url})
    );
    server.stop(false).await;
}

#[tokio::test]
async fn register_gives_a_clear_error_and_stores_nothing_when_lina_does_not_cooperate() {
    let app = spawn_app().await;
    let pool = app.pool();
    for answer in [
        Answer::Status(401),
        Answer::Status(500),
        Answer::Slow,
        Answer::NoUuid,
    ] {
        let (base, _, server) = stand_in(answer.clone()).await;
        let error = worker::admin::stores::register(&pool, &api(&base), "https://x/y", "Store")
            .await
            .unwrap_err();
        let LinaError::Register(error) = error else {
            panic!("unexpected error {error}");
        };
        match answer {
            Answer::Status(401) => {
                assert!(matches!(error, RegisterError::Unauthorized(401)), "{error}")
            }
            Answer::Status(_) => assert!(matches!(error, RegisterError::Status(500)), "{error}"),
            Answer::Slow => assert!(matches!(error, RegisterError::Timeout(_)), "{error}"),
            _ => assert!(matches!(error, RegisterError::NoUuid), "{error}"),
        }
        assert!(
            !error.to_string().contains("lina-api-key-for-tests"),
            "the key is never shown"
        );
        server.stop(false).await;
    }
    assert!(
        worker::admin::stores::list_webhooks(&pool)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn run(
    app: &intake_tests::TestApp,
    command: LinaCommand,
    answers: &str,
) -> Result<String, LinaError> {
    let pool = app.pool();
    let hasher = app.hasher();
    let mailer = worker::email::Mailer::new(&app.mail_settings()).unwrap();
    let mut out = Vec::new();
    let context = LinaContext {
        pool: &pool,
        hasher: &hasher,
        mailer: &mailer,
        erasure_clock_margin: app.options.erasure_clock_margin,
        answers: &mut Cursor::new(answers.as_bytes().to_vec()),
        out: &mut out,
    };
    worker::admin::stores::run(command, context).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn removing_a_store_asks_first_and_then_erases_its_employees() {
    let app = spawn_app().await;
    let store = STORE.parse().unwrap();
    run(
        &app,
        LinaCommand::Webhooks {
            command: WebhooksCommand::Add {
                uuid: store,
                label: "Laden 1".into(),
            },
        },
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        app.post_lina(&example("lina/consent.json")).await.status(),
        200
    );
    eventually("the employee is stored", Duration::from_secs(10), || {
        app.employee(STORE, MIRCO)
    })
    .await;
    let listing = run(
        &app,
        LinaCommand::Webhooks {
            command: WebhooksCommand::List,
        },
        "",
    )
    .await
    .unwrap();
    assert!(
        listing.contains(STORE) && listing.contains("Laden 1"),
        "{listing}"
    );

    let remove = || LinaCommand::Webhooks {
        command: WebhooksCommand::Remove {
            uuid: store,
            yes: false,
        },
    };
    let refused = run(&app, remove(), "no\n").await.unwrap_err();
    assert!(matches!(refused, LinaError::NotConfirmed));
    assert!(
        app.employee(STORE, MIRCO).await.is_some(),
        "nothing was removed"
    );

    let removed = run(&app, remove(), &format!("{STORE}\n")).await.unwrap();
    assert!(removed.contains("1 employee(s) erased"), "{removed}");
    assert_eq!(app.employee(STORE, MIRCO).await, None);
    let dump = app.dump().await;
    assert!(!dump.contains("mirco.till@example.de") && !dump.contains("Mirco"));
    let causes = app.erasure_causes().await;
    assert_eq!(causes, vec!["store_removed".to_owned()]);
}

/// A store's removal erases all its employees in one transaction, so the
/// locks it takes must not be one per employee in PostgreSQL's shared lock
/// table (`max_locks_per_transaction` 64 × 100 connections by default):
/// 20,000 advisory locks fail with "out of shared memory" (SQLSTATE 53200,
/// measured with a variant that locked subjects that way). Row locks are
/// not held there.
#[tokio::test]
async fn a_store_with_more_employees_than_the_lock_table_holds_is_removed() {
    const EMPLOYEES: i64 = 20_000;
    let app = spawn_app().await;
    let store: uuid::Uuid = STORE.parse().unwrap();
    app.add_store(STORE).await;
    app.db
        .execute(
            "INSERT INTO lina_employee (webhook, user_uuid, first_name, data, consented_at)
             SELECT $1, gen_random_uuid(), 'Name ' || n, '{}', now()
             FROM generate_series(1, $2::bigint) AS n",
            &[&store, &EMPLOYEES],
        )
        .await
        .unwrap();
    let command = LinaCommand::Webhooks {
        command: WebhooksCommand::Remove {
            uuid: store,
            yes: true,
        },
    };
    let removed = run(&app, command, "").await.unwrap();
    assert!(
        removed.contains(&format!("{EMPLOYEES} employee(s) erased")),
        "{removed}"
    );
    assert_eq!(app.count("SELECT count(*) FROM lina_employee").await, 0);
    assert_eq!(app.tombstones().await, EMPLOYEES);
    assert_eq!(app.erasure_causes().await.len(), EMPLOYEES as usize);
}
