//! Postgres-only behaviour: replicas sharing one database, and outages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use orchestration::{Orchestrator, Settings, routes, store_for};
use platform::Backend;
use platform::http::{HttpLimits, Readiness, app};
use platform::testing::{TcpProxy, TestClient, TestDatabase};
use platform::time::system_clock;
use serde_json::json;
use sqlx::PgPool;

fn replica(pool: PgPool) -> TestClient {
    let backend = Backend::Postgres(pool.clone());
    let store = store_for(&backend, &Settings::default());
    let orchestrator = Arc::new(Orchestrator::new(store, system_clock()));
    TestClient::new(app(
        routes::router(orchestrator),
        Readiness::Postgres(pool),
        HttpLimits::default(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_lose_a_status_change() {
    let database = TestDatabase::create().await;
    let first = replica(database.pool.clone());
    let second = replica(database.another_pool(5).await);

    for _ in 0..20 {
        let created = first
            .post("/assignments")
            .json(&json!({"agent_id": "a", "workload_id": "w"}))
            .send()
            .await
            .json();
        let path = format!(
            "/assignments/{}",
            created["assignment_id"].as_str().expect("id")
        );
        second
            .patch(&path)
            .json(&json!({"status": "assigned"}))
            .send()
            .await
            .expect_status(StatusCode::OK);

        // From `assigned`, in_progress and pending exclude each other: whichever lands
        // second is illegal from the state the first left.
        let (a, b) = tokio::join!(
            first
                .patch(&path)
                .json(&json!({"status": "in_progress"}))
                .send(),
            second
                .patch(&path)
                .json(&json!({"status": "pending"}))
                .send(),
        );
        let statuses = [a.status, b.status];
        assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
        assert!(statuses.contains(&StatusCode::CONFLICT), "{statuses:?}");

        let winner = if a.status == StatusCode::OK {
            "in_progress"
        } else {
            "pending"
        };
        let stored = first.get(&path).send().await.json();
        assert_eq!(stored["status"], winner);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_answers_503_then_recovers() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.server_address().await).await;
    let client = replica(database.pool_through(&proxy, 3).await);

    let created = client
        .post("/assignments")
        .json(&json!({"agent_id": "a", "workload_id": "w"}))
        .send()
        .await;
    created.expect_status(StatusCode::CREATED);
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
        let response = client
            .post("/assignments")
            .json(&json!({"agent_id": "a", "workload_id": "w"}))
            .send()
            .await;
        response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
        assert!(response.header("retry-after").is_some());
        let listed = client.get("/assignments").send().await;
        listed.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    }
    // Bounded by the pool's acquire timeout, not by TCP timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    proxy.restore();
    let mut recovered = false;
    for _ in 0..50 {
        if client.get("/readyz").send().await.status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "readiness returns once Postgres is reachable again"
    );
    let path = format!(
        "/assignments/{}",
        created.json()["assignment_id"].as_str().expect("id")
    );
    client.get(&path).send().await.expect_status(StatusCode::OK);
}
