//! Request extractors whose rejections use the JSON error shape: a JSON body with field
//! paths in its errors, and query parameters checked one by one.

use std::borrow::Cow;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body deserialized into `T`.
///
/// A missing or non-JSON content type is 415, a body over the limit 413, malformed JSON
/// 400 without a field, and a value of the wrong type 400 naming its path.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_body(request, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// Capacity a response body starts with: most single-object responses fit, so they are
/// written without regrowing the buffer (axum's own `Json` starts at 128 bytes).
const RESPONSE_CAPACITY: usize = 1024;

/// A JSON response body, written by sonic-rs. Its string escaping scans many bytes per
/// step where serde_json's checks each byte, and strings fill most responses: a page of
/// 20 assignments took an eighth fewer instructions per request.
impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(RESPONSE_CAPACITY);
        match sonic_rs::to_writer(&mut body, &self.0) {
            Ok(()) => {
                let content_type = HeaderValue::from_static("application/json");
                ([(header::CONTENT_TYPE, content_type)], body).into_response()
            }
            Err(error) => ApiError::internal(error).into_response(),
        }
    }
}

/// Reads a body that must be JSON, returning its bytes.
pub async fn json_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    require_json(request.headers())?;
    read_body(request, state).await
}

/// Reads a body of any media type, mapping an over-limit body to 413. The router's
/// middleware words every 413 with the configured limit.
pub async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(body_rejection)
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large(None)
    } else {
        ApiError::invalid_argument("the request body could not be read").with_source(rejection)
    }
}

/// Returns the media type of a request without parameters, lower-cased (`application/json`).
/// It borrows the header when that is lower case already, as nearly every client sends it.
pub fn media_type(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Some(Cow::Owned(essence.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(essence))
    }
}

/// Checks that the content type is JSON (`application/json` or `application/*+json`).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match media_type(headers) {
        Some(kind) if is_json_media_type(&kind) => Ok(()),
        Some(kind) => Err(ApiError::unsupported_media_type(format!(
            "content type {kind} is not supported; send the body as JSON with Content-Type: application/json"
        ))),
        None => Err(ApiError::unsupported_media_type(
            "the request has no Content-Type; send the body as JSON with Content-Type: application/json",
        )),
    }
}

/// True for `application/json` and `application/*+json`, given a lower-cased media type
/// without parameters (see [`media_type`]).
pub fn is_json_media_type(kind: &str) -> bool {
    kind == "application/json" || (kind.starts_with("application/") && kind.ends_with("+json"))
}

/// Deserializes JSON bytes, naming the path of a wrongly typed value.
///
/// Valid input is parsed once without path tracking, because tracking costs on every
/// value. Only input that fails is parsed again with `serde_path_to_error` to name the
/// field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let starts_array = bytes
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'[');
    if starts_array && expects_struct::<T>() {
        return Err(not_an_object(""));
    }

    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(error) => Err(locate_json_error::<T>(bytes, &error)),
    }
}

/// Parses failing input again with path tracking to build the client error.
fn locate_json_error<T: DeserializeOwned>(bytes: &[u8], first: &serde_json::Error) -> ApiError {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(error) => json_error(error, ""),
        // Only trailing input can fail the plain parse and pass this one.
        Ok(_) => match deserializer.end() {
            Err(error) => syntax_error(&error),
            Ok(()) => syntax_error(first),
        },
    }
}

/// Deserializes an already parsed value; `prefix` is prepended to error paths
/// (`[3]` for the fourth item of a batch).
pub fn from_value<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, ApiError> {
    if value.is_array() && expects_struct::<T>() {
        return Err(not_an_object(prefix));
    }
    match T::deserialize(&value) {
        Ok(parsed) => Ok(parsed),
        Err(_) => match serde_path_to_error::deserialize::<_, T>(value) {
            Err(error) => Err(json_error(error, prefix)),
            Ok(parsed) => Ok(parsed),
        },
    }
}

fn json_error(error: serde_path_to_error::Error<serde_json::Error>, prefix: &str) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return syntax_error(&inner);
    }

    let field = match (prefix, path.as_str()) {
        (prefix, ".") => prefix.to_string(),
        ("", path) => path.to_string(),
        (prefix, path) if path.starts_with('[') => format!("{prefix}{path}"),
        (prefix, path) => format!("{prefix}.{path}"),
    };
    let message = describe_data_error(&field, &inner);
    if field.is_empty() {
        ApiError::invalid_argument(message)
    } else {
        ApiError::invalid_field(field, message)
    }
}

