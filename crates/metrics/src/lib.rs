//! Metrics Collector: samples rolled up into time buckets per series, summarized with
//! exact counts and extremes and sketch-based quantiles.

pub mod aggregate;
pub mod background;
pub mod config;
pub mod input;
pub mod model;
pub mod rollups;
pub mod routes;
pub mod service;
pub mod sketch;
pub mod store;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use platform::config::SourceSpec;
use platform::server::StartError;
use platform::{Backend, Context, Service, ServiceDef};

pub use config::Settings;
pub use service::Collector;

/// The `metrics-collector` service: port 8081, variables under `METRICS_`.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "metrics-collector",
    config: SourceSpec {
        prefix: "METRICS_",
        section: "metrics",
        excluded_prefixes: &[],
        default_port: 8081,
    },
    build,
};

fn build(context: Context) -> BoxFuture<'static, Result<Service, StartError>> {
    async move {
        let settings: Settings = context.service_settings()?;
        settings.validate()?;
        let store = store::open(&context.backend, &settings);
        let collector = Arc::new(Collector::new(store, context.clock.clone(), &settings));

        let flushes = matches!(context.backend, Backend::Postgres(_));
        let stop = context.workers.stop_signal();
        context
            .workers
            .spawn(background::run(collector.clone(), stop, flushes));

        let backlog_source = collector.clone();
        Ok(Service::new(routes::router(collector))
            .with_backlog(Arc::new(move || backlog_source.backlog())))
    }
    .boxed()
}

/// Builds the store for a backend; exposed for tests that assemble the service by hand.
pub fn store_for(backend: &Backend, settings: &Settings) -> Arc<dyn store::MetricsStore> {
    store::open(backend, settings)
}
