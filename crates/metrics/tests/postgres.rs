//! Postgres-only behaviour: replicas merging flushed buckets, the flush on shutdown,
//! restarts, expiry and outages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use metrics::{Collector, Settings, routes, store_for};
use platform::config::Loader;
use platform::http::{HttpLimits, Readiness, app};
use platform::testing::{TcpProxy, TestClient, TestDatabase};
use platform::time::ManualClock;
use platform::{Backend, SharedClock, Timestamp};
use serde_json::{Value, json};
use sqlx::PgPool;

const START: &str = "2030-01-01T00:00:00Z";

fn start_clock() -> Arc<ManualClock> {
    ManualClock::new(Timestamp::parse(START).expect("valid timestamp"))
}

/// Builds one replica: its own store and instance id over `pool`.
fn replica(pool: PgPool, clock: SharedClock) -> (TestClient, Arc<Collector>) {
    let settings = Settings::default();
    let store = store_for(&Backend::Postgres(pool.clone()), &settings);
    let collector = Arc::new(Collector::new(store, clock, &settings));
    let client = TestClient::new(app(
        routes::router(collector.clone()),
        Readiness::Postgres(pool),
        HttpLimits::default(),
    ));
    (client, collector)
}

fn batch(name: &str, values: impl IntoIterator<Item = f64>) -> Value {
    let samples = values
        .into_iter()
        .map(|value| json!({"namespace": "game", "name": name, "value": value, "labels": {"replica": "any"}}))
        .collect();
    Value::Array(samples)
}

async fn summary(client: &TestClient, query: &str) -> Value {
    let response = client.get(&format!("/metrics/summary{query}")).send().await;
    response.expect_status(StatusCode::OK);
    response.json()
}

async fn ingest(client: &TestClient, body: Value) {
    let response = client.post("/metrics/ingest").json(&body).send().await;
    response.expect_status(StatusCode::ACCEPTED);
}

