//! The UGC Service's HTTP contract, run against the memory store and against Postgres.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use content::{ContentService, Settings, routes, store_for};
use platform::Backend;
use platform::http::{HttpLimits, Readiness, app};
use platform::testing::{TestClient, TestDatabase, TestResponse};
use platform::time::ManualClock;
use serde_json::{Value, json};

struct TestApp {
    client: TestClient,
    clock: Arc<ManualClock>,
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
        let clock = ManualClock::starting_now();
        let store = store_for(&backend, &settings);
        let service = Arc::new(ContentService::new(store, clock.clone()));
        let readiness = match &backend {
            Backend::Memory => Readiness::Always,
            Backend::Postgres(pool) => Readiness::Postgres(pool.clone()),
        };
        let router = app(routes::router(service), readiness, HttpLimits::default());
        TestApp {
            client: TestClient::new(router),
            clock,
        }
    }

    async fn post(&self, path: &str, body: Value) -> TestResponse {
        self.client.post(path).json(&body).send().await
    }

    async fn get(&self, path: &str) -> TestResponse {
        self.client.get(path).send().await
    }

    /// Creates an item from `new_item(id, extra)` and expects success.
    async fn submit(&self, id: &str, extra: Value) -> Value {
        let response = self.post("/content", new_item(id, extra)).await;
        response.expect_status(StatusCode::CREATED);
        response.json()
    }

    async fn review(&self, id: &str, body: Value) -> TestResponse {
        self.post(&format!("/content/{id}/review"), body).await
    }

    /// Reviews an item into `state` and expects success.
    async fn move_to(&self, id: &str, state: &str) -> Value {
        let response = self.review(id, json!({"state": state})).await;
        response.expect_status(StatusCode::OK);
        response.json()
    }

    async fn item(&self, id: &str) -> Value {
        let response = self.get(&format!("/content/{id}")).await;
        response.expect_status(StatusCode::OK);
        response.json()
    }

    async fn history(&self, id: &str) -> Vec<Value> {
        let response = self.get(&format!("/content/{id}/reviews")).await;
        response.expect_status(StatusCode::OK);
        response.json()["reviews"]
            .as_array()
            .expect("reviews is an array")
            .clone()
    }

    /// Lists with a query string, expecting one page, and returns the ids in order.
    async fn listed(&self, query: &str) -> Vec<String> {
        let response = self.get(&format!("/content{query}")).await;
        response.expect_status(StatusCode::OK);
        let body = response.json();
        assert!(body.get("next_page_token").is_none(), "single page: {body}");
        ids_of(&body)
    }
}

