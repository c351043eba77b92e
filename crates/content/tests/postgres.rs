//! Postgres-only behaviour: replicas sharing one database, outages, and restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use content::model::ContentState;
use content::{ContentService, Settings, routes, store_for};
use platform::Backend;
use platform::http::{HttpLimits, Readiness, app};
use platform::testing::{TcpProxy, TestClient, TestDatabase, TestResponse};
use platform::time::system_clock;
use serde_json::{Value, json};
use sqlx::PgPool;

fn replica(pool: PgPool) -> TestClient {
    let backend = Backend::Postgres(pool.clone());
    let store = store_for(&backend, &Settings::default());
    let service = Arc::new(ContentService::new(store, system_clock()));
    TestClient::new(app(
        routes::router(service),
        Readiness::Postgres(pool),
        HttpLimits::default(),
    ))
}

fn new_item(id: &str) -> Value {
    json!({"content_id": id, "tenant_id": "t1", "project_id": "p1", "filename": "clip.mp4"})
}

async fn review(
    client: TestClient,
    id: String,
    state: &'static str,
    reason: String,
) -> TestResponse {
    client
        .post(&format!("/content/{id}/review"))
        .json(&json!({"state": state, "reason": reason, "reviewer": "racer"}))
        .send()
        .await
}

fn state_of(value: &Value) -> ContentState {
    ContentState::parse(value.as_str().expect("state is a string")).expect("known state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_lose_a_review() {
    let database = TestDatabase::create().await;
    let replicas = [
        replica(database.pool.clone()),
        replica(database.another_pool(5).await),
    ];
    let targets = [
        "approved", "rejected", "archived", "approved", "rejected", "rejected",
    ];

    for round in 0..10 {
        let id = format!("race-{round}");
        replicas[0]
            .post("/content")
            .json(&new_item(&id))
            .send()
            .await
            .expect_status(StatusCode::CREATED);

        // Each review has its own reason, so the history shows which requests applied.
        let tasks: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(index, state)| {
                let client = replicas[index % 2].clone();
                tokio::spawn(review(
                    client,
                    id.clone(),
                    state,
                    format!("request {index}"),
                ))
            })
            .collect();
        let mut applied = Vec::new();
        for (index, task) in tasks.into_iter().enumerate() {
            let response = task.await.expect("review task");
            match response.status {
                StatusCode::OK => applied.push(format!("request {index}")),
                StatusCode::CONFLICT => {
                    response.expect_error(StatusCode::CONFLICT, "failed_precondition", None);
                }
                other => panic!("unexpected status {other}: {}", response.text()),
            }
        }
        assert!(!applied.is_empty(), "some review must apply");

        let item = replicas[1]
            .get(&format!("/content/{id}"))
            .send()
            .await
            .json();
        let history = replicas[0]
            .get(&format!("/content/{id}/reviews"))
            .send()
            .await
            .json()["reviews"]
            .as_array()
            .expect("reviews")
            .clone();

        // Every applied review is in the history exactly once, and nothing else is.
        let mut recorded: Vec<String> = history
            .iter()
            .map(|entry| entry["reason"].as_str().expect("reason").to_string())
            .collect();
        recorded.sort();
        applied.sort();
        assert_eq!(recorded, applied);

        // The history is a chain of legal moves from `pending` to the item's state.
        let mut state = ContentState::Pending;
        let mut last_time = String::new();
        for entry in &history {
            assert_eq!(state_of(&entry["from"]), state, "{history:?}");
            let next = state_of(&entry["to"]);
            assert!(state.can_move_to(next), "{state} -> {next}");
            let time = entry["reviewed_at"].as_str().expect("time").to_string();
            assert!(time >= last_time, "{history:?}");
            state = next;
            last_time = time;
        }
        assert_eq!(state_of(&item["state"]), state);
        let last = history.last().expect("at least one review");
        assert_eq!(item["reason"], last["reason"]);
        assert_eq!(item["updated_at"], last["reviewed_at"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_ids_create_once() {
    let database = TestDatabase::create().await;
    let first = replica(database.pool.clone());
    let second = replica(database.another_pool(5).await);

    for round in 0..20 {
        let id = format!("dup-{round}");
        let send = |client: &TestClient, filename: &str| {
            let mut body = new_item(&id);
            body["filename"] = json!(filename);
            let request = client.post("/content").json(&body);
            tokio::spawn(request.send())
        };
        let (a, b) = (send(&first, "from-first"), send(&second, "from-second"));
        let (a, b) = (a.await.expect("first"), b.await.expect("second"));

        let (winner, loser, filename) = match (a.status, b.status) {
            (StatusCode::CREATED, _) => (a, b, "from-first"),
            (_, StatusCode::CREATED) => (b, a, "from-second"),
            other => panic!("one create must succeed, got {other:?}"),
        };
        winner.expect_status(StatusCode::CREATED);
        loser.expect_error(StatusCode::CONFLICT, "already_exists", Some("content_id"));
        let stored = first.get(&format!("/content/{id}")).send().await.json();
        assert_eq!(stored["filename"], filename);
    }

    let listed = second.get("/content?page_size=1000").send().await.json();
    assert_eq!(listed["items"].as_array().expect("items").len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_answers_503_then_recovers() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.server_address().await).await;
    let pool = database.pool_through(&proxy, 3).await;
    let client = replica(pool);

    client
        .post("/content")
        .json(&new_item("before"))
        .send()
        .await
        .expect_status(StatusCode::CREATED);
    client
        .get("/readyz")
        .send()
        .await
        .expect_status(StatusCode::OK);

    proxy.cut();
    let started = Instant::now();
    let ready = client.get("/readyz").send().await;
    ready.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    let requests = [
        client.post("/content").json(&new_item("during")),
        client.get("/content"),
        client.get("/content/before"),
        client.get("/content/before/reviews"),
        client
            .post("/content/before/review")
            .json(&json!({"state": "approved"})),
    ];
    for request in requests {
        let response = request.send().await;
        response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
        assert!(response.header("retry-after").is_some());
    }
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
    client
        .post("/content/before/review")
        .json(&json!({"state": "approved"}))
        .send()
        .await
        .expect_status(StatusCode::OK);
    client.get("/content/during").send().await.expect_error(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_new_instance() {
    let database = TestDatabase::create().await;
    let first = replica(database.pool.clone());
    first
        .post("/content")
        .json(&new_item("kept"))
        .send()
        .await
        .expect_status(StatusCode::CREATED);
    for state in ["rejected", "approved"] {
        first
            .post("/content/kept/review")
            .json(&json!({"state": state, "reason": format!("now {state}"), "reviewer": "ana"}))
            .send()
            .await
            .expect_status(StatusCode::OK);
    }
    let item = first.get("/content/kept").send().await.json();
    let history = first.get("/content/kept/reviews").send().await.json();
    first
        .get("/content")
        .send()
        .await
        .expect_status(StatusCode::OK);
    drop(first);
    database.pool.close().await;

    let restarted = replica(database.another_pool(5).await);
    assert_eq!(restarted.get("/content/kept").send().await.json(), item);
    assert_eq!(
        restarted.get("/content/kept/reviews").send().await.json(),
        history
    );
    assert_eq!(history["reviews"].as_array().expect("reviews").len(), 2);
    let listed = restarted.get("/content?state=approved").send().await.json();
    assert_eq!(listed["items"], json!([item]));

    // The restarted instance still enforces the review rules on the stored state.
    restarted
        .post("/content/kept/review")
        .json(&json!({"state": "pending"}))
        .send()
        .await
        .expect_error(StatusCode::CONFLICT, "failed_precondition", None);
    restarted
        .post("/content")
        .json(&new_item("kept"))
        .send()
        .await
        .expect_error(StatusCode::CONFLICT, "already_exists", Some("content_id"));
}
