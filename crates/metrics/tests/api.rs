//! The collector's HTTP contract, run against the memory store and against Postgres.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use metrics::{Collector, Settings, routes, store_for};
use platform::Backend;
use platform::Timestamp;
use platform::http::{HttpLimits, Readiness, app};
use platform::testing::{TestClient, TestDatabase, TestResponse};
use platform::time::ManualClock;
use serde_json::{Value, json};

/// Every test starts at a bucket boundary of the default 60 s interval.
const START: &str = "2030-01-01T00:00:00Z";

struct TestApp {
    client: TestClient,
    clock: Arc<ManualClock>,
    collector: Arc<Collector>,
}

impl TestApp {
    async fn memory() -> Self {
        Self::with_backend(Backend::Memory, Settings::default())
    }

    async fn postgres() -> Self {
        let database = TestDatabase::create().await;
        Self::with_backend(Backend::Postgres(database.pool), Settings::default())
    }

    fn with_backend(backend: Backend, settings: Settings) -> Self {
        let clock = ManualClock::new(timestamp(START));
        let store = store_for(&backend, &settings);
        let collector = Arc::new(Collector::new(store, clock.clone(), &settings));
        let readiness = match &backend {
            Backend::Memory => Readiness::Always,
            Backend::Postgres(pool) => Readiness::Postgres(pool.clone()),
        };
        let router = app(
            routes::router(collector.clone()),
            readiness,
            HttpLimits::default(),
        );
        TestApp {
            client: TestClient::new(router),
            clock,
            collector,
        }
    }

    async fn ingest(&self, body: Value) -> TestResponse {
        self.client.post("/metrics/ingest").json(&body).send().await
    }

    async fn ingest_raw(&self, body: &str) -> TestResponse {
        self.client
            .post("/metrics/ingest")
            .body(Some("application/json"), body.to_string())
            .send()
            .await
    }

    async fn accept(&self, body: Value) -> Value {
        let response = self.ingest(body).await;
        response.expect_status(StatusCode::ACCEPTED);
        response.json()
    }

    async fn summary(&self, query: &str) -> Value {
        let response = self
            .client
            .get(&format!("/metrics/summary{query}"))
            .send()
            .await;
        response.expect_status(StatusCode::OK);
        response.json()
    }

    async fn count(&self, query: &str, series: &str) -> Option<u64> {
        self.summary(query).await[series]["count"].as_u64()
    }
}

fn timestamp(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("valid timestamp")
}

fn sample(name: &str, value: f64) -> Value {
    json!({"namespace": "game", "name": name, "value": value})
}

platform::store_suite!(TestApp;
    single_sample_is_exact_everywhere,
    single_ingest_returns_updated_summary,
    batch_returns_accepted_count,
    batch_is_all_or_nothing,
    empty_batch_is_rejected,
    missing_fields_are_named,
    value_must_be_finite_number,
    names_must_use_allowed_characters,
    labels_are_checked,
    duplicate_label_is_rejected,
    timestamp_outside_accepted_range,
    body_must_be_json,
    oversized_body_is_rejected,
    identity_sorts_and_escapes_labels,
    summary_filters_by_namespace_and_name,
    window_covers_recent_buckets,
    summary_rejects_bad_parameters,
    retention_drops_old_data,
    quantiles_within_stated_error,
    last_is_newest_timestamp,
    summary_is_empty_object_without_data,
    wrong_methods_are_not_allowed,
);

async fn single_sample_is_exact_everywhere(app: TestApp) {
    let summary = app
        .accept(json!({"namespace": "game", "name": "latency_ms", "value": 1234}))
        .await;
    assert_eq!(summary["count"], 1);
    for field in ["min", "max", "sum", "mean", "p50", "p90", "p95", "p99"] {
        assert_eq!(summary[field].as_f64(), Some(1234.0), "{field}: {summary}");
    }
    assert_eq!(summary["last"], "2030-01-01T00:00:00.000000Z");

    let listed = app.summary("").await;
    assert_eq!(listed, json!({"game.latency_ms{}": summary}));
}

