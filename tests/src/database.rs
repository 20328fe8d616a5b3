//! A fresh database per test, dropped afterwards.

use tokio_postgres::{Client, NoTls};

/// Creates `name` and returns its URL.
pub async fn create(name: &str) -> String {
    let admin = connect(&crate::admin_database_url()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    url_for(name)
}

pub fn url_for(name: &str) -> String {
    let admin = crate::admin_database_url();
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin);
    format!("{base}/{name}")
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Drops `name`, disconnecting whoever still uses it.
pub async fn drop(name: &str) {
    let admin = connect(&crate::admin_database_url()).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
}
