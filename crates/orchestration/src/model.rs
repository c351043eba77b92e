//! Assignments, their status lifecycle, and the rules for input fields.

use std::collections::BTreeMap;
use std::fmt;

use platform::Timestamp;
use serde::Serialize;
use uuid::Uuid;

/// Maximum length in characters of `agent_id`, `workload_id`, `tenant_id` and `project_id`.
pub const MAX_ID_LEN: usize = 256;
/// Maximum length in characters of a status message.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Most metadata entries on one assignment.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Maximum length in bytes of a metadata key or value.
pub const MAX_METADATA_TEXT_LEN: usize = 1024;

/// Lifecycle status of an assignment, mirroring `cassandra.orchestration.v1.WorkStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkStatus {
    Pending,
    Assigned,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl WorkStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [WorkStatus; 6] = [
        WorkStatus::Pending,
        WorkStatus::Assigned,
        WorkStatus::InProgress,
        WorkStatus::Completed,
        WorkStatus::Failed,
        WorkStatus::Cancelled,
    ];

    /// Parses the lowercase name or the protobuf name (`WORK_STATUS_IN_PROGRESS`), in any case.
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("work_status_").unwrap_or(&lower);
        WorkStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
    }

    /// Returns the lowercase name used in JSON and in Postgres.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkStatus::Pending => "pending",
            WorkStatus::Assigned => "assigned",
            WorkStatus::InProgress => "in_progress",
            WorkStatus::Completed => "completed",
            WorkStatus::Failed => "failed",
            WorkStatus::Cancelled => "cancelled",
        }
    }

    /// Completed, failed and cancelled assignments never change status again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            WorkStatus::Completed | WorkStatus::Failed | WorkStatus::Cancelled
        )
    }

    /// Checks whether an assignment in this status may move to `next`. Staying in the same status
    /// is allowed for every status that is not final, and only updates the message.
    pub fn can_move_to(self, next: WorkStatus) -> bool {
        use WorkStatus::*;
        match (self, next) {
            (from, to) if from == to => !from.is_final(),
            (Pending, Assigned | Cancelled | Failed) => true,
            (Assigned, InProgress | Pending | Cancelled | Failed) => true,
            (InProgress, Completed | Failed | Cancelled) => true,
            _ => false,
        }
    }
}

impl fmt::Display for WorkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Work given to one agent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assignment {
    pub assignment_id: Uuid,
    pub agent_id: String,
    pub workload_id: String,
    pub tenant_id: String,
    pub project_id: String,
    pub status: WorkStatus,
    pub status_message: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub metadata: BTreeMap<String, String>,
}

/// Filters of a list request; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignmentFilter {
    pub agent_id: Option<String>,
    pub tenant_id: Option<String>,
    pub project_id: Option<String>,
    pub status: Option<WorkStatus>,
}

impl AssignmentFilter {
    /// True when the assignment passes every filter.
    pub fn matches(&self, assignment: &Assignment) -> bool {
        self.agent_id
            .as_ref()
            .is_none_or(|id| *id == assignment.agent_id)
            && self
                .tenant_id
                .as_ref()
                .is_none_or(|id| *id == assignment.tenant_id)
            && self
                .project_id
                .as_ref()
                .is_none_or(|id| *id == assignment.project_id)
            && self.status.is_none_or(|status| status == assignment.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkStatus::*;

    #[test]
    fn parse_accepts_both_spellings() {
        assert_eq!(WorkStatus::parse("in_progress"), Some(InProgress));
        assert_eq!(
            WorkStatus::parse("WORK_STATUS_IN_PROGRESS"),
            Some(InProgress)
        );
        assert_eq!(WorkStatus::parse("Work_Status_Completed"), Some(Completed));
        assert_eq!(WorkStatus::parse("done"), None);
        assert_eq!(WorkStatus::parse("work_status_unspecified"), None);
    }

    #[test]
    fn legal_moves_match_lifecycle() {
        let legal = [
            (Pending, Assigned),
            (Pending, Cancelled),
            (Pending, Failed),
            (Assigned, InProgress),
            (Assigned, Pending),
            (Assigned, Cancelled),
            (Assigned, Failed),
            (InProgress, Completed),
            (InProgress, Failed),
            (InProgress, Cancelled),
            (Pending, Pending),
            (Assigned, Assigned),
            (InProgress, InProgress),
        ];
        for from in WorkStatus::ALL {
            for to in WorkStatus::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(from.can_move_to(to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn final_states_accept_nothing() {
        for from in [Completed, Failed, Cancelled] {
            for to in WorkStatus::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }
}