const HITS: &str = "game.hits{replica=any}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_merge_flushed_buckets_exactly() {
    let database = TestDatabase::create().await;
    let clock = start_clock();
    let (first_client, first) = replica(database.pool.clone(), clock.clone());
    let (second_client, second) = replica(database.another_pool(5).await, clock.clone());

    // Concurrent batches: 20 samples of value 1 on the first replica and 10 of value 2
    // on the second, three rounds in the first bucket and two in the next.
    for rounds in [3, 2] {
        let mut requests = Vec::new();
        for _ in 0..rounds {
            let first_client = first_client.clone();
            let second_client = second_client.clone();
            requests.push(tokio::spawn(async move {
                ingest(&first_client, batch("hits", vec![1.0; 20])).await;
            }));
            requests.push(tokio::spawn(async move {
                ingest(&second_client, batch("hits", vec![2.0; 10])).await;
            }));
        }
        for request in requests {
            request.await.expect("request task");
        }
        clock.advance(Duration::from_secs(60));
    }
    ingest(&second_client, batch("misses", [5.0])).await;

    // Each replica reads its own samples at once, and nothing of the other yet.
    assert_eq!(summary(&first_client, "").await[HITS]["count"], 100);
    assert_eq!(summary(&second_client, "").await[HITS]["count"], 50);
    assert!(
        summary(&first_client, "")
            .await
            .get("game.misses{replica=any}")
            .is_none()
    );

    assert!(first.flush().await.expect("first flush") > 0);
    assert!(second.flush().await.expect("second flush") > 0);
    for client in [&first_client, &second_client] {
        let merged = summary(client, "").await;
        let hits = &merged[HITS];
        assert_eq!(hits["count"], 150);
        assert_eq!(hits["sum"].as_f64(), Some(200.0));
        assert_eq!(hits["min"].as_f64(), Some(1.0));
        assert_eq!(hits["max"].as_f64(), Some(2.0));
        let p50 = hits["p50"].as_f64().expect("p50");
        assert!((p50 - 1.0).abs() <= 0.01, "{p50}");
        let p99 = hits["p99"].as_f64().expect("p99");
        assert!((p99 - 2.0).abs() <= 0.02, "{p99}");
        assert_eq!(merged["game.misses{replica=any}"]["count"], 1);
    }

    // Samples recorded after a flush count once, before and after the next flush. The
    // clock is now in a third bucket.
    let single = first_client
        .post("/metrics/ingest")
        .json(
            &json!({"namespace": "game", "name": "hits", "value": 4, "labels": {"replica": "any"}}),
        )
        .send()
        .await;
    single.expect_status(StatusCode::ACCEPTED);
    assert_eq!(
        single.json()["count"],
        151,
        "the single ingest reads every replica"
    );
    assert_eq!(summary(&first_client, "").await[HITS]["count"], 151);
    assert_eq!(summary(&second_client, "").await[HITS]["count"], 150);
    assert_eq!(
        first.flush().await.expect("flush"),
        1,
        "only the changed bucket"
    );
    assert_eq!(
        first.flush().await.expect("flush"),
        0,
        "nothing changed since"
    );
    assert_eq!(summary(&second_client, "").await[HITS]["count"], 151);
    assert_eq!(summary(&first_client, "").await[HITS]["count"], 151);
    assert_eq!(
        summary(&first_client, "?window=1m").await[HITS]["count"],
        61
    );

    // A new instance on the same database reads everything flushed.
    let (restarted, _) = replica(database.another_pool(2).await, clock.clone());
    let merged = summary(&restarted, "?namespace=game&name=hits").await;
    assert_eq!(merged[HITS]["count"], 151);
    assert_eq!(merged[HITS]["max"].as_f64(), Some(4.0));
    assert!(merged.get("game.misses{replica=any}").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_for_next_instance() {
    let database = TestDatabase::create().await;
    let clock = start_clock();
    let loader = Loader::from_values(metrics::SERVICE.config, &[]);
    let context = platform::server::test_context(
        metrics::SERVICE.name,
        loader,
        Backend::Postgres(database.pool.clone()),
        clock.clone(),
    )
    .expect("test context");
    let workers = context.workers.clone();
    let service = (metrics::SERVICE.build)(context)
        .await
        .expect("service starts");
    let backlog = service.backlog.expect("the service reports its backlog");
    let client = TestClient::new(app(
        service.routes,
        Readiness::Postgres(database.pool.clone()),
        HttpLimits::default(),
    ));

    ingest(&client, batch("hits", (1..=40).map(f64::from))).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    assert!(
        workers.stop(deadline).await,
        "workers stop within the deadline"
    );
    assert!(
        backlog().iter().all(|&(_, count)| count == 0),
        "{:?}",
        backlog()
    );

    let (next, _) = replica(database.another_pool(2).await, clock);
    let merged = summary(&next, "").await;
    assert_eq!(merged[HITS]["count"], 40);
    assert_eq!(merged[HITS]["sum"].as_f64(), Some(820.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_deletes_expired_rows() {
    let database = TestDatabase::create().await;
    let clock = start_clock();
    let (client, collector) = replica(database.pool.clone(), clock.clone());
    ingest(&client, batch("old", [1.0])).await;
    clock.advance(Duration::from_secs(3600));
    ingest(&client, batch("young", [1.0])).await;
    collector.flush().await.expect("flush");

    let rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM metrics.buckets")
            .fetch_one(&database.pool)
            .await
            .expect("count rows")
    };
    assert_eq!(rows().await, 2);

    clock.advance(Duration::from_secs(23 * 3600 + 60));
    collector.sweep().await.expect("sweep");
    assert_eq!(rows().await, 1);
    let (other, _) = replica(database.another_pool(2).await, clock.clone());
    let merged = summary(&other, "").await;
    assert!(merged.get("game.old{replica=any}").is_none(), "{merged}");
    assert_eq!(merged["game.young{replica=any}"]["count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_answers_503_then_recovers() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.server_address().await).await;
    let pool = database.pool_through(&proxy, 3).await;
    let clock = start_clock();
    let (client, collector) = replica(pool, clock.clone());

    let single =
        json!({"namespace": "game", "name": "hits", "value": 1, "labels": {"replica": "any"}});
    ingest(&client, single.clone()).await;
    client
        .get("/readyz")
        .send()
        .await
        .expect_status(StatusCode::OK);

    proxy.cut();
    let started = Instant::now();
    let ready = client.get("/readyz").send().await;
    ready.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    for _ in 0..2 {
        let listed = client.get("/metrics/summary").send().await;
        listed.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
        assert!(listed.header("retry-after").is_some());
        // A single sample returns the summary of every replica, which needs Postgres;
        // it is not recorded when that read fails.
        let response = client.post("/metrics/ingest").json(&single).send().await;
        response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    }
    // Batches aggregate in memory and wait for the next flush.
    ingest(&client, batch("hits", [2.0, 3.0])).await;
    assert!(collector.flush().await.is_err(), "flush fails while cut");
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
    assert!(collector.flush().await.expect("flush after recovery") > 0);

    let (other, _) = replica(database.another_pool(2).await, clock);
    let merged = summary(&other, "").await;
    assert_eq!(
        merged[HITS]["count"], 3,
        "the refused single samples were not recorded"
    );
    assert_eq!(merged[HITS]["sum"].as_f64(), Some(6.0));
    assert_eq!(summary(&client, "").await[HITS]["count"], 3);
}
