//! The log pipeline's HTTP contract, run against the memory store and against Postgres.

mod support;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use logs::model::Level;
use logs::sink::Sink;
use logs::{Pipeline, Settings, routes, store_for};
use platform::http::{HttpLimits, Readiness, app};
use platform::server::Workers;
use platform::testing::{TestClient, TestDatabase, TestResponse};
use platform::time::ManualClock;
use platform::{Backend, Clock};
use serde_json::{Value, json};
use support::{Gate, RecordingSink};

const NDJSON: &str = "application/x-ndjson";
const JSON: &str = "application/json";

/// Maximum time a test waits for background delivery before it fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);

struct TestApp {
    client: TestClient,
    clock: Arc<ManualClock>,
    pipeline: Arc<Pipeline>,
    workers: Workers,
    recorder: Arc<RecordingSink>,
    backend: Backend,
}

impl TestApp {
    async fn memory() -> Self {
        Self::start(Backend::Memory, Settings::default(), RecordingSink::open())
    }

    async fn postgres() -> Self {
        let database = TestDatabase::create().await;
        Self::start(
            Backend::Postgres(database.pool),
            Settings::default(),
            RecordingSink::open(),
        )
    }

    fn start(backend: Backend, settings: Settings, recorder: Arc<RecordingSink>) -> Self {
        let clock = ManualClock::starting_now();
        let workers = Workers::new();
        let store = store_for(&backend, &settings);
        let sinks: Vec<Arc<dyn Sink>> = vec![recorder.clone()];
        let pipeline = Pipeline::start(&settings, store, sinks, clock.clone(), &workers);
        let readiness = match &backend {
            Backend::Memory => Readiness::Always,
            Backend::Postgres(pool) => Readiness::Postgres(pool.clone()),
        };
        let router = app(
            routes::router(pipeline.clone()),
            readiness,
            HttpLimits::default(),
        );
        TestApp {
            client: TestClient::new(router),
            clock,
            pipeline,
            workers,
            recorder,
            backend,
        }
    }

    /// Starts a new pipeline with other settings on the same store backend.
    fn with_settings(&self, settings: Settings) -> Self {
        Self::start(self.backend.clone(), settings, RecordingSink::open())
    }

    /// Starts a new pipeline whose recording sink waits until the returned gate opens.
    fn gated(&self, settings: Settings) -> (Gate, Self) {
        let (gate, recorder) = RecordingSink::gated();
        (gate, Self::start(self.backend.clone(), settings, recorder))
    }

    async fn post(
        &self,
        content_type: Option<&str>,
        body: impl Into<bytes::Bytes>,
    ) -> TestResponse {
        self.client
            .post("/logs")
            .body(content_type, body)
            .send()
            .await
    }

    async fn post_json(&self, body: Value) -> TestResponse {
        self.client.post("/logs").json(&body).send().await
    }

    async fn post_ndjson(&self, body: &str) -> TestResponse {
        self.post(Some(NDJSON), body.to_string()).await
    }

    /// Waits until every accepted event has reached every sink.
    async fn settle(&self) {
        tokio::time::timeout(DELIVERY_TIMEOUT, self.pipeline.delivered())
            .await
            .expect("accepted events are delivered");
    }

    /// Reads the recent events once everything accepted has been delivered.
    async fn recent(&self, query: &str) -> Vec<Value> {
        self.settle().await;
        let response = self
            .client
            .get(&format!("/logs/recent{query}"))
            .send()
            .await;
        response.expect_status(StatusCode::OK);
        response.json().as_array().expect("an array").clone()
    }

    async fn recent_messages(&self, query: &str) -> Vec<String> {
        self.recent(query).await.iter().map(message_of).collect()
    }
}

fn message_of(record: &Value) -> String {
    record["message"].as_str().expect("message").to_string()
}

