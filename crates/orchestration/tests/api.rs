//! The orchestrator's HTTP contract, run against the memory store and against Postgres.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use orchestration::{Orchestrator, Settings, routes, store_for};
use platform::Backend;
use platform::http::{HttpLimits, Readiness, app};
use platform::testing::{TestClient, TestDatabase};
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
        let orchestrator = Arc::new(Orchestrator::new(store, clock.clone()));
        let readiness = match &backend {
            Backend::Memory => Readiness::Always,
            Backend::Postgres(pool) => Readiness::Postgres(pool.clone()),
        };
        let router = app(
            routes::router(orchestrator),
            readiness,
            HttpLimits::default(),
        );
        TestApp {
            client: TestClient::new(router),
            clock,
        }
    }

    async fn create(&self, body: Value) -> Value {
        let response = self.client.post("/assignments").json(&body).send().await;
        response.expect_status(StatusCode::CREATED);
        response.json()
    }

    async fn patch(&self, id: &str, body: Value) -> platform::testing::TestResponse {
        self.client
            .patch(&format!("/assignments/{id}"))
            .json(&body)
            .send()
            .await
    }
}

fn id_of(assignment: &Value) -> String {
    assignment["assignment_id"]
        .as_str()
        .expect("id is a string")
        .to_string()
}

platform::store_suite!(TestApp;
    create_returns_pending_assignment,
    create_requires_agent_and_workload,
    create_rejects_bad_types,
    create_rejects_missing_content_type,
    get_returns_created_assignment,
    get_unknown_or_malformed_is_not_found,
    legal_moves_follow_lifecycle,
    illegal_move_is_conflict_naming_states,
    final_states_are_final,
    same_status_updates_message_only,
    absent_message_keeps_current,
    update_accepts_protobuf_names,
    update_rejects_unknown_status,
    update_unknown_id_is_not_found,
    list_filters_and_orders_newest_first,
    list_pages_through_everything,
    list_rejects_bad_parameters,
    racing_changes_apply_in_order,
);

async fn create_returns_pending_assignment(app: TestApp) {
    let assignment = app
        .create(json!({
            "agent_id": "agent-1", "workload_id": "build-42", "tenant_id": "t1",
            "project_id": "p1", "metadata": {"region": "eu"}
        }))
        .await;

    assert_eq!(assignment["agent_id"], "agent-1");
    assert_eq!(assignment["workload_id"], "build-42");
    assert_eq!(assignment["tenant_id"], "t1");
    assert_eq!(assignment["project_id"], "p1");
    assert_eq!(assignment["status"], "pending");
    assert_eq!(assignment["status_message"], "queued");
    assert_eq!(assignment["metadata"], json!({"region": "eu"}));
    assert_eq!(assignment["created_at"], assignment["updated_at"]);
    let id = uuid::Uuid::parse_str(&id_of(&assignment)).expect("uuid");
    assert_eq!(id.get_version_num(), 7);
    let created = assignment["created_at"].as_str().expect("timestamp");
    assert!(created.ends_with('Z'), "{created}");
    assert_eq!(created.len(), 27, "microsecond precision: {created}");
}

async fn create_requires_agent_and_workload(app: TestApp) {
    let cases = [
        (json!({"workload_id": "w"}), "agent_id"),
        (json!({"agent_id": "", "workload_id": "w"}), "agent_id"),
        (json!({"agent_id": null, "workload_id": "w"}), "agent_id"),
        (json!({"agent_id": "a"}), "workload_id"),
        (json!({"agent_id": "a", "workload_id": ""}), "workload_id"),
    ];
    for (body, field) in cases {
        let response = app.client.post("/assignments").json(&body).send().await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
}

async fn create_rejects_bad_types(app: TestApp) {
    let cases = [
        (json!({"agent_id": 5, "workload_id": "w"}), Some("agent_id")),
        (
            json!({"agent_id": "a", "workload_id": "w", "metadata": {"k": 1}}),
            Some("metadata.k"),
        ),
        (
            json!({"agent_id": "a", "workload_id": "w", "metadata": ["x"]}),
            Some("metadata"),
        ),
        (json!(["not", "an", "object"]), None),
    ];
    for (body, field) in cases {
        let response = app.client.post("/assignments").json(&body).send().await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", field);
    }

    let response = app
        .client
        .post("/assignments")
        .body(Some("application/json"), "{\"agent_id\": ")
        .send()
        .await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);

    let long = "x".repeat(300);
    let response = app
        .client
        .post("/assignments")
        .json(&json!({"agent_id": long, "workload_id": "w"}))
        .send()
        .await;
    response.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("agent_id"),
    );
}

async fn create_rejects_missing_content_type(app: TestApp) {
    let body = r#"{"agent_id": "a", "workload_id": "w"}"#;
    let response = app
        .client
        .post("/assignments")
        .body(None, body)
        .send()
        .await;
    response.expect_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );

    let response = app
        .client
        .post("/assignments")
        .body(Some("text/plain"), body)
        .send()
        .await;
    response.expect_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
}

