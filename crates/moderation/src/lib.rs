//! UGC Worker: a queue of content moderated by a worker pool against banned terms, with
//! each decision handed out once.

pub mod config;
pub mod model;
pub mod policy;
pub mod routes;
pub mod service;
pub mod store;
pub mod worker;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use platform::config::SourceSpec;
use platform::server::StartError;
use platform::{Backend, Context, Service, ServiceDef};

pub use config::Settings;
pub use policy::Policy;
pub use service::{Moderator, QueueSettings};

/// The `ugc-worker` service: port 8083, variables under `UGC_` except `UGC_SERVICE_`,
/// which belong to the UGC Service.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "ugc-worker",
    config: SourceSpec {
        prefix: "UGC_",
        section: "ugc",
        excluded_prefixes: &["UGC_SERVICE_"],
        default_port: 8083,
    },
    build,
};

fn build(context: Context) -> BoxFuture<'static, Result<Service, StartError>> {
    async move {
        let settings: Settings = context.service_settings()?;
        settings.validate()?;
        let policy = Arc::new(settings.load_policy()?);
        tracing::info!(
            service = context.name,
            terms = policy.terms().len(),
            source = %settings.policy_source(),
            queue_size = settings.queue_size,
            "moderation policy loaded"
        );

        let store = store::open(&context.backend, &settings);
        let moderator = Arc::new(
            Moderator::new(store, policy, context.clock.clone(), settings.queue())
                .with_long_polls(context.shutdown.clone(), settings.poll_interval),
        );
        worker::spawn(
            &moderator,
            &context.workers,
            settings.workers,
            settings.poll_interval,
        );

        let reporter = moderator.clone();
        Ok(Service::new(routes::router(moderator))
            .with_backlog(Arc::new(move || reporter.backlog())))
    }
    .boxed()
}

/// Builds the store for a backend; exposed for tests that assemble the service by hand.
pub fn store_for(backend: &Backend, settings: &Settings) -> Arc<dyn store::ModerationStore> {
    store::open(backend, settings)
}
