//! Events written to stdout (or any writer) as JSON lines, in large writes.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Sink, SinkError};
use crate::format::RecordWriter;
use crate::model::Batch;

/// Lines are handed to the writer once this many bytes are buffered, and at the end of
/// each delivery.
const WRITE_BYTES: usize = 1 << 20;
/// Events per delivery: about 4 MiB of lines for events of 250 bytes, so that a sink
/// that fell behind catches up in few steps.
const DELIVERY_EVENTS: usize = 16_384;
/// A buffer grown past this by very long events is shrunk back after the delivery.
const MAX_KEPT_BUFFER: usize = 4 * WRITE_BYTES;

/// Writes each event as one JSON line. Its writes block, so the pipeline delivers to it
/// from a thread of its own, off the request path and off the async workers.
pub struct StdoutSink {
    state: Mutex<State>,
}

struct State {
    writer: Box<dyn Write + Send>,
    /// Reused between deliveries so that a steady stream allocates nothing.
    buffer: Vec<u8>,
    records: RecordWriter,
}

impl StdoutSink {
    /// Writes to the process's stdout. Each delivery ends in a newline, so the line
    /// buffer of stdout passes it on in whole writes.
    pub fn stdout() -> Self {
        Self::new(Box::new(std::io::stdout()))
    }

    /// Writes to any writer, for tests and other destinations.
    pub fn new(writer: Box<dyn Write + Send>) -> Self {
        StdoutSink {
            state: Mutex::new(State {
                writer,
                buffer: Vec::new(),
                records: RecordWriter::default(),
            }),
        }
    }
}

impl State {
    /// Writes every event of the delivery as JSON lines, in writes of about
    /// `WRITE_BYTES`.
    fn write_batches(&mut self, batches: &[Arc<Batch>]) -> std::io::Result<()> {
        self.buffer.clear();
        for batch in batches {
            for record in batch.records() {
                self.records.write(&mut self.buffer, record);
                self.buffer.push(b'\n');
                if self.buffer.len() >= WRITE_BYTES {
                    self.writer.write_all(&self.buffer)?;
                    self.buffer.clear();
                }
            }
        }
        self.writer.write_all(&self.buffer)?;
        self.buffer.clear();
        if self.buffer.capacity() > MAX_KEPT_BUFFER {
            self.buffer.shrink_to(WRITE_BYTES);
        }
        self.writer.flush()
    }
}

#[async_trait]
impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn max_delivery_events(&self) -> usize {
        DELIVERY_EVENTS
    }

    fn blocks(&self) -> bool {
        true
    }

    async fn write(&self, batches: &[Arc<Batch>]) -> Result<(), SinkError> {
        self.state.lock().write_batches(batches)?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.state.lock().writer.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fields, Level, LogEvent, Text};
    use platform::Timestamp;

    /// A writer that records what it was given and how many writes it took.
    #[derive(Clone, Default)]
    struct Capture {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Capture {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.bytes.lock().extend_from_slice(data);
            *self.writes.lock() += 1;
            Ok(data.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn batch(first_sequence: u64, messages: &[&str]) -> Arc<Batch> {
        let at = Timestamp::parse("2030-01-01T00:00:00Z").expect("valid");
        Arc::new(Batch {
            origin: uuid::Uuid::nil(),
            received_at: at,
            first_sequence,
            events: messages
                .iter()
                .map(|message| LogEvent {
                    source: Text::from("api"),
                    level: Level::Error,
                    message: Text::from(*message),
                    fields: Fields::default(),
                    timestamp: at,
                })
                .collect(),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn writes_json_lines_in_one_write() {
        let capture = Capture::default();
        let sink = StdoutSink::new(Box::new(capture.clone()));
        sink.write(&[batch(1, &["a", "b\nc"]), batch(3, &["d"])])
            .await
            .expect("written");

        let text = String::from_utf8(capture.bytes.lock().clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON line"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["message"], "b\nc");
        assert_eq!(lines[2]["sequence"], 3);
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(lines[0]["received_at"], "2030-01-01T00:00:00.000000Z");
        assert_eq!(*capture.writes.lock(), 1);
    }
}
