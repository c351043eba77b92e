//! Postgres-only behaviour: replicas sharing one queue, expired claims, outages, restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use moderation::model::Verdict;
use moderation::service::Processed;
use moderation::store::{Claim, Claimed, ModerationStore};
use moderation::{Moderator, Policy, QueueSettings, Settings, routes, store_for, worker};
use platform::http::{HttpLimits, Readiness, app};
use platform::server::Workers;
use platform::testing::{TcpProxy, TestClient, TestDatabase, TestResponse};
use platform::time::{ManualClock, system_clock};
use platform::{Backend, Clock, SharedClock};
use serde_json::{Value, json};
use sqlx::PgPool;

const CLAIM_LEASE: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

struct Replica {
    client: TestClient,
    moderator: Arc<Moderator>,
    store: Arc<dyn ModerationStore>,
}

fn replica(pool: PgPool, clock: SharedClock, queue_size: usize) -> Replica {
    let backend = Backend::Postgres(pool.clone());
    let store = store_for(&backend, &Settings::default());
    let policy = Arc::new(Policy::new(["spam", "scam"]).expect("valid policy"));
    let queue = QueueSettings {
        queue_size,
        claim_lease: CLAIM_LEASE,
    };
    let moderator = Arc::new(
        Moderator::new(store.clone(), policy, clock, queue)
            .with_long_polls(tokio_util::sync::CancellationToken::new(), POLL_INTERVAL),
    );
    let client = TestClient::new(app(
        routes::router(moderator.clone()),
        Readiness::Postgres(pool),
        HttpLimits::default(),
    ));
    Replica {
        client,
        moderator,
        store,
    }
}

fn job(content_id: &str, body: &str) -> Value {
    json!({"content_id": content_id, "author_id": "author-1", "body": body})
}

async fn submit(client: &TestClient, content_id: &str, body: &str) -> TestResponse {
    client
        .post("/jobs")
        .json(&job(content_id, body))
        .send()
        .await
}

/// Submits `count` jobs at once, alternating between two replicas.
async fn submit_alternately(
    first: &TestClient,
    second: &TestClient,
    count: usize,
) -> Vec<TestResponse> {
    let submissions = (0..count).map(|index| {
        let client = if index.is_multiple_of(2) {
            first
        } else {
            second
        };
        async move { submit(client, &format!("content-{index}"), "hello").await }
    });
    futures::future::join_all(submissions).await
}

fn content_id(decision: &Value) -> String {
    decision["job"]["content_id"]
        .as_str()
        .expect("content_id is a string")
        .to_string()
}

