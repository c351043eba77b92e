//! Postgres-only behaviour: replicas sharing one history, restarts, pruning and outages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::StatusCode;
use notification::model::Delivery;
use notification::{
    MemorySender, Notifier, SendError, Sender, Senders, Settings, Templates, routes, store_for,
};
use platform::config::Loader;
use platform::http::{HttpLimits, Readiness, app};
use platform::testing::{TcpProxy, TestClient, TestDatabase};
use platform::time::{ManualClock, system_clock};
use platform::{Backend, SharedClock};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Notify;

struct Replica {
    notifier: Arc<Notifier>,
    client: TestClient,
}

fn replica(pool: PgPool, clock: SharedClock, capacity: usize, senders: Senders) -> Replica {
    let backend = Backend::Postgres(pool.clone());
    let settings = Settings {
        recent_capacity: capacity,
        ..Settings::default()
    };
    let store = store_for(&backend, &settings);
    let templates = Templates::builtin().expect("built-in templates compile");
    let notifier = Arc::new(Notifier::new(store, senders, templates, clock, capacity));
    let client = TestClient::new(app(
        routes::router(notifier.clone()),
        Readiness::Postgres(pool),
        HttpLimits::default(),
    ));
    Replica { notifier, client }
}

fn plain_replica(pool: PgPool) -> Replica {
    replica(pool, system_clock(), 200, Senders::in_memory(200))
}

fn welcome(recipient: &str) -> Value {
    json!({"channel": "in_app", "recipient": recipient, "template": "welcome_email", "data": {"Name": "Ada"}})
}

/// Sends a welcome notification that must be accepted and returns the delivery.
async fn send_welcome(client: &TestClient, recipient: &str) -> Value {
    let response = client
        .post("/notify")
        .json(&welcome(recipient))
        .send()
        .await;
    response.expect_status(StatusCode::ACCEPTED);
    response.json()
}

async fn recent(client: &TestClient) -> Vec<Value> {
    let response = client.get("/notifications/recent").send().await;
    response.expect_status(StatusCode::OK);
    response.json().as_array().expect("an array").clone()
}

async fn row_count(pool: &PgPool, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM notification.deliveries WHERE status = $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .expect("count rows")
}

/// A sender that blocks each send until the test releases it.
#[derive(Default)]
struct GatedSender {
    entered: Notify,
    release: Notify,
}

