//! The router every service is served with: its routes plus health and readiness, a
//! request id, tracing, a body limit, a request timeout, panic recovery, and JSON bodies
//! for the errors axum and tower-http produce themselves (404, 405, 413).

use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::error::ApiError;

mod guard;

use guard::GuardLayer;

/// How long `/readyz` waits for the store before it reports not ready.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness check behind `/readyz`.
#[derive(Clone, Debug)]
pub enum Readiness {
    /// Memory mode: ready whenever the process runs.
    Always,
    /// Postgres mode: ready when a trivial query succeeds.
    Postgres(PgPool),
}

impl Readiness {
    async fn check(&self) -> Result<(), ApiError> {
        let Readiness::Postgres(pool) = self else {
            return Ok(());
        };
        let ping = sqlx::query("SELECT 1").execute(pool);
        match tokio::time::timeout(READINESS_TIMEOUT, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                Err(ApiError::unavailable("the store is unreachable", 1).with_source(error))
            }
            Err(_) => Err(ApiError::unavailable(
                "the store did not respond within 2 seconds",
                1,
            )),
        }
    }
}

/// Limits applied to every request.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Maximum time a request may run before the server responds 503.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body: 1024 * 1024,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Wraps a service's routes with the endpoints and layers every service shares.
pub fn app(routes: Router, readiness: Readiness, limits: HttpLimits) -> Router {
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness);

    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(GuardLayer::new(limits))
        .layer(RequestBodyLimitLayer::new(limits.max_body));

    routes.merge(health).fallback(route_not_found).layer(layers)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    match readiness.check().await {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn route_not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// Request ids for requests that bring none: a random UUID, written straight into the
/// header value, because the usual `to_string` and re-parse cost an allocation and a
/// validation pass per request.
#[derive(Clone, Copy, Debug, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut buffer = uuid::Uuid::encode_buffer();
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

fn request_span(request: &Request) -> Span {
    use tracing::field::Empty;

    let span = tracing::info_span!("request", method = Empty, route = Empty, request_id = Empty);
    // Below info the span is disabled, and looking up its fields would be wasted work.
    if span.is_disabled() {
        return span;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(request.uri().path(), MatchedPath::as_str);
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    span.record("method", tracing::field::display(request.method()));
    span.record("route", route);
    span.record("request_id", request_id);
    span
}

fn log_response<B>(response: &axum::http::Response<B>, latency: Duration, _: &Span) {
    tracing::debug!(
        status = response.status().as_u16(),
        latency_us = latency.as_micros() as u64,
        "request finished"
    );
}

fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_string());
    ApiError::internal(std::io::Error::other(format!("handler panicked: {detail}"))).into_response()
}

/// A GET route whose handler changes state (it leases or hands out work), so `HEAD`
/// must not reach it: axum would otherwise run the GET handler for `HEAD` too.
/// `allow` lists every method of the path, for the `Allow` header of the 405 response.
pub fn get_changing_state<H, T, S>(handler: H, allow: &'static str) -> MethodRouter<S>
where
    H: axum::handler::Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    get(handler).route_layer(middleware::from_fn(move |request: Request, next: Next| {
        reject_head(request, next, allow)
    }))
}

async fn reject_head(request: Request, next: Next, allow: &'static str) -> Response {
    if request.method() != Method::HEAD {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "HEAD is not allowed on {} because GET there changes state; use GET",
            request.uri().path()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