/// A create body with the given id and every required field, then `extra` fields on top.
fn new_item(id: &str, extra: Value) -> Value {
    let mut body = json!({
        "content_id": id, "tenant_id": "t1", "project_id": "p1", "filename": "clip.mp4"
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

fn ids_of(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items is an array")
        .iter()
        .map(|item| item["content_id"].as_str().expect("id").to_string())
        .collect()
}

fn assert_timestamp(value: &Value) {
    let text = value.as_str().expect("timestamp is a string");
    assert!(
        text.ends_with('Z') && text.len() == 27,
        "RFC 3339 UTC with microseconds: {text}"
    );
}

platform::store_suite!(TestApp;
    create_returns_pending_item,
    create_fills_defaults_for_optional_fields,
    create_requires_fields,
    create_rejects_wrong_types,
    create_checks_size_bytes,
    create_checks_content_id_form,
    create_checks_field_limits,
    create_duplicate_id_is_conflict,
    create_rejects_missing_content_type,
    create_rejects_oversized_body,
    get_returns_created_item,
    unknown_or_malformed_id_is_not_found,
    legal_moves_follow_review_rules,
    illegal_moves_are_conflicts_naming_states,
    archived_is_final,
    same_state_updates_reason_only,
    review_reason_replaces_previous,
    review_accepts_protobuf_names,
    review_rejects_bad_input,
    review_rejects_missing_content_type,
    history_lists_reviews_oldest_first,
    history_is_empty_before_first_review,
    list_filters_and_orders_newest_first,
    list_pages_through_equal_timestamps,
    list_default_page_size_is_100,
    list_rejects_bad_parameters,
    head_and_unknown_methods,
    racing_reviews_form_a_chain,
);

async fn create_returns_pending_item(app: TestApp) {
    let item = app
        .submit(
            "asset-1",
            json!({
                "tenant_id": "tenant-a", "project_id": "project-b", "filename": "intro.png",
                "mime_type": "image/png", "size_bytes": 2048,
                "labels": {"lang": "en"}, "attributes": {"width": "640", "height": "480"}
            }),
        )
        .await;

    assert_eq!(item["content_id"], "asset-1");
    assert_eq!(item["tenant_id"], "tenant-a");
    assert_eq!(item["project_id"], "project-b");
    assert_eq!(item["filename"], "intro.png");
    assert_eq!(item["mime_type"], "image/png");
    assert_eq!(item["size_bytes"], 2048);
    assert_eq!(item["state"], "pending");
    assert_eq!(item["reason"], "");
    assert_eq!(item["labels"], json!({"lang": "en"}));
    assert_eq!(item["attributes"], json!({"width": "640", "height": "480"}));
    assert_eq!(item["submitted_at"], item["updated_at"]);
    assert_timestamp(&item["submitted_at"]);
    assert_timestamp(&item["updated_at"]);
}

async fn create_fills_defaults_for_optional_fields(app: TestApp) {
    let minimal = app.submit("minimal", json!({})).await;
    let nulls = app
        .submit(
            "nulls",
            json!({"mime_type": null, "size_bytes": null, "labels": null, "attributes": null}),
        )
        .await;

    for item in [minimal, nulls] {
        assert_eq!(item["mime_type"], "");
        assert_eq!(item["size_bytes"], 0);
        assert_eq!(item["reason"], "");
        assert_eq!(item["labels"], json!({}));
        assert_eq!(item["attributes"], json!({}));
    }
}

async fn create_requires_fields(app: TestApp) {
    let full = json!({
        "content_id": "c", "tenant_id": "t", "project_id": "p", "filename": "f"
    });
    for field in ["content_id", "tenant_id", "project_id", "filename"] {
        for absent in [None, Some(json!("")), Some(Value::Null)] {
            let mut body = full.clone();
            let object = body.as_object_mut().expect("object");
            match &absent {
                None => {
                    object.remove(field);
                }
                Some(value) => {
                    object.insert(field.to_string(), value.clone());
                }
            }
            let response = app.post("/content", body).await;
            let error =
                response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
            assert_eq!(error["message"], format!("{field} is required"));
        }
    }
}

async fn create_rejects_wrong_types(app: TestApp) {
    let base = |extra: Value| new_item("c", extra);
    let cases = [
        (base(json!({"content_id": 5})), Some("content_id")),
        (base(json!({"tenant_id": ["t"]})), Some("tenant_id")),
        (base(json!({"filename": {"name": "f"}})), Some("filename")),
        (base(json!({"mime_type": 7})), Some("mime_type")),
        (base(json!({"labels": {"route": 1}})), Some("labels.route")),
        (
            base(json!({"labels": {"ok": "x", "bad": null}})),
            Some("labels.bad"),
        ),
        (
            base(json!({"attributes": {"hd": true}})),
            Some("attributes.hd"),
        ),
        (
            base(json!({"attributes": {"n": {"x": "y"}}})),
            Some("attributes.n"),
        ),
        (base(json!({"labels": ["x"]})), Some("labels")),
        (base(json!({"attributes": "a=b"})), Some("attributes")),
        (json!(["not", "an", "object"]), None),
        (json!("text"), None),
    ];
    for (body, field) in cases {
        let response = app.post("/content", body.clone()).await;
        let error = response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", field);
        assert!(error["message"].is_string(), "{body}");
    }

    let response = app
        .client
        .post("/content")
        .body(Some("application/json"), "{\"content_id\": ")
        .send()
        .await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);
}

async fn create_checks_size_bytes(app: TestApp) {
    let bad = [
        json!(-1),
        json!(1.5),
        json!(1.0),
        json!("10"),
        json!(true),
        json!([1]),
        json!(9_223_372_036_854_775_808_u64),
        json!(1e30),
    ];
    for (index, size) in bad.into_iter().enumerate() {
        let body = new_item(&format!("bad-{index}"), json!({"size_bytes": size}));
        let response = app.post("/content", body).await;
        let error = response.expect_error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            Some("size_bytes"),
        );
        let message = error["message"].as_str().expect("message");
        assert!(
            message.contains("non-negative integer"),
            "{size}: {message}"
        );
    }

    let largest = app.submit("largest", json!({"size_bytes": i64::MAX})).await;
    assert_eq!(largest["size_bytes"], i64::MAX);
    assert_eq!(app.item("largest").await["size_bytes"], i64::MAX);
    let empty = app.submit("empty", json!({"size_bytes": 0})).await;
    assert_eq!(empty["size_bytes"], 0);
}

async fn create_checks_content_id_form(app: TestApp) {
    let long = "x".repeat(257);
    let bad = [
        "a/b",
        "a b",
        "a?b",
        "a#b",
        "a%20b",
        "café",
        "tab\there",
        ".",
        "..",
        long.as_str(),
    ];
    for id in bad {
        let response = app.post("/content", new_item(id, json!({}))).await;
        response.expect_error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            Some("content_id"),
        );
    }

    let good = ["Asset_2024-01.v2~draft", "...", &"y".repeat(256)];
    for id in good {
        let created = app.submit(id, json!({})).await;
        assert_eq!(created["content_id"], id);
        assert_eq!(app.item(id).await["content_id"], id);
    }
}