async fn single_ingest_returns_updated_summary(app: TestApp) {
    app.accept(sample("hits", 5.0)).await;
    app.clock.advance(Duration::from_secs(90));
    let summary = app
        .accept(json!({"namespace": "game", "name": "hits", "value": -3, "labels": null, "timestamp": null}))
        .await;
    assert_eq!(summary["count"], 2);
    assert_eq!(summary["min"].as_f64(), Some(-3.0));
    assert_eq!(summary["max"].as_f64(), Some(5.0));
    assert_eq!(summary["sum"].as_f64(), Some(2.0));
    assert_eq!(summary["mean"].as_f64(), Some(1.0));
    assert_eq!(summary["last"], "2030-01-01T00:01:30.000000Z");
    // Nearest rank: of two samples, the median is the lower and p90 and above the higher.
    let close_to = |field: &str, exact: f64| {
        let estimate = summary[field].as_f64().expect("number");
        assert!(
            (estimate - exact).abs() <= 0.01 * exact.abs(),
            "{field}: {estimate}"
        );
    };
    close_to("p50", -3.0);
    close_to("p90", 5.0);
    close_to("p99", 5.0);
    let keys: Vec<&str> = summary
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected = [
        "count", "last", "max", "mean", "min", "p50", "p90", "p95", "p99", "sum",
    ];
    assert_eq!(keys, expected, "every field, in sorted order");
}

async fn batch_returns_accepted_count(app: TestApp) {
    let body = json!([
        sample("a", 1.0),
        sample("a", 2.0),
        {"namespace": "game", "name": "b", "value": 3, "labels": {"region": "eu"}},
    ]);
    assert_eq!(app.accept(body).await, json!({"accepted": 3}));
    assert_eq!(app.count("", "game.a{}").await, Some(2));
    assert_eq!(app.count("", "game.b{region=eu}").await, Some(1));
}

async fn batch_is_all_or_nothing(app: TestApp) {
    let bad_items = [
        (
            json!({"namespace": "game", "name": "a", "value": "high"}),
            "[3].value",
        ),
        (json!({"namespace": "game", "name": "a"}), "[3].value"),
        (json!({"namespace": "game", "value": 1}), "[3].name"),
        (
            json!({"namespace": "game", "name": "a", "value": 1, "labels": {"9": "x"}}),
            "[3].labels.9",
        ),
        (
            json!({"namespace": "game", "name": "a", "value": 1, "timestamp": "2000-01-01T00:00:00Z"}),
            "[3].timestamp",
        ),
        (json!(7), "[3]"),
    ];
    for (bad, field) in bad_items {
        let body = json!([sample("a", 1.0), sample("a", 2.0), sample("b", 3.0), bad]);
        let response = app.ingest(body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
    assert_eq!(app.summary("").await, json!({}));

    let response = app.ingest_raw(r#"[{"namespace": "game", "name": "a", "value": 1}, {"namespace": "game", "name": "a", "value": 1e999}]"#).await;
    response.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("[1].value"),
    );
    assert_eq!(app.summary("").await, json!({}));
}

async fn empty_batch_is_rejected(app: TestApp) {
    let response = app.ingest(json!([])).await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);
}

async fn missing_fields_are_named(app: TestApp) {
    let cases = [
        (json!({"name": "n", "value": 1}), "namespace"),
        (
            json!({"namespace": "", "name": "n", "value": 1}),
            "namespace",
        ),
        (
            json!({"namespace": null, "name": "n", "value": 1}),
            "namespace",
        ),
        (json!({"namespace": "ns", "value": 1}), "name"),
        (json!({"namespace": "ns", "name": "", "value": 1}), "name"),
        (json!({"namespace": "ns", "name": "n"}), "value"),
        (
            json!({"namespace": "ns", "name": "n", "value": null}),
            "value",
        ),
        (json!({}), "namespace"),
    ];
    for (body, field) in cases {
        let response = app.ingest(body.clone()).await;
        let error = response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
        assert!(
            error["message"].as_str().expect("message").contains(field),
            "{body}: {error}"
        );
    }
}

async fn value_must_be_finite_number(app: TestApp) {
    for value in [
        json!("12"),
        json!(true),
        json!(false),
        json!([1]),
        json!({"v": 1}),
    ] {
        let response = app
            .ingest(json!({"namespace": "ns", "name": "n", "value": value}))
            .await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("value"));
    }
    for value in ["1e999", "-1e999", "1e400", "123e308"] {
        let body = format!(r#"{{"namespace": "ns", "name": "n", "value": {value}}}"#);
        let response = app.ingest_raw(&body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("value"));
    }
    assert_eq!(app.summary("").await, json!({}));

    let largest = app
        .accept(json!({"namespace": "ns", "name": "n", "value": f64::MAX}))
        .await;
    assert_eq!(largest["max"].as_f64(), Some(f64::MAX));
    let integer = app
        .accept(json!({"namespace": "ns", "name": "i", "value": 12345678901234567890u64}))
        .await;
    assert_eq!(integer["count"], 1);
}

async fn names_must_use_allowed_characters(app: TestApp) {
    let long = "n".repeat(129);
    let texts = [
        json!("has space"),
        json!("brace{"),
        json!("comma,"),
        json!("é"),
        json!(long),
        json!(5),
    ];
    for text in texts {
        for field in ["namespace", "name"] {
            let mut body = json!({"namespace": "ns", "name": "n", "value": 1});
            body[field] = text.clone();
            let response = app.ingest(body).await;
            response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
        }
    }
    assert_eq!(app.summary("").await, json!({}));

    let edge = "n".repeat(128);
    app.accept(json!({"namespace": "a-b_c.d:e", "name": edge, "value": 1}))
        .await;
}

async fn labels_are_checked(app: TestApp) {
    let with_labels =
        |labels: Value| json!({"namespace": "ns", "name": "n", "value": 1, "labels": labels});
    let too_many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("l{i}"), json!("v"))).collect();
    let cases = [
        (json!({"9lives": "x"}), "labels.9lives"),
        (json!({"has-dash": "x"}), "labels.has-dash"),
        (json!({"": "x"}), "labels."),
        (json!({"route": 5}), "labels.route"),
        (json!({"route": null}), "labels.route"),
        (json!({"route": "v".repeat(1025)}), "labels.route"),
        (json!(["route"]), "labels"),
        (json!("route=x"), "labels"),
        (Value::Object(too_many), "labels"),
    ];
    for (labels, field) in cases {
        let response = app.ingest(with_labels(labels.clone())).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }

    let at_limit: serde_json::Map<String, Value> = (0..32)
        .map(|i| (format!("l{i}"), json!("v".repeat(1024))))
        .collect();
    app.accept(with_labels(Value::Object(at_limit))).await;
    app.accept(with_labels(json!({"_": "", "A9": "x"}))).await;
    assert_eq!(app.count("", "ns.n{A9=x,_=}").await, Some(1));
}

