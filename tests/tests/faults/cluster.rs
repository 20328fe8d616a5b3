//! The production topology under the chaos workload (LT resends until 200,
//! LINA sends once): a three-node RabbitMQ cluster of the test's own losing
//! a node three ways, and a PostgreSQL primary of the test's own failing
//! over to its synchronous standby. Each: nothing lost, nothing applied
//! twice, no personal data left for erased subjects; the time to answer and
//! to apply again is printed. Nothing here touches the machine's RabbitMQ or
//! PostgreSQL (but the machine's broker carries the database scenario).

use std::time::Duration;

use common::amqp::{AmqpTls, Topology, WorkQueue};
use intake_tests::chaos::{Driver, Recovery, Size, Tolerance, Workload, check, time_to_recover};
use intake_tests::private_postgres::PrivatePostgres;
use intake_tests::private_rabbitmq::PrivateRabbit;
use intake_tests::smtp::SmtpServer;
use intake_tests::{TestApp, TestOptions, broker, database, smtp, spawn_app_with};
use tokio::time::Instant;

/// About 800 events: 120 LT and 40 LINA subjects with ~5 events each
/// (four Erlang VMs share the two cores with everything else).
const SIZE: Size = Size {
    lt_subjects: 120,
    lina_subjects: 40,
    events_per_subject: 5,
};

/// New events per second: the load lasts ~10 s.
const RATE: u32 = 80;

/// The delay tiers of the test apps (`spawn_app_with`).
fn tiers() -> Vec<Duration> {
    vec![Duration::from_secs(1), Duration::from_secs(5)]
}

/// The cluster's nodes as `INTAKE_AMQP_URL`, starting with `first`.
fn nodes_from(cluster: &PrivateRabbit, first: usize) -> String {
    (0..3)
        .map(|step| cluster.url((first + step) % 3))
        .collect::<Vec<_>>()
        .join(",")
}

