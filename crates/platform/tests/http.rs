//! The shared router: health, readiness, request ids and the JSON bodies of errors that
//! axum and tower-http produce themselves.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use platform::extract::Json;
use platform::http::{HttpLimits, Readiness, app, get_changing_state};
use platform::testing::{TestClient, TestDatabase};
use serde_json::{Value, json};

fn client_with(routes: Router, limits: HttpLimits) -> TestClient {
    TestClient::new(app(routes, Readiness::Always, limits))
}

fn demo_routes() -> Router {
    Router::new()
        .route(
            "/echo",
            post(|Json(body): Json<Value>| async move { axum::Json(body) }),
        )
        .route(
            "/take",
            get_changing_state(|| async { "taken" }, "GET, POST").post(|| async { "posted" }),
        )
        .route("/panic", get(panicking_handler))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
}

async fn panicking_handler() -> &'static str {
    panic!("handler bug")
}

fn client() -> TestClient {
    client_with(demo_routes(), HttpLimits::default())
}

#[tokio::test]
async fn healthz_is_plain_ok() {
    let response = client().get("/healthz").send().await;
    response.expect_status(StatusCode::OK);
    assert_eq!(response.text(), "ok");
    assert!(
        response
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/plain"))
    );
}

#[tokio::test]
async fn readyz_reports_ready_in_memory() {
    let response = client().get("/readyz").send().await;
    response.expect_status(StatusCode::OK);
    assert_eq!(response.json(), json!({"status": "ready"}));
}

#[tokio::test]
async fn unknown_route_is_json_404() {
    let response = client().get("/nowhere").send().await;
    let error = response.expect_error(StatusCode::NOT_FOUND, "not_found", None);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("/nowhere"))
    );
}

#[tokio::test]
async fn wrong_method_is_json_405_with_allow() {
    let response = client()
        .request(axum::http::Method::DELETE, "/echo")
        .send()
        .await;
    response.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
    assert_eq!(response.header("allow"), Some("POST"));
}

#[tokio::test]
async fn head_never_reaches_state_changing_get() {
    let response = client()
        .request(axum::http::Method::HEAD, "/take")
        .send()
        .await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.header("allow"), Some("GET, POST"));

    let response = client().get("/take").send().await;
    response.expect_status(StatusCode::OK);
    assert_eq!(response.text(), "taken");
}

#[tokio::test]
async fn body_over_limit_is_json_413() {
    let limits = HttpLimits {
        max_body: 64,
        ..HttpLimits::default()
    };
    let client = client_with(demo_routes(), limits);
    let big = json!({"text": "x".repeat(200)});
    let response = client.post("/echo").json(&big).send().await;
    let error = response.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains("64")),
        "{error}"
    );

    let small = client
        .post("/echo")
        .json(&json!({"text": "ok"}))
        .send()
        .await;
    small.expect_status(StatusCode::OK);
}

#[tokio::test]
async fn json_body_needs_content_type() {
    let response = client().post("/echo").body(None, "{}").send().await;
    response.expect_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
}

#[tokio::test]
async fn json_content_type_ignores_case_and_parameters() {
    for content_type in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/merge-patch+json",
    ] {
        let response = client()
            .post("/echo")
            .body(Some(content_type), r#"{"a":1}"#)
            .send()
            .await;
        response.expect_status(StatusCode::OK);
        assert_eq!(response.json(), json!({"a": 1}), "{content_type}");
    }

    let response = client()
        .post("/echo")
        .body(Some("Text/Plain"), "{}")
        .send()
        .await;
    let error = response.expect_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|message| message.contains("text/plain")),
        "{error}"
    );
}

#[tokio::test]
async fn request_id_is_generated_or_echoed() {
    let response = client().get("/healthz").send().await;
    let generated = response.header("x-request-id").expect("generated id");
    assert_eq!(generated.len(), 36, "{generated}");

    let response = client()
        .get("/healthz")
        .header("x-request-id", "trace-abc-123")
        .send()
        .await;
    assert_eq!(response.header("x-request-id"), Some("trace-abc-123"));
}

#[tokio::test]
async fn panic_becomes_json_500_without_detail() {
    let response = client().get("/panic").send().await;
    response.expect_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", None);
    assert!(!response.text().contains("handler bug"));
}

#[tokio::test]
async fn slow_request_times_out_with_503() {
    let limits = HttpLimits {
        request_timeout: Duration::from_millis(50),
        ..HttpLimits::default()
    };
    let response = client_with(demo_routes(), limits).get("/slow").send().await;
    response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    assert!(response.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_postgres_reachability() {
    let database = TestDatabase::create().await;
    let proxy = platform::testing::TcpProxy::start(database.server_address().await).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(proxy.route(&database.options))
        .await
        .expect("pool through proxy");
    let client = TestClient::new(app(
        Router::new(),
        Readiness::Postgres(pool),
        HttpLimits::default(),
    ));

    client
        .get("/readyz")
        .send()
        .await
        .expect_status(StatusCode::OK);
    proxy.cut();
    let response = client.get("/readyz").send().await;
    response.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    proxy.restore();
    let mut ready = false;
    for _ in 0..40 {
        if client.get("/readyz").send().await.status == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "readiness recovers without a restart");
}