async fn duplicate_label_is_rejected(app: TestApp) {
    let body = r#"{"namespace": "ns", "name": "n", "value": 1, "labels": {"route": "/a", "zone": "z", "route": "/b"}}"#;
    let response = app.ingest_raw(body).await;
    let error = response.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("labels.route"),
    );
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("more than once")
    );

    let batch = format!(
        r#"[{{"namespace": "ns", "name": "n", "value": 1}}, {}]"#,
        body
    );
    let response = app.ingest_raw(&batch).await;
    response.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("[1].labels.route"),
    );
    assert_eq!(app.summary("").await, json!({}));
}

async fn timestamp_outside_accepted_range(app: TestApp) {
    let at = |text: &str| json!({"namespace": "ns", "name": "n", "value": 1, "timestamp": text});
    let rejected = [
        "yesterday",
        "2030-01-01 00:00:00",
        "2029-12-30T23:59:59Z",
        "2030-01-01T00:10:00.000001Z",
        "2030-01-01T01:10:01+01:00",
    ];
    for text in rejected {
        let response = app.ingest(at(text)).await;
        response.expect_error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            Some("timestamp"),
        );
    }
    let response = app
        .ingest(json!({"namespace": "ns", "name": "n", "value": 1, "timestamp": 1_700_000_000}))
        .await;
    response.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("timestamp"),
    );
    assert_eq!(app.summary("").await, json!({}));

    let oldest = app.accept(at("2029-12-31T00:00:00Z")).await;
    assert_eq!(oldest["last"], "2029-12-31T00:00:00.000000Z");
    let newest = app.accept(at("2030-01-01T01:10:00+01:00")).await;
    assert_eq!(newest["last"], "2030-01-01T00:10:00.000000Z");
    assert_eq!(newest["count"], 2);
}

async fn body_must_be_json(app: TestApp) {
    let body = r#"{"namespace": "ns", "name": "n", "value": 1}"#;
    for content_type in [None, Some("text/plain")] {
        let response = app
            .client
            .post("/metrics/ingest")
            .body(content_type, body)
            .send()
            .await;
        response.expect_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }
    for malformed in [
        r#"{"namespace": "#,
        "",
        "42",
        r#""sample""#,
        "null",
        "{} {}",
    ] {
        let response = app.ingest_raw(malformed).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);
    }
}

async fn oversized_body_is_rejected(app: TestApp) {
    let filler = "x".repeat(1024 * 1024);
    let body = json!({"namespace": "ns", "name": "n", "value": 1, "padding": filler});
    let response = app.ingest(body).await;
    response.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
}

