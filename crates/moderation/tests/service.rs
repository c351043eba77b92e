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

async fn build(values: &[(&str, &str)]) -> Result<(TestClient, platform::server::Workers), String> {
    let settings = Loader::from_values(SERVICE.config, values);
    let context = test_context(SERVICE.name, settings, Backend::Memory, system_clock())
        .map_err(|error| error.to_string())?;
    let workers = context.workers.clone();
    let service = (SERVICE.build)(context)
        .await
        .map_err(|error| error.to_string())?;
    let client = TestClient::new(app(
        service.routes,
        Readiness::Always,
        HttpLimits::default(),
    ));
    Ok((client, workers))
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
