//! The messaging HTTP contract, run against the memory store and against Postgres.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use messaging::{Messaging, Settings, routes};
use platform::Backend;
use platform::http::{HttpLimits, Readiness, app};
use platform::server::Workers;
use platform::testing::{TestClient, TestDatabase, TestResponse};
use platform::time::ManualClock;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct TestApp {
    client: TestClient,
    clock: Arc<ManualClock>,
    messaging: Arc<Messaging>,
    shutdown: CancellationToken,
    _workers: Workers,
}

/// Settings of the shared suite: no memory capacities, and small sweep batches so that
/// retention runs several of them.
fn suite_settings() -> Settings {
    Settings {
        max_messages: usize::MAX,
        max_idempotency_keys: usize::MAX,
        sweep_batch: 10,
        ..Settings::default()
    }
}

impl TestApp {
    async fn memory() -> Self {
        Self::with_backend(Backend::Memory, suite_settings())
    }

    async fn postgres() -> Self {
        let database = TestDatabase::create().await;
        Self::with_backend(Backend::Postgres(database.pool), suite_settings())
    }

    fn with_backend(backend: Backend, settings: Settings) -> Self {
        let clock = ManualClock::starting_now();
        let shutdown = CancellationToken::new();
        let workers = Workers::new();
        let messaging = messaging::start(
            &backend,
            settings,
            clock.clone(),
            shutdown.clone(),
            &workers,
        );
        let readiness = match &backend {
            Backend::Memory => Readiness::Always,
            Backend::Postgres(pool) => Readiness::Postgres(pool.clone()),
        };
        let router = app(
            routes::router(messaging.clone()),
            readiness,
            HttpLimits::default(),
        );
        TestApp {
            client: TestClient::new(router),
            clock,
            messaging,
            shutdown,
            _workers: workers,
        }
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

    async fn publish_simple(&self, topic: &str) -> String {
        id_of(
            &self
                .publish(topic, json!({"tenant_id": "t1", "project_id": "p1"}))
                .await,
        )
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

    async fn post(&self, path: &str, body: Value) -> TestResponse {
        self.client.post(path).json(&body).send().await
    }

    async fn settle(&self, topic: &str, id: &str, action: &str, body: Value) -> TestResponse {
        self.post(&format!("/topics/{topic}/messages/{id}/{action}"), body)
            .await
    }

    async fn stats(&self, topic: &str) -> Value {
        let response = self
            .client
            .get(&format!("/topics/{topic}/stats"))
            .send()
            .await;
        response.expect_status(StatusCode::OK);
        response.json()
    }
}

fn id_of(message: &Value) -> String {
    message["message_id"]
        .as_str()
        .expect("message_id is a string")
        .to_string()
}

fn ack_id_of(delivery: &Value) -> String {
    delivery["ack_id"]
        .as_str()
        .expect("ack_id is a string")
        .to_string()
}

fn ids(messages: &[Value]) -> Vec<String> {
    messages.iter().map(id_of).collect()
}

platform::store_suite!(TestApp;
    publish_returns_envelope,
    publish_accepts_empty_payload,
    publish_requires_tenant_and_project,
    publish_rejects_bad_fields,
    publish_rejects_bad_topic_names,
    publish_rejects_missing_content_type,
    body_over_limit_is_rejected,
    pull_orders_by_priority_then_age,
    pull_filters_by_tenant_and_project,
    pull_limit_defaults_to_ten,
    pull_rejects_bad_parameters,
    head_on_pull_leases_nothing,
    pulled_message_is_leased_until_timeout,
    two_consumers_never_share_a_message,
    dead_consumer_loses_messages_after_lease,
    ack_removes_message,
    ack_with_text_body_is_unsupported,
    stale_ack_id_cannot_remove_redelivered_message,
    ack_racing_lease_expiry_never_resurrects,
    nack_makes_message_visible_again,
    nack_requires_current_delivery,
    lease_extends_and_shortens,
    lease_rejects_bad_input,
    nacked_max_times_dead_letters_once,
    expired_leases_dead_letter_on_pull,
    exhausted_message_does_not_block_pull,
    dead_letter_topic_may_pass_name_limit,
    long_poll_wakes_on_publish,
    long_poll_returns_empty_at_deadline,
    long_poll_returns_on_shutdown,
    batch_publish_stores_all,
    batch_publish_is_all_or_nothing,
    batch_ack_reports_each_id,
    batch_ack_rejects_bad_bodies,
    colon_routes_coexist_with_id_routes,
    delayed_message_stays_invisible,
    idempotent_publish_returns_original,
    idempotent_publish_is_safe_under_concurrency,
    idempotent_batch_replays_whole_batch,
    idempotency_key_expires_after_window,
    retention_removes_old_messages,
    retention_forgets_expired_keys,
    stats_count_messages_by_state,
    topics_list_counts,
);

async fn publish_returns_envelope(app: TestApp) {
    let message = app
        .publish(
            "orders",
            json!({
                "tenant_id": "t1", "project_id": "p1", "key": "customer-9",
                "payload_base64": "aGk", "priority": "MESSAGE_PRIORITY_HIGH",
                "attributes": {"source": "checkout"}
            }),
        )
        .await;

    assert_eq!(message["tenant_id"], "t1");
    assert_eq!(message["project_id"], "p1");
    assert_eq!(message["topic"], "orders");
    assert_eq!(message["key"], "customer-9");
    assert_eq!(message["priority"], "high");
    assert_eq!(message["attributes"], json!({"source": "checkout"}));
    assert_eq!(
        message["payload_base64"], "aGk=",
        "padding is added on output"
    );
    assert!(
        message.get("ack_id").is_none(),
        "only deliveries carry ack ids"
    );
    let id = uuid::Uuid::parse_str(&id_of(&message)).expect("uuid");
    assert_eq!(id.get_version_num(), 7);
    let published = message["published_at"].as_str().expect("timestamp");
    assert!(
        published.ends_with('Z') && published.len() == 27,
        "{published}"
    );

    let defaults = app
        .publish("orders", json!({"tenant_id": "t1", "project_id": "p1"}))
        .await;
    assert_eq!(defaults["priority"], "normal");
    assert_eq!(defaults["key"], "");
    assert_eq!(defaults["attributes"], json!({}));
    assert_eq!(defaults["payload_base64"], "");

    for (given, stored) in [
        ("low", "low"),
        ("NORMAL", "normal"),
        ("message_priority_low", "low"),
    ] {
        let message = app
            .publish(
                "orders",
                json!({"tenant_id": "t1", "project_id": "p1", "priority": given}),
            )
            .await;
        assert_eq!(message["priority"], stored, "{given}");
    }
}

async fn publish_accepts_empty_payload(app: TestApp) {
    let message = app
        .publish(
            "orders",
            json!({"tenant_id": "t1", "project_id": "p1", "payload_base64": ""}),
        )
        .await;
    assert_eq!(message["payload_base64"], "");

    let pulled = app.pull("orders", "").await;
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0]["payload_base64"], "");
}

