//! Postgres-only behaviour: replicas sharing one table, the sink's rows, retention,
//! restarts and outages.

// Each test binary compiles the support module and uses a different part of it.
#[allow(dead_code)]
mod support;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use logs::model::{Batch, Fields, Level, LogEvent, Text};
use logs::sink::Sink;
use logs::{Pipeline, Settings, routes, store_for};
use platform::http::{HttpLimits, Readiness, app};
use platform::server::Workers;
use platform::testing::{TcpProxy, TestClient, TestDatabase};
use platform::time::{ManualClock, system_clock};
use platform::{Backend, SharedClock, Timestamp};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use support::RecordingSink;

const NDJSON: &str = "application/x-ndjson";
const WAIT: Duration = Duration::from_secs(30);

struct Replica {
    client: TestClient,
    pipeline: Arc<Pipeline>,
    workers: Workers,
}

fn replica(pool: PgPool, settings: Settings, clock: SharedClock) -> Replica {
    let backend = Backend::Postgres(pool.clone());
    let workers = Workers::new();
    let store = store_for(&backend, &settings);
    let sinks: Vec<Arc<dyn Sink>> = vec![RecordingSink::open()];
    let pipeline = Pipeline::start(&settings, store, sinks, clock, &workers);
    let client = TestClient::new(app(
        routes::router(pipeline.clone()),
        Readiness::Postgres(pool),
        HttpLimits::default(),
    ));
    Replica {
        client,
        pipeline,
        workers,
    }
}

impl Replica {
    async fn ingest(&self, lines: &[Value]) -> platform::testing::TestResponse {
        let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
        self.client
            .post("/logs")
            .body(Some(NDJSON), body)
            .send()
            .await
    }

    async fn settle(&self) {
        tokio::time::timeout(WAIT, self.pipeline.delivered())
            .await
            .expect("accepted events are delivered");
    }

    async fn recent(&self, query: &str) -> Value {
        let response = self
            .client
            .get(&format!("/logs/recent{query}"))
            .send()
            .await;
        response.expect_status(StatusCode::OK);
        response.json()
    }
}

fn event(source: &str, message: &str) -> Value {
    json!({"source": source, "message": message})
}

fn messages(records: &Value) -> Vec<String> {
    records
        .as_array()
        .expect("array")
        .iter()
        .map(|record| record["message"].as_str().expect("message").to_string())
        .collect()
}