fn not_an_object(path: &str) -> ApiError {
    if path.is_empty() {
        ApiError::invalid_argument("the request body must be a JSON object")
    } else {
        ApiError::invalid_field(path, format!("{path} must be a JSON object"))
    }
}

/// True when `T` deserializes from a struct. serde_json fills a struct from an array by
/// position, so a body such as `["a", "b", "c"]` would pass as an object with three
/// fields. Callers reject arrays where this returns true.
fn expects_struct<T: DeserializeOwned>() -> bool {
    !crate::config::field_names::<T>().is_empty()
}

fn syntax_error(error: &serde_json::Error) -> ApiError {
    ApiError::invalid_argument(format!(
        "request body is not valid JSON (line {}, column {})",
        error.line(),
        error.column()
    ))
}

/// Rewords serde's "invalid type: X, expected Y" as "FIELD must be Y, not X".
fn describe_data_error(field: &str, error: &serde_json::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let subject = if field.is_empty() { "the body" } else { field };

    let Some(rest) = text
        .strip_prefix("invalid type: ")
        .or_else(|| text.strip_prefix("invalid value: "))
    else {
        return format!("{subject} is invalid: {text}");
    };
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return format!("{subject} is invalid: {text}");
    };
    format!(
        "{subject} must be {}, not {}",
        friendly_expectation(expected),
        friendly_found(found)
    )
}

/// Rewords serde's description of a JSON value (`sequence`, ``integer `42` ``) in JSON
/// terms (`an array`, `the number 42`).
pub fn friendly_found(found: &str) -> String {
    let literal = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .map(|rest| rest.trim_matches('`').to_string())
    };
    if let Some(number) = literal("integer ").or_else(|| literal("floating point ")) {
        return format!("the number {number}");
    }
    if let Some(flag) = literal("boolean ") {
        return flag;
    }
    if let Some(text) = found.strip_prefix("string ") {
        return format!("the string {text}");
    }
    match found {
        "sequence" => "an array".to_string(),
        "map" => "an object".to_string(),
        "unit value" | "null" => "null".to_string(),
        other => other.to_string(),
    }
}

/// Rewords serde's type names (`f64`, `u32`, `a map`) as a client would say them.
pub(crate) fn friendly_expectation(expected: &str) -> &str {
    match expected {
        "f64" | "f32" => "a number",
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "a sequence" => "an array",
        "a map" => "an object",
        "a boolean" | "bool" => "true or false",
        other => other,
    }
}

/// Query parameters, read one at a time with errors that name the parameter.
///
/// An empty value (`?tenant_id=`) counts as absent; a repeated name keeps its last value.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        Params::parse(query)
    }
}