async fn publish_requires_tenant_and_project(app: TestApp) {
    let cases = [
        (json!({"project_id": "p"}), "tenant_id"),
        (json!({"tenant_id": "", "project_id": "p"}), "tenant_id"),
        (json!({"tenant_id": null, "project_id": "p"}), "tenant_id"),
        (json!({"tenant_id": "t"}), "project_id"),
        (json!({"tenant_id": "t", "project_id": ""}), "project_id"),
    ];
    for (body, field) in cases {
        let response = app.post("/topics/orders/messages", body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
    assert!(app.pull("orders", "").await.is_empty());
}

async fn publish_rejects_bad_fields(app: TestApp) {
    let base = || json!({"tenant_id": "t", "project_id": "p"});
    let with = |field: &str, value: Value| {
        let mut body = base();
        body[field] = value;
        body
    };
    let too_many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let oversized = "A".repeat(256 * 1024 / 3 * 4 + 8);
    let cases = [
        (
            with("payload_base64", json!("not base64!")),
            "payload_base64",
        ),
        (with("payload_base64", json!("aGk==x")), "payload_base64"),
        (with("payload_base64", json!(oversized)), "payload_base64"),
        (with("payload_base64", json!(5)), "payload_base64"),
        (with("priority", json!("urgent")), "priority"),
        (
            with("priority", json!("MESSAGE_PRIORITY_URGENT")),
            "priority",
        ),
        (with("priority", json!(2)), "priority"),
        (with("tenant_id", json!(5)), "tenant_id"),
        (with("tenant_id", json!("x".repeat(257))), "tenant_id"),
        (with("project_id", json!("line\nbreak")), "project_id"),
        (with("key", json!("k".repeat(257))), "key"),
        (with("attributes", json!({"k": 1})), "attributes.k"),
        (with("attributes", json!(["x"])), "attributes"),
        (
            with("attributes", json!({"k": "v".repeat(1025)})),
            "attributes.k",
        ),
        (with("attributes", json!({"": "v"})), "attributes"),
        (with("attributes", Value::Object(too_many)), "attributes"),
        (with("delay_s", json!(-1)), "delay_s"),
        (with("delay_s", json!(1.5)), "delay_s"),
        (with("delay_s", json!(604_801)), "delay_s"),
    ];
    for (body, field) in cases {
        let response = app.post("/topics/orders/messages", body.clone()).await;
        let error = response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }

    let response = app
        .client
        .post("/topics/orders/messages")
        .body(Some("application/json"), "{\"tenant_id\": ")
        .send()
        .await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);
    let response = app.post("/topics/orders/messages", json!(["a"])).await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);

    assert!(
        app.pull("orders", "").await.is_empty(),
        "nothing was stored"
    );
}

async fn publish_rejects_bad_topic_names(app: TestApp) {
    let body = json!({"tenant_id": "t", "project_id": "p"});
    let long = "x".repeat(250);
    for topic in [
        long.as_str(),
        "bad%20name",
        "caf%C3%A9",
        ".",
        "..x.dead-letter%2F",
    ] {
        let response = app
            .post(&format!("/topics/{topic}/messages"), body.clone())
            .await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("topic"));
    }

    let longest = "x".repeat(249);
    let message = app.publish(&longest, body.clone()).await;
    assert_eq!(message["topic"], longest.as_str());
    let message = app.publish("A.b_c-9", body).await;
    assert_eq!(message["topic"], "A.b_c-9");

    let response = app
        .client
        .get(&format!("/topics/{long}/stats"))
        .send()
        .await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("topic"));
    let response = app
        .client
        .get(&format!("/topics/{long}/messages"))
        .send()
        .await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("topic"));
}

