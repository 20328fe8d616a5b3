//! TLS to PostgreSQL with libpq's `sslmode`: this machine's PostgreSQL has
//! `ssl = on` with a self-signed certificate.

use intake_tests::{TestApp, TestOptions, spawn_app_with};
use secrecy::SecretString;

async fn app() -> TestApp {
    spawn_app_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await
}

/// Whether the pool's connection to `url` is encrypted, as the server sees it.
async fn encrypted(url: String) -> Result<bool, String> {
    let pool = common::db::pool(&SecretString::from(url), 1).map_err(|error| error.to_string())?;
    let client = pool
        .get()
        .await
        .map_err(|error| common::db::pool_error(&error))?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|error| error.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn require_and_prefer_encrypt_and_disable_does_not() {
    let app = app().await;
    assert_eq!(
        encrypted(format!("{}?sslmode=require", app.db_url)).await,
        Ok(true)
    );
    assert_eq!(
        encrypted(app.db_url.clone()).await,
        Ok(true),
        "prefer, libpq's default"
    );
    assert_eq!(
        encrypted(format!("{}?sslmode=disable", app.db_url)).await,
        Ok(false)
    );
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_no_trusted_root_signed() {
    let app = app().await;
    let refused = encrypted(format!("{}?sslmode=verify-full", app.db_url)).await;
    let error = refused.expect_err("a self-signed certificate is not trusted");
    assert!(error.contains("certificate"), "the error says why: {error}");
}

#[tokio::test]
async fn an_unreadable_root_certificate_is_a_clear_error_at_start() {
    let error = common::db::pool(
        &SecretString::from(
            "postgres://postgres@127.0.0.1/postgres?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem"
                .to_owned(),
        ),
        1,
    )
    .expect_err("refused");
    assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
}

#[tokio::test]
async fn verify_full_and_verify_ca_accept_a_server_whose_certificate_our_ca_signed() {
    use intake_tests::private_postgres::PrivatePostgres;
    use intake_tests::test_ca::TestCa;
    let ca = TestCa::generate();
    let server = PrivatePostgres::start_with_tls(&ca);
    let dir = std::env::temp_dir().join(format!("intake-ca-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let root = format!("sslrootcert={}", ca_file.display());
    for (host, mode) in [
        ("localhost", "verify-full"),
        ("127.0.0.1", "verify-ca"),
        ("127.0.0.1", "require"),
    ] {
        let url = server.url(host, &format!("sslmode={mode}&{root}"));
        assert_eq!(encrypted(url).await, Ok(true), "{mode} to {host}");
    }
    // The right CA, another name: verify-full refuses, saying why.
    let url = server.url("127.0.0.1", &format!("sslmode=verify-full&{root}"));
    let refused = encrypted(url).await.expect_err("not valid for 127.0.0.1");
    assert!(refused.contains("certificate"), "{refused}");
    let _ = std::fs::remove_dir_all(&dir);
}