async fn count_rows(pool: &PgPool, table: &str) -> i64 {
    let query = format!("SELECT count(*) FROM moderation.{table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(query))
        .fetch_one(pool)
        .await
        .expect("count rows")
}

/// Fetches from every client in turn until `expected` decisions arrived or time runs out.
async fn collect_decisions(clients: &[&TestClient], expected: usize) -> Vec<Value> {
    let started = Instant::now();
    let mut decisions = Vec::new();
    while decisions.len() < expected && started.elapsed() < Duration::from_secs(20) {
        let fetches = clients.iter().map(|client| client.get("/jobs/next").send());
        let mut fetched_any = false;
        for response in futures::future::join_all(fetches).await {
            match response.status {
                StatusCode::OK => {
                    decisions.push(response.json());
                    fetched_any = true;
                }
                StatusCode::NO_CONTENT => {}
                other => panic!("unexpected status {other}: {}", response.text()),
            }
        }
        if !fetched_any {
            // The workers run in the background; give them a moment.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    decisions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_decide_and_hand_out_each_job_once() {
    let database = TestDatabase::create().await;
    let first = replica(database.pool.clone(), system_clock(), 1000);
    let second = replica(database.another_pool(5).await, system_clock(), 1000);
    let workers = Workers::new();
    worker::spawn(&first.moderator, &workers, 2, POLL_INTERVAL);
    worker::spawn(&second.moderator, &workers, 2, POLL_INTERVAL);

    let mut expected = Vec::new();
    let submissions = (0..60_usize).map(|index| {
        let client = if index.is_multiple_of(2) {
            first.client.clone()
        } else {
            second.client.clone()
        };
        let id = format!("content-{index:02}");
        expected.push(id.clone());
        let body = if index.is_multiple_of(3) {
            "buy spam"
        } else {
            "hello"
        };
        async move { submit(&client, &id, body).await }
    });
    for response in futures::future::join_all(submissions).await {
        response.expect_status(StatusCode::ACCEPTED);
    }

    let decisions = collect_decisions(&[&first.client, &second.client], 60).await;
    let mut handed_out: Vec<String> = decisions.iter().map(content_id).collect();
    handed_out.sort();
    assert_eq!(
        handed_out, expected,
        "every job decided and handed out once"
    );
    for decision in &decisions {
        let index: usize = content_id(decision)["content-".len()..]
            .parse()
            .expect("index");
        let verdict = if index.is_multiple_of(3) {
            "flagged"
        } else {
            "approved"
        };
        assert_eq!(decision["decision"], verdict, "{decision}");
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    assert!(workers.stop(deadline).await, "workers stop on the signal");
    for client in [&first.client, &second.client] {
        let response = client.get("/jobs/next").send().await;
        response.expect_status(StatusCode::NO_CONTENT);
    }
    assert_eq!(count_rows(&database.pool, "jobs").await, 0);
    assert_eq!(count_rows(&database.pool, "decisions").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_claim_is_processed_again() {
    let database = TestDatabase::create().await;
    let clock = ManualClock::starting_now();
    let dying = replica(database.pool.clone(), clock.clone(), 10);
    let survivor = replica(database.another_pool(5).await, clock.clone(), 10);
    submit(&dying.client, "content-1", "a scam")
        .await
        .expect_status(StatusCode::ACCEPTED);

    // A worker of the dying replica claims the job and never finishes it.
    let now = clock.now();
    let claim = Claim {
        token: uuid::Uuid::now_v7(),
        now,
        until: now.saturating_add(CLAIM_LEASE),
    };
    let Claimed::Job(claimed) = dying.store.claim(&claim).await.expect("claim") else {
        panic!("the job is available");
    };
    assert_eq!(claimed.attempt, 1);

    let outcome = survivor.moderator.process_next().await.expect("process");
    assert_eq!(outcome, Processed::Idle, "the lease is still live");
    clock.advance(CLAIM_LEASE - Duration::from_secs(1));
    let outcome = survivor.moderator.process_next().await.expect("process");
    assert_eq!(outcome, Processed::Idle, "the lease is still live");

    clock.advance(Duration::from_secs(1));
    let outcome = survivor.moderator.process_next().await.expect("process");
    assert_eq!(outcome, Processed::Decided(Verdict::Flagged));

    let response = survivor.client.get("/jobs/next").send().await;
    response.expect_status(StatusCode::OK);
    let decision = response.json();
    assert_eq!(content_id(&decision), "content-1");
    assert_eq!(decision["matched_terms"], json!(["scam"]));

    // The first worker comes back: its claim was taken over, so it records nothing.
    let evaluation = Policy::new(["scam"]).expect("policy").evaluate("a scam");
    let late = dying
        .store
        .complete(claimed.id, claim.token, &evaluation, clock.now())
        .await
        .expect("complete");
    assert!(!late);
    for client in [&dying.client, &survivor.client] {
        let response = client.get("/jobs/next").send().await;
        response.expect_status(StatusCode::NO_CONTENT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_size_holds_across_replicas() {
    let database = TestDatabase::create().await;
    let first = replica(database.pool.clone(), system_clock(), 5);
    let second = replica(database.another_pool(5).await, system_clock(), 5);

    let responses = submit_alternately(&first.client, &second.client, 40).await;
    let accepted = responses
        .iter()
        .filter(|response| response.status == StatusCode::ACCEPTED)
        .count();
    for response in &responses {
        if response.status != StatusCode::ACCEPTED {
            response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
            assert_eq!(response.header("retry-after"), Some("1"));
        }
    }
    assert_eq!(
        accepted, 5,
        "submissions are serialised, so the limit is exact"
    );
    assert_eq!(count_rows(&database.pool, "jobs").await, 5);

    let outcome = first.moderator.process_next().await.expect("process");
    assert_eq!(outcome, Processed::Decided(Verdict::Approved));
    submit(&second.client, "after", "hello")
        .await
        .expect_status(StatusCode::ACCEPTED);
    let response = submit(&first.client, "over", "hello").await;
    response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_answers_503_then_recovers() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.server_address().await).await;
    let pool = database.pool_through(&proxy, 3).await;
    let service = replica(pool, system_clock(), 100);
    let workers = Workers::new();
    worker::spawn(&service.moderator, &workers, 1, POLL_INTERVAL);

    submit(&service.client, "before", "hello")
        .await
        .expect_status(StatusCode::ACCEPTED);
    let decisions = collect_decisions(&[&service.client], 1).await;
    assert_eq!(decisions.len(), 1, "the job before the outage is decided");
    service
        .client
        .get("/readyz")
        .send()
        .await
        .expect_status(StatusCode::OK);

    proxy.cut();
    let started = Instant::now();
    let ready = service.client.get("/readyz").send().await;
    ready.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    for _ in 0..2 {
        let response = submit(&service.client, "during", "hello").await;
        response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
        assert!(response.header("retry-after").is_some());
        let next = service.client.get("/jobs/next").send().await;
        next.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
        assert!(next.header("retry-after").is_some());
    }
    assert!(service.moderator.process_next().await.is_err());
    // Bounded by the pool's acquire timeout, not by TCP timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    proxy.restore();
    assert!(
        service
            .client
            .wait_until_ready(Duration::from_secs(5))
            .await,
        "readiness returns once Postgres is reachable again"
    );

    submit(&service.client, "after", "scam")
        .await
        .expect_status(StatusCode::ACCEPTED);
    let decisions = collect_decisions(&[&service.client], 1).await;
    assert_eq!(decisions.len(), 1, "the worker recovers without a restart");
    assert_eq!(content_id(&decisions[0]), "after");
    assert_eq!(decisions[0]["decision"], "flagged");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    assert!(workers.stop(deadline).await, "workers stop on the signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_decisions_survive_new_instance() {
    let database = TestDatabase::create().await;
    let clock = ManualClock::starting_now();
    {
        let old = replica(database.pool.clone(), clock.clone(), 10);
        submit(&old.client, "decided", "spam")
            .await
            .expect_status(StatusCode::ACCEPTED);
        submit(&old.client, "waiting", "hello")
            .await
            .expect_status(StatusCode::ACCEPTED);
        let outcome = old.moderator.process_next().await.expect("process");
        assert_eq!(outcome, Processed::Decided(Verdict::Flagged));
    }
    database.pool.close().await;

    let new = replica(database.another_pool(5).await, clock.clone(), 10);
    let response = new.client.get("/jobs/next").send().await;
    response.expect_status(StatusCode::OK);
    let decision = response.json();
    assert_eq!(content_id(&decision), "decided");
    assert_eq!(decision["matched_terms"], json!(["spam"]));
    assert_eq!(decision["job"]["submitted"], clock.now().to_string());

    let outcome = new.moderator.process_next().await.expect("process");
    assert_eq!(outcome, Processed::Decided(Verdict::Approved));
    let response = new.client.get("/jobs/next").send().await;
    response.expect_status(StatusCode::OK);
    assert_eq!(content_id(&response.json()), "waiting");
    let response = new.client.get("/jobs/next").send().await;
    response.expect_status(StatusCode::NO_CONTENT);
}

async fn job_count(pool: &PgPool, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT total FROM moderation.job_counts WHERE kind = $1")
        .bind(kind)
        .fetch_one(pool)
        .await
        .expect("read job count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_counts_follow_the_queue() {
    let database = TestDatabase::create().await;
    let first = replica(database.pool.clone(), system_clock(), 1000);
    let second = replica(database.another_pool(5).await, system_clock(), 1000);

    for response in submit_alternately(&first.client, &second.client, 10).await {
        response.expect_status(StatusCode::ACCEPTED);
    }
    for moderator in [&first.moderator, &second.moderator] {
        for _ in 0..2 {
            let outcome = moderator.process_next().await.expect("process");
            assert_eq!(outcome, Processed::Decided(Verdict::Approved));
        }
    }

    assert_eq!(job_count(&database.pool, "submitted").await, 10);
    assert_eq!(job_count(&database.pool, "decided").await, 4);
    assert_eq!(count_rows(&database.pool, "jobs").await, 6);

    // Emptied together with the jobs, the counts start again from zero.
    sqlx::query("TRUNCATE moderation.jobs, moderation.job_counts")
        .execute(&database.pool)
        .await
        .expect("truncate");
    let small = replica(database.pool.clone(), system_clock(), 1);
    submit(&small.client, "after", "hello")
        .await
        .expect_status(StatusCode::ACCEPTED);
    let response = submit(&small.client, "over", "hello").await;
    response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    let outcome = small.moderator.process_next().await.expect("process");
    assert_eq!(outcome, Processed::Decided(Verdict::Approved));
    assert_eq!(job_count(&database.pool, "decided").await, 1);
    submit(&small.client, "again", "hello")
        .await
        .expect_status(StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_fetch_finds_decision_of_another_replica() {
    let database = TestDatabase::create().await;
    let waiting = replica(database.pool.clone(), system_clock(), 10);
    let deciding = replica(database.another_pool(5).await, system_clock(), 10);

    let (response, ()) = tokio::join!(
        waiting.client.get("/jobs/next?wait_ms=20000").send(),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            submit(&deciding.client, "elsewhere", "spam")
                .await
                .expect_status(StatusCode::ACCEPTED);
            let outcome = deciding.moderator.process_next().await.expect("process");
            assert_eq!(outcome, Processed::Decided(Verdict::Flagged));
        }
    );
    // Only the deciding replica is woken; the waiting one finds it when it looks again.
    response.expect_status(StatusCode::OK);
    assert_eq!(content_id(&response.json()), "elsewhere");
}
