//! The JSON error body every endpoint returns, and the mapping from status to code.
//!
//! Shape: `{"error": {"code": "...", "message": "...", "field": "..."}}`. Codes are gRPC
//! canonical names where one fits. A 5xx body never carries internal detail: the cause
//! is logged once, inside the request's span.

use std::error::Error as StdError;
use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

type BoxError = Box<dyn StdError + Send + Sync>;

/// An error returned to the client as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after_secs: Option<u64>,
    source: Option<BoxError>,
}

impl ApiError {
    /// Builds an error with any status; prefer the named constructors.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code_for(status),
            message: message.into(),
            field: None,
            retry_after_secs: None,
            source: None,
        }
    }

    /// 400: malformed input that is not tied to one field.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400: one input field is at fault; `field` is its JSON path (`labels.route`, `[3].value`).
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid_argument(message).with_field(field)
    }

    /// 404: an unknown id or route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409 `already_exists`: a client-chosen id is taken.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 409 `failed_precondition`: an illegal state transition or a stale lease.
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::CONFLICT, message);
        error.code = "failed_precondition";
        error
    }

    /// 412 `aborted`: an `If-Match` that did not match.
    pub fn aborted(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, message)
    }

    /// 413: the body is over the limit.
    pub fn payload_too_large(limit_bytes: Option<usize>) -> Self {
        let message = match limit_bytes {
            Some(limit) => format!("request body is larger than the limit of {limit} bytes"),
            None => "request body is larger than the configured limit".to_string(),
        };
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 415: the body is not of an accepted media type.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
    }

    /// 429: a memory-mode capacity or a series cap is reached.
    pub fn resource_exhausted(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message).with_retry_after(retry_after_secs)
    }

    /// 503: a full work queue or an unreachable store. `source`, if any, is logged.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message).with_retry_after(retry_after_secs)
    }

    /// 500: a bug. The client sees a fixed message; the cause goes to the log.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the server log has the details under this request's x-request-id",
        )
        .with_source(source)
    }

    /// Maps a database error: 503 `unavailable` when Postgres is out of reach or
    /// refusing work for now, else 500. The cause is logged, never sent.
    pub fn from_database(source: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&source) {
            Self::unavailable("the database is unreachable; retry shortly", 1).with_source(source)
        } else {
            Self::internal(source)
        }
    }

    /// Names the input at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Adds a `Retry-After` header, in seconds.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_secs = Some(seconds.max(1));
        self
    }

    /// Keeps the underlying cause so it can be logged.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Returns the HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Returns the error code of the body.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Returns the client-facing message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Returns the field at fault, if there is one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    fn log(&self) {
        let cause = self
            .source
            .as_deref()
            .map(|source| ErrorChain(source as &(dyn StdError + 'static)));
        if self.status.is_server_error() {
            if self.status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!(code = self.code, message = %self.message, cause = cause.map(tracing::field::display), "request failed");
            } else {
                tracing::error!(
                    code = self.code,
                    cause = cause.map(tracing::field::display),
                    "request failed"
                );
            }
        } else {
            tracing::debug!(code = self.code, field = self.field.as_deref(), message = %self.message, "request rejected");
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl StdError for ApiError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// Maps a status to its error code: the gRPC canonical name where one fits, else the HTTP name.
pub fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_argument",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "already_exists",
        StatusCode::PRECONDITION_FAILED => "aborted",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "resource_exhausted",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => "unavailable",
        StatusCode::BAD_GATEWAY => "unavailable",
        StatusCode::REQUEST_TIMEOUT => "deadline_exceeded",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "permission_denied",
        StatusCode::NOT_IMPLEMENTED => "unimplemented",
        status if status.is_server_error() => "internal",
        _ => "invalid_argument",
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();

        let body = Body {
            error: Detail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());

        let mut response = (self.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Displays an error with its chain of causes, `outer: inner: root`.
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(error: ApiError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).expect("json"),
        )
    }

    #[tokio::test]
    async fn field_error_has_code_and_field() {
        let (status, headers, body) =
            body_of(ApiError::invalid_field("labels.route", "must be a string")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(body["error"]["code"], "invalid_argument");
        assert_eq!(body["error"]["field"], "labels.route");
        assert_eq!(body["error"]["message"], "must be a string");
    }

    #[tokio::test]
    async fn unavailable_sets_retry_after() {
        let (status, headers, body) = body_of(ApiError::unavailable("queue is full", 2)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "2");
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(body["error"].get("field").is_none());
    }

    #[tokio::test]
    async fn internal_hides_cause() {
        let cause = std::io::Error::other("disk on fire at /var/lib/x");
        let (status, _, body) = body_of(ApiError::internal(cause)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("disk on fire"));
    }

    #[test]
    fn conflict_codes_differ() {
        assert_eq!(ApiError::already_exists("x").code(), "already_exists");
        assert_eq!(
            ApiError::failed_precondition("x").code(),
            "failed_precondition"
        );
    }
}
