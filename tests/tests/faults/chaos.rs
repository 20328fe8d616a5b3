//! Jepsen-style scenarios: a mixed load of LT and LINA events for hundreds
//! of subjects while a fault hits the broker, a worker, the database, the
//! SMTP server or the gateway; then the checker compares every 200 with
//! the final database, dead-letter queues and inbox, prints the figures,
//! and fails on any loss. Every fault is undone by a guard on every path.

use std::time::Duration;

use intake_tests::chaos::faults::{DatabaseLockout, SmtpSwitch, terminate_connections};
use intake_tests::chaos::processes::{
    EMAIL_CONCURRENCY, start_gateway, start_worker, wait_listening,
};
use intake_tests::chaos::{
    Driver, Size, Tolerance, Workload, check, database_now, own_backend, time_to_recover,
    time_to_send_backlog,
};
use intake_tests::services::{BrokerOutage, Tmpfs};
use intake_tests::{TestApp, TestOptions, smtp, spawn_app_with};
use tokio::time::Instant;

/// About 2,000 events: 250 LT and 90 LINA subjects with ~6 events each.
const SIZE: Size = Size {
    lt_subjects: 250,
    lina_subjects: 90,
    events_per_subject: 6,
};

/// New events per second: the load lasts ~12 s, so the faults fall inside it.
const RATE: u32 = 170;

/// E-mails the in-process test worker sends at once (`TestApp::mail_settings`).
const TEST_EMAIL_CONCURRENCY: usize = 8;

fn options(smtp_url: String) -> TestOptions {
    TestOptions {
        publish_timeout: Duration::from_secs(2),
        smtp_url: Some(smtp_url),
        ..TestOptions::default()
    }
}

