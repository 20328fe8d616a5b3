//! Jepsen-style fault tests: a load driver sends a mixed workload the way
//! the senders do while a fault is injected; a checker then compares what
//! the senders were told with the final database, queues and inbox.

pub mod checker;
pub mod driver;
pub mod faults;
pub mod processes;
pub mod workload;

use std::time::Duration;

use tokio::time::Instant;

pub use checker::{Report, Tolerance, check};
pub use driver::{Driver, Progress, Results};
pub use workload::{Size, Workload};

use crate::TestApp;
use crate::app::TEST_TOKEN;

/// How long after a fault's end the system worked again.
#[derive(Clone, Copy, Debug)]
pub struct Recovery {
    /// Until the gateway answered 200 again.
    pub answering: Duration,
    /// Until an event sent after the end was applied (or its e-mail sent).
    pub applying: Duration,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} s answering, {:.2} s applying",
            self.answering.as_secs_f64(),
            self.applying.as_secs_f64()
        )
    }
}

/// Fault end → the system answers and applies again: a probe application
/// posted (and resent, as LT would) until it is stored.
pub async fn time_to_recover(app: &TestApp, base: &str, fault_ended: Instant) -> Recovery {
    let user = format!("probe-{}", uuid::Uuid::new_v4().simple());
    let body =
        serde_json::json!({"mydatashare_user_id": user, "email": format!("{user}@example.org")})
            .to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    crate::eventually(
        "the gateway answers 200 again",
        Duration::from_secs(60),
        || async {
            let answer = http
                .post(format!("{base}/webhooks/lt"))
                .bearer_auth(TEST_TOKEN)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await;
            answer
                .is_ok_and(|response| response.status() == 200)
                .then_some(())
        },
    )
    .await;
    let answering = fault_ended.elapsed();
    // A connection of its own: the app's may have gone with a failed-over
    // primary (`db_url` may list several hosts).
    let db = crate::eventually("the database answers", Duration::from_secs(60), || async {
        crate::database::try_connect(&app.db_url).await.ok()
    })
    .await;
    crate::eventually("the probe is applied", Duration::from_secs(60), || {
        crate::app::application_in(&db, &user)
    })
    .await;
    Recovery {
        answering,
        applying: fault_ended.elapsed(),
    }
}

/// Fault end → every acknowledgement e-mail that was due before the end
/// has been handed to the SMTP server (`since`: the database's clock then).
pub async fn time_to_send_backlog(
    app: &TestApp,
    since: chrono::DateTime<chrono::Utc>,
    fault_ended: Instant,
) -> Recovery {
    crate::eventually(
        "the e-mail backlog is sent",
        Duration::from_secs(60),
        || async {
            let row = app
            .db
            .query_one(
                "SELECT count(*) FROM email_outbox WHERE status = 'pending' AND created_at < $1",
                &[&since],
            )
            .await
            .unwrap();
            (row.get::<_, i64>(0) == 0).then_some(())
        },
    )
    .await;
    // The gateway never stopped answering.
    Recovery {
        answering: Duration::ZERO,
        applying: fault_ended.elapsed(),
    }
}

/// The backend pid of the test's own database connection (spared when
/// connections are killed, so the checker can still look).
pub async fn own_backend(app: &TestApp) -> i32 {
    app.db
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The database's clock.
pub async fn database_now(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    app.db.query_one("SELECT now()", &[]).await.unwrap().get(0)
}
