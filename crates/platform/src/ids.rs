//! Server-made identifiers: UUID v7, so ids sort by creation time.

use uuid::Uuid;

/// Creates a new time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Parses an id taken from a path; `None` when it cannot name a record.
pub fn parse_id(text: &str) -> Option<Uuid> {
    Uuid::try_parse(text).ok()
}
