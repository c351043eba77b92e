//! Settings read from `ORCHESTRATION_*` variables and the `[orchestration]` table.

use serde::Deserialize;

/// Orchestrator settings beyond the common ones.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Maximum number of assignments the memory store keeps; past it, creation returns
    /// 429. Postgres mode has no such cap.
    pub max_assignments: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_assignments: 100_000,
        }
    }
}