async fn identity_sorts_and_escapes_labels(app: TestApp) {
    let labels = json!({"zone": "1", "app": r"x,y=z}\w", "mid": "plain{"});
    app.accept(json!({"namespace": "ns", "name": "n", "value": 1, "labels": labels}))
        .await;
    app.accept(
        json!({"namespace": "ns", "name": "n", "value": 2, "labels": {"app": "x", "y": "z"}}),
    )
    .await;
    app.accept(json!({"namespace": "ns", "name": "n", "value": 3, "labels": {}}))
        .await;
    let summary = app.summary("").await;
    let keys: Vec<&str> = summary
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec![
            r"ns.n{app=x,y=z}",
            r"ns.n{app=x\,y\=z\}\\w,mid=plain{,zone=1}",
            "ns.n{}",
        ]
    );
}

async fn summary_filters_by_namespace_and_name(app: TestApp) {
    let body = json!([
        {"namespace": "game", "name": "latency", "value": 1},
        {"namespace": "game", "name": "errors", "value": 1},
        {"namespace": "auth", "name": "latency", "value": 1},
        {"namespace": "auth", "name": "latency", "value": 1, "labels": {"k": "v"}},
    ]);
    app.accept(body).await;

    let keys = |summary: Value| -> Vec<String> {
        summary
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(
        keys(app.summary("?namespace=game").await),
        ["game.errors{}", "game.latency{}"]
    );
    assert_eq!(
        keys(app.summary("?name=latency").await),
        ["auth.latency{k=v}", "auth.latency{}", "game.latency{}"]
    );
    assert_eq!(
        keys(app.summary("?namespace=auth&name=latency").await),
        ["auth.latency{k=v}", "auth.latency{}"]
    );
    assert_eq!(
        keys(app.summary("?namespace=game&name=missing").await),
        Vec::<String>::new()
    );
    assert_eq!(keys(app.summary("?namespace=&name=").await).len(), 4);
}

async fn window_covers_recent_buckets(app: TestApp) {
    // One sample in each of three consecutive buckets; "old" only in the first.
    app.accept(json!([sample("steady", 1.0), sample("old", 1.0)]))
        .await;
    app.clock.advance(Duration::from_secs(60));
    app.accept(sample("steady", 2.0)).await;
    app.clock.advance(Duration::from_secs(60));
    app.accept(sample("steady", 4.0)).await;

    assert_eq!(app.count("", "game.steady{}").await, Some(3));
    assert_eq!(app.count("?window=2m", "game.steady{}").await, Some(3));
    assert_eq!(app.count("?window=1m", "game.steady{}").await, Some(2));
    assert_eq!(app.count("?window=30s", "game.steady{}").await, Some(2));
    let recent = app.summary("?window=1m").await;
    assert!(
        recent.get("game.old{}").is_none(),
        "no samples in the window: {recent}"
    );
    assert_eq!(recent["game.steady{}"]["min"].as_f64(), Some(2.0));

    // The current bucket counts while it is still filling.
    app.clock.advance(Duration::from_secs(59));
    assert_eq!(app.count("?window=1s", "game.steady{}").await, Some(1));
    app.clock.advance(Duration::from_secs(2));
    assert_eq!(app.count("?window=1s", "game.steady{}").await, None);
    assert_eq!(app.count("?window=61s", "game.steady{}").await, Some(1));
    assert_eq!(app.count("?window=1h", "game.steady{}").await, Some(3));
}

async fn summary_rejects_bad_parameters(app: TestApp) {
    let cases = [
        ("?window=0", "window"),
        ("?window=0s", "window"),
        ("?window=soon", "window"),
        ("?window=-5m", "window"),
        ("?window=25h", "window"),
        ("?window=24h1s", "window"),
        ("?namespace=bad%20name", "namespace"),
        ("?name=a%7Bb", "name"),
    ];
    for (query, field) in cases {
        let response = app
            .client
            .get(&format!("/metrics/summary{query}"))
            .send()
            .await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
    app.summary("?window=24h").await;
    app.summary("?window=90").await;
}

async fn retention_drops_old_data(app: TestApp) {
    app.accept(sample("old", 1.0)).await;
    app.clock.advance(Duration::from_secs(12 * 3600));
    app.accept(sample("young", 1.0)).await;

    app.clock.advance(Duration::from_secs(12 * 3600));
    assert_eq!(
        app.count("", "game.old{}").await,
        Some(1),
        "exactly 24h old"
    );
    app.clock.advance(Duration::from_secs(60));
    let summary = app.summary("").await;
    assert!(summary.get("game.old{}").is_none(), "{summary}");
    assert_eq!(summary["game.young{}"]["count"], 1);

    app.collector.sweep().await.expect("sweep");
    let summary = app.summary("").await;
    assert!(summary.get("game.old{}").is_none(), "{summary}");
    assert_eq!(summary["game.young{}"]["count"], 1);
    app.clock.advance(Duration::from_secs(12 * 3600));
    app.collector.sweep().await.expect("sweep");
    assert_eq!(app.summary("").await, json!({}));
    assert_eq!(app.accept(sample("old", 7.0)).await["count"], 1);
}

async fn quantiles_within_stated_error(app: TestApp) {
    // 1..=1000 shuffled deterministically over five buckets.
    let mut values: Vec<u32> = (1..=1000).collect();
    let mut state = 7u32;
    for i in (1..values.len()).rev() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        values.swap(i, (state as usize >> 8) % (i + 1));
    }
    for chunk in values.chunks(200) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|&v| sample("spread", f64::from(v)))
            .collect();
        app.accept(Value::Array(batch)).await;
        app.clock.advance(Duration::from_secs(60));
    }

    let summary = &app.summary("").await["game.spread{}"];
    assert_eq!(summary["count"], 1000);
    assert_eq!(summary["min"].as_f64(), Some(1.0));
    assert_eq!(summary["max"].as_f64(), Some(1000.0));
    assert_eq!(summary["sum"].as_f64(), Some(500_500.0));
    assert_eq!(summary["mean"].as_f64(), Some(500.5));
    // The p-quantile is the ceil(p * n)-th smallest value (nearest rank).
    for (field, exact) in [
        ("p50", 500.0),
        ("p90", 900.0),
        ("p95", 950.0),
        ("p99", 990.0),
    ] {
        let estimate = summary[field].as_f64().expect("number");
        let error = (estimate - exact).abs() / exact;
        assert!(
            error <= metrics::sketch::RELATIVE_ACCURACY,
            "{field}: {estimate} vs {exact}"
        );
    }
}