async fn stored_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM logs.events")
        .fetch_one(pool)
        .await
        .expect("count rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_see_the_same_recent_events() {
    let database = TestDatabase::create().await;
    let first = replica(database.pool.clone(), Settings::default(), system_clock());
    let second = replica(
        database.another_pool(5).await,
        Settings::default(),
        system_clock(),
    );

    for round in 0..10 {
        let from_first: Vec<Value> = (0..5)
            .map(|index| event("first", &format!("first {round}.{index}")))
            .collect();
        let from_second: Vec<Value> = (0..5)
            .map(|index| event("second", &format!("second {round}.{index}")))
            .collect();
        let (a, b) = tokio::join!(first.ingest(&from_first), second.ingest(&from_second));
        a.expect_status(StatusCode::ACCEPTED);
        b.expect_status(StatusCode::ACCEPTED);
    }
    first.settle().await;
    second.settle().await;

    let seen_by_first = first.recent("").await;
    let seen_by_second = second.recent("").await;
    assert_eq!(seen_by_first, seen_by_second);
    assert_eq!(seen_by_first.as_array().expect("array").len(), 100);

    // Each replica's events keep their own order inside the shared order.
    let own: Vec<String> = messages(&seen_by_first)
        .into_iter()
        .filter(|message| message.starts_with("second"))
        .collect();
    let expected: Vec<String> = (0..10)
        .flat_map(|round| (0..5).map(move |index| format!("second {round}.{index}")))
        .collect();
    assert_eq!(own, expected);

    let received: Vec<&str> = seen_by_first
        .as_array()
        .expect("array")
        .iter()
        .map(|record| record["received_at"].as_str().expect("received_at"))
        .collect();
    assert!(received.windows(2).all(|pair| pair[0] <= pair[1]));

    let filtered = second.recent("?source=first&limit=3").await;
    assert_eq!(messages(&filtered), ["first 9.2", "first 9.3", "first 9.4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_writes_one_row_per_event() {
    let database = TestDatabase::create().await;
    let clock = ManualClock::starting_now();
    let node = replica(database.pool.clone(), Settings::default(), clock.clone());
    let lines = [
        json!({"source": "api", "message": "one", "level": "warning", "fields": {"b": "2", "a": "1"}}),
        json!({"source": "api", "message": "two", "level": "ERROR", "timestamp": "2024-05-01T12:00:00Z"}),
    ];
    node.ingest(&lines)
        .await
        .expect_status(StatusCode::ACCEPTED);
    node.settle().await;

    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT origin, sequence, source, severity, message, fields, event_time, received_at \
         FROM logs.events ORDER BY sequence",
    )
    .fetch_all(&database.pool)
    .await
    .expect("read rows");
    assert_eq!(rows.len(), 2);

    let first = &rows[0];
    assert!(!first.origin.is_nil());
    assert_eq!(first.sequence, 1);
    assert_eq!(first.source, "api");
    assert_eq!(first.severity, Level::Warn.severity_number());
    assert_eq!(first.message, "one");
    assert_eq!(first.fields, json!({"a": "1", "b": "2"}));
    assert_eq!(first.event_time, first.received_at);
    assert_eq!(first.received_at, platform::Clock::now(clock.as_ref()));

    let second = &rows[1];
    assert_eq!(second.origin, first.origin);
    assert_eq!(second.sequence, 2);
    assert_eq!(second.severity, Level::Error.severity_number());
    assert_eq!(second.fields, json!({}));
    assert_eq!(second.event_time.to_string(), "2024-05-01T12:00:00.000000Z");
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    origin: uuid::Uuid,
    sequence: i64,
    source: String,
    severity: i16,
    message: String,
    fields: Value,
    event_time: Timestamp,
    received_at: Timestamp,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_write_inserts_nothing_twice() {
    let database = TestDatabase::create().await;
    let store = store_for(
        &Backend::Postgres(database.pool.clone()),
        &Settings::default(),
    );
    let at = Timestamp::parse("2030-01-01T00:00:00Z").expect("valid");
    let origin = uuid::Uuid::now_v7();
    let batch = |first_sequence: u64| {
        Arc::new(Batch {
            origin,
            received_at: at,
            first_sequence,
            events: vec![
                LogEvent {
                    source: Text::from("api"),
                    level: Level::Info,
                    message: Text::from("once"),
                    fields: Fields::default(),
                    timestamp: at,
                };
                3
            ],
        })
    };
    let (first, second) = (batch(1), batch(4));

    // A write whose acknowledgement was lost is retried with the same batches. The
    // delivery is split over two connections, so each part meets its own rows again.
    let delivery = [first.clone(), second.clone()];
    store.write(&delivery).await.expect("first write");
    store.write(&delivery).await.expect("retried write");
    assert_eq!(stored_count(&database.pool).await, 6);

    // A delivery whose first part is stored already stores its second part.
    let third = batch(7);
    store.write(&[second, third]).await.expect("retried write");
    assert_eq!(stored_count(&database.pool).await, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_sweep_is_shared_and_batched() {
    let database = TestDatabase::create().await;
    let clock = ManualClock::starting_now();
    let settings = Settings {
        retention: Duration::from_secs(24 * 3600),
        retention_sweep_batch: NonZeroUsize::new(2).expect("not zero"),
        ..Settings::default()
    };
    let writer = replica(database.pool.clone(), settings.clone(), clock.clone());
    let sweeper = replica(database.another_pool(2).await, settings, clock.clone());

    let old: Vec<Value> = (0..5)
        .map(|index| event("a", &format!("old {index}")))
        .collect();
    writer
        .ingest(&old)
        .await
        .expect_status(StatusCode::ACCEPTED);
    writer.settle().await;
    clock.advance(Duration::from_secs(23 * 3600));
    writer
        .ingest(&[event("a", "recent")])
        .await
        .expect_status(StatusCode::ACCEPTED);
    writer.settle().await;

    assert_eq!(sweeper.pipeline.sweep_expired().await.expect("sweep"), 0);
    clock.advance(Duration::from_secs(3600 + 1));
    assert_eq!(sweeper.pipeline.sweep_expired().await.expect("sweep"), 5);
    assert_eq!(stored_count(&database.pool).await, 1);
    assert_eq!(messages(&writer.recent("").await), ["recent"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reads_persisted_events() {
    let database = TestDatabase::create().await;
    let before = replica(database.pool.clone(), Settings::default(), system_clock());
    before
        .ingest(&[event("a", "kept 1"), event("a", "kept 2")])
        .await
        .expect_status(StatusCode::ACCEPTED);
    assert!(
        before
            .workers
            .stop(tokio::time::Instant::now() + WAIT)
            .await
    );
    drop(before);

    let after = replica(
        database.another_pool(2).await,
        Settings::default(),
        system_clock(),
    );
    assert_eq!(messages(&after.recent("").await), ["kept 1", "kept 2"]);
    after
        .ingest(&[event("a", "kept 3")])
        .await
        .expect_status(StatusCode::ACCEPTED);
    after.settle().await;
    assert_eq!(
        messages(&after.recent("").await),
        ["kept 1", "kept 2", "kept 3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_buffers_events_until_postgres_returns() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.server_address().await).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .test_before_acquire(false)
        .connect_with(proxy.route(&database.options))
        .await
        .expect("pool through proxy");
    let settings = Settings {
        queue_size: NonZeroUsize::new(10).expect("not zero"),
        ..Settings::default()
    };
    let node = replica(pool, settings, system_clock());

    node.ingest(&[event("a", "before 1"), event("a", "before 2")])
        .await
        .expect_status(StatusCode::ACCEPTED);
    node.settle().await;
    node.client
        .get("/readyz")
        .send()
        .await
        .expect_status(StatusCode::OK);

    proxy.cut();
    let started = Instant::now();
    let ready = node.client.get("/readyz").send().await;
    ready.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    let recent = node.client.get("/logs/recent").send().await;
    recent.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    assert!(recent.header("retry-after").is_some());

    // The queue buffers what Postgres cannot take yet, and rejects what does not fit.
    let during: Vec<Value> = (0..8)
        .map(|index| event("a", &format!("during {index}")))
        .collect();
    node.ingest(&during[..4])
        .await
        .expect_status(StatusCode::ACCEPTED);
    node.ingest(&during[4..])
        .await
        .expect_status(StatusCode::ACCEPTED);
    let rejected = node
        .ingest(&[
            event("a", "rejected 1"),
            event("a", "rejected 2"),
            event("a", "rejected 3"),
        ])
        .await;
    rejected.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    assert!(rejected.header("retry-after").is_some());
    assert!(
        started.elapsed() < WAIT,
        "responses come within the pool's acquire timeout, not TCP timeouts: {:?}",
        started.elapsed()
    );
    assert_eq!(node.pipeline.backlog()[0], ("postgres", 8));

    proxy.restore();
    node.settle().await;
    assert!(
        node.client.wait_until_ready(Duration::from_secs(5)).await,
        "readiness returns once Postgres is reachable again"
    );

    let mut expected = vec!["before 1".to_string(), "before 2".to_string()];
    expected.extend((0..8).map(|index| format!("during {index}")));
    assert_eq!(messages(&node.recent("").await), expected);
    assert_eq!(stored_count(&database.pool).await, 10);
}
