//! The service as the harness builds it from settings: policy source, workers, shutdown.

use std::time::Duration;

use axum::http::StatusCode;
use moderation::SERVICE;
use platform::Backend;
use platform::config::Loader;
use platform::http::{HttpLimits, Readiness, app};
use platform::server::test_context;
use platform::testing::TestClient;
use platform::time::system_clock;
use serde_json::json;

/// The service built from `values`, its background workers, and the token that starts
/// its shutdown.
struct Built {
    client: TestClient,
    workers: platform::server::Workers,
    shutdown: tokio_util::sync::CancellationToken,
}

async fn build(values: &[(&str, &str)]) -> Result<(TestClient, platform::server::Workers), String> {
    build_service(values)
        .await
        .map(|built| (built.client, built.workers))
}

async fn build_service(values: &[(&str, &str)]) -> Result<Built, String> {
    let settings = Loader::from_values(SERVICE.config, values);
    let context = test_context(SERVICE.name, settings, Backend::Memory, system_clock())
        .map_err(|error| error.to_string())?;
    let workers = context.workers.clone();
    let shutdown = context.shutdown.clone();
    let service = (SERVICE.build)(context)
        .await
        .map_err(|error| error.to_string())?;
    let client = TestClient::new(app(
        service.routes,
        Readiness::Always,
        HttpLimits::default(),
    ));
    Ok(Built {
        client,
        workers,
        shutdown,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_service_decides_with_configured_terms() {
    let values = [
        ("banned_terms", "casino, free money"),
        ("workers", "2"),
        ("poll_interval", "50ms"),
    ];
    let (client, workers) = build(&values).await.expect("service builds");

    let job = json!({"content_id": "c1", "author_id": "a1", "body": "FREE MONEY at the Casino"});
    client
        .post("/jobs")
        .json(&job)
        .send()
        .await
        .expect_status(StatusCode::ACCEPTED);

    let mut decision = None;
    for _ in 0..200 {
        let response = client.get("/jobs/next").send().await;
        if response.status == StatusCode::OK {
            decision = Some(response.json());
            break;
        }
        // The workers run in the background; give them a moment.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let decision = decision.expect("the workers decide the job");
    assert_eq!(decision["decision"], "flagged");
    assert_eq!(decision["matched_terms"], json!(["casino", "free money"]));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    assert!(workers.stop(deadline).await, "workers stop on the signal");
}

#[tokio::test]
async fn missing_term_file_stops_startup() {
    let error = build(&[("banned_terms_file", "/nonexistent/banned.txt")])
        .await
        .err()
        .expect("startup fails");
    assert!(error.contains("UGC_BANNED_TERMS_FILE"), "{error}");
    assert!(error.contains("/nonexistent/banned.txt"), "{error}");
}

#[tokio::test]
async fn zero_workers_stop_startup() {
    let error = build(&[("workers", "0")])
        .await
        .err()
        .expect("startup fails");
    assert!(error.contains("UGC_WORKERS"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_fetch_ends_at_shutdown() {
    let built = build_service(&[]).await.expect("service builds");
    let started = std::time::Instant::now();
    let (response, ()) = tokio::join!(built.client.get("/jobs/next?wait_ms=30000").send(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        built.shutdown.cancel();
    });
    response.expect_status(StatusCode::NO_CONTENT);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    assert!(
        built.workers.stop(deadline).await,
        "workers stop on the signal"
    );
}
