//! Test doubles shared by the integration tests: a sink that records what it receives
//! and can be held shut to simulate a slow destination.

use std::sync::Arc;

use async_trait::async_trait;
use logs::model::{Batch, LogRecord};
use logs::sink::{Sink, SinkError};
use parking_lot::Mutex;
use tokio::sync::watch;

/// Records every event it is given, in delivery order. While its gate is shut, writes
/// wait, so the events stay in the pipeline's queue.
pub struct RecordingSink {
    records: Mutex<Vec<LogRecord>>,
    gate: watch::Receiver<bool>,
}

/// Opens a recording sink's gate.
pub struct Gate(watch::Sender<bool>);

impl Gate {
    /// Lets waiting and later writes through.
    pub fn open(&self) {
        let _ = self.0.send(true);
    }
}

impl RecordingSink {
    /// Creates a sink that accepts every write at once.
    pub fn open() -> Arc<Self> {
        let (gate, sink) = Self::gated();
        gate.open();
        sink
    }

    /// Creates a sink whose writes wait until the gate opens.
    pub fn gated() -> (Gate, Arc<Self>) {
        let (sender, receiver) = watch::channel(false);
        let sink = RecordingSink {
            records: Mutex::new(Vec::new()),
            gate: receiver,
        };
        (Gate(sender), Arc::new(sink))
    }

    /// Returns everything recorded so far.
    pub fn records(&self) -> Vec<LogRecord> {
        self.records.lock().clone()
    }

    /// Returns the messages recorded so far.
    pub fn messages(&self) -> Vec<String> {
        self.records
            .lock()
            .iter()
            .map(|record| record.event.message.to_string())
            .collect()
    }
}

#[async_trait]
impl Sink for RecordingSink {
    fn name(&self) -> &'static str {
        "recording"
    }

    async fn write(&self, batches: &[Arc<Batch>]) -> Result<(), SinkError> {
        let mut gate = self.gate.clone();
        gate.wait_for(|open| *open).await?;
        let mut records = self.records.lock();
        for batch in batches {
            records.extend(batch.records().map(|record| record.detached()));
        }
        Ok(())
    }
}
