//! Postgres-only behaviour: replicas on one database, cross-replica wake-ups, outages, restarts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use messaging::{Messaging, Settings, routes};
use platform::Backend;
use platform::http::{HttpLimits, Readiness, app};
use platform::server::Workers;
use platform::testing::{TcpProxy, TestClient, TestDatabase};
use platform::time::system_clock;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// One service instance with its own pool, as a separate process would have.
struct Replica {
    client: TestClient,
    _messaging: Arc<Messaging>,
    workers: Workers,
}

impl Replica {
    fn start(pool: PgPool) -> Replica {
        let backend = Backend::Postgres(pool.clone());
        let workers = Workers::new();
        let messaging = messaging::start(
            &backend,
            Settings::default(),
            system_clock(),
            CancellationToken::new(),
            &workers,
        );
        let client = TestClient::new(app(
            routes::router(messaging.clone()),
            Readiness::Postgres(pool),
            HttpLimits::default(),
        ));
        Replica {
            client,
            _messaging: messaging,
            workers,
        }
    }

    async fn stop(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        assert!(self.workers.stop(deadline).await, "background work stops");
    }

    async fn publish(&self, topic: &str, body: Value) -> Value {
        let response = self
            .client
            .post(&format!("/topics/{topic}/messages"))
            .json(&body)
            .send()
            .await;
        response.expect_status(StatusCode::CREATED);
        response.json()
    }

    async fn pull(&self, topic: &str, query: &str) -> Vec<Value> {
        let response = self
            .client
            .get(&format!("/topics/{topic}/messages{query}"))
            .send()
            .await;
        response.expect_status(StatusCode::OK);
        response.json()["messages"]
            .as_array()
            .expect("messages array")
            .clone()
    }
}