async fn create_checks_field_limits(app: TestApp) {
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let long_value = "v".repeat(1025);
    let cases = [
        (json!({"tenant_id": "t".repeat(257)}), "tenant_id"),
        (json!({"project_id": "p".repeat(257)}), "project_id"),
        (json!({"tenant_id": "line\nbreak"}), "tenant_id"),
        (json!({"filename": "f".repeat(1025)}), "filename"),
        (json!({"filename": "bell\u{7}.png"}), "filename"),
        (json!({"mime_type": "png"}), "mime_type"),
        (json!({"mime_type": "image/"}), "mime_type"),
        (json!({"mime_type": "image/ png"}), "mime_type"),
        (json!({"labels": many.clone()}), "labels"),
        (json!({"attributes": many}), "attributes"),
        (json!({"labels": {"": "v"}}), "labels"),
        (
            json!({"labels": {"lang": long_value.clone()}}),
            "labels.lang",
        ),
        (
            json!({"attributes": {"note": long_value}}),
            "attributes.note",
        ),
    ];
    for (index, (extra, field)) in cases.into_iter().enumerate() {
        let response = app
            .post("/content", new_item(&format!("limit-{index}"), extra))
            .await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }

    let at_limits: serde_json::Map<String, Value> = (0..64)
        .map(|i| (format!("k{i}"), json!("v".repeat(1024))))
        .collect();
    let item = app
        .submit(
            "at-limits",
            json!({
                "mime_type": "text/plain; charset=utf-8", "labels": at_limits,
                "filename": "f".repeat(1024)
            }),
        )
        .await;
    assert_eq!(item["labels"].as_object().expect("labels").len(), 64);
}

