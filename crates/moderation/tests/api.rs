//! The UGC Worker's HTTP contract, run against the memory store and against Postgres.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use moderation::service::Processed;
use moderation::store::{Claim, Claimed, ClaimedJob, ModerationStore};
use moderation::{Moderator, Policy, QueueSettings, Settings, routes, store_for, worker};
use platform::Backend;
use platform::Clock;
use platform::http::{HttpLimits, Readiness, app};
use platform::server::Workers;
use platform::testing::{TestClient, TestDatabase, TestResponse};
use platform::time::ManualClock;
use serde_json::{Value, json};

/// The policy every test runs with.
const TERMS: [&str; 4] = ["spam", "scam", "free money", "späm"];
const CLAIM_LEASE: Duration = Duration::from_secs(30);

struct TestApp {
    client: TestClient,
    moderator: Arc<Moderator>,
    store: Arc<dyn ModerationStore>,
    clock: Arc<ManualClock>,
    backend: Backend,
}

impl TestApp {
    async fn memory() -> Self {
        Self::with_backend(Backend::Memory)
    }

    async fn postgres() -> Self {
        let database = TestDatabase::create().await;
        Self::with_backend(Backend::Postgres(database.pool))
    }

    fn with_backend(backend: Backend) -> Self {
        let clock = ManualClock::starting_now();
        let store = store_for(&backend, &Settings::default());
        let (client, moderator) = serve(&backend, store.clone(), clock.clone(), 256);
        TestApp {
            client,
            moderator,
            store,
            clock,
            backend,
        }
    }

    /// Another instance over the same store with its own queue size, as a second replica.
    fn replica_with_queue_size(&self, queue_size: usize) -> (TestClient, Arc<Moderator>) {
        serve(
            &self.backend,
            self.store.clone(),
            self.clock.clone(),
            queue_size,
        )
    }

    async fn submit(&self, content_id: &str, body: &str) -> Value {
        let response = self
            .client
            .post("/jobs")
            .json(&json!({"content_id": content_id, "author_id": "author-1", "body": body}))
            .send()
            .await;
        response.expect_status(StatusCode::ACCEPTED);
        response.json()
    }