fn event(source: &str, message: &str) -> Value {
    json!({"source": source, "message": message})
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

fn nonzero(value: usize) -> NonZeroUsize {
    NonZeroUsize::new(value).expect("not zero")
}

#[track_caller]
fn expect_counts(response: &TestResponse, accepted: u64, filtered: u64) {
    response.expect_status(StatusCode::ACCEPTED);
    assert_eq!(
        response.json(),
        json!({"accepted": accepted, "filtered": filtered})
    );
}

platform::store_suite!(TestApp;
    single_event_is_enriched,
    array_batch_is_accepted,
    ndjson_batch_skips_blank_lines,
    levels_accept_any_case_and_alias,
    explicit_timestamp_is_normalized,
    escaped_text_round_trips,
    required_fields_are_checked,
    unknown_level_is_rejected,
    fields_must_map_strings,
    wrong_types_are_rejected,
    invalid_utf8_is_rejected,
    malformed_bodies_are_rejected,
    empty_batches_are_rejected,
    other_content_types_are_unsupported,
    oversized_body_is_rejected,
    invalid_event_rejects_whole_batch,
    min_level_filters_and_counts,
    full_queue_rejects_whole_batch,
    recent_filters_by_source_and_level,
    recent_returns_newest_oldest_first,
    recent_limit_defaults_to_capacity,
    recent_rejects_bad_parameters,
    recent_supports_head,
    shutdown_delivers_every_event,
    shutdown_grace_reports_backlog,
    retention_sweep_deletes_expired,
);

async fn single_event_is_enriched(app: TestApp) {
    let response = app
        .post_json(json!({
            "source": "api", "level": "warn", "message": "slow request",
            "fields": {"route": "/x", "status": "200"}
        }))
        .await;
    expect_counts(&response, 1, 0);

    let recent = app.recent("").await;
    let now = app.clock.now().to_string();
    assert_eq!(recent.len(), 1);
    let record = &recent[0];
    assert_eq!(
        *record,
        json!({
            "source": "api", "level": "WARN", "message": "slow request",
            "fields": {"route": "/x", "status": "200"},
            "timestamp": now, "received_at": now,
            "sequence": record["sequence"]
        })
    );
    assert!(
        record["sequence"]
            .as_u64()
            .is_some_and(|sequence| sequence >= 1)
    );

    let recorded = app.recorder.records();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].event.level, Level::Warn);
    assert_eq!(recorded[0].event.fields.get("route"), Some("/x"));
}

async fn array_batch_is_accepted(app: TestApp) {
    let response = app
        .post_json(json!([
            event("a", "one"),
            event("b", "two"),
            event("a", "three")
        ]))
        .await;
    expect_counts(&response, 3, 0);

    let recent = app.recent("").await;
    let messages: Vec<String> = recent.iter().map(message_of).collect();
    assert_eq!(messages, ["one", "two", "three"]);
    let sequences: Vec<u64> = recent
        .iter()
        .map(|record| record["sequence"].as_u64().expect("sequence"))
        .collect();
    assert_eq!(sequences[1], sequences[0] + 1);
    assert_eq!(sequences[2], sequences[1] + 1);
    assert_eq!(recent[0]["fields"], json!({}));
}

async fn ndjson_batch_skips_blank_lines(app: TestApp) {
    let body = format!(
        "\n{}\r\n\n   \n{}\n{}",
        event("a", "one"),
        event("a", "two"),
        event("a", "three")
    );
    let response = app.post_ndjson(&body).await;
    expect_counts(&response, 3, 0);
    assert_eq!(app.recent_messages("").await, ["one", "two", "three"]);

    let response = app
        .post(
            Some("application/x-ndjson; charset=utf-8"),
            ndjson(&[event("a", "four")]),
        )
        .await;
    expect_counts(&response, 1, 0);
}