async fn create_duplicate_id_is_conflict(app: TestApp) {
    let original = app.submit("dup", json!({"filename": "first.png"})).await;
    app.clock.advance(Duration::from_secs(1));

    let response = app
        .post(
            "/content",
            json!({"content_id": "dup", "tenant_id": "t2", "project_id": "p2", "filename": "second.png"}),
        )
        .await;
    let error = response.expect_error(StatusCode::CONFLICT, "already_exists", Some("content_id"));
    assert!(
        error["message"].as_str().expect("message").contains("dup"),
        "{error}"
    );
    assert_eq!(app.item("dup").await, original);
    assert_eq!(app.listed("").await, vec!["dup".to_string()]);
}

async fn create_rejects_missing_content_type(app: TestApp) {
    let body = r#"{"content_id": "c", "tenant_id": "t", "project_id": "p", "filename": "f"}"#;
    for content_type in [None, Some("text/plain")] {
        let response = app
            .client
            .post("/content")
            .body(content_type, body)
            .send()
            .await;
        response.expect_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }
    app.get("/content/c")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found", None);
}

async fn create_rejects_oversized_body(app: TestApp) {
    let body = json!({
        "content_id": "big", "tenant_id": "t", "project_id": "p", "filename": "f",
        "attributes": {"blob": "x".repeat(1024 * 1024 + 1)}
    });
    let response = app.post("/content", body).await;
    response.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
}

async fn get_returns_created_item(app: TestApp) {
    let created = app
        .submit("read-me", json!({"labels": {"a": "1"}, "size_bytes": 12}))
        .await;
    assert_eq!(app.item("read-me").await, created);
}

async fn unknown_or_malformed_id_is_not_found(app: TestApp) {
    app.submit("exists", json!({})).await;
    let ids = [
        "missing",
        "a%20b",
        "%FF%FE",
        "%2E%2E",
        "caf%C3%A9",
        &"z".repeat(300),
    ];
    for id in ids {
        let response = app.get(&format!("/content/{id}")).await;
        response.expect_error(StatusCode::NOT_FOUND, "not_found", None);
        let response = app.get(&format!("/content/{id}/reviews")).await;
        response.expect_error(StatusCode::NOT_FOUND, "not_found", None);
        let response = app.review(id, json!({"state": "approved"})).await;
        response.expect_error(StatusCode::NOT_FOUND, "not_found", None);
    }
}

async fn legal_moves_follow_review_rules(app: TestApp) {
    let paths = [
        vec!["approved"],
        vec!["rejected"],
        vec!["archived"],
        vec!["approved", "rejected", "approved", "archived"],
        vec!["rejected", "approved", "rejected", "archived"],
        vec!["pending", "approved", "approved", "archived"],
    ];
    for (index, path) in paths.into_iter().enumerate() {
        let id = format!("legal-{index}");
        app.submit(&id, json!({})).await;
        for state in path {
            app.clock.advance(Duration::from_millis(5));
            let item = app.move_to(&id, state).await;
            assert_eq!(item["state"], state);
            assert_eq!(app.item(&id).await["state"], state);
        }
    }
}

async fn illegal_moves_are_conflicts_naming_states(app: TestApp) {
    let cases = [
        (vec!["approved"], "pending"),
        (vec!["rejected"], "pending"),
        (vec!["archived"], "pending"),
        (vec!["archived"], "approved"),
        (vec!["archived"], "rejected"),
        (vec!["archived"], "archived"),
        (vec!["approved", "archived"], "approved"),
        (vec!["rejected", "archived"], "rejected"),
    ];
    for (index, (setup, target)) in cases.into_iter().enumerate() {
        let id = format!("illegal-{index}");
        app.submit(&id, json!({})).await;
        for state in &setup {
            app.move_to(&id, state).await;
        }
        let before = app.item(&id).await;
        let history_before = app.history(&id).await;
        let from = *setup.last().expect("setup has a state");

        let response = app
            .review(&id, json!({"state": target, "reason": "should not stick"}))
            .await;
        let error = response.expect_error(StatusCode::CONFLICT, "failed_precondition", None);
        let message = error["message"].as_str().expect("message");
        assert!(
            message.contains(&format!("from {from} to {target}")),
            "{message}"
        );
        assert_eq!(app.item(&id).await, before);
        assert_eq!(app.history(&id).await, history_before);
    }
}

