//! Orchestrator: work assignments handed to agents, moved through a fixed lifecycle.

pub mod config;
pub mod model;
pub mod routes;
pub mod service;
pub mod store;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use platform::config::SourceSpec;
use platform::server::StartError;
use platform::{Backend, Context, Service, ServiceDef};

pub use config::Settings;
pub use service::Orchestrator;

/// The `orchestrator` service: port 8090, variables under `ORCHESTRATION_`.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "orchestrator",
    config: SourceSpec {
        prefix: "ORCHESTRATION_",
        section: "orchestration",
        excluded_prefixes: &[],
        default_port: 8090,
    },
    build,
};

fn build(context: Context) -> BoxFuture<'static, Result<Service, StartError>> {
    async move {
        let settings: Settings = context.service_settings()?;
        let store = store::open(&context.backend, &settings);
        let orchestrator = Arc::new(Orchestrator::new(store, context.clock.clone()));
        Ok(Service::new(routes::router(orchestrator)))
    }
    .boxed()
}

/// Builds the store for a backend; exposed for tests that assemble the service by hand.
pub fn store_for(backend: &Backend, settings: &Settings) -> Arc<dyn store::AssignmentStore> {
    store::open(backend, settings)
}
