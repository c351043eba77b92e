//! Messaging Service: an at-least-once queue of topics with leases, acks and dead letters.

pub mod config;
pub mod envelope;
pub mod input;
pub mod model;
pub mod routes;
pub mod service;
mod shards;
pub mod store;
pub mod wakeup;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use platform::config::SourceSpec;
use platform::server::{StartError, Workers};
use platform::{Backend, Context, Service, ServiceDef, SharedClock};
use tokio_util::sync::CancellationToken;

pub use config::Settings;
pub use service::Messaging;

/// The `messaging-service` service: port 8092, variables under `MESSAGING_`.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "messaging-service",
    config: SourceSpec {
        prefix: "MESSAGING_",
        section: "messaging",
        excluded_prefixes: &[],
        default_port: 8092,
    },
    build,
};

fn build(context: Context) -> BoxFuture<'static, Result<Service, StartError>> {
    async move {
        let settings: Settings = context.service_settings()?;
        settings.validate()?;
        let messaging = start(
            &context.backend,
            settings,
            context.clock.clone(),
            context.shutdown.clone(),
            &context.workers,
        );
        let store = messaging.store();
        let backlog = Arc::new(move || store.backlog());
        Ok(Service::new(routes::router(messaging)).with_backlog(backlog))
    }
    .boxed()
}

/// Builds the service over a backend and starts its background work on `workers`: the
/// retention sweeps and, in Postgres mode, the relay that wakes long polls across
/// replicas. `shutdown` ends long polls early. Exposed for tests that assemble the
/// service by hand.
pub fn start(
    backend: &Backend,
    settings: Settings,
    clock: SharedClock,
    shutdown: CancellationToken,
    workers: &Workers,
) -> Arc<Messaging> {
    let store = store::open(backend, &settings);
    let wakeups = Arc::new(wakeup::Wakeups::new());
    let messaging = Arc::new(Messaging::new(
        store.clone(),
        clock,
        settings,
        wakeups.clone(),
        shutdown,
    ));

    let stop = workers.stop_signal();
    workers.spawn(messaging.clone().run_sweeps(stop.clone()));
    workers.spawn(async move { store.relay(wakeups, stop).await });
    messaging
}
