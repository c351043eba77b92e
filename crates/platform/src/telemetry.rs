//! Tracing setup: human-readable lines by default, JSON lines on request, filtered by
//! `RUST_LOG` (default `info`). Logs go to stderr so that stdout stays free for data,
//! such as the log pipeline's JSON-lines sink.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::config::LogFormat;

/// Default directive that keeps Postgres notices below warn out of the log.
const QUIET_NOTICES: &str = "sqlx::postgres::notice=warn";

/// Failure to set up tracing.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` is not a valid filter.
    #[error("invalid value for RUST_LOG: {0}; expected a filter such as info or info,sqlx=warn")]
    Filter(#[source] tracing_subscriber::filter::FromEnvError),
    /// A built-in filter directive does not parse.
    #[error("invalid built-in log directive")]
    Directive(#[source] tracing_subscriber::filter::ParseError),
    /// A global subscriber was installed already.
    #[error("tracing is already initialised")]
    AlreadySet,
}

/// Installs the global subscriber.
pub fn init(format: LogFormat) -> Result<(), TelemetryError> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .map_err(TelemetryError::Filter)?;
    // Postgres notices such as "relation _sqlx_migrations already exists, skipping" come
    // at info level on every start; without RUST_LOG they are shown only from warn up.
    let filter = match std::env::var_os("RUST_LOG") {
        Some(_) => filter,
        None => filter.add_directive(QUIET_NOTICES.parse().map_err(TelemetryError::Directive)?),
    };

    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);

    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|_| TelemetryError::AlreadySet)
}