async fn archived_is_final(app: TestApp) {
    app.submit("final", json!({})).await;
    app.move_to("final", "approved").await;
    app.move_to("final", "archived").await;
    for state in [
        "pending",
        "approved",
        "rejected",
        "archived",
        "CONTENT_STATE_APPROVED",
    ] {
        let response = app.review("final", json!({"state": state})).await;
        response.expect_error(StatusCode::CONFLICT, "failed_precondition", None);
    }
    assert_eq!(app.item("final").await["state"], "archived");
    assert_eq!(app.history("final").await.len(), 2);
}

async fn same_state_updates_reason_only(app: TestApp) {
    let created = app.submit("same", json!({"labels": {"k": "v"}})).await;
    app.clock.advance(Duration::from_secs(1));
    app.review("same", json!({"state": "approved", "reason": "looks fine"}))
        .await
        .expect_status(StatusCode::OK);
    app.clock.advance(Duration::from_secs(1));

    let response = app
        .review(
            "same",
            json!({"state": "approved", "reason": "checked again"}),
        )
        .await;
    response.expect_status(StatusCode::OK);
    let updated = response.json();
    assert_eq!(updated["state"], "approved");
    assert_eq!(updated["reason"], "checked again");
    assert_eq!(updated["submitted_at"], created["submitted_at"]);
    assert_ne!(updated["updated_at"], created["updated_at"]);
    assert_eq!(updated["labels"], created["labels"]);

    let history = app.history("same").await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["from"], "approved");
    assert_eq!(history[1]["to"], "approved");
    assert_eq!(history[1]["reason"], "checked again");
}

async fn review_reason_replaces_previous(app: TestApp) {
    app.submit("reasons", json!({})).await;
    let rejected = app
        .review(
            "reasons",
            json!({"state": "rejected", "reason": "blurry", "reviewer": "ana"}),
        )
        .await
        .json();
    assert_eq!(rejected["reason"], "blurry");

    let approved = app
        .review("reasons", json!({"state": "approved", "reason": null}))
        .await;
    approved.expect_status(StatusCode::OK);
    assert_eq!(approved.json()["reason"], "");
    assert_eq!(app.item("reasons").await["reason"], "");

    let multiline = "first line\nsecond line";
    let archived = app
        .review("reasons", json!({"state": "archived", "reason": multiline}))
        .await
        .json();
    assert_eq!(archived["reason"], multiline);
}

async fn review_accepts_protobuf_names(app: TestApp) {
    app.submit("proto", json!({})).await;
    let cases = [
        ("CONTENT_STATE_APPROVED", "approved"),
        ("content_state_rejected", "rejected"),
        ("Approved", "approved"),
        ("Content_State_Archived", "archived"),
    ];
    for (given, expected) in cases {
        let response = app.review("proto", json!({"state": given})).await;
        response.expect_status(StatusCode::OK);
        assert_eq!(response.json()["state"], expected, "{given}");
    }
}

async fn review_rejects_bad_input(app: TestApp) {
    app.submit("bad-review", json!({})).await;
    let cases = [
        (json!({"state": "flagged"}), "state"),
        (json!({"state": "CONTENT_STATE_UNSPECIFIED"}), "state"),
        (json!({}), "state"),
        (json!({"state": ""}), "state"),
        (json!({"state": null}), "state"),
        (json!({"state": 3}), "state"),
        (json!({"state": ["approved"]}), "state"),
        (json!({"state": "approved", "reason": 5}), "reason"),
        (
            json!({"state": "approved", "reason": "r".repeat(4097)}),
            "reason",
        ),
        (json!({"state": "approved", "reason": "nul\u{0}"}), "reason"),
        (json!({"state": "approved", "reviewer": true}), "reviewer"),
        (
            json!({"state": "approved", "reviewer": "r".repeat(257)}),
            "reviewer",
        ),
        (
            json!({"state": "approved", "reviewer": "two\nlines"}),
            "reviewer",
        ),
    ];
    for (body, field) in cases {
        let response = app.review("bad-review", body.clone()).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
    let response = app
        .client
        .post("/content/bad-review/review")
        .body(Some("application/json"), "{\"state\": ")
        .send()
        .await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);

    assert_eq!(app.item("bad-review").await["state"], "pending");
    assert!(app.history("bad-review").await.is_empty());
}

