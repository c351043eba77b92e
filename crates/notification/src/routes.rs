//! HTTP endpoints of the notification service: parse, call the service, map errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use platform::ApiError;
use platform::extract::{Json, Params};
use serde::Deserialize;

use crate::model::Delivery;
use crate::service::{Error, NewNotification, Notifier};
use crate::store::StoreError;

/// Builds the notification routes.
pub fn router(notifier: Arc<Notifier>) -> Router {
    Router::new()
        .route("/notify", post(notify))
        .route("/notifications/recent", get(recent))
        .with_state(notifier)
}

#[derive(Deserialize)]
struct NotifyBody {
    channel: Option<String>,
    recipient: Option<String>,
    template: Option<String>,
    data: Option<BTreeMap<String, serde_json::Value>>,
}

async fn notify(
    State(notifier): State<Arc<Notifier>>,
    Json(body): Json<NotifyBody>,
) -> Result<(StatusCode, platform::extract::Json<Delivery>), ApiError> {
    let input = NewNotification {
        channel: body.channel,
        recipient: body.recipient,
        template: body.template,
        data: body.data,
    };
    let delivery = notifier.notify(input).await?;
    Ok((StatusCode::ACCEPTED, platform::extract::Json(delivery)))
}

async fn recent(
    State(notifier): State<Arc<Notifier>>,
    params: Params,
) -> Result<platform::extract::Json<Vec<Delivery>>, ApiError> {
    let limit = params.integer("limit", 1..=notifier.recent_capacity())?;
    Ok(platform::extract::Json(notifier.recent(limit).await?))
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid { field, message } => ApiError::invalid_field(field, message),
            // The service has logged the sender's error with the delivery id; its text may
            // describe the recipient's systems, so the client gets a fixed message.
            Error::SendFailed { channel, .. } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "the {channel} sender failed, so the notification was not sent; retry later"
                ),
            ),
            Error::Render(source) => ApiError::internal(source),
            Error::Store(StoreError::Database(source)) => ApiError::from_database(source),
        }
    }
}
