//! The innermost shared middleware: the request timeout, the body limit note for 413
//! messages, and JSON bodies for the errors that axum and tower-http send without one
//! (404, 405, 413). One hand-written layer does all three, because axum's `from_fn`
//! clones and boxes the inner service on every request.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use tower::{Layer, Service};

use super::HttpLimits;
use crate::error::ApiError;

/// Wraps routes with [`Guard`].
#[derive(Clone, Copy, Debug)]
pub(super) struct GuardLayer {
    limits: HttpLimits,
}

impl GuardLayer {
    pub(super) fn new(limits: HttpLimits) -> Self {
        GuardLayer { limits }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            limits: self.limits,
        }
    }
}

/// Applies the timeout and turns bare error responses into the JSON error shape.
#[derive(Clone, Debug)]
pub(super) struct Guard<S> {
    inner: S,
    limits: HttpLimits,
}

impl<S, B> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = request.method().clone();
        let uri = request.uri().clone();
        let limits = self.limits;
        let handled = self.inner.call(request);

        Box::pin(async move {
            let started = Instant::now();
            let Ok(Ok(response)) = tokio::time::timeout(limits.request_timeout, handled).await
            else {
                let elapsed_ms = started.elapsed().as_millis();
                let error = ApiError::unavailable(
                    format!("the request did not finish within {elapsed_ms} ms"),
                    1,
                );
                return Ok(error.into_response());
            };

            let response = response.map(Body::new);
            let status = response.status();
            // Extractors cannot see the configured limit, so every 413 gets its wording
            // here, where the limit is known.
            let too_large = status == StatusCode::PAYLOAD_TOO_LARGE;
            if !(status.is_client_error() || status.is_server_error())
                || (is_json(&response) && !too_large)
            {
                return Ok(response);
            }
            Ok(json_error_body(
                response,
                &method,
                uri.path(),
                limits.max_body,
            ))
        })
    }
}

fn json_error_body(response: Response, method: &Method, path: &str, limit: usize) -> Response {
    let (mut parts, _) = response.into_parts();
    let status = parts.status;
    let error = match status {
        // axum adds the Allow header after this middleware has run, so it cannot be quoted.
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            format!(
                "method {method} is not allowed on {path}; the Allow header lists the methods that are"
            ),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(Some(limit)),
        StatusCode::NOT_FOUND => ApiError::not_found(format!("no route for {method} {path}")),
        other => ApiError::new(other, other.canonical_reason().unwrap_or("request failed")),
    };

    let fresh = error.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, body)
}

fn is_json(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}