async fn get_returns_created_assignment(app: TestApp) {
    let created = app
        .create(json!({"agent_id": "a", "workload_id": "w"}))
        .await;
    let response = app
        .client
        .get(&format!("/assignments/{}", id_of(&created)))
        .send()
        .await;
    response.expect_status(StatusCode::OK);
    assert_eq!(response.json(), created);
}

async fn get_unknown_or_malformed_is_not_found(app: TestApp) {
    for id in ["0190b2f2-7c4e-7a51-9d2c-5f0a1b2c3d4e", "not-a-uuid"] {
        let response = app.client.get(&format!("/assignments/{id}")).send().await;
        response.expect_error(StatusCode::NOT_FOUND, "not_found", None);
    }
}

async fn legal_moves_follow_lifecycle(app: TestApp) {
    let paths = [
        vec!["assigned", "in_progress", "completed"],
        vec!["assigned", "pending", "cancelled"],
        vec!["failed"],
        vec!["assigned", "in_progress", "failed"],
        vec!["assigned", "cancelled"],
    ];
    for path in paths {
        let id = id_of(
            &app.create(json!({"agent_id": "a", "workload_id": "w"}))
                .await,
        );
        for status in path {
            app.clock.advance(Duration::from_millis(5));
            let response = app.patch(&id, json!({"status": status})).await;
            response.expect_status(StatusCode::OK);
            assert_eq!(response.json()["status"], status);
        }
    }
}

async fn illegal_move_is_conflict_naming_states(app: TestApp) {
    let id = id_of(
        &app.create(json!({"agent_id": "a", "workload_id": "w"}))
            .await,
    );
    let response = app.patch(&id, json!({"status": "completed"})).await;
    let error = response.expect_error(StatusCode::CONFLICT, "failed_precondition", None);
    let message = error["message"].as_str().expect("message");
    assert!(
        message.contains("pending") && message.contains("completed"),
        "{message}"
    );

    let unchanged = app
        .client
        .get(&format!("/assignments/{id}"))
        .send()
        .await
        .json();
    assert_eq!(unchanged["status"], "pending");
}

async fn final_states_are_final(app: TestApp) {
    for terminal in ["cancelled", "failed"] {
        let id = id_of(
            &app.create(json!({"agent_id": "a", "workload_id": "w"}))
                .await,
        );
        app.patch(&id, json!({"status": terminal}))
            .await
            .expect_status(StatusCode::OK);
        for next in ["pending", "assigned", terminal] {
            let response = app.patch(&id, json!({"status": next})).await;
            response.expect_error(StatusCode::CONFLICT, "failed_precondition", None);
        }
    }
}

async fn same_status_updates_message_only(app: TestApp) {
    let created = app
        .create(json!({"agent_id": "a", "workload_id": "w"}))
        .await;
    let id = id_of(&created);
    app.clock.advance(Duration::from_secs(1));
    let response = app
        .patch(
            &id,
            json!({"status": "pending", "status_message": "waiting for capacity"}),
        )
        .await;
    response.expect_status(StatusCode::OK);
    let updated = response.json();
    assert_eq!(updated["status"], "pending");
    assert_eq!(updated["status_message"], "waiting for capacity");
    assert_ne!(updated["updated_at"], created["updated_at"]);
    assert_eq!(updated["created_at"], created["created_at"]);
}

async fn absent_message_keeps_current(app: TestApp) {
    let id = id_of(
        &app.create(json!({"agent_id": "a", "workload_id": "w"}))
            .await,
    );
    app.patch(
        &id,
        json!({"status": "assigned", "status_message": "on agent-1"}),
    )
    .await
    .expect_status(StatusCode::OK);
    let response = app.patch(&id, json!({"status": "in_progress"})).await;
    response.expect_status(StatusCode::OK);
    assert_eq!(response.json()["status_message"], "on agent-1");

    let response = app
        .patch(
            &id,
            json!({"status": "in_progress", "status_message": null}),
        )
        .await;
    assert_eq!(response.json()["status_message"], "on agent-1");
}

async fn update_accepts_protobuf_names(app: TestApp) {
    let id = id_of(
        &app.create(json!({"agent_id": "a", "workload_id": "w"}))
            .await,
    );
    let response = app
        .patch(&id, json!({"status": "WORK_STATUS_ASSIGNED"}))
        .await;
    response.expect_status(StatusCode::OK);
    assert_eq!(response.json()["status"], "assigned");
    let response = app
        .patch(&id, json!({"status": "work_status_in_progress"}))
        .await;
    assert_eq!(response.json()["status"], "in_progress");
}

async fn update_rejects_unknown_status(app: TestApp) {
    let id = id_of(
        &app.create(json!({"agent_id": "a", "workload_id": "w"}))
            .await,
    );
    for body in [
        json!({"status": "done"}),
        json!({}),
        json!({"status": ""}),
        json!({"status": 3}),
    ] {
        let response = app.patch(&id, body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("status"));
    }
}

async fn update_unknown_id_is_not_found(app: TestApp) {
    for id in ["0190b2f2-7c4e-7a51-9d2c-5f0a1b2c3d4e", "nope"] {
        let response = app.patch(id, json!({"status": "assigned"})).await;
        response.expect_error(StatusCode::NOT_FOUND, "not_found", None);
    }
}