/// The app's store registered and a workload for it.
async fn workload(app: &TestApp) -> Workload {
    let store = uuid::Uuid::new_v4().to_string();
    app.add_store(&store).await;
    Workload::new(SIZE, &store)
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_broker_stopped_twice_mid_load_loses_nothing() {
    let inbox = smtp::start(0, &[]);
    let app = spawn_app_with(options(inbox.url())).await;
    let workload = workload(&app).await;
    let driver = Driver::new(app.address.clone(), RATE);
    let fault = async {
        let mut recoveries = Vec::new();
        for at in [0.2, 0.55] {
            driver.progress.reached(at).await;
            let outage = blocking(BrokerOutage::begin).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            blocking(move || outage.end()).await;
            recoveries.push(time_to_recover(&app, &app.address, Instant::now()).await);
        }
        recoveries
    };
    let (results, recoveries) = tokio::join!(driver.run(&workload), fault);
    let tolerance = Tolerance::default();
    check(
        "broker stopped twice",
        &app,
        &workload,
        &results,
        &inbox,
        &tolerance,
        recoveries,
    )
    .await
    .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_worker_processes_killed_mid_batch_lose_nothing() {
    let inbox = smtp::start(0, &[]);
    let app = spawn_app_with(TestOptions {
        start_worker: false,
        ..options(inbox.url())
    })
    .await;
    let workload = workload(&app).await;
    let driver = Driver::new(app.address.clone(), RATE);
    let fault = async {
        let mut first = start_worker(&app, &inbox.url());
        driver.progress.reached(0.25).await;
        intake_tests::eventually("the worker applies", Duration::from_secs(30), || async {
            (app.application_count().await > 0).then_some(())
        })
        .await;
        first.kill().await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let restarted = start_worker(&app, &inbox.url());
        let mut recoveries = vec![time_to_recover(&app, &app.address, Instant::now()).await];

        driver.progress.reached(0.5).await;
        let mut second = start_worker(&app, &inbox.url());
        driver.progress.reached(0.7).await;
        second.kill().await.unwrap();
        recoveries.push(time_to_recover(&app, &app.address, Instant::now()).await);
        (recoveries, restarted)
    };
    let (results, (recoveries, _survivor)) = tokio::join!(driver.run(&workload), fault);
    let tolerance = Tolerance {
        // Each SIGKILL may come between the SMTP server's 250 and the commit.
        duplicate_emails: 2 * EMAIL_CONCURRENCY,
        ..Tolerance::default()
    };
    check(
        "worker SIGKILL (alone, then one of two)",
        &app,
        &workload,
        &results,
        &inbox,
        &tolerance,
        recoveries,
    )
    .await
    .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_database_connections_killed_and_refused_lose_nothing() {
    let inbox = smtp::start(0, &[]);
    let app = spawn_app_with(options(inbox.url())).await;
    let workload = workload(&app).await;
    let spare = own_backend(&app).await;
    let driver = Driver::new(app.address.clone(), RATE);
    let fault = async {
        let database = app.db_name.clone();
        let mut recoveries = Vec::new();
        driver.progress.reached(0.2).await;
        let name = database.clone();
        let killed = blocking(move || terminate_connections(&name, spare)).await;
        assert!(killed > 0, "the worker had connections to kill");
        recoveries.push(time_to_recover(&app, &app.address, Instant::now()).await);

        driver.progress.reached(0.45).await;
        let name = database.clone();
        let lockout = blocking(move || DatabaseLockout::begin(&name, spare)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        blocking(move || lockout.end()).await;
        recoveries.push(time_to_recover(&app, &app.address, Instant::now()).await);

        driver.progress.reached(0.7).await;
        blocking(move || terminate_connections(&database, spare)).await;
        recoveries.push(time_to_recover(&app, &app.address, Instant::now()).await);
        recoveries
    };
    let (results, recoveries) = tokio::join!(driver.run(&workload), fault);
    let tolerance = Tolerance {
        // A lost connection between the SMTP server's 250 and the commit:
        // three rounds of killed connections.
        duplicate_emails: 3 * TEST_EMAIL_CONCURRENCY,
        ..Tolerance::default()
    };
    check(
        "database connections killed twice, refused for 3 s",
        &app,
        &workload,
        &results,
        &inbox,
        &tolerance,
        recoveries,
    )
    .await
    .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_smtp_server_down_for_a_while_every_application_still_gets_its_email() {
    let inbox = smtp::start(0, &[]);
    let switch = SmtpSwitch::start(inbox.port);
    let app = spawn_app_with(options(switch.url())).await;
    let workload = workload(&app).await;
    let driver = Driver::new(app.address.clone(), RATE);
    let fault = async {
        driver.progress.reached(0.3).await;
        let outage = switch.down();
        // Shorter than the test tiers' whole schedule (1 s + 5 s).
        tokio::time::sleep(Duration::from_secs(4)).await;
        let since = database_now(&app).await;
        outage.end();
        vec![time_to_send_backlog(&app, since, Instant::now()).await]
    };
    let (results, recoveries) = tokio::join!(driver.run(&workload), fault);
    let tolerance = Tolerance {
        // Connections cut mid-conversation: the server may have kept a
        // message whose 250 never reached the worker.
        duplicate_emails: TEST_EMAIL_CONCURRENCY,
        ..Tolerance::default()
    };
    check(
        "SMTP down for 4 s",
        &app,
        &workload,
        &results,
        &inbox,
        &tolerance,
        recoveries,
    )
    .await
    .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_gateway_killed_with_a_non_empty_spool_loses_no_acknowledged_event() {
    let inbox = smtp::start(0, &[]);
    let app = spawn_app_with(options(inbox.url())).await;
    let workload = workload(&app).await;
    let port = smtp::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let spool = app.spool_dir.join("binary");
    let mut gateway = start_gateway(&app, port, &spool);
    let driver = Driver::new(base.clone(), RATE);
    wait_listening(&driver.http, &base).await;
    let fault = async {
        driver.progress.reached(0.3).await;
        let outage = blocking(BrokerOutage::begin).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let segments = intake_tests::app::spool_segments_in(&spool);
        assert!(segments > 0, "LINA calls wait in the spool");
        gateway.kill().await.unwrap();
        println!("gateway killed with {segments} spool segment(s) holding LINA calls");
        blocking(move || outage.end()).await;
        let restarted = start_gateway(&app, port, &spool);
        let ended = Instant::now();
        wait_listening(&driver.http, &base).await;
        (vec![time_to_recover(&app, &base, ended).await], restarted)
    };
    let (results, (recoveries, _restarted)) = tokio::join!(driver.run(&workload), fault);
    let tolerance = Tolerance {
        spool_dirs: vec![spool.clone()],
        ..Tolerance::default()
    };
    check(
        "gateway SIGKILL with a non-empty spool",
        &app,
        &workload,
        &results,
        &inbox,
        &tolerance,
        recoveries,
    )
    .await
    .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_full_disk_under_the_spool_loses_no_acknowledged_lina_call() {
    let inbox = smtp::start(0, &[]);
    let app = spawn_app_with(options(inbox.url())).await;
    let workload = workload(&app).await;
    let disk = Tmpfs::mount(4 * 1024 * 1024);
    let spool = disk.path().join("spool");
    let port = smtp::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _gateway = start_gateway(&app, port, &spool);
    let driver = Driver::new(base.clone(), RATE);
    wait_listening(&driver.http, &base).await;
    let fault = async {
        driver.progress.reached(0.3).await;
        let outage = blocking(BrokerOutage::begin).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        // A few calls' worth of space left: the spool runs out mid-load.
        let filler = disk.fill_leaving(16 * 1024);
        tokio::time::sleep(Duration::from_secs(3)).await;
        std::fs::remove_file(&filler).unwrap();
        // LINA answered from the spool again, the broker still away.
        tokio::time::sleep(Duration::from_secs(2)).await;
        blocking(move || outage.end()).await;
        vec![time_to_recover(&app, &base, Instant::now()).await]
    };
    let (results, recoveries) = tokio::join!(driver.run(&workload), fault);
    let refused_by_the_disk = results.lina_refused.get("503").copied().unwrap_or(0);
    let tolerance = Tolerance {
        spool_dirs: vec![spool.clone()],
        ..Tolerance::default()
    };
    check(
        "full disk under the spool, broker stopped",
        &app,
        &workload,
        &results,
        &inbox,
        &tolerance,
        recoveries,
    )
    .await
    .assert_ok();
    assert!(
        refused_by_the_disk > 0,
        "the disk filled: some LINA calls were refused with 503"
    );
    let set_aside = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("damaged-"))
        .count();
    assert_eq!(set_aside, 0, "no segment was torn by the full disk");
}