async fn levels_accept_any_case_and_alias(app: TestApp) {
    let levels = [
        json!("Info"),
        json!("wArN"),
        json!("WARNING"),
        json!("warning"),
        json!("error"),
        json!("ERROR"),
        json!(null),
        json!(""),
    ];
    let mut batch: Vec<Value> = levels
        .iter()
        .map(|level| json!({"source": "a", "message": "m", "level": level}))
        .collect();
    batch.push(event("a", "no level"));
    expect_counts(&app.post_json(Value::Array(batch)).await, 9, 0);

    let recent = app.recent("").await;
    let stored: Vec<&str> = recent
        .iter()
        .map(|record| record["level"].as_str().expect("level"))
        .collect();
    assert_eq!(
        stored,
        [
            "INFO", "WARN", "WARN", "WARN", "ERROR", "ERROR", "INFO", "INFO", "INFO"
        ]
    );
}

async fn explicit_timestamp_is_normalized(app: TestApp) {
    let response = app
        .post_json(json!({
            "source": "a", "message": "m",
            "timestamp": "2024-05-01T14:00:00.123456789+02:00"
        }))
        .await;
    expect_counts(&response, 1, 0);

    let recent = app.recent("").await;
    assert_eq!(recent[0]["timestamp"], "2024-05-01T12:00:00.123456Z");
    assert_eq!(recent[0]["received_at"], app.clock.now().to_string());
}

async fn escaped_text_round_trips(app: TestApp) {
    let message = "quote \" backslash \\ newline \n tab \t é 😀";
    let response = app
        .post_json(json!({
            "source": "svc/é", "message": message,
            "fields": {"ключ": "значение", "k": "1", "empty": ""}
        }))
        .await;
    expect_counts(&response, 1, 0);

    let recent = app.recent("").await;
    assert_eq!(recent[0]["message"], message);
    assert_eq!(recent[0]["source"], "svc/é");
    assert_eq!(
        recent[0]["fields"],
        json!({"ключ": "значение", "k": "1", "empty": ""})
    );
}

async fn required_fields_are_checked(app: TestApp) {
    let invalid = [
        (json!({"message": "m"}), "source"),
        (json!({"source": "", "message": "m"}), "source"),
        (json!({"source": null, "message": "m"}), "source"),
        (json!({"source": "a"}), "message"),
        (json!({"source": "a", "message": ""}), "message"),
    ];
    for (body, field) in &invalid {
        let response = app.post_json(body.clone()).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));

        let batch = json!([event("a", "ok"), body]);
        let response = app.post_json(batch).await;
        let path = format!("[1].{field}");
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(&path));

        let lines = ndjson(&[event("a", "ok"), body.clone()]);
        let response = app.post_ndjson(&lines).await;
        let error =
            response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("line 2"));
        let message = error["message"].as_str().expect("message");
        assert!(message.contains(field), "{message}");
    }
    assert!(app.recent("").await.is_empty());
}

async fn unknown_level_is_rejected(app: TestApp) {
    for level in [json!("fatal"), json!("warnings"), json!("INFO "), json!(5)] {
        let body = json!({"source": "a", "message": "m", "level": level});
        let response = app.post_json(body.clone()).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("level"));

        let batch = json!([event("a", "ok"), event("a", "ok"), body]);
        let response = app.post_json(batch).await;
        response.expect_error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            Some("[2].level"),
        );

        let lines = ndjson(&[event("a", "ok"), event("a", "ok"), body]);
        let response = app.post_ndjson(&lines).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("line 3"));
    }
}

