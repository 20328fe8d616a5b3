//! The chaos checker itself: quiet on a run without faults, and loud when
//! an acknowledged event is gone or an erased person's data is still there
//! (so that the fault scenarios, which expect silence, can fail).

use intake_tests::chaos::workload::Sender;
use intake_tests::chaos::{Driver, Size, Tolerance, Workload, check};
use intake_tests::{TestOptions, smtp, spawn_app_with};

const SIZE: Size = Size {
    lt_subjects: 30,
    lina_subjects: 10,
    events_per_subject: 4,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chaos_checker_passes_a_clean_run_and_catches_a_lost_event_and_left_over_data() {
    let inbox = smtp::start(0, &[]);
    let app = spawn_app_with(TestOptions {
        smtp_url: Some(inbox.url()),
        ..TestOptions::default()
    })
    .await;
    let store = uuid::Uuid::new_v4().to_string();
    app.add_store(&store).await;
    let workload = Workload::new(SIZE, &store);
    let results = Driver::new(app.address.clone(), 500).run(&workload).await;
    let tolerance = Tolerance::default();
    let clean = check(
        "no fault",
        &app,
        &workload,
        &results,
        &inbox,
        &tolerance,
        vec![],
    )
    .await;
    clean.assert_ok();
    assert_eq!(clean.acknowledged, workload.events(), "every event got 200");

    // Sabotage: one stored application disappears, and an erased person's
    // e-mail address turns up in another table.
    let kept = workload
        .subjects
        .iter()
        .find(|subject| subject.sender == Sender::Lt && !subject.events.last().unwrap().erasure)
        .unwrap();
    let erased = workload
        .subjects
        .iter()
        .find(|subject| subject.sender == Sender::Lt && subject.events.last().unwrap().erasure)
        .unwrap();
    app.db
        .execute(
            "DELETE FROM lt_application WHERE mydatashare_user_id = $1",
            &[&kept.user],
        )
        .await
        .unwrap();
    app.db
        .execute(
            "INSERT INTO erasure_log (subject_key, source, cause) VALUES ('\\x00', 'lt', $1)",
            &[&erased.email],
        )
        .await
        .unwrap();
    let broken = check(
        "sabotaged",
        &app,
        &workload,
        &results,
        &inbox,
        &tolerance,
        vec![],
    )
    .await;
    assert!(broken.lost >= 1, "{}", broken.line());
    assert!(
        broken
            .failures
            .iter()
            .any(|failure| failure.starts_with("LOST: Lt subject")),
        "{:?}",
        broken.failures
    );
    assert!(
        broken
            .failures
            .iter()
            .any(|failure| failure.contains("personal values are still in pg_dump")),
        "{:?}",
        broken.failures
    );
}