async fn publish_rejects_missing_content_type(app: TestApp) {
    let body = r#"{"tenant_id": "t", "project_id": "p"}"#;
    for content_type in [None, Some("text/plain")] {
        let response = app
            .client
            .post("/topics/orders/messages")
            .body(content_type, body)
            .send()
            .await;
        response.expect_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }
    let response = app
        .client
        .post("/topics/orders/messages:batch")
        .body(None, r#"{"messages": []}"#)
        .send()
        .await;
    response.expect_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
}

async fn body_over_limit_is_rejected(app: TestApp) {
    // Five payloads of 256 KiB fit the payload limit one by one, but not the 1 MiB body.
    let payload = "A".repeat(256 * 1024 / 3 * 4);
    let messages: Vec<Value> = (0..5)
        .map(|_| json!({"tenant_id": "t", "project_id": "p", "payload_base64": payload}))
        .collect();
    let response = app
        .post(
            "/topics/orders/messages:batch",
            json!({"messages": messages}),
        )
        .await;
    response.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    assert!(app.pull("orders", "").await.is_empty());
}

async fn pull_orders_by_priority_then_age(app: TestApp) {
    let mut published = Vec::new();
    for priority in ["low", "normal", "high", "normal", "high", "low"] {
        app.clock.advance(Duration::from_millis(10));
        let message = app
            .publish(
                "orders",
                json!({"tenant_id": "t", "project_id": "p", "priority": priority}),
            )
            .await;
        published.push(id_of(&message));
    }

    let first = app.pull("orders", "?limit=3").await;
    assert_eq!(
        ids(&first),
        vec![
            published[2].clone(),
            published[4].clone(),
            published[1].clone()
        ]
    );
    for (attempt, delivery) in first.iter().enumerate() {
        assert_eq!(delivery["delivery_attempt"], 1, "delivery {attempt}");
        uuid::Uuid::parse_str(&ack_id_of(delivery)).expect("ack_id is a uuid");
    }

    // The redelivered high-priority message keeps its place ahead of the rest.
    app.settle(
        "orders",
        &published[4],
        "nack",
        json!({"ack_id": ack_id_of(&first[1])}),
    )
    .await
    .expect_status(StatusCode::NO_CONTENT);
    let second = app.pull("orders", "?limit=10").await;
    assert_eq!(
        ids(&second),
        vec![
            published[4].clone(),
            published[3].clone(),
            published[0].clone(),
            published[5].clone()
        ]
    );
    assert_eq!(second[0]["delivery_attempt"], 2);
}

async fn pull_filters_by_tenant_and_project(app: TestApp) {
    let rows = [("t1", "p1"), ("t1", "p2"), ("t2", "p1"), ("t1", "p1")];
    let mut published = Vec::new();
    for (tenant, project) in rows {
        app.clock.advance(Duration::from_millis(5));
        published.push(id_of(
            &app.publish("jobs", json!({"tenant_id": tenant, "project_id": project}))
                .await,
        ));
    }

    let both = app.pull("jobs", "?tenant_id=t1&project_id=p1").await;
    assert_eq!(ids(&both), vec![published[0].clone(), published[3].clone()]);
    let project = app.pull("jobs", "?project_id=p1").await;
    assert_eq!(ids(&project), vec![published[2].clone()]);
    let tenant = app.pull("jobs", "?tenant_id=t1").await;
    assert_eq!(ids(&tenant), vec![published[1].clone()]);
    assert!(app.pull("jobs", "?tenant_id=nobody").await.is_empty());
    assert!(app.pull("jobs", "").await.is_empty(), "all four are leased");
}

async fn pull_limit_defaults_to_ten(app: TestApp) {
    let messages: Vec<Value> = (0..12)
        .map(|_| json!({"tenant_id": "t", "project_id": "p"}))
        .collect();
    app.post("/topics/bulk/messages:batch", json!({"messages": messages}))
        .await
        .expect_status(StatusCode::CREATED);

    assert_eq!(app.pull("bulk", "").await.len(), 10);
    assert_eq!(app.pull("bulk", "?limit=1000").await.len(), 2);
}

async fn pull_rejects_bad_parameters(app: TestApp) {
    let cases = [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=many", "limit"),
        ("?limit=-1", "limit"),
        ("?wait_ms=30001", "wait_ms"),
        ("?wait_ms=soon", "wait_ms"),
        ("?visibility_timeout_s=0", "visibility_timeout_s"),
        ("?visibility_timeout_s=43201", "visibility_timeout_s"),
    ];
    for (query, field) in cases {
        let response = app
            .client
            .get(&format!("/topics/orders/messages{query}"))
            .send()
            .await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
}

async fn head_on_pull_leases_nothing(app: TestApp) {
    app.publish_simple("orders").await;
    let response = app
        .client
        .request(Method::HEAD, "/topics/orders/messages")
        .send()
        .await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.header("allow"), Some("GET, POST"));

    let pulled = app.pull("orders", "").await;
    assert_eq!(pulled.len(), 1, "HEAD leased nothing");
    assert_eq!(pulled[0]["delivery_attempt"], 1);
}

async fn pulled_message_is_leased_until_timeout(app: TestApp) {
    let id = app.publish_simple("orders").await;
    let first = app.pull("orders", "").await;
    assert_eq!(ids(&first), vec![id.clone()]);

    assert!(
        app.pull("orders", "").await.is_empty(),
        "leased to the first caller"
    );
    app.clock.advance(Duration::from_secs(29));
    assert!(
        app.pull("orders", "").await.is_empty(),
        "default lease is 30 s"
    );
    app.clock.advance(Duration::from_secs(2));
    let second = app.pull("orders", "?visibility_timeout_s=5").await;
    assert_eq!(ids(&second), vec![id.clone()]);
    assert_eq!(second[0]["delivery_attempt"], 2);
    assert_ne!(second[0]["ack_id"], first[0]["ack_id"], "a new delivery");

    app.clock.advance(Duration::from_secs(4));
    assert!(app.pull("orders", "").await.is_empty());
    app.clock.advance(Duration::from_secs(2));
    let third = app.pull("orders", "").await;
    assert_eq!(third[0]["delivery_attempt"], 3);
}

async fn two_consumers_never_share_a_message(app: TestApp) {
    let messages: Vec<Value> = (0..120)
        .map(|_| json!({"tenant_id": "t", "project_id": "p"}))
        .collect();
    app.post("/topics/work/messages:batch", json!({"messages": messages}))
        .await
        .expect_status(StatusCode::CREATED);

    let consumers = (0..8).map(|_| {
        let client = app.client.clone();
        tokio::spawn(async move {
            let mut received = Vec::new();
            loop {
                let response = client.get("/topics/work/messages?limit=7").send().await;
                response.expect_status(StatusCode::OK);
                let batch = response.json()["messages"]
                    .as_array()
                    .expect("array")
                    .clone();
                if batch.is_empty() {
                    return received;
                }
                received.extend(ids(&batch));
            }
        })
    });
    let mut all = Vec::new();
    for consumer in consumers.collect::<Vec<_>>() {
        all.extend(consumer.await.expect("consumer finished"));
    }

    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a message was leased twice");
    assert_eq!(all.len(), 120, "every message was leased once");
}

async fn dead_consumer_loses_messages_after_lease(app: TestApp) {
    let first = app.publish_simple("orders").await;
    let second = app.publish_simple("orders").await;
    let leased = app.pull("orders", "?limit=2&visibility_timeout_s=10").await;
    assert_eq!(leased.len(), 2);

    // The first consumer never acknowledges; another gets nothing until the lease ends.
    assert!(app.pull("orders", "").await.is_empty());
    app.clock.advance(Duration::from_secs(11));
    let redelivered = app.pull("orders", "").await;
    assert_eq!(ids(&redelivered), vec![first.clone(), second.clone()]);
    for delivery in &redelivered {
        assert_eq!(delivery["delivery_attempt"], 2);
        app.settle(
            "orders",
            &id_of(delivery),
            "ack",
            json!({"ack_id": ack_id_of(delivery)}),
        )
        .await
        .expect_status(StatusCode::NO_CONTENT);
    }
    assert_eq!(app.stats("orders").await["ready"], 0);
}

async fn ack_removes_message(app: TestApp) {
    let id = app.publish_simple("orders").await;
    let delivered = app.pull("orders", "").await;

    // No body and no content type, as older clients send it.
    let response = app
        .client
        .post(&format!("/topics/orders/messages/{id}/ack"))
        .send()
        .await;
    response.expect_status(StatusCode::NO_CONTENT);
    assert!(response.body.is_empty());

    let again = app
        .client
        .post(&format!("/topics/orders/messages/{id}/ack"))
        .send()
        .await;
    again.expect_error(StatusCode::NOT_FOUND, "not_found", None);
    app.clock.advance(Duration::from_secs(60));
    assert!(
        app.pull("orders", "").await.is_empty(),
        "the message is gone"
    );

    for unknown in ["0190b2f2-7c4e-7a51-9d2c-5f0a1b2c3d4e", "not-a-uuid"] {
        let response = app.settle("orders", unknown, "ack", json!({})).await;
        response.expect_error(StatusCode::NOT_FOUND, "not_found", None);
    }

    // The ack id may come in the query string instead of the body.
    let id = app.publish_simple("orders").await;
    let delivered_again = app.pull("orders", "").await;
    let response = app
        .client
        .post(&format!(
            "/topics/orders/messages/{id}/ack?ack_id={}",
            ack_id_of(&delivered_again[0])
        ))
        .send()
        .await;
    response.expect_status(StatusCode::NO_CONTENT);

    // A message in another topic is not found under this one.
    let elsewhere = app.publish_simple("invoices").await;
    let response = app.settle("orders", &elsewhere, "ack", json!({})).await;
    response.expect_error(StatusCode::NOT_FOUND, "not_found", None);
    assert_eq!(delivered.len(), 1);
}

async fn ack_with_text_body_is_unsupported(app: TestApp) {
    let id = app.publish_simple("orders").await;
    let response = app
        .client
        .post(&format!("/topics/orders/messages/{id}/ack"))
        .body(Some("text/plain"), "ack it")
        .send()
        .await;
    response.expect_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
    let response = app
        .client
        .post(&format!("/topics/orders/messages/{id}/ack"))
        .body(None, r#"{"ack_id": "x"}"#)
        .send()
        .await;
    response.expect_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );

    let response = app
        .settle("orders", &id, "ack", json!({"ack_id": "not-an-ack-id"}))
        .await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("ack_id"));
    let response = app.settle("orders", &id, "ack", json!({"ack_id": 7})).await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("ack_id"));
    let response = app
        .post(
            &format!(
                "/topics/orders/messages/{id}/ack?ack_id=0190b2f2-7c4e-7a51-9d2c-5f0a1b2c3d4e"
            ),
            json!({"ack_id": "0190b2f2-7c4e-7a51-9d2c-5f0a1b2c3d4f"}),
        )
        .await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("ack_id"));
    assert_eq!(app.stats("orders").await["ready"], 1, "nothing was removed");
}