    /// Decides every job that can be claimed now, as the workers would; returns how many.
    async fn decide_all(&self) -> usize {
        let mut decided = 0;
        loop {
            match self.moderator.process_next().await.expect("process") {
                Processed::Decided(_) => decided += 1,
                Processed::Idle => return decided,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
    }

    async fn next(&self) -> TestResponse {
        self.client.get("/jobs/next").send().await
    }

    async fn next_decision(&self) -> Value {
        let response = self.next().await;
        response.expect_status(StatusCode::OK);
        response.json()
    }

    /// Claims the oldest job as a worker would, without deciding it.
    async fn stall_claim(&self) -> (ClaimedJob, Claim) {
        let now = self.clock.now();
        let claim = Claim {
            token: uuid::Uuid::now_v7(),
            now,
            until: now.saturating_add(CLAIM_LEASE),
        };
        match self.store.claim(&claim).await.expect("claim") {
            Claimed::Job(claimed) => (claimed, claim),
            other => panic!("expected a job, got {other:?}"),
        }
    }
}

fn serve(
    backend: &Backend,
    store: Arc<dyn ModerationStore>,
    clock: Arc<ManualClock>,
    queue_size: usize,
) -> (TestClient, Arc<Moderator>) {
    let policy = Arc::new(Policy::new(TERMS).expect("valid policy"));
    let queue = QueueSettings {
        queue_size,
        claim_lease: CLAIM_LEASE,
    };
    let moderator = Arc::new(Moderator::new(store, policy, clock, queue));
    let readiness = match backend {
        Backend::Memory => Readiness::Always,
        Backend::Postgres(pool) => Readiness::Postgres(pool.clone()),
    };
    let router = app(
        routes::router(moderator.clone()),
        readiness,
        HttpLimits::default(),
    );
    (TestClient::new(router), moderator)
}

fn content_id(decision: &Value) -> String {
    decision["job"]["content_id"]
        .as_str()
        .expect("content_id is a string")
        .to_string()
}

platform::store_suite!(TestApp;
    submit_returns_accepted_job,
    clean_body_is_approved,
    flagged_terms_come_once_in_policy_order,
    matching_ignores_case_beyond_ascii,
    submit_requires_every_field,
    submit_rejects_wrong_types,
    submit_rejects_oversized_fields,
    submit_rejects_missing_content_type,
    submit_rejects_body_over_limit,
    next_is_no_content_when_empty,
    each_decision_is_handed_out_once,
    concurrent_fetches_split_decisions,
    decisions_come_out_in_decision_order,
    head_does_not_consume_decision,
    next_waits_for_a_decision,
    next_wait_ends_with_no_content,
    next_rejects_invalid_wait,
    full_queue_answers_unavailable,
    jobs_in_hand_count_toward_queue,
    spawned_workers_decide_and_stop,
);

async fn submit_returns_accepted_job(app: TestApp) {
    let job = app.submit("content-1", "hello there").await;

    assert_eq!(
        job,
        json!({
            "content_id": "content-1",
            "author_id": "author-1",
            "body": "hello there",
            "submitted": app.clock.now().to_string(),
        })
    );
    let submitted = job["submitted"].as_str().expect("timestamp");
    assert!(
        submitted.ends_with('Z') && submitted.len() == 27,
        "{submitted}"
    );
}

async fn clean_body_is_approved(app: TestApp) {
    let job = app.submit("content-1", "a friendly comment").await;
    app.clock.advance(Duration::from_millis(1500));
    assert_eq!(app.decide_all().await, 1);

    let decision = app.next_decision().await;
    assert_eq!(
        decision,
        json!({
            "job": job,
            "decision": "approved",
            "reason": "no banned terms matched",
            "matched_terms": [],
            "processed_at": app.clock.now().to_string(),
        })
    );
    assert_ne!(decision["processed_at"], decision["job"]["submitted"]);
}

async fn flagged_terms_come_once_in_policy_order(app: TestApp) {
    app.submit("content-1", "Free Money!! SCAM scam and spam, more spam")
        .await;
    app.submit("content-2", "just spam").await;
    app.decide_all().await;

    let decision = app.next_decision().await;
    assert_eq!(decision["decision"], "flagged");
    assert_eq!(
        decision["matched_terms"],
        json!(["spam", "scam", "free money"])
    );
    assert_eq!(
        decision["reason"],
        "matched banned terms: spam, scam, free money"
    );

    let decision = app.next_decision().await;
    assert_eq!(decision["decision"], "flagged");
    assert_eq!(decision["matched_terms"], json!(["spam"]));
    assert_eq!(decision["reason"], "matched banned term: spam");
}

async fn matching_ignores_case_beyond_ascii(app: TestApp) {
    app.submit("upper", "SPÄM IN CAPITALS").await;
    app.submit("mixed", "Späm and sPaM").await;
    app.submit("other", "spaem is not a match").await;
    app.decide_all().await;

    let upper = app.next_decision().await;
    assert_eq!(upper["matched_terms"], json!(["späm"]));
    let mixed = app.next_decision().await;
    assert_eq!(mixed["matched_terms"], json!(["spam", "späm"]));
    let other = app.next_decision().await;
    assert_eq!(other["decision"], "approved");
}

async fn submit_requires_every_field(app: TestApp) {
    let full = json!({"content_id": "c", "author_id": "a", "body": "b"});
    for field in ["content_id", "author_id", "body"] {
        let mut missing = full.clone();
        missing.as_object_mut().expect("object").remove(field);
        let mut empty = full.clone();
        empty[field] = json!("");
        let mut null = full.clone();
        null[field] = Value::Null;

        for body in [missing, empty, null] {
            let response = app.client.post("/jobs").json(&body).send().await;
            let error =
                response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
            assert_eq!(error["message"], format!("{field} is required"));
        }
    }
    assert_eq!(app.decide_all().await, 0, "nothing was queued");
}

async fn submit_rejects_wrong_types(app: TestApp) {
    let cases = [
        (
            json!({"content_id": 5, "author_id": "a", "body": "b"}),
            Some("content_id"),
        ),
        (
            json!({"content_id": "c", "author_id": ["a"], "body": "b"}),
            Some("author_id"),
        ),
        (
            json!({"content_id": "c", "author_id": "a", "body": {"text": "b"}}),
            Some("body"),
        ),
        (
            json!({"content_id": "c", "author_id": "a", "body": true}),
            Some("body"),
        ),
        (json!(["not", "an", "object"]), None),
        (json!("text"), None),
    ];
    for (body, field) in cases {
        let response = app.client.post("/jobs").json(&body).send().await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", field);
    }

    let response = app
        .client
        .post("/jobs")
        .body(Some("application/json"), "{\"content_id\": ")
        .send()
        .await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);
}

async fn submit_rejects_oversized_fields(app: TestApp) {
    let long_id = "x".repeat(257);
    let long_body = "x".repeat(64 * 1024 + 1);
    let cases = [
        (
            json!({"content_id": long_id, "author_id": "a", "body": "b"}),
            "content_id",
        ),
        (
            json!({"content_id": "c", "author_id": long_id, "body": "b"}),
            "author_id",
        ),
        (
            json!({"content_id": "c\n", "author_id": "a", "body": "b"}),
            "content_id",
        ),
        (
            json!({"content_id": "c", "author_id": "a", "body": long_body}),
            "body",
        ),
        (
            json!({"content_id": "c", "author_id": "a", "body": "nul \u{0} inside"}),
            "body",
        ),
    ];
    for (body, field) in cases {
        let response = app.client.post("/jobs").json(&body).send().await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }

    let longest = json!({
        "content_id": "é".repeat(256),
        "author_id": "a",
        "body": "x".repeat(64 * 1024),
    });
    let response = app.client.post("/jobs").json(&longest).send().await;
    response.expect_status(StatusCode::ACCEPTED);
}

async fn submit_rejects_missing_content_type(app: TestApp) {
    let body = r#"{"content_id": "c", "author_id": "a", "body": "b"}"#;
    for content_type in [None, Some("text/plain")] {
        let response = app
            .client
            .post("/jobs")
            .body(content_type, body)
            .send()
            .await;
        response.expect_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }
}

async fn submit_rejects_body_over_limit(app: TestApp) {
    let padding = "x".repeat(HttpLimits::default().max_body);
    let body = json!({"content_id": "c", "author_id": "a", "body": padding});
    let response = app.client.post("/jobs").json(&body).send().await;
    response.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
}

async fn next_is_no_content_when_empty(app: TestApp) {
    let response = app.next().await;
    response.expect_status(StatusCode::NO_CONTENT);
    assert!(response.body.is_empty(), "{}", response.text());

    app.submit("content-1", "hello").await;
    let response = app.next().await;
    response.expect_status(StatusCode::NO_CONTENT);
}

async fn each_decision_is_handed_out_once(app: TestApp) {
    app.submit("content-1", "hello").await;
    app.decide_all().await;

    assert_eq!(content_id(&app.next_decision().await), "content-1");
    app.next().await.expect_status(StatusCode::NO_CONTENT);
}

async fn concurrent_fetches_split_decisions(app: TestApp) {
    let mut submitted = Vec::new();
    for index in 0..20 {
        let id = format!("content-{index:02}");
        app.submit(&id, "some text").await;
        submitted.push(id);
    }
    assert_eq!(app.decide_all().await, 20);

    let fetches = (0..30).map(|_| app.next());
    let responses = futures::future::join_all(fetches).await;
    let mut handed_out = Vec::new();
    for response in &responses {
        match response.status {
            StatusCode::OK => handed_out.push(content_id(&response.json())),
            StatusCode::NO_CONTENT => {}
            other => panic!("unexpected status {other}: {}", response.text()),
        }
    }
    handed_out.sort();
    assert_eq!(handed_out, submitted, "every decision exactly once");
}

async fn decisions_come_out_in_decision_order(app: TestApp) {
    app.submit("first", "hello").await;
    app.submit("second", "hello").await;
    app.submit("third", "spam").await;

    // A worker claims the oldest job and stalls; the others are decided meanwhile.
    let (stalled, claim) = app.stall_claim().await;
    assert_eq!(stalled.job.content_id, "first");
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(app.decide_all().await, 2);

    // Once the lease has passed, another worker takes the job over.
    app.clock.advance(CLAIM_LEASE);
    assert_eq!(app.decide_all().await, 1);

    let order: Vec<String> = [
        app.next_decision().await,
        app.next_decision().await,
        app.next_decision().await,
    ]
    .iter()
    .map(content_id)
    .collect();
    assert_eq!(order, ["second", "third", "first"]);

    // The stalled worker's late result is dropped, so the job was decided once.
    let evaluation = Policy::new(TERMS).expect("policy").evaluate("hello");
    let late = app
        .store
        .complete(stalled.id, claim.token, &evaluation, app.clock.now())
        .await
        .expect("complete");
    assert!(!late);
    app.next().await.expect_status(StatusCode::NO_CONTENT);
}

async fn head_does_not_consume_decision(app: TestApp) {
    app.submit("content-1", "hello").await;
    app.decide_all().await;

    let head = app.client.request(Method::HEAD, "/jobs/next").send().await;
    head.expect_status(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(head.header("allow"), Some("GET"));

    assert_eq!(content_id(&app.next_decision().await), "content-1");
}

async fn next_waits_for_a_decision(app: TestApp) {
    let started = std::time::Instant::now();
    let (response, ()) = tokio::join!(app.client.get("/jobs/next?wait_ms=20000").send(), async {
        // The fetch finds nothing at first, then a worker decides a job.
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.submit("content-1", "spam").await;
        assert_eq!(app.decide_all().await, 1);
    });
    response.expect_status(StatusCode::OK);
    assert_eq!(content_id(&response.json()), "content-1");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the decision ends the wait: {:?}",
        started.elapsed()
    );
    app.next().await.expect_status(StatusCode::NO_CONTENT);
}

async fn next_wait_ends_with_no_content(app: TestApp) {
    let started = std::time::Instant::now();
    let response = app.client.get("/jobs/next?wait_ms=150").send().await;
    response.expect_status(StatusCode::NO_CONTENT);
    assert!(response.body.is_empty(), "{}", response.text());
    assert!(started.elapsed() >= Duration::from_millis(150));

    let response = app.client.get("/jobs/next?wait_ms=0").send().await;
    response.expect_status(StatusCode::NO_CONTENT);
}

async fn next_rejects_invalid_wait(app: TestApp) {
    for wait in ["30001", "-1", "soon", "1.5"] {
        let response = app
            .client
            .get(&format!("/jobs/next?wait_ms={wait}"))
            .send()
            .await;
        let error =
            response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("wait_ms"));
        assert!(
            error["message"]
                .as_str()
                .expect("message")
                .contains("wait_ms"),
            "{error}"
        );
    }
    let response = app.client.get("/jobs/next?wait_ms=30000").send();
    // The longest wait is accepted; a decision made now ends it at once.
    app.submit("content-1", "hello").await;
    assert_eq!(app.decide_all().await, 1);
    response.await.expect_status(StatusCode::OK);
}

