//! Orchestrator rules: validation, ids, timestamps and the status lifecycle.

use std::collections::BTreeMap;
use std::sync::Arc;

use platform::SharedClock;
use platform::pagination::{Page, PageRequest};
use platform::validate::{self, FieldError};
use uuid::Uuid;

use crate::model::{
    Assignment, AssignmentFilter, MAX_ID_LEN, MAX_MESSAGE_LEN, MAX_METADATA_ENTRIES,
    MAX_METADATA_TEXT_LEN, WorkStatus,
};
use crate::store::{AssignmentStore, ChangeOutcome, StatusChange, StoreError};

/// How often a status change re-reads after losing a race before it gives up.
const MAX_CHANGE_ATTEMPTS: usize = 8;

/// Failure of an orchestrator operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input field is missing or invalid.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// No assignment has this id.
    #[error("assignment {0} not found")]
    NotFound(String),
    /// The lifecycle forbids this move.
    #[error("cannot move assignment {id} from {from} to {to}")]
    IllegalTransition {
        id: Uuid,
        from: WorkStatus,
        to: WorkStatus,
    },
    /// Writers kept changing the assignment while this change was retried.
    #[error("assignment {0} changed concurrently too often; retry the request")]
    Contended(Uuid),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FieldError> for Error {
    fn from(error: FieldError) -> Self {
        Error::Invalid {
            field: error.field,
            message: error.message,
        }
    }
}

impl Error {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Fields of a new assignment as the client sent them; `None` or empty means absent.
#[derive(Clone, Debug, Default)]
pub struct NewAssignment {
    pub agent_id: Option<String>,
    pub workload_id: Option<String>,
    pub tenant_id: Option<String>,
    pub project_id: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A requested status change as the client sent it.
#[derive(Clone, Debug, Default)]
pub struct StatusUpdate {
    pub status: Option<String>,
    pub status_message: Option<String>,
}

/// The orchestrator: every assignment rule lives here, over any store.
pub struct Orchestrator {
    store: Arc<dyn AssignmentStore>,
    clock: SharedClock,
}

impl Orchestrator {
    /// Creates the service over a store and a clock.
    pub fn new(store: Arc<dyn AssignmentStore>, clock: SharedClock) -> Self {
        Orchestrator { store, clock }
    }

    /// Validates and stores a new assignment in status `pending`, message `queued`.
    pub async fn create(&self, input: NewAssignment) -> Result<Assignment, Error> {
        let agent_id = required_id("agent_id", input.agent_id)?;
        let workload_id = required_id("workload_id", input.workload_id)?;
        let tenant_id = optional_id("tenant_id", input.tenant_id)?;
        let project_id = optional_id("project_id", input.project_id)?;
        let metadata = checked_metadata(input.metadata.unwrap_or_default())?;

        let now = self.clock.now();
        let assignment = Assignment {
            assignment_id: platform::ids::new_id(),
            agent_id,
            workload_id,
            tenant_id,
            project_id,
            status: WorkStatus::Pending,
            status_message: "queued".to_string(),
            created_at: now,
            updated_at: now,
            metadata,
        };
        self.store.insert(&assignment).await?;
        tracing::debug!(assignment_id = %assignment.assignment_id, agent_id = %assignment.agent_id, "assignment created");
        Ok(assignment)
    }

    /// Reads an assignment; a malformed id is simply not found.
    pub async fn get(&self, id: &str) -> Result<Assignment, Error> {
        let uuid = platform::ids::parse_id(id).ok_or_else(|| Error::NotFound(id.to_string()))?;
        self.store
            .get(uuid)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Moves an assignment to a new status if the lifecycle allows it.
    ///
    /// The check and the write are a compare-and-set on the status read, so two racing
    /// changes apply one after the other, each checked against the status the other left.
    pub async fn update_status(&self, id: &str, update: StatusUpdate) -> Result<Assignment, Error> {
        let uuid = platform::ids::parse_id(id).ok_or_else(|| Error::NotFound(id.to_string()))?;
        let target = parse_status(update.status)?;
        let message = match update.status_message {
            Some(message) => Some(checked_message(message)?),
            None => None,
        };

        for _ in 0..MAX_CHANGE_ATTEMPTS {
            let current = self
                .store
                .get(uuid)
                .await?
                .ok_or_else(|| Error::NotFound(id.to_string()))?;
            if !current.status.can_move_to(target) {
                return Err(Error::IllegalTransition {
                    id: uuid,
                    from: current.status,
                    to: target,
                });
            }

            let change = StatusChange {
                expected: current.status,
                status: target,
                message: message.clone(),
                at: self.clock.now().max(current.updated_at),
            };
            match self.store.change_status(uuid, &change).await? {
                ChangeOutcome::Applied(updated) => {
                    tracing::debug!(assignment_id = %uuid, from = %current.status, to = %target, "assignment status changed");
                    return Ok(updated);
                }
                ChangeOutcome::Missing => return Err(Error::NotFound(id.to_string())),
                ChangeOutcome::Stale => continue,
            }
        }
        tracing::warn!(assignment_id = %uuid, attempts = MAX_CHANGE_ATTEMPTS, "status change kept losing races");
        Err(Error::Contended(uuid))
    }

    /// Lists assignments newest first.
    pub async fn list(
        &self,
        filter: &AssignmentFilter,
        page: &PageRequest,
    ) -> Result<Page<Assignment>, Error> {
        Ok(self.store.list(filter, page).await?)
    }
}

/// Parses a status given by a client; used for the request body and the list filter.
pub fn parse_status_text(field: &str, text: &str) -> Result<WorkStatus, Error> {
    WorkStatus::parse(text).ok_or_else(|| {
        Error::invalid(
            field,
            format!(
                "{field} {text:?} is not a status; use one of pending, assigned, in_progress, completed, failed, cancelled"
            ),
        )
    })
}

fn parse_status(status: Option<String>) -> Result<WorkStatus, Error> {
    match status.filter(|text| !text.is_empty()) {
        Some(text) => parse_status_text("status", &text),
        None => Err(Error::invalid("status", "status is required")),
    }
}

fn required_id(field: &str, value: Option<String>) -> Result<String, Error> {
    Ok(validate::required_single_line(field, value, MAX_ID_LEN)?)
}

fn optional_id(field: &str, value: Option<String>) -> Result<String, Error> {
    Ok(validate::single_line(
        field,
        value.unwrap_or_default(),
        MAX_ID_LEN,
    )?)
}

fn checked_message(message: String) -> Result<String, Error> {
    validate::check_length("status_message", &message, MAX_MESSAGE_LEN)?;
    Ok(message)
}

fn checked_metadata(metadata: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Error> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(Error::invalid(
            "metadata",
            format!(
                "metadata has {} entries; at most {MAX_METADATA_ENTRIES} are allowed",
                metadata.len()
            ),
        ));
    }
    for (key, value) in &metadata {
        if key.is_empty() {
            return Err(Error::invalid(
                "metadata",
                "metadata keys must not be empty",
            ));
        }
        if key.len() > MAX_METADATA_TEXT_LEN || value.len() > MAX_METADATA_TEXT_LEN {
            return Err(Error::invalid(
                format!("metadata.{key}").as_str(),
                format!("metadata keys and values are limited to {MAX_METADATA_TEXT_LEN} bytes"),
            ));
        }
    }
    Ok(metadata)
}
