//! Notification Service: renders built-in templates and sends them over email, webhook or
//! in-app channels, keeping a bounded history of what was sent.

pub mod config;
pub mod model;
pub mod recipient;
pub mod routes;
pub mod sender;
pub mod service;
pub mod store;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use platform::config::SourceSpec;
use platform::error::ErrorChain;
use platform::server::StartError;
use platform::{Backend, Context, Service, ServiceDef};
use tokio_util::sync::CancellationToken;

pub use config::Settings;
pub use sender::{MemorySender, SendError, Sender, Senders};
pub use service::Notifier;
pub use templates::Templates;

/// The `notification` service: port 8084, variables under `NOTIFY_`.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "notification",
    config: SourceSpec {
        prefix: "NOTIFY_",
        section: "notify",
        excluded_prefixes: &[],
        default_port: 8084,
    },
    build,
};

fn build(context: Context) -> BoxFuture<'static, Result<Service, StartError>> {
    async move {
        let settings: Settings = context.service_settings()?;
        settings.validate(SERVICE.config.prefix)?;
        let templates = Templates::builtin()?;

        // NOTE: only in-memory senders exist so far; deliveries are recorded, not sent
        // to mail servers, webhook endpoints or clients.
        let senders = Senders::in_memory(settings.recent_capacity);
        let store = store::open(&context.backend, &settings);
        let notifier = Arc::new(Notifier::new(
            store,
            senders,
            templates,
            context.clock.clone(),
            settings.recent_capacity,
        ));

        if let Backend::Postgres(_) = context.backend {
            let stop = context.workers.stop_signal();
            context.workers.spawn(prune_periodically(
                notifier.clone(),
                settings.prune_interval,
                stop,
            ));
        }
        Ok(Service::new(routes::router(notifier)))
    }
    .boxed()
}

/// Prunes the history every `interval` until `stop` fires. Memory mode needs no pruning:
/// its ring drops the oldest delivery itself.
async fn prune_periodically(notifier: Arc<Notifier>, interval: Duration, stop: CancellationToken) {
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "history pruning started"
    );
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
        match notifier.prune().await {
            Ok(pruned) => {
                tracing::debug!(
                    sent = pruned.sent,
                    abandoned = pruned.abandoned,
                    "history pruned"
                );
                if pruned.abandoned > 0 {
                    tracing::info!(
                        abandoned = pruned.abandoned,
                        "removed pending deliveries whose process stopped mid-send"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), retry_in_ms = interval.as_millis() as u64, "history pruning failed");
            }
        }
    }
    tracing::info!("history pruning stopped");
}

/// Builds the store for a backend; exposed for tests that assemble the service by hand.
pub fn store_for(backend: &Backend, settings: &Settings) -> Arc<dyn store::DeliveryStore> {
    store::open(backend, settings)
}