async fn fields_must_map_strings(app: TestApp) {
    let invalid = [
        (json!({"key": 1}), "fields.key"),
        (json!({"key": null}), "fields.key"),
        (json!({"key": true}), "fields.key"),
        (json!({"key": {"nested": "x"}}), "fields.key"),
        (json!(["a"]), "fields"),
        (json!("a=b"), "fields"),
        (json!({"": "v"}), "fields"),
    ];
    for (fields, field) in invalid {
        let body = json!({"source": "a", "message": "m", "fields": fields});
        let response = app.post_json(body.clone()).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));

        let mut batch = vec![event("a", "ok"); 3];
        batch.push(body.clone());
        let response = app.post_json(Value::Array(batch.clone())).await;
        let path = format!("[3].{field}");
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(&path));

        let response = app.post_ndjson(&ndjson(&batch)).await;
        let error =
            response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("line 4"));
        let message = error["message"].as_str().expect("message");
        assert!(message.contains(field), "{message}");
    }

    let duplicate = r#"{"source": "a", "message": "m", "fields": {"k": "first", "k": "last"}}"#;
    expect_counts(&app.post(Some(JSON), duplicate).await, 1, 0);
    assert_eq!(app.recent("").await[0]["fields"], json!({"k": "last"}));
}

async fn wrong_types_are_rejected(app: TestApp) {
    let invalid = [
        (json!({"source": 5, "message": "m"}), "source"),
        (json!({"source": "a", "message": true}), "message"),
        (json!({"source": "a", "message": ["m"]}), "message"),
        (
            json!({"source": "a", "message": "m", "timestamp": 1700000000}),
            "timestamp",
        ),
        (
            json!({"source": "a", "message": "m", "timestamp": "yesterday"}),
            "timestamp",
        ),
        (
            json!({"source": "a", "message": "m", "timestamp": "2024-13-01T00:00:00Z"}),
            "timestamp",
        ),
        (json!({"source": "a", "message": "a\u{0}b"}), "message"),
        (
            json!({"source": "a", "message": "m", "fields": {"k": "\u{0}"}}),
            "fields.k",
        ),
        (json!({"source": "line\nbreak", "message": "m"}), "source"),
        (json!({"source": "x".repeat(257), "message": "m"}), "source"),
    ];
    for (body, field) in invalid {
        let response = app.post_json(body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }

    let response = app.post_json(json!([event("a", "m"), 5])).await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("[1]"));
}

async fn invalid_utf8_is_rejected(app: TestApp) {
    let json_body = b"[{\"source\": \"a\", \"message\": \"caf\xe9\"}]".to_vec();
    let response = app.post(Some(JSON), json_body).await;
    let error = response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("UTF-8")),
        "{error}"
    );

    let mut lines = ndjson(&[event("a", "one"), event("a", "two")]).into_bytes();
    lines.extend_from_slice(b"{\"source\": \"a\", \"message\": \"\xc3\x28\"}\n");
    let response = app.post(Some(NDJSON), lines).await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("line 3"));

    let field_value =
        b"{\"source\": \"a\", \"message\": \"m\", \"fields\": {\"k\": \"\xff\"}}".to_vec();
    let response = app.post(Some(JSON), field_value).await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);

    assert!(
        app.recent("").await.is_empty(),
        "nothing is truncated and kept"
    );
}

async fn malformed_bodies_are_rejected(app: TestApp) {
    for body in ["{\"source\": ", "\"text\"", "42", "{} {}", "[{}"] {
        let response = app.post(Some(JSON), body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);
    }

    let lines = format!("{}\n{{\"source\": }}\n", event("a", "ok"));
    let response = app.post_ndjson(&lines).await;
    let error = response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("line 2"));
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("line 2")),
        "{error}"
    );

    for line in ["[1, 2]", "\"text\"", "{} {}"] {
        let response = app.post_ndjson(line).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("line 1"));
    }
}

async fn empty_batches_are_rejected(app: TestApp) {
    for body in ["[]", " [ ] ", ""] {
        let response = app.post(Some(JSON), body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);
    }
    for body in ["", "\n", "\r\n  \n\n"] {
        let response = app.post(Some(NDJSON), body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);
    }
}

