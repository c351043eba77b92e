//! Where delivered events go. Each sink gets its own worker, which hands it the queued
//! batches in order and retries a failed write until it succeeds.

mod stdout;

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::Batch;

pub use stdout::StdoutSink;

/// Events handed to a sink in one write unless the sink sets its own maximum.
pub const DEFAULT_DELIVERY_EVENTS: usize = 4096;

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

    /// Maximum events handed to one `write`; a single larger batch is handed over alone.
    /// A larger delivery costs fewer handoffs, but the queue frees its room only once
    /// the whole delivery is written.
    fn max_delivery_events(&self) -> usize {
        DEFAULT_DELIVERY_EVENTS
    }

    /// True when `write` and `flush` block the calling thread, as writes to a file or a
    /// pipe do. The pipeline then calls them from a thread of its own.
    fn blocks(&self) -> bool {
        false
    }

    /// Takes delivery of `batches`, oldest first; returns only when they are written.
    async fn write(&self, batches: &[Arc<Batch>]) -> Result<(), SinkError>;

    /// Pushes out anything buffered; called once when the pipeline stops.
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