async fn review_rejects_missing_content_type(app: TestApp) {
    app.submit("typed", json!({})).await;
    for content_type in [None, Some("text/plain")] {
        let response = app
            .client
            .post("/content/typed/review")
            .body(content_type, r#"{"state": "approved"}"#)
            .send()
            .await;
        response.expect_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }
    assert_eq!(app.item("typed").await["state"], "pending");
}

async fn history_lists_reviews_oldest_first(app: TestApp) {
    app.submit("history", json!({})).await;
    let steps = [
        ("rejected", "low resolution", "ana"),
        ("rejected", "low resolution, confirmed", "ben"),
        ("approved", "re-uploaded in HD", ""),
        ("archived", "", "cron"),
    ];
    let mut expected = Vec::new();
    let mut from = "pending";
    for (state, reason, reviewer) in steps {
        app.clock.advance(Duration::from_secs(1));
        let mut body = json!({"state": state, "reason": reason});
        if !reviewer.is_empty() {
            body["reviewer"] = json!(reviewer);
        }
        let item = app.review("history", body).await.json();
        expected.push(json!({
            "from": from, "to": state, "reason": reason, "reviewer": reviewer,
            "reviewed_at": item["updated_at"]
        }));
        from = state;
    }
    // Rejected reviews leave no trace.
    app.review("history", json!({"state": "approved"}))
        .await
        .expect_status(StatusCode::CONFLICT);

    let history = app.history("history").await;
    assert_eq!(history, expected);
    for entry in &history {
        assert_timestamp(&entry["reviewed_at"]);
    }
    let times: Vec<&str> = history
        .iter()
        .map(|entry| entry["reviewed_at"].as_str().expect("timestamp"))
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] < pair[1]), "{times:?}");
}

async fn history_is_empty_before_first_review(app: TestApp) {
    app.submit("fresh", json!({})).await;
    let response = app.get("/content/fresh/reviews").await;
    response.expect_status(StatusCode::OK);
    assert_eq!(response.json(), json!({"reviews": []}));
}

async fn list_filters_and_orders_newest_first(app: TestApp) {
    let rows = [
        ("c0", "t1", "p1"),
        ("c1", "t1", "p2"),
        ("c2", "t2", "p1"),
        ("c3", "t1", "p1"),
        ("c4", "t2", "p2"),
    ];
    for (id, tenant, project) in rows {
        app.clock.advance(Duration::from_millis(10));
        app.submit(id, json!({"tenant_id": tenant, "project_id": project}))
            .await;
    }
    app.move_to("c3", "approved").await;
    app.move_to("c1", "approved").await;
    app.move_to("c2", "rejected").await;

    let ids = |list: &[&str]| list.iter().map(|id| id.to_string()).collect::<Vec<_>>();
    assert_eq!(app.listed("").await, ids(&["c4", "c3", "c2", "c1", "c0"]));
    assert_eq!(app.listed("?tenant_id=t1").await, ids(&["c3", "c1", "c0"]));
    assert_eq!(app.listed("?project_id=p1").await, ids(&["c3", "c2", "c0"]));
    assert_eq!(
        app.listed("?tenant_id=t1&project_id=p1").await,
        ids(&["c3", "c0"])
    );
    assert_eq!(app.listed("?state=approved").await, ids(&["c3", "c1"]));
    assert_eq!(
        app.listed("?state=CONTENT_STATE_PENDING").await,
        ids(&["c4", "c0"])
    );
    assert_eq!(
        app.listed("?state=Content_State_Rejected&tenant_id=t2")
            .await,
        ids(&["c2"])
    );
    assert_eq!(
        app.listed("?tenant_id=t1&project_id=p2&state=approved")
            .await,
        ids(&["c1"])
    );
    assert_eq!(app.listed("?tenant_id=nobody").await, ids(&[]));
    assert_eq!(app.listed("?state=archived").await, ids(&[]));
    // Empty filter values count as absent.
    assert_eq!(app.listed("?tenant_id=&state=").await.len(), 5);

    let body = app.get("/content?tenant_id=t1").await.json();
    let first = &body["items"][0];
    assert_eq!(first, &app.item("c3").await);
}