async fn full_queue_answers_unavailable(app: TestApp) {
    let (small, _) = app.replica_with_queue_size(2);
    let job = json!({"content_id": "c", "author_id": "a", "body": "b"});
    for _ in 0..2 {
        let response = small.post("/jobs").json(&job).send().await;
        response.expect_status(StatusCode::ACCEPTED);
    }

    let response = small.post("/jobs").json(&job).send().await;
    let error = response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    assert_eq!(response.header("retry-after"), Some("1"));
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("queue"),
        "{error}"
    );

    assert_eq!(app.decide_all().await, 2);
    let response = small.post("/jobs").json(&job).send().await;
    response.expect_status(StatusCode::ACCEPTED);
}

async fn jobs_in_hand_count_toward_queue(app: TestApp) {
    let (small, _) = app.replica_with_queue_size(1);
    let job = json!({"content_id": "c", "author_id": "a", "body": "b"});
    small
        .post("/jobs")
        .json(&job)
        .send()
        .await
        .expect_status(StatusCode::ACCEPTED);
    app.stall_claim().await;

    let response = small.post("/jobs").json(&job).send().await;
    response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
}

async fn spawned_workers_decide_and_stop(app: TestApp) {
    let workers = Workers::new();
    worker::spawn(&app.moderator, &workers, 2, Duration::from_millis(50));

    app.submit("content-1", "scam").await;
    app.submit("content-2", "hello").await;
    let mut decisions = Vec::new();
    for _ in 0..200 {
        let response = app.next().await;
        if response.status == StatusCode::OK {
            decisions.push(response.json());
            if decisions.len() == 2 {
                break;
            }
        } else {
            // The workers run in the background; give them a moment.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let ids: Vec<String> = decisions.iter().map(content_id).collect();
    assert_eq!(ids.len(), 2, "both jobs decided: {ids:?}");
    assert!(ids.contains(&"content-1".to_string()), "{ids:?}");
    assert!(ids.contains(&"content-2".to_string()), "{ids:?}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    assert!(
        workers.stop(deadline).await,
        "idle workers stop on the signal"
    );
}