fn id_of(message: &Value) -> String {
    message["message_id"]
        .as_str()
        .expect("message_id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_lease_a_message_twice() {
    let database = TestDatabase::create().await;
    let replicas = [
        Arc::new(Replica::start(database.pool.clone())),
        Arc::new(Replica::start(database.another_pool(5).await)),
    ];

    let messages: Vec<Value> = (0..300)
        .map(|i| {
            let priority = ["low", "normal", "high"][i % 3];
            json!({"tenant_id": "t", "project_id": "p", "priority": priority})
        })
        .collect();
    replicas[0]
        .client
        .post("/topics/work/messages:batch")
        .json(&json!({"messages": messages}))
        .send()
        .await
        .expect_status(StatusCode::CREATED);

    let mut consumers = Vec::new();
    for consumer in 0..8 {
        let replica = replicas[consumer % 2].clone();
        consumers.push(tokio::spawn(async move {
            let mut received = Vec::new();
            loop {
                let batch = replica
                    .pull("work", "?limit=7&visibility_timeout_s=600")
                    .await;
                if batch.is_empty() {
                    return received;
                }
                received.extend(batch.iter().map(id_of));
            }
        }));
    }
    let mut all = Vec::new();
    for consumer in consumers {
        all.extend(consumer.await.expect("consumer finished"));
    }

    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a message was leased twice");
    assert_eq!(all.len(), 300, "every message was leased");
    for replica in &replicas {
        replica.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_ack_each_delivery_once() {
    let database = TestDatabase::create().await;
    let first = Replica::start(database.pool.clone());
    let second = Replica::start(database.another_pool(5).await);

    let id = id_of(
        &first
            .publish("race", json!({"tenant_id": "t", "project_id": "p"}))
            .await,
    );
    let delivered = second.pull("race", "?visibility_timeout_s=1").await;
    let stale_ack_id = delivered[0]["ack_id"].as_str().expect("ack_id").to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let redelivered = first.pull("race", "").await;
    assert_eq!(redelivered.len(), 1, "delivered again after the lease");

    let path = format!("/topics/race/messages/{id}/ack");
    let response = second
        .client
        .post(&path)
        .json(&json!({"ack_id": stale_ack_id}))
        .send()
        .await;
    response.expect_error(StatusCode::CONFLICT, "failed_precondition", None);
    let current = redelivered[0]["ack_id"].as_str().expect("ack_id");
    second
        .client
        .post(&path)
        .json(&json!({"ack_id": current}))
        .send()
        .await
        .expect_status(StatusCode::NO_CONTENT);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_idempotency_keys() {
    let database = TestDatabase::create().await;
    let replicas = [
        Arc::new(Replica::start(database.pool.clone())),
        Arc::new(Replica::start(database.another_pool(5).await)),
    ];

    let mut publishers = Vec::new();
    for publisher in 0..10 {
        let replica = replicas[publisher % 2].clone();
        publishers.push(tokio::spawn(async move {
            let response = replica
                .client
                .post("/topics/orders/messages")
                .header("Idempotency-Key", "order-17")
                .json(&json!({"tenant_id": "t", "project_id": "p"}))
                .send()
                .await;
            response.expect_status(StatusCode::CREATED);
            id_of(&response.json())
        }));
    }
    let mut returned = HashSet::new();
    for publisher in publishers {
        returned.insert(publisher.await.expect("publisher finished"));
    }

    assert_eq!(returned.len(), 1, "every replica returned the same message");
    assert_eq!(replicas[1].pull("orders", "?limit=10").await.len(), 1);
    for replica in &replicas {
        replica.stop().await;
    }
}

/// Measures how long a long poll on one replica takes to return after a publish on
/// another. Prints the median and maximum; asserts only that every poll was woken with
/// the message before its deadline.
///
/// `cargo test -p messaging --test postgres long_poll_wakes_across_replicas -- --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_across_replicas() {
    const TRIALS: usize = 20;
    let database = TestDatabase::create().await;
    let publisher = Replica::start(database.pool.clone());
    let waiter = Arc::new(Replica::start(database.another_pool(5).await));
    // Gives the waiter's listener time to connect before the first trial.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut since_request = Vec::with_capacity(TRIALS);
    let mut since_response = Vec::with_capacity(TRIALS);
    for trial in 0..TRIALS {
        let topic = format!("wake-{trial}");
        let polling = {
            let waiter = waiter.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                let messages = waiter.pull(&topic, "?wait_ms=10000").await;
                (messages, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;

        let requested_at = Instant::now();
        let id = id_of(
            &publisher
                .publish(&topic, json!({"tenant_id": "t", "project_id": "p"}))
                .await,
        );
        let published_at = Instant::now();
        let (messages, returned_at) = polling.await.expect("poll finished");
        assert_eq!(
            messages.iter().map(id_of).collect::<Vec<_>>(),
            vec![id],
            "trial {trial}: the poll returned the message"
        );
        since_request.push(returned_at.duration_since(requested_at));
        since_response.push(returned_at.saturating_duration_since(published_at));
    }

    println!(
        "cross-replica long-poll wake over {TRIALS} trials: from the publish request {}; \
         from the publish response {}",
        summary(&mut since_request),
        summary(&mut since_response),
    );
    publisher.stop().await;
    waiter.stop().await;
}

/// Median, maximum and minimum of measured durations, in milliseconds.
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms, max {:.1} ms, min {:.1} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        ms(times[0])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_answers_503_then_recovers() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.server_address().await).await;
    let replica = Replica::start(database.pool_through(&proxy, 3).await);

    let published = replica
        .publish("orders", json!({"tenant_id": "t", "project_id": "p"}))
        .await;
    replica
        .client
        .get("/readyz")
        .send()
        .await
        .expect_status(StatusCode::OK);

    proxy.cut();
    let started = Instant::now();
    replica.client.get("/readyz").send().await.expect_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
    );
    let id = id_of(&published);
    let requests = [
        (
            "POST",
            "/topics/orders/messages".to_string(),
            Some(json!({"tenant_id": "t", "project_id": "p"})),
        ),
        ("GET", "/topics/orders/messages".to_string(), None),
        (
            "GET",
            "/topics/orders/messages?wait_ms=500".to_string(),
            None,
        ),
        ("POST", format!("/topics/orders/messages/{id}/ack"), None),
        ("GET", "/topics/orders/stats".to_string(), None),
        ("GET", "/topics".to_string(), None),
    ];
    for (method, path, body) in requests {
        let request = match method {
            "POST" => replica.client.post(&path),
            _ => replica.client.get(&path),
        };
        let request = match &body {
            Some(body) => request.json(body),
            None => request,
        };
        let response = request.send().await;
        response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
        assert!(response.header("retry-after").is_some(), "{method} {path}");
    }
    // Bounded by the pool's acquire timeout, not by TCP timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );

    proxy.restore();
    assert!(
        replica
            .client
            .wait_until_ready(Duration::from_secs(5))
            .await,
        "readiness returns once Postgres is reachable again"
    );
    let pulled = replica.pull("orders", "").await;
    assert_eq!(
        pulled.iter().map(id_of).collect::<Vec<_>>(),
        vec![id],
        "the message published before the outage is still there"
    );
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_new_instance() {
    let database = TestDatabase::create().await;
    let before = Replica::start(database.pool.clone());
    let keyed = before
        .client
        .post("/topics/orders/messages")
        .header("Idempotency-Key", "order-17")
        .json(&json!({"tenant_id": "t", "project_id": "p", "payload_base64": "aGk=", "attributes": {"a": "b"}}))
        .send()
        .await;
    keyed.expect_status(StatusCode::CREATED);
    let high = before
        .publish(
            "orders",
            json!({"tenant_id": "t", "project_id": "p", "priority": "high"}),
        )
        .await;
    let leased = before
        .pull("orders", "?limit=1&visibility_timeout_s=600")
        .await;
    assert_eq!(
        leased.iter().map(id_of).collect::<Vec<_>>(),
        vec![id_of(&high)]
    );
    before.stop().await;
    drop(before);

    let after = Replica::start(database.another_pool(5).await);
    let stats = after.client.get("/topics/orders/stats").send().await.json();
    assert_eq!(stats["ready"], 1, "{stats}");
    assert_eq!(stats["leased"], 1, "the lease survived too: {stats}");

    let pulled = after.pull("orders", "").await;
    assert_eq!(pulled.len(), 1);
    let mut delivered = pulled[0].clone();
    let original = keyed.json();
    assert_eq!(delivered["delivery_attempt"], 1);
    for field in ["ack_id", "delivery_attempt"] {
        delivered.as_object_mut().expect("object").remove(field);
    }
    assert_eq!(delivered, original, "the envelope is unchanged");

    let replay = after
        .client
        .post("/topics/orders/messages")
        .header("Idempotency-Key", "order-17")
        .json(&json!({"tenant_id": "t", "project_id": "p"}))
        .send()
        .await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json(), original);

    let ack_path = format!("/topics/orders/messages/{}/ack", id_of(&leased[0]));
    after
        .client
        .post(&ack_path)
        .json(&json!({"ack_id": leased[0]["ack_id"]}))
        .send()
        .await
        .expect_status(StatusCode::NO_CONTENT);
    after.stop().await;
}