async fn list_filters_and_orders_newest_first(app: TestApp) {
    let rows = [
        ("agent-1", "t1", "p1"),
        ("agent-2", "t1", "p2"),
        ("agent-1", "t2", "p1"),
        ("agent-1", "t1", "p1"),
    ];
    let mut ids = Vec::new();
    for (agent, tenant, project) in rows {
        app.clock.advance(Duration::from_millis(10));
        let created = app
            .create(json!({"agent_id": agent, "workload_id": "w", "tenant_id": tenant, "project_id": project}))
            .await;
        ids.push(id_of(&created));
    }
    app.patch(&ids[3], json!({"status": "assigned"}))
        .await
        .expect_status(StatusCode::OK);

    let listed = |query: &'static str| {
        let client = app.client.clone();
        async move {
            let response = client.get(&format!("/assignments{query}")).send().await;
            response.expect_status(StatusCode::OK);
            let body = response.json();
            assert!(body.get("next_page_token").is_none(), "single page: {body}");
            body["assignments"]
                .as_array()
                .expect("array")
                .iter()
                .map(id_of)
                .collect::<Vec<_>>()
        }
    };

    assert_eq!(
        listed("").await,
        vec![
            ids[3].clone(),
            ids[2].clone(),
            ids[1].clone(),
            ids[0].clone()
        ]
    );
    assert_eq!(
        listed("?agent_id=agent-1").await,
        vec![ids[3].clone(), ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(
        listed("?tenant_id=t1&project_id=p1").await,
        vec![ids[3].clone(), ids[0].clone()]
    );
    assert_eq!(listed("?status=assigned").await, vec![ids[3].clone()]);
    assert_eq!(
        listed("?status=WORK_STATUS_PENDING&agent_id=agent-1").await,
        vec![ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(listed("?agent_id=nobody").await, Vec::<String>::new());
}

async fn list_pages_through_everything(app: TestApp) {
    let mut created = Vec::new();
    for index in 0..7 {
        // Equal timestamps on purpose: the id breaks ties, so no item is skipped or repeated.
        let agent = if index % 2 == 0 { "a" } else { "b" };
        created.push((
            agent,
            id_of(
                &app.create(json!({"agent_id": agent, "workload_id": "w"}))
                    .await,
            ),
        ));
    }
    created.reverse();

    let walk = |filter: &'static str| {
        let client = app.client.clone();
        async move {
            let mut seen = Vec::new();
            let mut query = format!("/assignments?page_size=3{filter}");
            loop {
                let body = client.get(&query).send().await.json();
                let page: Vec<String> = body["assignments"]
                    .as_array()
                    .expect("array")
                    .iter()
                    .map(id_of)
                    .collect();
                assert!(page.len() <= 3);
                seen.extend(page);
                match body["next_page_token"].as_str() {
                    Some(token) => {
                        query = format!("/assignments?page_size=3{filter}&page_token={token}")
                    }
                    None => break,
                }
            }
            seen
        }
    };
    let of_agent = |agent: &str| -> Vec<String> {
        created
            .iter()
            .filter(|(owner, _)| agent.is_empty() || *owner == agent)
            .map(|(_, id)| id.clone())
            .collect()
    };

    assert_eq!(walk("").await, of_agent(""));
    assert_eq!(walk("&agent_id=a").await, of_agent("a"));
    assert_eq!(walk("&agent_id=b").await, of_agent("b"));
}

async fn list_rejects_bad_parameters(app: TestApp) {
    let cases = [
        ("?page_size=0", "page_size"),
        ("?page_size=1001", "page_size"),
        ("?page_size=many", "page_size"),
        ("?page_token=%%%", "page_token"),
        ("?page_token=abc", "page_token"),
        ("?status=sleeping", "status"),
    ];
    for (query, field) in cases {
        let response = app.client.get(&format!("/assignments{query}")).send().await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
}

async fn racing_changes_apply_in_order(app: TestApp) {
    // Two clients race from `assigned`: one to in_progress, one to pending. Whichever
    // lands second is checked against the status the first left.
    for _ in 0..10 {
        let id = id_of(
            &app.create(json!({"agent_id": "a", "workload_id": "w"}))
                .await,
        );
        app.patch(&id, json!({"status": "assigned"}))
            .await
            .expect_status(StatusCode::OK);

        let (first, second) = tokio::join!(
            app.patch(&id, json!({"status": "in_progress"})),
            app.patch(&id, json!({"status": "pending"})),
        );
        let final_status = app
            .client
            .get(&format!("/assignments/{id}"))
            .send()
            .await
            .json()["status"]
            .clone();
        match (first.status, second.status) {
            // in_progress then pending is illegal, so the pending request failed.
            (StatusCode::OK, StatusCode::CONFLICT) => assert_eq!(final_status, "in_progress"),
            // pending first: in_progress from pending is illegal.
            (StatusCode::CONFLICT, StatusCode::OK) => assert_eq!(final_status, "pending"),
            other => panic!("exactly one change must win, got {other:?}"),
        }
    }
}