async fn other_content_types_are_unsupported(app: TestApp) {
    let body = event("a", "m").to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/xml"),
        Some("application/jsonl"),
    ] {
        let response = app.post(content_type, body.clone()).await;
        response.expect_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }

    let response = app.client.get("/logs").send().await;
    response.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
    assert!(app.recent("").await.is_empty());
}

async fn oversized_body_is_rejected(app: TestApp) {
    let message = "x".repeat(HttpLimits::default().max_body);
    let response = app.post_json(event("a", &message)).await;
    response.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
}

async fn invalid_event_rejects_whole_batch(app: TestApp) {
    let batch = vec![
        event("a", "one"),
        event("a", "two"),
        json!({"source": "a", "message": "m", "level": "loud"}),
    ];
    let response = app.post_json(Value::Array(batch.clone())).await;
    response.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("[2].level"),
    );
    let response = app.post_ndjson(&ndjson(&batch)).await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("line 3"));

    assert!(app.recent("").await.is_empty());
    assert!(app.recorder.records().is_empty());
}

async fn min_level_filters_and_counts(app: TestApp) {
    let app = app.with_settings(Settings {
        min_level: Level::Warn,
        ..Settings::default()
    });
    let batch: Vec<Value> = ["debug", "INFO", "warn", "Warning", "error"]
        .iter()
        .map(|level| json!({"source": "a", "message": level, "level": level}))
        .collect();

    expect_counts(&app.post_json(Value::Array(batch.clone())).await, 3, 2);
    expect_counts(&app.post_ndjson(&ndjson(&batch)).await, 3, 2);
    expect_counts(&app.post_json(batch[0].clone()).await, 0, 1);
    expect_counts(&app.post_json(event("a", "defaults to info")).await, 0, 1);

    let messages = app.recent_messages("").await;
    assert_eq!(
        messages,
        ["warn", "Warning", "error", "warn", "Warning", "error"]
    );
    assert_eq!(app.recorder.messages(), messages);
}

async fn full_queue_rejects_whole_batch(app: TestApp) {
    let (gate, app) = app.gated(Settings {
        queue_size: nonzero(4),
        ..Settings::default()
    });

    // The recording sink keeps these three waiting, so they keep their place in the queue.
    let first = ndjson(&[
        event("a", "kept 1"),
        event("a", "kept 2"),
        event("a", "kept 3"),
    ]);
    expect_counts(&app.post_ndjson(&first).await, 3, 0);

    let rejected = json!([event("a", "rejected 1"), event("a", "rejected 2")]);
    let response = app.post_json(rejected).await;
    response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    assert!(response.header("retry-after").is_some());

    let too_large = ndjson(&vec![event("a", "never fits"); 5]);
    let response = app.post_ndjson(&too_large).await;
    response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);

    expect_counts(&app.post_json(event("a", "kept 4")).await, 1, 0);

    // With no room at all, bodies are rejected before they are read.
    for body in [
        json!({"source": "a"}),
        json!({"source": "a", "message": "m", "level": "debug"}),
    ] {
        let response = app.post_json(body).await;
        response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
        assert!(
            response.text().contains("the queue is full: 4 of 4"),
            "{}",
            response.text()
        );
    }

    gate.open();
    let expected = ["kept 1", "kept 2", "kept 3", "kept 4"];
    assert_eq!(app.recent_messages("").await, expected);
    assert_eq!(app.recorder.messages(), expected);

    let accepted_later = json!([event("a", "kept 5"), event("a", "kept 6")]);
    expect_counts(&app.post_json(accepted_later).await, 2, 0);
}

