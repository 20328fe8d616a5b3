//! Faults on PostgreSQL and SMTP, each undone by a guard on every path
//! (also when the test panics). The broker's are in `services`.

use std::process::Command;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Runs `sql` on the admin database with `psql` (synchronous, so a guard's
/// `Drop` can use it whatever state the test's runtime is in).
fn psql(sql: &str) -> String {
    let output = Command::new("psql")
        .args([
            crate::admin_database_url().as_str(),
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Kills every connection to `database` but the one whose backend is
/// `spare` (the test's own); returns how many were killed.
pub fn terminate_connections(database: &str, spare: i32) -> usize {
    psql(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = '{database}' AND pid <> {spare}"
    ))
    .parse()
    .unwrap_or(0)
}

/// The database refuses new connections (`ALLOW_CONNECTIONS false`) and
/// its open ones are killed (but `spare`); allowed again on drop.
pub struct DatabaseLockout {
    database: String,
    ended: bool,
}

impl DatabaseLockout {
    pub fn begin(database: &str, spare: i32) -> DatabaseLockout {
        let lockout = DatabaseLockout {
            database: database.to_owned(),
            ended: false,
        };
        psql(&format!(
            "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS false"
        ));
        terminate_connections(database, spare);
        lockout
    }

    pub fn end(mut self) {
        self.restore();
    }

    fn restore(&mut self) {
        if !self.ended {
            self.ended = true;
            psql(&format!(
                "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true",
                self.database
            ));
        }
    }
}

impl Drop for DatabaseLockout {
    fn drop(&mut self) {
        self.restore();
    }
}

/// A switchable TCP relay in front of the test SMTP server: `down` closes
/// the port (connection refused) and cuts every open connection, as a
/// stopped mail server would; `up` listens on the same port again.
pub struct SmtpSwitch {
    port: u16,
    target: u16,
    live: Mutex<Option<CancellationToken>>,
}

impl SmtpSwitch {
    /// Relays to `127.0.0.1:<target>`; must run inside a tokio runtime.
    pub fn start(target: u16) -> Arc<SmtpSwitch> {
        let switch = Arc::new(SmtpSwitch {
            port: crate::smtp::free_port(),
            target,
            live: Mutex::new(None),
        });
        switch.up();
        switch
    }

    /// `smtp://127.0.0.1:<relay port>`
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Stops relaying until the returned guard ends (or is dropped).
    pub fn down(&self) -> SmtpOutage<'_> {
        if let Some(token) = self.live.lock().unwrap().take() {
            token.cancel();
        }
        SmtpOutage {
            switch: self,
            ended: false,
        }
    }

    fn up(&self) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let token = CancellationToken::new();
        tokio::spawn(relay(listener, self.target, token.clone()));
        *self.live.lock().unwrap() = Some(token);
    }
}

pub struct SmtpOutage<'a> {
    switch: &'a SmtpSwitch,
    ended: bool,
}

impl SmtpOutage<'_> {
    pub fn end(mut self) {
        self.ended = true;
        self.switch.up();
    }
}

impl Drop for SmtpOutage<'_> {
    fn drop(&mut self) {
        if !self.ended && tokio::runtime::Handle::try_current().is_ok() {
            self.switch.up();
        }
    }
}

/// Accepts and relays until `stop`; the listener (and so the port) goes with it.
async fn relay(listener: TcpListener, target: u16, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut inbound, _)) = accepted else {
            continue;
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}