async fn stale_ack_id_cannot_remove_redelivered_message(app: TestApp) {
    let id = app.publish_simple("orders").await;
    let slow = app.pull("orders", "?visibility_timeout_s=10").await;
    app.clock.advance(Duration::from_secs(11));
    let fast = app.pull("orders", "?visibility_timeout_s=10").await;
    assert_eq!(ids(&fast), vec![id.clone()]);

    for action in ["ack", "nack", "lease"] {
        let body = json!({"ack_id": ack_id_of(&slow[0]), "visibility_timeout_s": 60});
        let response = app.settle("orders", &id, action, body).await;
        let error = response.expect_error(StatusCode::CONFLICT, "failed_precondition", None);
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains(&id)),
            "{error}"
        );
    }

    let stats = app.stats("orders").await;
    assert_eq!(
        stats["leased"], 1,
        "the fast consumer still holds it: {stats}"
    );
    app.settle("orders", &id, "ack", json!({"ack_id": ack_id_of(&fast[0])}))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    assert_eq!(app.stats("orders").await["leased"], 0);
}

async fn ack_racing_lease_expiry_never_resurrects(app: TestApp) {
    for round in 0..15 {
        let id = app.publish_simple("race").await;
        let first = app.pull("race", "?visibility_timeout_s=10").await;
        assert_eq!(ids(&first), vec![id.clone()], "round {round}");
        app.clock.advance(Duration::from_secs(11));

        let ack = app.settle("race", &id, "ack", json!({"ack_id": ack_id_of(&first[0])}));
        let pull = app.pull("race", "?visibility_timeout_s=10");
        let (ack, pulled) = tokio::join!(ack, pull);

        match ack.status {
            StatusCode::NO_CONTENT => {
                assert!(
                    pulled.is_empty(),
                    "round {round}: acked message was delivered"
                );
                app.clock.advance(Duration::from_secs(60));
                assert!(
                    app.pull("race", "").await.is_empty(),
                    "round {round}: acked message came back"
                );
            }
            StatusCode::CONFLICT => {
                assert_eq!(ids(&pulled), vec![id.clone()], "round {round}");
                assert_eq!(pulled[0]["delivery_attempt"], 2);
                app.settle("race", &id, "ack", json!({"ack_id": ack_id_of(&pulled[0])}))
                    .await
                    .expect_status(StatusCode::NO_CONTENT);
            }
            other => panic!(
                "round {round}: unexpected ack status {other}: {}",
                ack.text()
            ),
        }
    }
    assert_eq!(app.stats("race").await["ready"], 0);
}

async fn nack_makes_message_visible_again(app: TestApp) {
    let id = app.publish_simple("orders").await;
    let first = app.pull("orders", "").await;
    app.settle(
        "orders",
        &id,
        "nack",
        json!({"ack_id": ack_id_of(&first[0])}),
    )
    .await
    .expect_status(StatusCode::NO_CONTENT);
    let second = app.pull("orders", "").await;
    assert_eq!(ids(&second), vec![id.clone()]);
    assert_eq!(second[0]["delivery_attempt"], 2);

    // With a delay, in the query string, and without a content type.
    let response = app
        .client
        .post(&format!(
            "/topics/orders/messages/{id}/nack?ack_id={}&delay_s=30",
            ack_id_of(&second[0])
        ))
        .send()
        .await;
    response.expect_status(StatusCode::NO_CONTENT);
    let stats = app.stats("orders").await;
    assert_eq!(
        (stats["delayed"].clone(), stats["leased"].clone()),
        (json!(1), json!(0))
    );
    app.clock.advance(Duration::from_secs(29));
    assert!(app.pull("orders", "").await.is_empty());
    app.clock.advance(Duration::from_secs(2));
    let third = app.pull("orders", "").await;
    assert_eq!(third[0]["delivery_attempt"], 3);

    // The released delivery's ack id no longer acknowledges.
    let response = app
        .settle(
            "orders",
            &id,
            "ack",
            json!({"ack_id": ack_id_of(&second[0])}),
        )
        .await;
    response.expect_error(StatusCode::CONFLICT, "failed_precondition", None);
}