async fn list_pages_through_equal_timestamps(app: TestApp) {
    // All items share one timestamp on purpose. content_id breaks the tie, so newest-first
    // order means descending ids, and no item may be skipped or repeated across pages.
    let ids = ["m", "b", "z", "a", "q", "c-1", "c-0", "y"];
    for id in ids {
        let (project, tenant) = if id < "n" {
            ("low", "tenant-low")
        } else {
            ("high", "tenant-high")
        };
        app.submit(id, json!({"project_id": project, "tenant_id": tenant}))
            .await;
    }

    let walk = |filter: &'static str| {
        let client = app.client.clone();
        async move {
            let mut seen = Vec::new();
            let mut query = format!("/content?page_size=3{filter}");
            loop {
                let response = client.get(&query).send().await;
                response.expect_status(StatusCode::OK);
                let body = response.json();
                let page = ids_of(&body);
                assert!(page.len() <= 3, "{body}");
                seen.extend(page);
                match body["next_page_token"].as_str() {
                    Some(token) => {
                        query = format!("/content?page_size=3{filter}&page_token={token}")
                    }
                    None => break,
                }
            }
            seen
        }
    };

    let mut everything: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    everything.sort();
    everything.reverse();
    assert_eq!(walk("").await, everything);

    let low: Vec<String> = everything
        .iter()
        .filter(|id| id.as_str() < "n")
        .cloned()
        .collect();
    assert_eq!(walk("&project_id=low").await, low);
    assert_eq!(walk("&tenant_id=tenant-low").await, low);
    assert_eq!(
        walk("&tenant_id=tenant-low&project_id=high").await,
        Vec::<String>::new()
    );

    // An exact multiple of the page size has no token after the last page.
    let body = app.get("/content?page_size=8").await.json();
    assert_eq!(ids_of(&body).len(), 8);
    assert!(body.get("next_page_token").is_none(), "{body}");
}

async fn list_default_page_size_is_100(app: TestApp) {
    for index in 0..101 {
        app.submit(&format!("item-{index:03}"), json!({})).await;
    }
    let body = app.get("/content").await.json();
    assert_eq!(ids_of(&body).len(), 100);
    let token = body["next_page_token"].as_str().expect("a second page");
    let rest = app
        .get(&format!("/content?page_token={token}"))
        .await
        .json();
    assert_eq!(ids_of(&rest), vec!["item-000".to_string()]);
    assert!(rest.get("next_page_token").is_none(), "{rest}");

    let body = app.get("/content?page_size=1000").await.json();
    assert_eq!(ids_of(&body).len(), 101);
}

