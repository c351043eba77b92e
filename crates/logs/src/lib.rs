//! Log Pipeline: structured log events accepted over HTTP, queued, and delivered to a
//! recent-events store (a ring, or Postgres) and to stdout as JSON lines.

pub mod config;
mod delivery;
mod format;
pub mod model;
pub mod parse;
pub mod queue;
pub mod routes;
pub mod service;
pub mod sink;
pub mod store;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use platform::config::SourceSpec;
use platform::server::StartError;
use platform::{Backend, Context, Service, ServiceDef};

pub use config::Settings;
pub use service::Pipeline;

/// The `log-pipeline` service: port 8082, variables under `LOG_PIPELINE_`.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "log-pipeline",
    config: SourceSpec {
        prefix: "LOG_PIPELINE_",
        section: "log_pipeline",
        excluded_prefixes: &[],
        default_port: 8082,
    },
    build,
};

fn build(context: Context) -> BoxFuture<'static, Result<Service, StartError>> {
    async move {
        let settings: Settings = context.service_settings()?;
        let store = store::open(&context.backend, &settings);
        let mut sinks: Vec<Arc<dyn sink::Sink>> = Vec::new();
        if settings.stdout {
            sinks.push(Arc::new(sink::StdoutSink::stdout()));
        }
        let pipeline = Pipeline::start(
            &settings,
            store,
            sinks,
            context.clock.clone(),
            &context.workers,
        );

        let backlog_source = pipeline.clone();
        Ok(Service::new(routes::router(pipeline))
            .with_backlog(Arc::new(move || backlog_source.backlog())))
    }
    .boxed()
}

/// Builds the store for a backend; exposed for tests that assemble the service by hand.
pub fn store_for(backend: &Backend, settings: &Settings) -> Arc<dyn store::LogStore> {
    store::open(backend, settings)
}
