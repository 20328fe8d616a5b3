//! The acknowledgement e-mail: exactly one per new application, in the
//! applicant's language, through a real SMTP server on loopback (or as an
//! .eml file when none is configured); retried while the server is down,
//! dead-lettered when it refuses, never sent after a revocation.

use std::time::Duration;

use common::amqp::WorkQueue;
use common::{Envelope, EventKind};
use intake_tests::smtp;
use intake_tests::{TestApp, TestOptions, eventually, example, spawn_app_with, until};
use mail_parser::MimeHeaders;

const AINO: &str = "aino.korhonen@example.fi";
const USER: &str = "7f3c2a9e-5b1d-4c8e-9a2f-0e6d4b8c1a37";

async fn with_smtp(server_port: u16) -> TestApp {
    spawn_app_with(TestOptions {
        smtp_url: Some(format!("smtp://127.0.0.1:{server_port}")),
        ..TestOptions::default()
    })
    .await
}

async fn outbox_rows(app: &TestApp) -> Vec<(String, Option<String>, i32)> {
    app.db
        .query(
            "SELECT status, recipient, attempts FROM email_outbox ORDER BY created_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

fn stats(app: &TestApp) -> std::sync::Arc<worker::context::WorkerStats> {
    app.worker.as_ref().unwrap().stats.clone()
}

#[tokio::test]
async fn a_new_application_gets_one_acknowledgement_in_its_language_with_both_parts() {
    let server = smtp::start(0, &[]);
    let app = with_smtp(server.port).await;
    assert_eq!(app.post_lt(&example("lt/new.json")).await.status(), 200);
    let mail = server.wait_for(1).await.remove(0);
    assert_eq!(mail.to, vec![AINO.to_owned()]);
    let message = mail.parsed();
    assert_eq!(
        message.subject(),
        Some("Kiitos hakemuksestasi – Henkilöstöpalvelu Testi Oy"),
        "Finnish characters survive the MIME encoding"
    );
    let text = message.body_text(0).unwrap();
    assert!(text.contains("Hei Aino,"), "{text}");
    assert!(text.contains("Näin rekrytointi etenee"), "{text}");
    let html = message.body_html(0).unwrap();
    assert!(html.contains("<li>Käymme profiilisi läpi"), "{html}");
    let message_id = message.message_id().unwrap().to_owned();
    let outbox_id: uuid::Uuid = app
        .db
        .query_one("SELECT id FROM email_outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        message_id,
        format!("{outbox_id}@localhost"),
        "the Message-ID derives from the outbox row"
    );
    eventually(
        "the row is marked sent",
        Duration::from_secs(10),
        || async {
            let rows = outbox_rows(&app).await;
            (rows == vec![("sent".to_owned(), None, 1)]).then_some(())
        },
    )
    .await;

    assert_eq!(
        app.post_lt(&example("lt/new-en-minimal.json"))
            .await
            .status(),
        200
    );
    let english = server.wait_for(2).await.remove(1);
    let message = english.parsed();
    assert_eq!(
        message.subject(),
        Some("Thank you for your application – Henkilöstöpalvelu Testi Oy")
    );
    let text = message.body_text(0).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("Hello,"),
        "a neutral greeting without a first name: {text}"
    );
}

#[tokio::test]
async fn the_same_application_sent_three_times_and_redelivered_is_acknowledged_once() {
    let server = smtp::start(0, &[]);
    let app = with_smtp(server.port).await;
    for _ in 0..3 {
        assert_eq!(app.post_lt(&example("lt/new.json")).await.status(), 200);
    }
    let envelope = Envelope::new(
        EventKind::LtApplication,
        None,
        example("lt/new.json").into_bytes(),
    );
    app.publish(&envelope).await;
    app.publish(&envelope).await;
    let stats = stats(&app);
    eventually(
        "all five events settled",
        Duration::from_secs(20),
        || async { (stats.events_applied() + stats.events_duplicate() == 5).then_some(()) },
    )
    .await;
    until("the e-mail is sent", &stats, |stats| {
        stats.emails_sent() == 1
    })
    .await;
    assert_eq!(
        outbox_rows(&app).await.len(),
        1,
        "one acknowledgement for one application"
    );
    // Longer than a sweep: nothing else goes out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn an_update_sends_nothing_and_a_re_application_after_a_revocation_is_acknowledged_again() {
    let server = smtp::start(0, &[]);
    let app = with_smtp(server.port).await;
    app.post_lt(&example("lt/new.json")).await;
    server.wait_for(1).await;
    app.post_lt(&example("lt/updated.json")).await;
    let stats = stats(&app);
    until("the update is applied", &stats, |stats| {
        stats.events_applied() == 2
    })
    .await;
    assert_eq!(
        outbox_rows(&app).await.len(),
        1,
        "an update queues no e-mail"
    );

    app.post_lt(&example("lt/revoked.json")).await;
    until("revoked", &stats, |stats| stats.erasures() == 1).await;
    let mut again: serde_json::Value = serde_json::from_str(&example("lt/new.json")).unwrap();
    again["shared_at"] = "2026-12-01T10:00:00Z".into();
    app.post_lt(&again.to_string()).await;
    let mails = server.wait_for(2).await;
    assert_eq!(mails[1].to, vec![AINO.to_owned()]);
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn an_smtp_server_down_at_first_gets_the_email_once_it_is_up() {
    let port = smtp::free_port();
    let app = with_smtp(port).await;
    app.post_lt(&example("lt/new.json")).await;
    let stats = stats(&app);
    until("the send is retried", &stats, |stats| {
        stats.events_retried() >= 1
    })
    .await;
    let server = smtp::start(port, &[]);
    let mails = server.wait_for(1).await;
    assert_eq!(mails[0].to, vec![AINO.to_owned()]);
    eventually(
        "the row is marked sent",
        Duration::from_secs(10),
        || async {
            let rows = outbox_rows(&app).await;
            (rows.len() == 1 && rows[0].0 == "sent").then_some(())
        },
    )
    .await;
    assert!(
        app.application(USER).await.is_some(),
        "the application never depended on the e-mail"
    );
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn a_permanent_rejection_fails_the_row_and_dead_letters_the_job_without_retries() {
    let server = smtp::start(0, &["refused@example.fi"]);
    let app = with_smtp(server.port).await;
    let body =
        r#"{"mydatashare_user_id":"refused-1","email":"refused@example.fi","first_name":"Kalle"}"#;
    app.post_lt(body).await;
    app.wait_for_dead_letters(WorkQueue::Email, 1).await;
    assert_eq!(
        outbox_rows(&app).await,
        vec![(
            "failed".to_owned(),
            Some("refused@example.fi".to_owned()),
            1
        )]
    );
    assert_eq!(stats(&app).events_retried(), 0, "no retry storm");
    assert!(
        app.application("refused-1").await.is_some(),
        "the application is intact"
    );
    let listing = app.dlq(&["list", "--queue", "email"]).await.unwrap();
    assert!(listing.contains("smtp_rejected"), "{listing}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_revocation_while_the_email_is_pending_means_it_is_never_sent() {
    let port = smtp::free_port();
    let app = with_smtp(port).await;
    app.post_lt(&example("lt/new.json")).await;
    let stats = stats(&app);
    until("the send is retried", &stats, |stats| {
        stats.events_retried() >= 1
    })
    .await;
    app.post_lt(&example("lt/revoked.json")).await;
    until("revoked", &stats, |stats| stats.erasures() == 1).await;
    assert!(outbox_rows(&app).await.is_empty(), "no outbox row is left");

    let server = smtp::start(port, &[]);
    until("the retried job finds nothing to send", &stats, |stats| {
        stats.emails_skipped() >= 1
    })
    .await;
    assert!(server.received().is_empty());
    assert!(!app.dump().await.contains(AINO));
}

fn eml_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(&app.mail_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|extension| extension == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn without_smtp_an_eml_file_is_written_and_a_revocation_deletes_it() {
    let app = spawn_app_with(TestOptions::default()).await;
    app.post_lt(&example("lt/new.json")).await;
    let files = eventually("an .eml file appears", Duration::from_secs(20), || async {
        let files = eml_files(&app);
        (!files.is_empty()).then_some(files)
    })
    .await;
    let bytes = std::fs::read(&files[0]).unwrap();
    let message = mail_parser::MessageParser::default().parse(&bytes).unwrap();
    assert_eq!(
        message
            .to()
            .and_then(|to| to.first())
            .and_then(|to| to.address()),
        Some(AINO)
    );
    assert_eq!(
        message.subject(),
        Some("Kiitos hakemuksestasi – Henkilöstöpalvelu Testi Oy")
    );
    assert!(message.body_text(0).unwrap().contains("Hei Aino,"));
    assert!(message.body_html(0).is_some());
    assert!(message.content_type().is_some());

    app.post_lt(&example("lt/revoked.json")).await;
    eventually("the copy is deleted", Duration::from_secs(10), || async {
        eml_files(&app).is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_template_override_is_used_and_profile_values_are_escaped_in_html() {
    let templates = std::env::temp_dir().join(format!(
        "intake-templates-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("acknowledgement.fi.txt"),
        "Hei {{ first_name }}! Oma ohje: soita meille numeroon 010 123 4567.\n",
    )
    .unwrap();
    let server = smtp::start(0, &[]);
    let app = spawn_app_with(TestOptions {
        smtp_url: Some(server.url()),
        templates_dir: Some(templates.clone()),
        ..TestOptions::default()
    })
    .await;
    let body = r#"{"mydatashare_user_id":"xss-1","email":"x@example.fi","first_name":"<script>alert(1)</script>"}"#;
    app.post_lt(body).await;
    let mail = server.wait_for(1).await.remove(0);
    let message = mail.parsed();
    let text = message.body_text(0).unwrap();
    assert!(
        text.contains("Oma ohje: soita meille"),
        "the override is used: {text}"
    );
    let html = message.body_html(0).unwrap();
    assert!(html.contains("Hei &lt;script&gt;alert(1)&lt;"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    let _ = std::fs::remove_dir_all(templates);
}

#[tokio::test]
async fn the_sweeper_sends_what_a_crash_left_unpublished() {
    let app = spawn_app_with(TestOptions::default()).await;
    // As if a worker committed the application and died before publishing
    // the e-mail job: a pending row that no job names.
    let id = uuid::Uuid::now_v7();
    app.db
        .execute(
            "INSERT INTO email_outbox (id, subject_key, template, language, recipient, first_name, created_at)
             VALUES ($1, $2, 'acknowledgement', 'sv', 'left@example.fi', 'Lisa', now() - interval '1 minute')",
            &[&id, &vec![7u8; 32]],
        )
        .await
        .unwrap();
    let file = app.mail_dir.join(format!("{id}.eml"));
    eventually(
        "the swept e-mail is written",
        Duration::from_secs(20),
        || async { file.exists().then_some(()) },
    )
    .await;
    let bytes = std::fs::read(&file).unwrap();
    let message = mail_parser::MessageParser::default().parse(&bytes).unwrap();
    assert_eq!(
        message.subject(),
        Some("Tack för din ansökan – Henkilöstöpalvelu Testi Oy")
    );
    assert!(message.body_text(0).unwrap().contains("Hej Lisa,"));
}

#[tokio::test]
async fn a_chunk_of_jobs_sends_each_once_fails_only_the_refused_and_waits_for_a_held_row() {
    let port = smtp::free_port();
    let app = with_smtp(port).await;
    let people = ["chunk-1", "chunk-2", "chunk-3", "held-1", "refused-1"];
    for user in people {
        let address = match user {
            "refused-1" => "refused@example.fi".to_owned(),
            _ => format!("{user}@example.fi"),
        };
        let body = serde_json::json!({"mydatashare_user_id": user, "email": address});
        assert_eq!(app.post_lt(&body.to_string()).await.status(), 200);
    }
    // Every first try fails (no server yet); the retries come a second later.
    let stats = stats(&app);
    until("every job is retried", &stats, |stats| {
        stats.events_retried() >= 5
    })
    .await;
    let mut holder = intake_tests::database::connect(&app.db_url).await;
    let holding = holder.transaction().await.unwrap();
    holding
        .execute(
            "SELECT 1 FROM email_outbox WHERE recipient = 'held-1@example.fi' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    let server = smtp::start(port, &["refused@example.fi"]);

    let mut sent: Vec<String> = server
        .wait_for(3)
        .await
        .into_iter()
        .flat_map(|mail| mail.to)
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            "chunk-1@example.fi",
            "chunk-2@example.fi",
            "chunk-3@example.fi"
        ],
        "the free rows went out while one was held"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.received().len(), 3, "nothing for the held row yet");

    holding.rollback().await.unwrap();
    let last = server.wait_for(4).await.remove(3);
    assert_eq!(last.to, vec!["held-1@example.fi".to_owned()]);
    app.wait_for_dead_letters(WorkQueue::Email, 1).await;
    let statuses: Vec<String> = outbox_rows(&app)
        .await
        .into_iter()
        .map(|row| row.0)
        .collect();
    assert_eq!(
        statuses.iter().filter(|status| *status == "sent").count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| *status == "failed").count(),
        1,
        "{statuses:?}"
    );
    // Longer than a sweep: nothing goes out twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.received().len(), 4);
}
