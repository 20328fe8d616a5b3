//! Pooled connections after a failover: a connection whose server no
//! longer takes writes is dropped from the pool, not handed out again, and
//! the pool connects anew; a multi-host URL with
//! `target_session_attrs=read-write` then reaches whichever host is primary.

use intake_tests::private_postgres::PrivatePostgres;
use secrecy::SecretString;

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_pooled_connection_that_went_read_only_is_replaced_by_a_new_one() {
    let url = intake_tests::admin_database_url();
    let pool = common::db::pool(&SecretString::from(url), 1).unwrap();
    let client = pool.get().await.unwrap();
    let first = backend_pid(&client).await;
    // As a standby behind the same address, or a pooler that moved, would.
    client
        .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .await
        .unwrap();
    drop(client);

    let client = pool.get().await.unwrap();
    assert_ne!(backend_pid(&client).await, first, "a new connection");
    client
        .batch_execute("CREATE TEMP TABLE written (x int); INSERT INTO written VALUES (1)")
        .await
        .expect("the new connection takes writes");
}

#[tokio::test]
async fn a_multi_host_url_reaches_the_primary_wherever_it_is_listed() {
    let (primary, standby) = PrivatePostgres::start_pair();
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        standby.port, primary.port
    );
    let pool = common::db::pool(&SecretString::from(url), 1).unwrap();
    let client = pool.get().await.unwrap();
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_recovery, "the standby, listed first, was passed over");
}