#[async_trait]
impl Sender for GatedSender {
    async fn send(&self, _: &Delivery) -> Result<(), SendError> {
        self.entered.notify_one();
        self.release.notified().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_recent_history() {
    let database = TestDatabase::create().await;
    let first = plain_replica(database.pool.clone());
    let second = plain_replica(database.another_pool(5).await);

    let from_first = (0..10).map(|i| {
        first
            .client
            .post("/notify")
            .json(&welcome(&format!("a-{i}")))
            .send()
    });
    let from_second = (0..10).map(|i| {
        second
            .client
            .post("/notify")
            .json(&welcome(&format!("b-{i}")))
            .send()
    });
    let (first_responses, second_responses) = tokio::join!(
        futures::future::join_all(from_first),
        futures::future::join_all(from_second),
    );
    let mut accepted: Vec<String> = first_responses
        .iter()
        .chain(&second_responses)
        .map(|response| {
            response.expect_status(StatusCode::ACCEPTED);
            response.json()["id"].as_str().expect("id").to_string()
        })
        .collect();

    let seen_by_first = recent(&first.client).await;
    let seen_by_second = recent(&second.client).await;
    assert_eq!(seen_by_first, seen_by_second);
    assert_eq!(seen_by_first.len(), 20);
    let times: Vec<&str> = seen_by_first
        .iter()
        .map(|delivery| delivery["sent_at"].as_str().expect("sent_at"))
        .collect();
    assert!(times.is_sorted(), "oldest first: {times:?}");

    let mut recorded: Vec<String> = seen_by_first
        .iter()
        .map(|delivery| delivery["id"].as_str().expect("id").to_string())
        .collect();
    accepted.sort();
    recorded.sort();
    assert_eq!(recorded, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_new_instance() {
    let database = TestDatabase::create().await;
    let before = {
        let first = plain_replica(database.another_pool(2).await);
        for i in 0..3 {
            send_welcome(&first.client, &format!("user-{i}")).await;
        }
        recent(&first.client).await
    };

    let restarted = plain_replica(database.another_pool(2).await);
    let after = recent(&restarted.client).await;
    assert_eq!(after.len(), 3);
    assert_eq!(after, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_in_flight_stay_out_of_history() {
    let database = TestDatabase::create().await;
    let gate = Arc::new(GatedSender::default());
    let senders =
        Senders::in_memory(10).with_sender(notification::model::Channel::InApp, gate.clone());
    let sending = replica(database.pool.clone(), system_clock(), 200, senders);
    let reader = plain_replica(database.another_pool(2).await);

    let client = sending.client.clone();
    let request =
        tokio::spawn(async move { client.post("/notify").json(&welcome("user-1")).send().await });
    gate.entered.notified().await;
    assert_eq!(row_count(&database.pool, "pending").await, 1);
    assert!(recent(&reader.client).await.is_empty());

    gate.release.notify_one();
    let response = request.await.expect("request task");
    response.expect_status(StatusCode::ACCEPTED);
    assert_eq!(recent(&reader.client).await, vec![response.json()]);
    assert_eq!(row_count(&database.pool, "pending").await, 0);
}

/// A sender whose every send fails.
struct FailingSender;

#[async_trait]
impl Sender for FailingSender {
    async fn send(&self, _: &Delivery) -> Result<(), SendError> {
        Err(SendError::new("mail server refused the test"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_send_leaves_no_row() {
    let database = TestDatabase::create().await;
    let senders = Senders::in_memory(10)
        .with_sender(notification::model::Channel::InApp, Arc::new(FailingSender));
    let failing = replica(database.pool.clone(), system_clock(), 200, senders);

    let response = failing
        .client
        .post("/notify")
        .json(&welcome("user-1"))
        .send()
        .await;
    response.expect_error(StatusCode::BAD_GATEWAY, "unavailable", None);
    assert_eq!(row_count(&database.pool, "pending").await, 0);
    assert_eq!(row_count(&database.pool, "sent").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_what_recent_can_show() {
    let database = TestDatabase::create().await;
    let clock = ManualClock::starting_now();
    let gate = Arc::new(GatedSender::default());
    let senders =
        Senders::in_memory(10).with_sender(notification::model::Channel::Webhook, gate.clone());
    let instance = replica(database.pool.clone(), clock.clone(), 3, senders);

    for i in 0..5 {
        clock.advance(Duration::from_millis(10));
        send_welcome(&instance.client, &format!("user-{i}")).await;
    }
    // A process that stops mid-send leaves its pending row behind.
    let client = instance.client.clone();
    let abandoned = tokio::spawn(async move {
        client
            .post("/notify")
            .json(&json!({"channel": "webhook", "recipient": "https://hooks.example.com/x", "template": "welcome_email", "data": {"Name": "Ada"}}))
            .send()
            .await
    });
    gate.entered.notified().await;
    abandoned.abort();
    let _ = abandoned.await;

    let visible = recent(&instance.client).await;
    assert_eq!(visible.len(), 3);
    assert_eq!(row_count(&database.pool, "sent").await, 5);
    assert_eq!(row_count(&database.pool, "pending").await, 1);

    let pruned = instance.notifier.prune().await.expect("prune");
    assert_eq!((pruned.sent, pruned.abandoned), (2, 0));
    assert_eq!(row_count(&database.pool, "sent").await, 3);
    assert_eq!(recent(&instance.client).await, visible);

    clock.advance(notification::service::ABANDONED_AFTER + Duration::from_secs(1));
    let pruned = instance.notifier.prune().await.expect("prune");
    assert_eq!((pruned.sent, pruned.abandoned), (0, 1));
    assert_eq!(row_count(&database.pool, "pending").await, 0);
    assert_eq!(recent(&instance.client).await, visible);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_prunes_in_background_until_stopped() {
    let database = TestDatabase::create().await;
    let settings = Loader::from_values(
        notification::SERVICE.config,
        &[("recent_capacity", "2"), ("prune_interval", "50ms")],
    );
    let context = platform::server::test_context(
        "notification",
        settings,
        Backend::Postgres(database.pool.clone()),
        system_clock(),
    )
    .expect("common settings are valid");
    let workers = context.workers.clone();
    let service = (notification::SERVICE.build)(context)
        .await
        .expect("builds");
    let client = TestClient::new(app(
        service.routes,
        Readiness::Postgres(database.pool.clone()),
        HttpLimits::default(),
    ));

    for i in 0..4 {
        send_welcome(&client, &format!("user-{i}")).await;
    }
    let mut remaining = row_count(&database.pool, "sent").await;
    for _ in 0..100 {
        if remaining == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        remaining = row_count(&database.pool, "sent").await;
    }
    assert_eq!(remaining, 2, "the background task prunes to the capacity");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    assert!(
        workers.stop(deadline).await,
        "the prune task stops on the signal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_answers_503_then_recovers() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.server_address().await).await;
    let pool = database.pool_through(&proxy, 3).await;
    let in_app = Arc::new(MemorySender::new(10));
    let senders =
        Senders::in_memory(10).with_sender(notification::model::Channel::InApp, in_app.clone());
    let instance = replica(pool, system_clock(), 200, senders);
    let client = &instance.client;

    let first = send_welcome(client, "user-1").await;
    client
        .get("/readyz")
        .send()
        .await
        .expect_status(StatusCode::OK);

    proxy.cut();
    let started = Instant::now();
    let ready = client.get("/readyz").send().await;
    ready.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    for _ in 0..3 {
        let response = client.post("/notify").json(&welcome("user-2")).send().await;
        response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
        assert!(response.header("retry-after").is_some());
        let listed = client.get("/notifications/recent").send().await;
        listed.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    }
    assert_eq!(
        in_app.sent().len(),
        1,
        "nothing is sent while the history cannot record it"
    );
    // Bounded by the pool's acquire timeout, not by TCP timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    proxy.restore();
    assert!(
        client.wait_until_ready(Duration::from_secs(5)).await,
        "readiness returns once Postgres is reachable again"
    );

    let second = send_welcome(client, "user-2").await;
    assert_eq!(recent(client).await, vec![first, second]);
}
