//! An in-process HTTP client that sends requests through a router without a socket.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Sends requests to a router in process, without a socket.
#[derive(Clone)]
pub struct TestClient {
    router: Router,
}

impl TestClient {
    /// Wraps a complete router (usually from `platform::http::app`).
    pub fn new(router: Router) -> Self {
        TestClient { router }
    }

    /// Starts a request with any method.
    pub fn request(&self, method: Method, uri: &str) -> TestRequest {
        TestRequest {
            router: self.router.clone(),
            builder: Request::builder().method(method).uri(uri),
            body: Body::empty(),
        }
    }

    /// Polls `/readyz` until it returns 200 or `timeout` passes; true when ready.
    pub async fn wait_until_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.get("/readyz").send().await.status == StatusCode::OK {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Starts a GET request.
    pub fn get(&self, uri: &str) -> TestRequest {
        self.request(Method::GET, uri)
    }

    /// Starts a POST request.
    pub fn post(&self, uri: &str) -> TestRequest {
        self.request(Method::POST, uri)
    }

    /// Starts a PATCH request.
    pub fn patch(&self, uri: &str) -> TestRequest {
        self.request(Method::PATCH, uri)
    }
}

/// A request under construction.
pub struct TestRequest {
    router: Router,
    builder: axum::http::request::Builder,
    body: Body,
}

impl TestRequest {
    /// Sets a JSON body and its content type.
    pub fn json(self, value: &Value) -> Self {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.body(Some("application/json"), bytes)
    }

    /// Sets a raw body, with a content type or none.
    pub fn body(mut self, content_type: Option<&str>, bytes: impl Into<Bytes>) -> Self {
        if let Some(kind) = content_type {
            self.builder = self.builder.header(header::CONTENT_TYPE, kind);
        }
        self.body = Body::from(bytes.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// Sends the request through the router.
    pub async fn send(self) -> TestResponse {
        let request = self
            .builder
            .body(self.body)
            .expect("request parts are valid");
        let response = self
            .router
            .oneshot(request)
            .await
            .expect("routers are infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("response body can be read")
            .to_bytes();
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

/// A response with its body read.
#[derive(Debug)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl TestResponse {
    /// Returns the body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the body as JSON, failing the test with the body text when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.text()))
    }

    /// Returns a header value as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Fails the test unless the status matches; the message shows the body.
    #[track_caller]
    pub fn expect_status(&self, expected: StatusCode) -> &Self {
        assert_eq!(
            self.status,
            expected,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }

    /// Fails the test unless this is an API error with the given status, code and field,
    /// sent as JSON; returns the error object.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str, field: Option<&str>) -> Value {
        self.expect_status(status);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "error bodies are JSON"
        );
        let body = self.json();
        let error = body["error"].clone();
        assert_eq!(error["code"], code, "error code; body: {body}");
        assert_eq!(error["field"].as_str(), field, "error field; body: {body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error message is present; body: {body}"
        );
        error
    }
}