async fn recent_filters_by_source_and_level(app: TestApp) {
    let batch = json!([
        {"source": "api", "message": "api debug", "level": "debug"},
        {"source": "api", "message": "api info"},
        {"source": "db", "message": "db warn", "level": "warn"},
        {"source": "api", "message": "api error", "level": "error"},
        {"source": "db", "message": "db info", "level": "info"},
        {"source": "apis", "message": "apis error", "level": "error"},
    ]);
    let app = app.with_settings(Settings {
        min_level: Level::Debug,
        ..Settings::default()
    });
    expect_counts(&app.post_json(batch).await, 6, 0);

    assert_eq!(
        app.recent_messages("?source=api").await,
        ["api debug", "api info", "api error"]
    );
    assert_eq!(
        app.recent_messages("?level=warning").await,
        ["db warn", "api error", "apis error"]
    );
    assert_eq!(
        app.recent_messages("?source=api&level=INFO").await,
        ["api info", "api error"]
    );
    assert_eq!(
        app.recent_messages("?source=db&level=error").await,
        Vec::<String>::new()
    );
    assert_eq!(app.recent_messages("?source=").await.len(), 6);
}

async fn recent_returns_newest_oldest_first(app: TestApp) {
    for index in 0..5 {
        app.clock.advance(Duration::from_millis(10));
        let level = if index % 2 == 0 { "error" } else { "info" };
        let body = json!({"source": "a", "message": format!("m{index}"), "level": level});
        expect_counts(&app.post_json(body).await, 1, 0);
    }

    assert_eq!(app.recent_messages("?limit=2").await, ["m3", "m4"]);
    assert_eq!(
        app.recent_messages("?limit=2&level=error").await,
        ["m2", "m4"]
    );
    assert_eq!(app.recent_messages("?limit=1").await, ["m4"]);
    assert_eq!(
        app.recent_messages("?limit=200").await,
        ["m0", "m1", "m2", "m3", "m4"]
    );

    let recent = app.recent("").await;
    let received: Vec<&str> = recent
        .iter()
        .map(|record| record["received_at"].as_str().expect("received_at"))
        .collect();
    let mut sorted = received.clone();
    sorted.sort();
    assert_eq!(received, sorted);
}

async fn recent_limit_defaults_to_capacity(app: TestApp) {
    let app = app.with_settings(Settings {
        recent_capacity: nonzero(3),
        ..Settings::default()
    });
    let batch: Vec<Value> = (0..5)
        .map(|index| event("a", &format!("m{index}")))
        .collect();
    expect_counts(&app.post_json(Value::Array(batch)).await, 5, 0);

    assert_eq!(app.recent_messages("").await, ["m2", "m3", "m4"]);
    assert_eq!(app.recent_messages("?limit=3").await, ["m2", "m3", "m4"]);
    let response = app.client.get("/logs/recent?limit=4").send().await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("limit"));
}

