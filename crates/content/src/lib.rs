//! UGC Service: user-generated content records, reviewed through a fixed set of states.

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
pub use service::ContentService;

/// The `ugc-service` service: port 8091, variables under `UGC_SERVICE_`.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "ugc-service",
    config: SourceSpec {
        prefix: "UGC_SERVICE_",
        section: "ugc_service",
        excluded_prefixes: &[],
        default_port: 8091,
    },
    build,
};

fn build(context: Context) -> BoxFuture<'static, Result<Service, StartError>> {
    async move {
        let settings: Settings = context.service_settings()?;
        settings.validate()?;
        let store = store::open(&context.backend, &settings);
        let service = Arc::new(ContentService::new(store, context.clock.clone()));
        Ok(Service::new(routes::router(service)))
    }
    .boxed()
}

/// Builds the store for a backend; exposed for tests that assemble the service by hand.
pub fn store_for(backend: &Backend, settings: &Settings) -> Arc<dyn store::ContentStore> {
    store::open(backend, settings)
}
