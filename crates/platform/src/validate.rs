//! Field checks that every service applies to client text: presence, length and
//! control characters. Domain-specific rules stay in the domain crates.

use crate::error::ApiError;

/// An input field that failed a check: its JSON path and a message naming it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    /// JSON path of the field (`tenant_id`, `labels.route`, `[3].value`).
    pub field: String,
    /// Description of the fault and of the value to send instead.
    pub message: String,
}

impl FieldError {
    /// Creates an error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::invalid_field(error.field, error.message)
    }
}

/// Requires a value that is present and not empty: an empty string counts as missing.
pub fn required(field: &str, value: Option<String>) -> Result<String, FieldError> {
    match value {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(FieldError::new(field, format!("{field} is required"))),
    }
}

/// Checks a one-line text: at most `max_chars` characters and no control characters.
pub fn single_line(field: &str, text: String, max_chars: usize) -> Result<String, FieldError> {
    check_length(field, &text, max_chars)?;
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(text)
}

/// Requires a one-line text: present, not empty, and within `max_chars`.
pub fn required_single_line(
    field: &str,
    value: Option<String>,
    max_chars: usize,
) -> Result<String, FieldError> {
    single_line(field, required(field, value)?, max_chars)
}

/// Checks that a text has at most `max_chars` characters.
pub fn check_length(field: &str, text: &str, max_chars: usize) -> Result<(), FieldError> {
    if text.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            format!("{field} is longer than {max_chars} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_counts_as_missing() {
        let error = required("tenant_id", Some(String::new())).unwrap_err();
        assert_eq!(error.field, "tenant_id");
        assert_eq!(error.message, "tenant_id is required");
        assert!(required("tenant_id", None).is_err());
        assert_eq!(required("tenant_id", Some("t".into())), Ok("t".to_string()));
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(single_line("name", "ééé".to_string(), 3).is_ok());
        let error = single_line("name", "éééé".to_string(), 3).unwrap_err();
        assert_eq!(error.message, "name is longer than 3 characters");
    }

    #[test]
    fn control_characters_are_rejected() {
        let error = single_line("name", "a\nb".to_string(), 10).unwrap_err();
        assert_eq!(error.message, "name contains control characters");
    }

    #[test]
    fn field_error_becomes_400() {
        let api: ApiError = FieldError::new("x", "x is required").into();
        assert_eq!(api.status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(api.field(), Some("x"));
    }
}
