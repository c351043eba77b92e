//! Shared plumbing for the peripherals services: configuration, tracing, the JSON error
//! shape, extractors, the server harness and Postgres access. It contains no domain rules.

pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod http;
pub mod ids;
pub mod pagination;
pub mod server;
pub mod telemetry;
pub mod time;
pub mod validate;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::ApiError;
pub use server::{Backend, Context, Service, ServiceDef};
pub use time::{Clock, SharedClock, Timestamp};