async fn last_is_newest_timestamp(app: TestApp) {
    let at = |text: &str| json!({"namespace": "ns", "name": "n", "value": 1, "timestamp": text});
    app.accept(json!([
        at("2029-12-31T23:55:00.123456789Z"),
        at("2029-12-31T23:50:00Z")
    ]))
    .await;
    let summary = app.summary("").await;
    assert_eq!(summary["ns.n{}"]["last"], "2029-12-31T23:55:00.123456Z");
    let latest = app.accept(at("2029-12-31T23:56:00Z")).await;
    assert_eq!(latest["last"], "2029-12-31T23:56:00.000000Z");
}

async fn summary_is_empty_object_without_data(app: TestApp) {
    assert_eq!(app.summary("").await, json!({}));
    assert_eq!(app.summary("?namespace=ns&window=5m").await, json!({}));
    let head = app
        .client
        .request(axum::http::Method::HEAD, "/metrics/summary")
        .send()
        .await;
    head.expect_status(StatusCode::OK);
}

async fn wrong_methods_are_not_allowed(app: TestApp) {
    let response = app.client.get("/metrics/ingest").send().await;
    response.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
    assert!(
        response
            .header("allow")
            .is_some_and(|allow| allow.contains("POST"))
    );
    let response = app
        .client
        .request(axum::http::Method::HEAD, "/metrics/ingest")
        .send()
        .await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    let response = app
        .client
        .post("/metrics/summary")
        .json(&json!({}))
        .send()
        .await;
    response.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
}

#[tokio::test]
async fn series_cap_answers_429_in_memory() {
    let settings = Settings {
        max_series: 2,
        ..Settings::default()
    };
    let app = TestApp::with_backend(Backend::Memory, settings);
    app.accept(json!([sample("a", 1.0), sample("b", 1.0)]))
        .await;

    let response = app.ingest(sample("c", 1.0)).await;
    response.expect_error(StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", None);
    assert_eq!(response.header("retry-after"), Some("60"));

    let response = app
        .ingest(json!([sample("a", 1.0), sample("c", 1.0)]))
        .await;
    response.expect_error(StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", None);
    assert_eq!(
        app.count("", "game.a{}").await,
        Some(1),
        "nothing of the batch was recorded"
    );
    assert!(app.summary("").await.get("game.c{}").is_none());

    assert_eq!(app.accept(sample("a", 2.0)).await["count"], 2);

    // Once a's and b's buckets expire, their slots are free again.
    app.clock.advance(Duration::from_secs(24 * 3600 + 60));
    app.collector.sweep().await.expect("sweep");
    app.accept(json!([sample("c", 1.0), sample("d", 1.0)]))
        .await;
}