async fn list_rejects_bad_parameters(app: TestApp) {
    let cases = [
        ("?page_size=0", "page_size"),
        ("?page_size=1001", "page_size"),
        ("?page_size=-1", "page_size"),
        ("?page_size=2.5", "page_size"),
        ("?page_size=many", "page_size"),
        ("?page_token=%%%", "page_token"),
        ("?page_token=abc", "page_token"),
        ("?state=flagged", "state"),
        ("?state=CONTENT_STATE_UNSPECIFIED", "state"),
    ];
    for (query, field) in cases {
        let response = app.get(&format!("/content{query}")).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
}

async fn head_and_unknown_methods(app: TestApp) {
    app.submit("headed", json!({})).await;
    for path in ["/content", "/content/headed", "/content/headed/reviews"] {
        let response = app.client.request(Method::HEAD, path).send().await;
        response.expect_status(StatusCode::OK);
        assert!(response.body.is_empty(), "{path}");
    }

    let cases = [
        (Method::DELETE, "/content/headed"),
        (Method::GET, "/content/headed/review"),
        (Method::HEAD, "/content/headed/review"),
        (Method::POST, "/content/headed/reviews"),
        (Method::PUT, "/content"),
    ];
    for (method, path) in cases {
        let response = app.client.request(method.clone(), path).send().await;
        assert_eq!(
            response.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(response.header("allow").is_some(), "{method} {path}");
    }
    assert!(app.history("headed").await.is_empty());
}

async fn racing_reviews_form_a_chain(app: TestApp) {
    // From `rejected`, archived and approved race. Whichever lands second is checked
    // against the state the first left. Approved then archived both succeed, but archived
    // then approved fails. Either way the history is a chain that ends in the final state.
    for round in 0..10 {
        let id = format!("race-{round}");
        app.submit(&id, json!({})).await;
        app.move_to(&id, "rejected").await;

        let (archive, approve) = tokio::join!(
            app.review(&id, json!({"state": "archived", "reviewer": "a"})),
            app.review(&id, json!({"state": "approved", "reviewer": "b"})),
        );
        let item = app.item(&id).await;
        assert_eq!(item["state"], "archived");
        let history = app.history(&id).await;
        archive.expect_status(StatusCode::OK);
        match approve.status {
            StatusCode::OK => {
                assert_eq!(history.len(), 3);
                assert_eq!(history[1]["to"], "approved");
                assert_eq!(history[2]["from"], "approved");
            }
            StatusCode::CONFLICT => {
                assert_eq!(history.len(), 2);
                assert_eq!(history[1]["from"], "rejected");
            }
            other => panic!("unexpected status {other}: {}", approve.text()),
        }
        assert_eq!(history.last().expect("reviews")["to"], "archived");
        assert_eq!(
            history.last().expect("reviews")["reviewed_at"],
            item["updated_at"]
        );
    }
}

fn memory_app(settings: Settings) -> TestApp {
    TestApp::with_backend(Backend::Memory, settings)
}

#[tokio::test]
async fn memory_store_at_capacity_is_resource_exhausted() {
    let app = memory_app(Settings {
        max_items: 2,
        ..Settings::default()
    });
    app.submit("one", json!({})).await;
    app.submit("two", json!({})).await;

    let response = app.post("/content", new_item("three", json!({}))).await;
    response.expect_error(StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", None);
    assert!(response.header("retry-after").is_some());

    // A taken id is still reported as such at capacity.
    let response = app.post("/content", new_item("one", json!({}))).await;
    response.expect_error(StatusCode::CONFLICT, "already_exists", Some("content_id"));
    // Reviews still work on stored items.
    app.move_to("one", "approved").await;
}

#[tokio::test]
async fn memory_history_keeps_newest_reviews() {
    let app = memory_app(Settings {
        max_reviews_per_item: 3,
        ..Settings::default()
    });
    app.submit("ring", json!({})).await;
    for round in 0..5 {
        app.clock.advance(Duration::from_secs(1));
        app.review(
            "ring",
            json!({"state": "approved", "reason": format!("pass {round}")}),
        )
        .await
        .expect_status(StatusCode::OK);
    }

    let reasons: Vec<Value> = app
        .history("ring")
        .await
        .iter()
        .map(|entry| entry["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        vec![json!("pass 2"), json!("pass 3"), json!("pass 4")]
    );
    assert_eq!(app.item("ring").await["reason"], "pass 4");
}
