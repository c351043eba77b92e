//! HTTP endpoints of the messaging service: parse, call the service, map errors.

mod body;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use platform::ApiError;
use platform::extract::{Json, Params, from_value, parse_json};
use platform::http::get_changing_state;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope;
use crate::input::{PublishInput, check_batch_len};
use crate::model::{MAX_DELAY_S, MAX_LEASE_S, MAX_PULL, MAX_WAIT_MS, TopicSummary};
use crate::service::{Error, Messaging, PullRequest};
use crate::store::StoreError;
use body::{JsonBytes, OptionalJson, ack_id_of, one_of};

/// Header that makes a publish idempotent within the dedup window.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Response header set when a publish replayed an earlier one instead of storing.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Builds the messaging routes.
///
/// Batch endpoints are static segments (`messages:batch`, `messages:ack`) beside the
/// `messages` collection; axum 0.8 matches them before the `{id}` routes, which sit one
/// segment deeper.
pub fn router(messaging: Arc<Messaging>) -> Router {
    Router::new()
        .route("/topics", get(list_topics))
        .route("/topics/{topic}/stats", get(stats))
        .route(
            "/topics/{topic}/messages",
            get_changing_state(pull, "GET, POST").post(publish),
        )
        .route("/topics/{topic}/messages:batch", post(publish_batch))
        .route("/topics/{topic}/messages:ack", post(ack_batch))
        .route("/topics/{topic}/messages/{id}/ack", post(ack))
        .route("/topics/{topic}/messages/{id}/nack", post(nack))
        .route("/topics/{topic}/messages/{id}/lease", post(lease))
        .with_state(messaging)
}

#[derive(Deserialize)]
struct PublishBody {
    tenant_id: Option<String>,
    project_id: Option<String>,
    key: Option<String>,
    payload_base64: Option<String>,
    priority: Option<String>,
    attributes: Option<BTreeMap<String, String>>,
    delay_s: Option<u64>,
}

impl From<PublishBody> for PublishInput {
    fn from(body: PublishBody) -> Self {
        PublishInput {
            tenant_id: body.tenant_id,
            project_id: body.project_id,
            key: body.key,
            payload_base64: body.payload_base64,
            priority: body.priority,
            attributes: body.attributes,
            delay_s: body.delay_s,
        }
    }
}

#[derive(Deserialize, Default)]
struct AckBody {
    ack_id: Option<String>,
}

#[derive(Deserialize, Default)]
struct NackBody {
    ack_id: Option<String>,
    delay_s: Option<u64>,
}

#[derive(Deserialize, Default)]
struct LeaseBody {
    ack_id: Option<String>,
    visibility_timeout_s: Option<u64>,
}

#[derive(Deserialize)]
struct AckBatchBody {
    message_ids: Option<Vec<String>>,
}

#[derive(Serialize)]
struct TopicsBody {
    topics: Vec<TopicSummary>,
}

async fn publish(
    State(messaging): State<Arc<Messaging>>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    JsonBytes(bytes): JsonBytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let body = match parse_valid::<PublishBody>(&bytes) {
        Some(body) => body,
        None => parse_json::<PublishBody>(&bytes)?,
    };
    let published = messaging.publish(&topic, body.into(), key).await?;
    let body = match published.messages.first() {
        Some(message) => envelope::message_body(message),
        None => b"null".to_vec(),
    };
    Ok(created(published.replayed, body))
}

#[derive(Deserialize)]
struct BatchBody {
    messages: Option<Vec<PublishBody>>,
}

async fn publish_batch(
    State(messaging): State<Arc<Messaging>>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    JsonBytes(bytes): JsonBytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let inputs = batch_inputs(&bytes)?;
    let published = messaging.publish_batch(&topic, inputs, key).await?;
    Ok(created(
        published.replayed,
        envelope::messages_body(&published.messages),
    ))
}

/// Reads the messages of a batch. A valid body is read straight into its items. A body
/// that fails is read again item by item, so the error names the first bad item, or the
/// array when it is missing or too long (its length is checked before its items).
fn batch_inputs(bytes: &[u8]) -> Result<Vec<PublishInput>, ApiError> {
    if let Some(BatchBody {
        messages: Some(items),
    }) = parse_valid::<BatchBody>(bytes)
    {
        check_batch_len("messages", items.len())?;
        return Ok(items.into_iter().map(PublishInput::from).collect());
    }
    let body: Value = parse_json(bytes)?;
    let items = batch_items(body, "messages")?;
    check_batch_len("messages", items.len())?;
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            from_value::<PublishBody>(item, &format!("messages[{index}]")).map(PublishInput::from)
        })
        .collect()
}

/// Parses a body that is valid, checking its UTF-8 once for the whole body so the parser
/// need not check each string. `None` for any failure: the caller parses again with
/// `parse_json`, whose error names the field.
fn parse_valid<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let text = std::str::from_utf8(bytes).ok()?;
    serde_json::from_str(text).ok()
}

