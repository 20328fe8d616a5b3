//! Erasure is complete (DESIGN.md, invariant 5): after a revocation nothing
//! of the person is left in the database; what remains is a non-personal
//! tombstone and erasure record.

use std::time::Duration;

use intake_tests::{eventually, example, personal_strings, spawn_app, until};

#[tokio::test]
async fn a_revocation_leaves_no_personal_data_in_a_database_dump() {
    let app = spawn_app().await;
    let profile: serde_json::Value = serde_json::from_str(&example("lt/new.json")).unwrap();
    let user = profile["mydatashare_user_id"].as_str().unwrap();
    app.post_lt(&example("lt/new.json")).await;
    app.post_lt(&example("lt/updated.json")).await;
    eventually("the update is applied", Duration::from_secs(10), || async {
        let (_, status, _) = app.application(user).await?;
        (status == "updated").then_some(())
    })
    .await;
    let before = app.dump().await;
    assert!(
        before.contains("aino.korhonen@example.fi"),
        "the dump does show stored data"
    );

    app.post_lt(&example("lt/revoked.json")).await;
    let stats = app.worker.as_ref().unwrap().stats.clone();
    until("the revocation is applied", &stats, |stats| {
        stats.erasures() == 1
    })
    .await;

    let dump = app.dump().await;
    let mut personal = personal_strings(&profile);
    personal.extend(personal_strings(
        &serde_json::from_str(&example("lt/updated.json")).unwrap(),
    ));
    personal.push(user.to_owned());
    for value in &personal {
        assert!(
            !dump.contains(value.as_str()),
            "the dump still contains {value:?}"
        );
    }
    let erasures: Vec<(String, String)> = app
        .db
        .query("SELECT source, cause FROM erasure_log", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(erasures, vec![("lt".to_owned(), "revocation".to_owned())]);
}

#[tokio::test]
async fn a_revocation_for_an_unknown_person_leaves_a_tombstone_and_succeeds() {
    let app = spawn_app().await;
    app.post_lt(r#"{"mydatashare_user_id":"never-seen","status":"revoked"}"#)
        .await;
    let stats = app.worker.as_ref().unwrap().stats.clone();
    until("the revocation is applied", &stats, |stats| {
        stats.erasures() == 1
    })
    .await;
    let tombstones = app.tombstones().await;
    assert_eq!(tombstones, 1);
    assert_eq!(stats.events_dead_lettered(), 0);
    // A later application with an older body cannot bring it back... but a
    // newer one (the person applies after all) is a new application.
    app.post_lt(r#"{"mydatashare_user_id":"never-seen","email":"late@example.fi"}"#)
        .await;
    eventually(
        "the later application is stored",
        Duration::from_secs(10),
        || app.application("never-seen"),
    )
    .await;
}
