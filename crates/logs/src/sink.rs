//! Where delivered events go. Each sink gets its own worker, which hands it the queued
//! batches in order and retries a failed write until it succeeds.

mod stdout;

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::Batch;

pub use stdout::StdoutSink;

/// Why a sink could not take a delivery; the worker logs it and retries.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// A destination for events.
///
/// `write` may be called again with the same batches after it failed, so a sink that
/// can partly succeed should make repeated writes harmless or accept duplicates.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Short name for logs and the shutdown backlog report (`stdout`, `postgres`).
    fn name(&self) -> &'static str;

    /// Takes delivery of `batches`, oldest first; returns only when they are written.
    async fn write(&self, batches: &[Arc<Batch>]) -> Result<(), SinkError>;

    /// Pushes out anything buffered; called once when the pipeline stops.
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
