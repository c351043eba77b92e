//! Request bodies that may be absent or are read by hand, and fields that may come from
//! the body or the query.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use platform::ApiError;
use platform::extract::{Params, json_body, parse_json, read_body, require_json};
use serde::de::DeserializeOwned;

/// A JSON body that may be left out. An empty body needs no content type and yields
/// `None`; a body with content must be JSON, as everywhere else.
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let headers = request.headers().clone();
        let bytes = read_body(request, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        require_json(&headers)?;
        parse_json(&bytes).map(|value| OptionalJson(Some(value)))
    }
}

/// A body that must be JSON, kept as bytes for a handler to read in its own way.
#[derive(Debug)]
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        json_body(request, state).await.map(JsonBytes)
    }
}

/// Takes a field from the body or the query string; both may carry it if the values
/// match.
pub fn one_of<T: PartialEq>(
    field: &str,
    from_body: Option<T>,
    from_query: Option<T>,
) -> Result<Option<T>, ApiError> {
    match (from_body, from_query) {
        (Some(body), Some(query)) if body != query => Err(ApiError::invalid_field(
            field,
            format!("{field} differs between the body and the query string; send it once"),
        )),
        (Some(value), _) | (None, Some(value)) => Ok(Some(value)),
        (None, None) => Ok(None),
    }
}

/// Takes the `ack_id` of an ack, nack or lease from the body or the query string.
pub fn ack_id_of(from_body: Option<String>, params: &Params) -> Result<Option<String>, ApiError> {
    let from_query = params.text("ack_id").map(str::to_string);
    one_of("ack_id", from_body.filter(|id| !id.is_empty()), from_query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_source_is_accepted() {
        assert_eq!(one_of("ack_id", Some(1), None).expect("body"), Some(1));
        assert_eq!(one_of("ack_id", None, Some(2)).expect("query"), Some(2));
        assert_eq!(one_of("ack_id", Some(3), Some(3)).expect("same"), Some(3));
        assert_eq!(one_of::<u8>("ack_id", None, None).expect("neither"), None);
    }

    #[test]
    fn conflicting_sources_name_field() {
        let error = one_of("delay_s", Some(1), Some(2)).unwrap_err();
        assert_eq!(error.field(), Some("delay_s"));
    }
}