async fn recent_rejects_bad_parameters(app: TestApp) {
    let cases = [
        ("?limit=0", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=201", "limit"),
        ("?limit=many", "limit"),
        ("?limit=1.5", "limit"),
        ("?level=loud", "level"),
        ("?level=5", "level"),
    ];
    for (query, field) in cases {
        let response = app.client.get(&format!("/logs/recent{query}")).send().await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
}

async fn recent_supports_head(app: TestApp) {
    expect_counts(&app.post_json(event("a", "m")).await, 1, 0);
    app.settle().await;
    let response = app
        .client
        .request(Method::HEAD, "/logs/recent")
        .send()
        .await;
    response.expect_status(StatusCode::OK);
    assert!(response.body.is_empty());
    assert_eq!(app.recent("").await.len(), 1);
}

async fn shutdown_delivers_every_event(app: TestApp) {
    let (gate, app) = app.gated(Settings {
        queue_size: nonzero(1000),
        ..Settings::default()
    });
    let mut expected = Vec::new();
    for request in 0..5 {
        let batch: Vec<Value> = (0..100)
            .map(|index| event("a", &format!("r{request} e{index}")))
            .collect();
        expected.extend(batch.iter().map(message_of));
        expect_counts(&app.post_ndjson(&ndjson(&batch)).await, 100, 0);
    }

    let workers = app.workers.clone();
    let stopping = tokio::spawn(async move {
        workers
            .stop(tokio::time::Instant::now() + DELIVERY_TIMEOUT)
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!stopping.is_finished(), "the stop waits for the held sink");
    gate.open();
    assert!(stopping.await.expect("no panic"), "workers drained in time");

    assert_eq!(app.recorder.messages(), expected);
    let sequences: Vec<u64> = app
        .recorder
        .records()
        .iter()
        .map(|record| record.sequence)
        .collect();
    assert!(sequences.windows(2).all(|pair| pair[1] == pair[0] + 1));
    let stored = app.recent("").await;
    assert_eq!(stored.len(), 200);
    assert_eq!(message_of(&stored[199]), "r4 e99");
}

async fn shutdown_grace_reports_backlog(app: TestApp) {
    let (_gate, app) = app.gated(Settings::default());
    let batch = vec![event("a", "held"); 7];
    expect_counts(&app.post_json(Value::Array(batch)).await, 7, 0);
    let store_delivered = async {
        while app.pipeline.backlog()[0].1 > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(DELIVERY_TIMEOUT, store_delivered)
        .await
        .expect("the store takes its delivery");

    let drained = app
        .workers
        .stop(tokio::time::Instant::now() + Duration::from_millis(300))
        .await;
    assert!(!drained, "the held sink cannot finish");
    let backlog = app.pipeline.backlog();
    assert_eq!(backlog.len(), 2);
    assert_eq!(backlog[0].1, 0, "the store took its delivery: {backlog:?}");
    assert_eq!(backlog[1], ("recording", 7));
}

async fn retention_sweep_deletes_expired(app: TestApp) {
    let app = app.with_settings(Settings {
        retention: Duration::from_secs(3600),
        retention_sweep_batch: nonzero(2),
        ..Settings::default()
    });
    let old = ndjson(&[
        event("a", "old 1"),
        event("a", "old 2"),
        event("a", "old 3"),
    ]);
    expect_counts(&app.post_ndjson(&old).await, 3, 0);
    app.settle().await;

    app.clock.advance(Duration::from_secs(3000));
    expect_counts(&app.post_json(event("a", "new")).await, 1, 0);
    app.settle().await;
    assert_eq!(app.pipeline.sweep_expired().await.expect("sweep"), 0);

    app.clock.advance(Duration::from_secs(601));
    assert_eq!(app.pipeline.sweep_expired().await.expect("sweep"), 3);
    assert_eq!(app.recent_messages("").await, ["new"]);
    assert_eq!(app.pipeline.sweep_expired().await.expect("sweep"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_definition_serves_logs() {
    let settings = platform::config::Loader::from_values(
        logs::SERVICE.config,
        &[("stdout", "false"), ("min_level", "error")],
    );
    let context = platform::server::test_context(
        logs::SERVICE.name,
        settings,
        Backend::Memory,
        ManualClock::starting_now(),
    )
    .expect("valid settings");
    let service = (logs::SERVICE.build)(context).await.expect("builds");
    assert!(service.backlog.is_some(), "undelivered events are reported");
    let client = TestClient::new(app(
        service.routes,
        Readiness::Always,
        HttpLimits::default(),
    ));

    let body = json!([event("a", "info"), {"source": "a", "message": "error", "level": "error"}]);
    let response = client.post("/logs").json(&body).send().await;
    expect_counts(&response, 1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_min_level_stops_startup() {
    let settings =
        platform::config::Loader::from_values(logs::SERVICE.config, &[("min_level", "verbose")]);
    let context = platform::server::test_context(
        logs::SERVICE.name,
        settings,
        Backend::Memory,
        ManualClock::starting_now(),
    )
    .expect("common settings are valid");
    let Err(error) = (logs::SERVICE.build)(context).await else {
        panic!("an unknown minimum level must stop startup");
    };
    let message = error.to_string();
    assert!(message.contains("min_level"), "{message}");
    assert!(message.contains("verbose"), "{message}");
}
