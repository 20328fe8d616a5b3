//! A fresh database per test, dropped afterwards.

use tokio_postgres::{Client, NoTls};

/// Creates `name` and returns its URL.
pub async fn create(name: &str) -> String {
    create_in(&crate::admin_database_url(), name).await
}

/// Creates `name` on the server of `admin` (a URL whose user may create
/// databases) and returns its URL.
pub async fn create_in(admin: &str, name: &str) -> String {
    let client = connect(admin).await;
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    url_in(admin, name)
}

pub fn url_for(name: &str) -> String {
    url_in(&crate::admin_database_url(), name)
}

/// `admin` with its database replaced by `name` (its query kept: a
/// multi-host URL's `target_session_attrs`).
pub fn url_in(admin: &str, name: &str) -> String {
    let (url, query) = admin.split_once('?').unwrap_or((admin, ""));
    let base = url.rsplit_once('/').map(|(base, _)| base).unwrap_or(url);
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}

/// A connection, or why there is none (a server that is down).
pub async fn try_connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
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
    drop_in(&crate::admin_database_url(), name).await;
}

/// `drop` on the server of `admin` (a server that is gone: nothing to do).
pub async fn drop_in(admin: &str, name: &str) {
    let Ok(admin) = try_connect(admin).await else {
        return;
    };
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
}

/// An ordinary role (no superuser) that owns a test database and may use
/// every table in it, as a worker in production would; the test's admin
/// connection revokes and grants its privileges. Dropped on every path.
pub struct OrdinaryRole {
    pub name: String,
    db_name: String,
}

impl OrdinaryRole {
    pub async fn create(db_name: &str) -> OrdinaryRole {
        let name = format!(
            "intake_t_role_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let admin = connect(&crate::admin_database_url()).await;
        admin
            .batch_execute(&format!(
                "CREATE ROLE \"{name}\" LOGIN; ALTER DATABASE \"{db_name}\" OWNER TO \"{name}\""
            ))
            .await
            .unwrap();
        let role = OrdinaryRole {
            name,
            db_name: db_name.to_owned(),
        };
        role.as_admin(&format!(
            "GRANT ALL ON SCHEMA public TO \"{0}\";
             GRANT ALL ON ALL TABLES IN SCHEMA public TO \"{0}\";
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO \"{0}\"",
            role.name
        ))
        .await;
        role
    }

    /// The database's URL, connecting as this role.
    pub fn url(&self) -> String {
        let mut url = reqwest::Url::parse(&url_for(&self.db_name)).unwrap();
        url.set_username(&self.name).unwrap();
        url.set_password(None).unwrap();
        url.to_string()
    }

    /// Runs `sql` in the role's database as the admin user.
    pub async fn as_admin(&self, sql: &str) {
        connect(&url_for(&self.db_name))
            .await
            .batch_execute(sql)
            .await
            .unwrap();
    }
}

impl Drop for OrdinaryRole {
    /// Gives what the role owns back to the admin user (the database too)
    /// and drops the role; the database itself goes with the test app.
    fn drop(&mut self) {
        let (name, db_name) = (self.name.clone(), self.db_name.clone());
        crate::block_on_own_thread(async move {
            if let Ok((client, connection)) =
                tokio_postgres::connect(&url_for(&db_name), NoTls).await
            {
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!(
                        "REASSIGN OWNED BY \"{name}\" TO CURRENT_USER; DROP OWNED BY \"{name}\""
                    ))
                    .await;
            }
            let admin = connect(&crate::admin_database_url()).await;
            let _ = admin
                .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
                .await;
        });
    }
}