impl Params {
    /// Parses a raw query string.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(Params)
            .map_err(|_| ApiError::invalid_argument("the query string is not valid URL encoding"))
    }

    /// Returns the value of `name`, if present and not empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    /// An integer parameter that must lie in `range`.
    pub fn integer<T>(&self, name: &str, range: RangeInclusive<T>) -> Result<Option<T>, ApiError>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let Some(raw) = self.text(name) else {
            return Ok(None);
        };
        let out_of_range = || {
            ApiError::invalid_field(
                name,
                format!(
                    "{name} must be an integer from {} to {}, not {raw:?}",
                    range.start(),
                    range.end()
                ),
            )
        };
        let value: T = raw.parse().map_err(|_| out_of_range())?;
        if range.contains(&value) {
            Ok(Some(value))
        } else {
            Err(out_of_range())
        }
    }

    /// Converts a parameter with `parse`, whose error text states what is expected.
    pub fn parsed<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ApiError> {
        let Some(raw) = self.text(name) else {
            return Ok(None);
        };
        parse(raw).map(Some).map_err(|expected| {
            ApiError::invalid_field(name, format!("{name} {expected}, not {raw:?}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::HashMap;

    #[tokio::test]
    async fn responses_are_written_as_serde_json_writes_them() {
        let floats = [
            0.0,
            -0.0,
            0.1,
            1.5,
            100.0,
            1e21,
            1e-7,
            123456789.125,
            f64::MAX,
            f64::MIN_POSITIVE,
        ];
        let texts = [
            "plain",
            "quote \" and \\",
            "tab\tnewline\n",
            "\u{1}\u{1f}",
            "é ✓ 🎮",
        ];
        let value = serde_json::json!({
            "floats": floats,
            "integers": [0, -1, u64::MAX, i64::MIN],
            "texts": texts,
            "nested": {"empty": {}, "list": [], "null": null, "yes": true},
        });

        let ours = Json(&value).into_response();
        let body = axum::body::to_bytes(ours.into_body(), usize::MAX)
            .await
            .expect("body");

        assert_eq!(
            std::str::from_utf8(&body).expect("utf-8"),
            serde_json::to_string(&value).expect("serializes")
        );
    }

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[allow(dead_code)]
        value: Option<f64>,
        #[allow(dead_code)]
        labels: Option<HashMap<String, String>>,
    }

    #[test]
    fn wrong_type_names_path() {
        let error = parse_json::<Sample>(br#"{"value": "high"}"#).unwrap_err();
        assert_eq!(error.field(), Some("value"));
        assert_eq!(
            error.message(),
            "value must be a number, not the string \"high\""
        );
    }

    #[test]
    fn found_values_use_json_words() {
        assert_eq!(friendly_found("sequence"), "an array");
        assert_eq!(friendly_found("map"), "an object");
        assert_eq!(friendly_found("integer `42`"), "the number 42");
        assert_eq!(friendly_found("floating point `1.5`"), "the number 1.5");
        assert_eq!(friendly_found("boolean `true`"), "true");
        assert_eq!(friendly_found("string \"x\""), "the string \"x\"");
        let error = parse_json::<Sample>(br#"{"labels": [1]}"#).unwrap_err();
        assert_eq!(error.message(), "labels must be an object, not an array");
    }

    #[test]
    fn map_value_names_key() {
        let error = parse_json::<Sample>(br#"{"labels": {"route": 5}}"#).unwrap_err();
        assert_eq!(error.field(), Some("labels.route"));
    }

    #[test]
    fn batch_prefix_goes_first() {
        let value = serde_json::json!({"value": true});
        let error = from_value::<Sample>(value, "[3]").unwrap_err();
        assert_eq!(error.field(), Some("[3].value"));
    }

    #[test]
    fn syntax_error_has_no_field() {
        let error = parse_json::<Sample>(b"{\"value\": ").unwrap_err();
        assert_eq!(error.field(), None);
        assert!(
            error.message().contains("not valid JSON"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn array_is_not_a_struct() {
        let error = parse_json::<Sample>(br#" ["x", {"a": "b"}]"#).unwrap_err();
        assert_eq!(error.field(), None);
        assert!(
            error.message().contains("JSON object"),
            "{}",
            error.message()
        );

        let item = serde_json::json!([1.0, {}]);
        let error = from_value::<Sample>(item, "[2]").unwrap_err();
        assert_eq!(error.field(), Some("[2]"));
    }

    #[test]
    fn arrays_still_parse_as_lists() {
        let list: Vec<Sample> = parse_json(br#"[{"value": 1.5}]"#).expect("a list of objects");
        assert_eq!(list.len(), 1);
        let any: serde_json::Value = parse_json(b"[1, 2]").expect("any JSON");
        assert!(any.is_array());
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let error = parse_json::<Sample>(b"{} {}").unwrap_err();
        assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn integer_param_checks_range() {
        let params = Params::parse("limit=0&page_size=abc&ok=5").expect("valid");
        let error = params.integer::<u32>("limit", 1..=1000).unwrap_err();
        assert_eq!(error.field(), Some("limit"));
        assert!(params.integer::<u32>("page_size", 1..=1000).is_err());
        assert_eq!(
            params.integer::<u32>("ok", 1..=1000).expect("valid"),
            Some(5)
        );
        assert_eq!(
            params.integer::<u32>("missing", 1..=10).expect("valid"),
            None
        );
    }

    #[test]
    fn empty_param_counts_as_absent() {
        let params = Params::parse("tenant_id=&state=approved").expect("valid");
        assert_eq!(params.text("tenant_id"), None);
        assert_eq!(params.text("state"), Some("approved"));
    }

    #[test]
    fn json_media_types() {
        let mut headers = HeaderMap::new();
        assert!(require_json(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().expect("header"),
        );
        assert!(require_json(&headers).is_ok());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().expect("header"));
        assert_eq!(
            require_json(&headers).unwrap_err().status(),
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