async fn pull(
    State(messaging): State<Arc<Messaging>>,
    Path(topic): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let request = PullRequest {
        tenant_id: params.text("tenant_id").map(str::to_string),
        project_id: params.text("project_id").map(str::to_string),
        limit: params.integer("limit", 1..=MAX_PULL)?,
        visibility_timeout_s: params.integer("visibility_timeout_s", 1..=MAX_LEASE_S)?,
        wait_ms: params.integer("wait_ms", 0..=MAX_WAIT_MS)?,
    };
    let deliveries = messaging.pull(&topic, request).await?;
    Ok(json_response(
        StatusCode::OK,
        envelope::deliveries_body(&deliveries),
    ))
}

async fn ack(
    State(messaging): State<Arc<Messaging>>,
    Path((topic, id)): Path<(String, String)>,
    params: Params,
    OptionalJson(body): OptionalJson<AckBody>,
) -> Result<StatusCode, ApiError> {
    let body = body.unwrap_or_default();
    let ack_id = ack_id_of(body.ack_id, &params)?;
    messaging.ack(&topic, &id, ack_id.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn nack(
    State(messaging): State<Arc<Messaging>>,
    Path((topic, id)): Path<(String, String)>,
    params: Params,
    OptionalJson(body): OptionalJson<NackBody>,
) -> Result<StatusCode, ApiError> {
    let body = body.unwrap_or_default();
    let ack_id = ack_id_of(body.ack_id, &params)?;
    let delay_s = one_of(
        "delay_s",
        body.delay_s,
        params.integer("delay_s", 0..=MAX_DELAY_S)?,
    )?;
    messaging
        .nack(&topic, &id, ack_id.as_deref(), delay_s)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn lease(
    State(messaging): State<Arc<Messaging>>,
    Path((topic, id)): Path<(String, String)>,
    params: Params,
    OptionalJson(body): OptionalJson<LeaseBody>,
) -> Result<Response, ApiError> {
    let body = body.unwrap_or_default();
    let ack_id = ack_id_of(body.ack_id, &params)?;
    let timeout = one_of(
        "visibility_timeout_s",
        body.visibility_timeout_s,
        params.integer("visibility_timeout_s", 0..=MAX_LEASE_S)?,
    )?;
    let lease = messaging
        .lease(&topic, &id, ack_id.as_deref(), timeout)
        .await?;
    Ok(platform::extract::Json(lease).into_response())
}

async fn ack_batch(
    State(messaging): State<Arc<Messaging>>,
    Path(topic): Path<String>,
    Json(body): Json<AckBatchBody>,
) -> Result<Response, ApiError> {
    let Some(ids) = body.message_ids else {
        return Err(ApiError::invalid_field(
            "message_ids",
            "message_ids is required",
        ));
    };
    let report = messaging.ack_many(&topic, ids).await?;
    Ok(platform::extract::Json(report).into_response())
}

async fn stats(
    State(messaging): State<Arc<Messaging>>,
    Path(topic): Path<String>,
) -> Result<Response, ApiError> {
    Ok(platform::extract::Json(messaging.stats(&topic).await?).into_response())
}

async fn list_topics(State(messaging): State<Arc<Messaging>>) -> Result<Response, ApiError> {
    let topics = messaging.topics().await?;
    Ok(platform::extract::Json(TopicsBody { topics }).into_response())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get(IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| {
            ApiError::invalid_field("Idempotency-Key", "Idempotency-Key must be printable ASCII")
        }),
    }
}

/// Builds a response with a JSON body written by hand.
fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let content_type = HeaderValue::from_static("application/json");
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn created(replayed: bool, body: Vec<u8>) -> Response {
    let mut response = json_response(StatusCode::CREATED, body);
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// Extracts the array under `field` of a batch body, checking its shape but not yet its
/// items.
fn batch_items(body: Value, field: &str) -> Result<Vec<Value>, ApiError> {
    let Value::Object(mut object) = body else {
        return Err(ApiError::invalid_argument(format!(
            "the body must be an object with a {field} array"
        )));
    };
    match object.remove(field) {
        None | Some(Value::Null) => Err(ApiError::invalid_field(
            field,
            format!("{field} is required"),
        )),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(ApiError::invalid_field(
            field,
            format!("{field} must be an array"),
        )),
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid { field, message } => ApiError::invalid_field(field, message),
            Error::NotFound(_) => ApiError::not_found(error.to_string()),
            Error::StaleAck { .. } | Error::KeyUsedForBatch { .. } => {
                ApiError::failed_precondition(error.to_string())
            }
            Error::Store(StoreError::Full { .. }) => ApiError::resource_exhausted(
                format!("{error}; acknowledge messages or retry later"),
                1,
            ),
            // Expired keys are freed by the retention sweep, which runs every minute by
            // default.
            Error::Store(StoreError::KeysFull { .. }) => ApiError::resource_exhausted(
                format!("{error}; retry after expired keys are freed, or publish without one"),
                60,
            ),
            Error::Store(StoreError::Database(source)) => ApiError::from_database(source),
        }
    }
}