/// An app on the cluster with each role on a node of its own: the gateway
/// on node 1, the worker on node 2, the quorum queues' leaders on node 3
/// (the queues are declared through it first), so each fault hits one.
async fn cluster_app(cluster: &PrivateRabbit, inbox: &SmtpServer) -> TestApp {
    let prefix = format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let connection = broker::connect_to(&cluster.url(2), &AmqpTls::default()).await;
    Topology::new(prefix.clone(), tiers())
        .declare(&connection)
        .await
        .unwrap();
    let _ = connection.close(200, "declared".into()).await;
    let app = spawn_app_with(TestOptions {
        queue_prefix: Some(prefix),
        gateway_amqp_url: Some(nodes_from(cluster, 0)),
        amqp_url: Some(nodes_from(cluster, 1)),
        publish_timeout: Duration::from_secs(2),
        smtp_url: Some(inbox.url()),
        ..TestOptions::default()
    })
    .await;
    intake_tests::eventually("the worker consumes", Duration::from_secs(30), || async {
        (app.worker_ops_get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    app
}

async fn workload(app: &TestApp) -> Workload {
    let store = uuid::Uuid::new_v4().to_string();
    app.add_store(&store).await;
    Workload::new(SIZE, &store)
}

async fn node_of(cluster: &PrivateRabbit, app: &TestApp, role: &str) -> usize {
    let name = format!("{}:{role}", app.topology.prefix());
    for _ in 0..40 {
        if let Some(node) = cluster.node_of_connection(&name).await {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let listing = cluster
        .ctl(0, &["list_connections", "pid", "client_properties"])
        .await;
    panic!("no connection named {name}: {listing:?}");
}

/// Runs the workload on a fresh cluster; `fault` gets the cluster, the app
/// and the load's progress, and returns its recoveries.
async fn on_cluster<F>(scenario: &str, rate: u32, fault: F)
where
    F: AsyncFnOnce(&mut PrivateRabbit, &TestApp, &Driver) -> Vec<Recovery>,
{
    let mut cluster = PrivateRabbit::start(3, None).await;
    let inbox = smtp::start(0, &[]);
    let app = cluster_app(&cluster, &inbox).await;
    let workload = workload(&app).await;
    let driver = Driver::new(app.address.clone(), rate);
    let (results, recoveries) =
        tokio::join!(driver.run(&workload), fault(&mut cluster, &app, &driver));
    check(
        scenario,
        &app,
        &workload,
        &results,
        &inbox,
        &Tolerance::default(),
        recoveries,
    )
    .await
    .assert_ok();
    drop(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_the_gateway_is_connected_to_killed_loses_nothing() {
    on_cluster(
        "RabbitMQ cluster: kill -9 of the gateway's node",
        RATE,
        async |cluster, app, driver| {
            // The gateway connects on its first publish.
            driver.progress.reached(0.3).await;
            let node = node_of(cluster, app, "gateway").await;
            assert_eq!(node, 0, "the gateway starts on the first node it lists");
            cluster.kill(node).await;
            let recovery = time_to_recover(app, &app.address, Instant::now()).await;
            let moved = node_of(cluster, app, "gateway").await;
            assert_ne!(moved, node, "the gateway moved to a surviving node");
            driver.progress.reached(0.8).await;
            cluster.restart(node).await;
            vec![recovery]
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_holding_the_queue_leaders_killed_loses_nothing() {
    on_cluster(
        "RabbitMQ cluster: kill -9 of the queue leaders' node",
        RATE,
        async |cluster, app, driver| {
            let queue = app.queue(WorkQueue::Lt);
            let leader = cluster.leader_of(&queue).await.expect("a leader");
            assert_eq!(leader, 2, "declared through the third node");
            driver.progress.reached(0.3).await;
            cluster.kill(leader).await;
            let recovery = time_to_recover(app, &app.address, Instant::now()).await;
            let elected = cluster.leader_of(&queue).await.expect("a new leader");
            assert_ne!(elected, leader, "a surviving member leads");
            driver.progress.reached(0.8).await;
            cluster.restart(leader).await;
            vec![recovery]
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_the_worker_is_on_stopped_for_30_s_and_back_loses_nothing() {
    // A slower load (~27 s), so that the outage falls within it.
    on_cluster(
        "RabbitMQ cluster: the worker's node stopped for 30 s",
        30,
        async |cluster, app, driver| {
            let node = node_of(cluster, app, "worker").await;
            assert_eq!(node, 1, "the worker starts on the first node it lists");
            driver.progress.reached(0.1).await;
            cluster.stop(node).await;
            let stopped = Instant::now();
            let during = time_to_recover(app, &app.address, stopped).await;
            tokio::time::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed())).await;
            cluster.restart(node).await;
            let after = time_to_recover(app, &app.address, Instant::now()).await;
            vec![during, after]
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_primary_stopped_and_standby_promoted_loses_nothing() {
    let (primary, standby) = PrivatePostgres::start_pair();
    // Both hosts in the URL, the primary first; only a read-write server is
    // taken, so after the failover every new connection goes to the standby.
    let admin = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let inbox = smtp::start(0, &[]);
    let mut app = spawn_app_with(TestOptions {
        database_admin_url: Some(admin),
        publish_timeout: Duration::from_secs(2),
        smtp_url: Some(inbox.url()),
        ..TestOptions::default()
    })
    .await;
    let workload = workload(&app).await;
    let driver = Driver::new(app.address.clone(), RATE);
    let fault = async {
        driver.progress.reached(0.4).await;
        tokio::task::block_in_place(|| {
            primary.stop_immediately();
            standby.promote();
        });
        vec![time_to_recover(&app, &app.address, Instant::now()).await]
    };
    let (results, recoveries) = tokio::join!(driver.run(&workload), fault);
    // The app's own connection went with the old primary.
    app.db = database::connect(&app.db_url).await;
    check(
        "PostgreSQL: primary stopped (-m immediate), standby promoted",
        &app,
        &workload,
        &results,
        &inbox,
        &Tolerance::default(),
        recoveries,
    )
    .await
    .assert_ok();
}