async fn nack_requires_current_delivery(app: TestApp) {
    let id = app.publish_simple("orders").await;
    let response = app.settle("orders", &id, "nack", json!({})).await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("ack_id"));

    let never_delivered = app
        .settle(
            "orders",
            &id,
            "nack",
            json!({"ack_id": "0190b2f2-7c4e-7a51-9d2c-5f0a1b2c3d4e"}),
        )
        .await;
    never_delivered.expect_error(StatusCode::CONFLICT, "failed_precondition", None);

    let delivered = app.pull("orders", "").await;
    let ack_id = ack_id_of(&delivered[0]);
    for (body, field) in [
        (json!({"ack_id": ack_id, "delay_s": -3}), "delay_s"),
        (json!({"ack_id": ack_id, "delay_s": 604_801}), "delay_s"),
    ] {
        let response = app.settle("orders", &id, "nack", body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
    let unknown = app
        .settle(
            "orders",
            "0190b2f2-7c4e-7a51-9d2c-5f0a1b2c3d4e",
            "nack",
            json!({"ack_id": ack_id}),
        )
        .await;
    unknown.expect_error(StatusCode::NOT_FOUND, "not_found", None);
    assert_eq!(app.stats("orders").await["leased"], 1, "still leased");
}

async fn lease_extends_and_shortens(app: TestApp) {
    let id = app.publish_simple("orders").await;
    let delivered = app.pull("orders", "?visibility_timeout_s=10").await;
    let ack_id = ack_id_of(&delivered[0]);

    let response = app
        .settle(
            "orders",
            &id,
            "lease",
            json!({"ack_id": ack_id, "visibility_timeout_s": 120}),
        )
        .await;
    response.expect_status(StatusCode::OK);
    let lease = response.json();
    assert_eq!(lease["message_id"], id.as_str());
    assert_eq!(lease["ack_id"], ack_id.as_str());
    let expected = app.clock_now_plus(120);
    assert_eq!(lease["lease_expires_at"], expected.as_str());

    app.clock.advance(Duration::from_secs(60));
    assert!(
        app.pull("orders", "").await.is_empty(),
        "extended past 10 s"
    );

    // Shortening to zero hands the message out again at once, as a new delivery.
    let response = app
        .client
        .post(&format!(
            "/topics/orders/messages/{id}/lease?ack_id={ack_id}&visibility_timeout_s=0"
        ))
        .send()
        .await;
    response.expect_status(StatusCode::OK);
    let again = app.pull("orders", "").await;
    assert_eq!(ids(&again), vec![id.clone()]);
    assert_eq!(again[0]["delivery_attempt"], 2);
}

async fn lease_rejects_bad_input(app: TestApp) {
    let id = app.publish_simple("orders").await;
    let delivered = app.pull("orders", "").await;
    let ack_id = ack_id_of(&delivered[0]);
    let cases = [
        (json!({"ack_id": ack_id}), "visibility_timeout_s"),
        (
            json!({"ack_id": ack_id, "visibility_timeout_s": 43_201}),
            "visibility_timeout_s",
        ),
        (
            json!({"ack_id": ack_id, "visibility_timeout_s": "long"}),
            "visibility_timeout_s",
        ),
        (json!({"visibility_timeout_s": 5}), "ack_id"),
    ];
    for (body, field) in cases {
        let response = app.settle("orders", &id, "lease", body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
    let response = app
        .client
        .post(&format!(
            "/topics/orders/messages/{id}/lease?ack_id={ack_id}&visibility_timeout_s=-1"
        ))
        .send()
        .await;
    response.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("visibility_timeout_s"),
    );
    let response = app
        .settle(
            "orders",
            "not-a-uuid",
            "lease",
            json!({"ack_id": ack_id, "visibility_timeout_s": 5}),
        )
        .await;
    response.expect_error(StatusCode::NOT_FOUND, "not_found", None);
}

impl TestApp {
    fn clock_now_plus(&self, seconds: u64) -> String {
        use platform::Clock;
        self.clock
            .now()
            .saturating_add(Duration::from_secs(seconds))
            .to_string()
    }
}

async fn nacked_max_times_dead_letters_once(app: TestApp) {
    let published = app
        .publish(
            "jobs",
            json!({"tenant_id": "t", "project_id": "p", "attributes": {"kind": "resize"}, "payload_base64": "aGk="}),
        )
        .await;
    let id = id_of(&published);

    for attempt in 1..=5 {
        let delivered = app.pull("jobs", "").await;
        assert_eq!(ids(&delivered), vec![id.clone()], "attempt {attempt}");
        assert_eq!(delivered[0]["delivery_attempt"], attempt);
        app.settle(
            "jobs",
            &id,
            "nack",
            json!({"ack_id": ack_id_of(&delivered[0])}),
        )
        .await
        .expect_status(StatusCode::NO_CONTENT);
    }

    assert!(app.pull("jobs", "").await.is_empty(), "moved out of jobs");
    let stats = app.stats("jobs").await;
    assert_eq!(stats["dead_lettered"], 1, "{stats}");
    assert_eq!(stats["ready"], 0, "{stats}");

    let dead = app.pull("jobs.dead-letter", "").await;
    assert_eq!(ids(&dead), vec![id.clone()]);
    let envelope = &dead[0];
    assert_eq!(envelope["topic"], "jobs.dead-letter");
    assert_eq!(envelope["delivery_attempt"], 1);
    assert_eq!(envelope["payload_base64"], "aGk=");
    assert_eq!(envelope["published_at"], published["published_at"]);
    assert_eq!(
        envelope["attributes"],
        json!({"kind": "resize", "dead_letter.source_topic": "jobs", "dead_letter.delivery_attempts": "5"})
    );

    // A dead-letter topic's messages are never dead-lettered again.
    let mut ack_id = ack_id_of(envelope);
    for attempt in 2..=8 {
        app.settle("jobs.dead-letter", &id, "nack", json!({"ack_id": ack_id}))
            .await
            .expect_status(StatusCode::NO_CONTENT);
        let again = app.pull("jobs.dead-letter", "").await;
        assert_eq!(ids(&again), vec![id.clone()], "attempt {attempt}");
        assert_eq!(again[0]["delivery_attempt"], attempt);
        ack_id = ack_id_of(&again[0]);
    }
    assert!(
        app.pull("jobs.dead-letter.dead-letter", "")
            .await
            .is_empty()
    );
    assert_eq!(app.stats("jobs.dead-letter").await["dead_lettered"], 0);

    app.settle("jobs.dead-letter", &id, "ack", json!({"ack_id": ack_id}))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    assert_eq!(app.stats("jobs").await["dead_lettered"], 0);
}

async fn expired_leases_dead_letter_on_pull(app: TestApp) {
    let id = app.publish_simple("jobs").await;
    for attempt in 1..=5 {
        let delivered = app.pull("jobs", "?visibility_timeout_s=5").await;
        assert_eq!(ids(&delivered), vec![id.clone()], "attempt {attempt}");
        app.clock.advance(Duration::from_secs(6));
    }

    assert!(app.pull("jobs", "").await.is_empty());
    assert!(app.pull("jobs", "").await.is_empty());
    let dead = app.pull("jobs.dead-letter", "").await;
    assert_eq!(ids(&dead), vec![id.clone()], "dead-lettered exactly once");
    assert_eq!(dead[0]["attributes"]["dead_letter.delivery_attempts"], "5");
    assert_eq!(app.stats("jobs").await["dead_lettered"], 1);
}

async fn exhausted_message_does_not_block_pull(app: TestApp) {
    let exhausted = app.publish_simple("jobs").await;
    for _ in 1..=5 {
        assert_eq!(app.pull("jobs", "?visibility_timeout_s=5").await.len(), 1);
        app.clock.advance(Duration::from_secs(6));
    }
    let fresh = app.publish_simple("jobs").await;

    // The exhausted message comes first in order, but a pull of one still gets the fresh one.
    let pulled = app.pull("jobs", "?limit=1").await;
    assert_eq!(ids(&pulled), vec![fresh]);
    assert_eq!(
        ids(&app.pull("jobs.dead-letter", "").await),
        vec![exhausted]
    );
}

async fn dead_letter_topic_may_pass_name_limit(app: TestApp) {
    let topic = "q".repeat(249);
    let dead_letter = format!("{topic}.dead-letter");
    let id = app.publish_simple(&topic).await;
    for _ in 1..=5 {
        let delivered = app.pull(&topic, "").await;
        app.settle(
            &topic,
            &id,
            "nack",
            json!({"ack_id": ack_id_of(&delivered[0])}),
        )
        .await
        .expect_status(StatusCode::NO_CONTENT);
    }

    let dead = app.pull(&dead_letter, "").await;
    assert_eq!(ids(&dead), vec![id.clone()]);
    assert_eq!(dead[0]["topic"], dead_letter.as_str());
    app.settle(
        &dead_letter,
        &id,
        "ack",
        json!({"ack_id": ack_id_of(&dead[0])}),
    )
    .await
    .expect_status(StatusCode::NO_CONTENT);

    let too_long = format!("{}.dead-letter", "q".repeat(250));
    let response = app
        .client
        .get(&format!("/topics/{too_long}/messages"))
        .send()
        .await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("topic"));
}

async fn long_poll_wakes_on_publish(app: TestApp) {
    let client = app.client.clone();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let response = client
            .get("/topics/events/messages?wait_ms=20000")
            .send()
            .await;
        (response, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = app.publish_simple("events").await;

    let (response, elapsed) = waiting.await.expect("poll finished");
    response.expect_status(StatusCode::OK);
    let messages = response.json()["messages"]
        .as_array()
        .expect("array")
        .clone();
    assert_eq!(ids(&messages), vec![id], "returned with the message");
    assert!(
        elapsed < Duration::from_secs(20),
        "woke before the deadline"
    );
}

async fn long_poll_returns_empty_at_deadline(app: TestApp) {
    app.publish_simple("other").await;
    let started = Instant::now();
    let messages = app.pull("events", "?wait_ms=300").await;
    assert!(messages.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited the full time"
    );

    // A message that becomes visible while waiting is found without any publish.
    app.post(
        "/topics/events/messages",
        json!({"tenant_id": "t", "project_id": "p", "delay_s": 5}),
    )
    .await
    .expect_status(StatusCode::CREATED);
    let client = app.client.clone();
    let waiting = tokio::spawn(async move {
        client
            .get("/topics/events/messages?wait_ms=10000")
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.clock.advance(Duration::from_secs(6));
    let response = waiting.await.expect("poll finished");
    assert_eq!(
        response.json()["messages"].as_array().map(Vec::len),
        Some(1)
    );
}

async fn long_poll_returns_on_shutdown(app: TestApp) {
    let client = app.client.clone();
    let waiting = tokio::spawn(async move {
        client
            .get("/topics/events/messages?wait_ms=30000")
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.shutdown.cancel();

    let response = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the poll returns on shutdown, long before its 30 s wait")
        .expect("poll finished");
    response.expect_status(StatusCode::OK);
    assert_eq!(response.json(), json!({"messages": []}));
}

async fn batch_publish_stores_all(app: TestApp) {
    let response = app
        .post(
            "/topics/orders/messages:batch",
            json!({"messages": [
                {"tenant_id": "t", "project_id": "p", "payload_base64": "YQ"},
                {"tenant_id": "t", "project_id": "p", "priority": "high", "delay_s": 0},
                {"tenant_id": "t2", "project_id": "p", "key": "k", "attributes": {"a": "b"}},
            ]}),
        )
        .await;
    response.expect_status(StatusCode::CREATED);
    let published = response.json()["messages"]
        .as_array()
        .expect("array")
        .clone();
    assert_eq!(published.len(), 3);
    assert_eq!(published[0]["payload_base64"], "YQ==");
    assert_eq!(published[1]["priority"], "high");
    assert_eq!(published[2]["attributes"], json!({"a": "b"}));
    assert!(published.iter().all(|m| m["topic"] == "orders"));
    assert_eq!(published[0]["published_at"], published[2]["published_at"]);

    let pulled = app.pull("orders", "").await;
    assert_eq!(
        ids(&pulled),
        vec![
            id_of(&published[1]),
            id_of(&published[0]),
            id_of(&published[2])
        ]
    );
}

async fn batch_publish_is_all_or_nothing(app: TestApp) {
    let good = json!({"tenant_id": "t", "project_id": "p"});
    let cases = [
        (
            json!({"messages": [good, {"tenant_id": "t", "project_id": "p", "priority": "urgent"}]}),
            Some("messages[1].priority"),
        ),
        (
            json!({"messages": [good, good, {"tenant_id": 3}]}),
            Some("messages[2].tenant_id"),
        ),
        (
            json!({"messages": [good, {"project_id": "p"}]}),
            Some("messages[1].tenant_id"),
        ),
        (
            json!({"messages": [{"tenant_id": "t", "project_id": "p", "attributes": {"k": []}}]}),
            Some("messages[0].attributes.k"),
        ),
        (json!({"messages": [good, "text"]}), Some("messages[1]")),
        (json!({"messages": []}), Some("messages")),
        (json!({"messages": {"0": good}}), Some("messages")),
        (json!({"messages": null}), Some("messages")),
        (json!({}), Some("messages")),
        (json!([good]), None),
    ];
    for (body, field) in cases {
        let response = app
            .post("/topics/orders/messages:batch", body.clone())
            .await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", field);
    }

    let too_many: Vec<Value> = (0..1001).map(|_| good.clone()).collect();
    let response = app
        .post(
            "/topics/orders/messages:batch",
            json!({"messages": too_many}),
        )
        .await;
    response.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("messages"),
    );
    // The length is checked before the items, even when an item is invalid too.
    let mut too_many_with_bad: Vec<Value> = (0..1001).map(|_| good.clone()).collect();
    too_many_with_bad[1000] = json!({"tenant_id": 3});
    let response = app
        .post(
            "/topics/orders/messages:batch",
            json!({"messages": too_many_with_bad}),
        )
        .await;
    response.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("messages"),
    );
    let max_batch: Vec<Value> = (0..1000).map(|_| good.clone()).collect();
    app.post(
        "/topics/full/messages:batch",
        json!({"messages": max_batch}),
    )
    .await
    .expect_status(StatusCode::CREATED);

    assert!(
        app.pull("orders", "").await.is_empty(),
        "no partial batch was stored"
    );
}

async fn batch_ack_reports_each_id(app: TestApp) {
    let first = app.publish_simple("orders").await;
    let second = app.publish_simple("orders").await;
    let leased = app.publish_simple("orders").await;
    let elsewhere = app.publish_simple("invoices").await;
    app.pull("orders", "?limit=3").await;
    let unknown = "0190b2f2-7c4e-7a51-9d2c-5f0a1b2c3d4e".to_string();

    let response = app
        .post(
            "/topics/orders/messages:ack",
            json!({"message_ids": [first, unknown, second, "garbage", first.to_uppercase(), leased, elsewhere]}),
        )
        .await;
    response.expect_status(StatusCode::OK);
    let report = response.json();
    assert_eq!(report["acked"], json!([first, second, leased]));
    assert_eq!(report["not_found"], json!([unknown, "garbage", elsewhere]));

    app.clock.advance(Duration::from_secs(60));
    assert!(app.pull("orders", "").await.is_empty());
    assert_eq!(app.pull("invoices", "").await.len(), 1);

    let response = app
        .post(
            "/topics/orders/messages:ack",
            json!({"message_ids": [first]}),
        )
        .await;
    assert_eq!(response.json(), json!({"acked": [], "not_found": [first]}));
}

async fn batch_ack_rejects_bad_bodies(app: TestApp) {
    let too_many: Vec<String> = (0..1001).map(|i| format!("id-{i}")).collect();
    let cases = [
        (json!({"message_ids": []}), "message_ids"),
        (json!({}), "message_ids"),
        (json!({"message_ids": "abc"}), "message_ids"),
        (json!({"message_ids": ["a", 5]}), "message_ids[1]"),
        (json!({"message_ids": too_many}), "message_ids"),
    ];
    for (body, field) in cases {
        let response = app.post("/topics/orders/messages:ack", body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
    let response = app
        .client
        .post("/topics/orders/messages:ack")
        .body(None, r#"{"message_ids": ["a"]}"#)
        .send()
        .await;
    response.expect_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
}

async fn colon_routes_coexist_with_id_routes(app: TestApp) {
    let response = app.client.get("/topics/orders/messages:batch").send().await;
    response.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
    let response = app
        .client
        .post("/topics/orders/messages:unknown")
        .send()
        .await;
    response.expect_error(StatusCode::NOT_FOUND, "not_found", None);

    // An id that looks like a batch verb is still just an unknown message.
    let response = app
        .settle("orders", "messages:batch", "ack", json!({}))
        .await;
    response.expect_error(StatusCode::NOT_FOUND, "not_found", None);
    let response = app.client.get("/topics").send().await;
    response.expect_status(StatusCode::OK);
}

async fn delayed_message_stays_invisible(app: TestApp) {
    let delayed = app
        .publish(
            "later",
            json!({"tenant_id": "t", "project_id": "p", "delay_s": 60}),
        )
        .await;
    let now = app.publish_simple("later").await;

    assert_eq!(
        ids(&app.pull("later", "?visibility_timeout_s=300").await),
        vec![now]
    );
    let stats = app.stats("later").await;
    assert_eq!(stats["delayed"], 1, "{stats}");
    app.clock.advance(Duration::from_secs(59));
    assert!(app.pull("later", "").await.is_empty());
    app.clock.advance(Duration::from_secs(2));
    let pulled = app.pull("later", "").await;
    assert_eq!(ids(&pulled), vec![id_of(&delayed)]);
    assert_eq!(pulled[0]["delivery_attempt"], 1);
}

async fn idempotent_publish_returns_original(app: TestApp) {
    let body = json!({"tenant_id": "t", "project_id": "p", "payload_base64": "aGk="});
    let send = |topic: &'static str, body: Value, key: &'static str| {
        app.client
            .post(&format!("/topics/{topic}/messages"))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };

    let first = send("orders", body.clone(), "order-17").await;
    first.expect_status(StatusCode::CREATED);
    assert_eq!(first.header("idempotent-replayed"), None);
    app.clock.advance(Duration::from_secs(60));
    let changed = json!({"tenant_id": "t", "project_id": "p", "payload_base64": "Ynll"});
    let replay = send("orders", changed, "order-17").await;
    replay.expect_status(StatusCode::CREATED);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json(), first.json(), "the original envelope");

    let other_topic = send("invoices", body.clone(), "order-17").await;
    assert_ne!(id_of(&other_topic.json()), id_of(&first.json()));
    let other_key = send("orders", body.clone(), "order-18").await;
    assert_ne!(id_of(&other_key.json()), id_of(&first.json()));

    let pulled = app.pull("orders", "").await;
    assert_eq!(pulled.len(), 2, "the replay stored nothing");
    for delivery in &pulled {
        app.settle("orders", &id_of(delivery), "ack", json!({}))
            .await
            .expect_status(StatusCode::NO_CONTENT);
    }
    let after_ack = send("orders", body, "order-17").await;
    assert_eq!(after_ack.json(), first.json(), "remembered after the ack");
    assert!(app.pull("orders", "").await.is_empty());

    let long_key = "k".repeat(256);
    let response = app
        .client
        .post("/topics/orders/messages")
        .header("Idempotency-Key", &long_key)
        .json(&json!({"tenant_id": "t", "project_id": "p"}))
        .send()
        .await;
    response.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("Idempotency-Key"),
    );
}

async fn idempotent_publish_is_safe_under_concurrency(app: TestApp) {
    let publishers = (0..8).map(|_| {
        let client = app.client.clone();
        tokio::spawn(async move {
            let response = client
                .post("/topics/orders/messages")
                .header("Idempotency-Key", "same-key")
                .json(&json!({"tenant_id": "t", "project_id": "p"}))
                .send()
                .await;
            response.expect_status(StatusCode::CREATED);
            id_of(&response.json())
        })
    });
    let mut seen = HashSet::new();
    for publisher in publishers.collect::<Vec<_>>() {
        seen.insert(publisher.await.expect("publisher finished"));
    }
    assert_eq!(seen.len(), 1, "every publish returned the same message");
    assert_eq!(app.pull("orders", "").await.len(), 1, "one message stored");
}

async fn idempotent_batch_replays_whole_batch(app: TestApp) {
    let batch = json!({"messages": [
        {"tenant_id": "t", "project_id": "p"},
        {"tenant_id": "t", "project_id": "p", "priority": "low"},
    ]});
    let send = |body: Value| {
        app.client
            .post("/topics/orders/messages:batch")
            .header("Idempotency-Key", "batch-1")
            .json(&body)
            .send()
    };
    let first = send(batch.clone()).await;
    first.expect_status(StatusCode::CREATED);
    let replay = send(batch).await;
    replay.expect_status(StatusCode::CREATED);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json(), first.json());
    assert_eq!(app.pull("orders", "").await.len(), 2);

    let single = app
        .client
        .post("/topics/orders/messages")
        .header("Idempotency-Key", "batch-1")
        .json(&json!({"tenant_id": "t", "project_id": "p"}))
        .send()
        .await;
    single.expect_error(StatusCode::CONFLICT, "failed_precondition", None);
}

async fn idempotency_key_expires_after_window(app: TestApp) {
    let send = || {
        app.client
            .post("/topics/orders/messages")
            .header("Idempotency-Key", "order-17")
            .json(&json!({"tenant_id": "t", "project_id": "p"}))
            .send()
    };
    let first = id_of(&send().await.json());
    app.clock.advance(Duration::from_secs(9 * 60));
    assert_eq!(
        id_of(&send().await.json()),
        first,
        "within the 10 minute window"
    );
    app.clock.advance(Duration::from_secs(61));
    let later = send().await;
    assert_eq!(later.header("idempotent-replayed"), None);
    assert_ne!(
        id_of(&later.json()),
        first,
        "a new publish after the window"
    );
    assert_eq!(app.pull("orders", "").await.len(), 2);
}

async fn retention_removes_old_messages(app: TestApp) {
    let messages: Vec<Value> = (0..25)
        .map(|i| {
            let priority = ["low", "normal", "high"][i % 3];
            json!({"tenant_id": "t", "project_id": "p", "priority": priority})
        })
        .collect();
    app.post(
        "/topics/old/messages:batch",
        json!({"messages": messages.clone()}),
    )
    .await
    .expect_status(StatusCode::CREATED);
    app.post(
        "/topics/also-old/messages:batch",
        json!({"messages": messages[..7]}),
    )
    .await
    .expect_status(StatusCode::CREATED);
    assert_eq!(
        app.pull("old", "?limit=5&visibility_timeout_s=43200")
            .await
            .len(),
        5
    );

    app.clock.advance(Duration::from_secs(7 * 24 * 3600 - 1));
    let fresh = app.publish_simple("old").await;
    assert_eq!(app.messaging.sweep().await.expect("sweep").messages, 0);

    app.clock.advance(Duration::from_secs(2));
    let report = app.messaging.sweep().await.expect("sweep");
    assert_eq!(
        report.messages, 32,
        "leased and unleased old messages alike"
    );
    let left = app.pull("old", "?limit=100").await;
    assert_eq!(ids(&left), vec![fresh]);
    assert!(app.pull("also-old", "").await.is_empty());
    assert_eq!(app.messaging.sweep().await.expect("sweep").messages, 0);
}

async fn retention_forgets_expired_keys(app: TestApp) {
    for key in ["a", "b", "c"] {
        app.client
            .post("/topics/orders/messages")
            .header("Idempotency-Key", key)
            .json(&json!({"tenant_id": "t", "project_id": "p"}))
            .send()
            .await
            .expect_status(StatusCode::CREATED);
    }
    assert_eq!(
        app.messaging.sweep().await.expect("sweep").idempotency_keys,
        0
    );
    app.clock.advance(Duration::from_secs(10 * 60));
    let report = app.messaging.sweep().await.expect("sweep");
    assert_eq!(report.idempotency_keys, 3);
    assert_eq!(
        report.messages, 0,
        "the messages are younger than the retention"
    );
}

async fn stats_count_messages_by_state(app: TestApp) {
    let empty = app.stats("orders").await;
    assert_eq!(
        empty,
        json!({"ready": 0, "leased": 0, "delayed": 0, "dead_lettered": 0, "oldest_ready_age_ms": 0})
    );

    app.publish_simple("orders").await;
    app.clock.advance(Duration::from_millis(500));
    app.publish_simple("orders").await;
    app.publish_simple("orders").await;
    app.publish(
        "orders",
        json!({"tenant_id": "t", "project_id": "p", "delay_s": 60}),
    )
    .await;
    app.pull("orders", "?limit=1").await;
    app.clock.advance(Duration::from_millis(1500));

    let stats = app.stats("orders").await;
    assert_eq!(
        stats,
        json!({"ready": 2, "leased": 1, "delayed": 1, "dead_lettered": 0, "oldest_ready_age_ms": 1500})
    );
}

async fn topics_list_counts(app: TestApp) {
    let empty = app.client.get("/topics").send().await;
    empty.expect_status(StatusCode::OK);
    assert_eq!(empty.json(), json!({"topics": []}));

    app.publish_simple("b-topic").await;
    app.publish_simple("b-topic").await;
    let id = app.publish_simple("a-topic").await;
    for _ in 1..=5 {
        let delivered = app.pull("a-topic", "").await;
        app.settle(
            "a-topic",
            &id,
            "nack",
            json!({"ack_id": ack_id_of(&delivered[0])}),
        )
        .await
        .expect_status(StatusCode::NO_CONTENT);
    }
    app.pull("b-topic", "?limit=1").await;

    let listed = app.client.get("/topics").send().await.json();
    let names: Vec<&str> = listed["topics"]
        .as_array()
        .expect("array")
        .iter()
        .map(|topic| topic["topic"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        vec!["a-topic.dead-letter", "b-topic"],
        "empty topics are left out"
    );
    let b_topic = &listed["topics"][1];
    assert_eq!(b_topic["ready"], 1);
    assert_eq!(b_topic["leased"], 1);
    assert_eq!(b_topic["dead_lettered"], 0);
    assert_eq!(listed["topics"][0]["ready"], 1);

    // A topic with messages of its own also reports its dead-letter count.
    app.publish_simple("a-topic").await;
    let listed = app.client.get("/topics").send().await.json();
    let a_topic = listed["topics"]
        .as_array()
        .expect("array")
        .iter()
        .find(|topic| topic["topic"] == "a-topic")
        .cloned()
        .expect("a-topic is listed");
    assert_eq!(a_topic["dead_lettered"], 1);
}

#[tokio::test]
async fn memory_store_caps_messages() {
    let settings = Settings {
        max_messages: 3,
        ..Settings::default()
    };
    let app = TestApp::with_backend(Backend::Memory, settings);
    for _ in 0..3 {
        app.publish_simple("orders").await;
    }
    let response = app
        .post(
            "/topics/other/messages",
            json!({"tenant_id": "t", "project_id": "p"}),
        )
        .await;
    response.expect_error(StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", None);
    assert!(response.header("retry-after").is_some());
    let response = app
        .post(
            "/topics/orders/messages:batch",
            json!({"messages": [{"tenant_id": "t", "project_id": "p"}]}),
        )
        .await;
    response.expect_error(StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", None);

    // An ack frees a place.
    let delivered = app.pull("orders", "").await;
    app.settle("orders", &id_of(&delivered[0]), "ack", json!({}))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    app.publish_simple("other").await;
}

#[tokio::test]
async fn memory_store_caps_idempotency_keys() {
    let settings = Settings {
        max_idempotency_keys: 2,
        ..Settings::default()
    };
    let app = TestApp::with_backend(Backend::Memory, settings);
    let send = |key: &'static str| {
        app.client
            .post("/topics/orders/messages")
            .header("Idempotency-Key", key)
            .json(&json!({"tenant_id": "t", "project_id": "p"}))
            .send()
    };
    send("a").await.expect_status(StatusCode::CREATED);
    send("b").await.expect_status(StatusCode::CREATED);
    let response = send("c").await;
    response.expect_error(StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", None);
    assert!(response.header("retry-after").is_some());
    send("a").await.expect_status(StatusCode::CREATED);
    app.publish_simple("orders").await;
    assert_eq!(
        app.pull("orders", "").await.len(),
        3,
        "the rejected publish stored nothing"
    );
}
