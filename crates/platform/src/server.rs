//! The server harness: start one or more services, serve until SIGINT or SIGTERM, then
//! stop accepting, finish in-flight requests, drain background workers and exit.
//!
//! Shutdown order per service: the shared `shutdown` token fires (long polls return what
//! they have), the HTTP server drains, then the workers' stop token fires and workers
//! flush what they hold. `shutdown_grace` bounds all of it; what is still undelivered
//! then is logged with counts and the process exits non-zero.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, CommonSettings, ConfigError, Loader, SourceSpec, StoreKind};
use crate::db::{self, PoolSettings};
use crate::error::ErrorChain;
use crate::http::{self, HttpLimits, Readiness};
use crate::telemetry;
use crate::time::{SharedClock, system_clock};

/// Any error that stops a service from starting; it is logged once with its causes.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// Counts of work a service still holds, by kind, for the log when the grace runs out.
pub type Backlog = Arc<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// A service the harness can start: its name, where its settings live, and how to build it.
#[derive(Clone, Copy)]
pub struct ServiceDef {
    /// Binary name, used in logs (`messaging-service`).
    pub name: &'static str,
    /// Prefix, TOML table and default port of its settings.
    pub config: SourceSpec,
    /// Builds the routes and starts background workers.
    pub build: fn(Context) -> BoxFuture<'static, Result<Service, StartError>>,
}

/// Storage backend of a service.
#[derive(Clone, Debug)]
pub enum Backend {
    /// In-process structures; state is lost on exit.
    Memory,
    /// A Postgres pool with migrations applied.
    Postgres(PgPool),
}

impl Backend {
    /// Returns the store name used in logs.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// Background tasks of a service and the signal that makes them drain and stop.
#[derive(Clone, Debug, Default)]
pub struct Workers {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Workers {
    /// Creates an empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a task that must finish before shutdown completes.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Fires once the HTTP server has drained: workers then flush what they hold and return.
    pub fn stop_signal(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Fires the stop signal and waits for every task, up to `deadline`; true when all ended.
    pub async fn stop(&self, deadline: Instant) -> bool {
        self.stop.cancel();
        self.tracker.close();
        tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Inputs of a service's `build` function.
pub struct Context {
    /// The service's binary name.
    pub name: &'static str,
    /// Its layered settings.
    pub settings: Loader,
    /// Settings every service has.
    pub common: CommonSettings,
    /// Memory or Postgres.
    pub backend: Backend,
    /// The clock every timestamp comes from.
    pub clock: SharedClock,
    /// Fires when the process begins to shut down; long waits return early on it.
    pub shutdown: CancellationToken,
    /// Background tasks of the service.
    pub workers: Workers,
    known_fields: Arc<Mutex<Vec<&'static str>>>,
}

impl Context {
    /// Extracts the service's own settings type and remembers its fields, so that unknown
    /// variables under the prefix can be reported.
    pub fn service_settings<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.known_fields
            .lock()
            .extend_from_slice(config::field_names::<T>());
        self.settings.extract()
    }
}

/// A built service: its routes and, optionally, a report of undelivered work.
pub struct Service {
    /// The domain's routes; health, readiness and common layers are added by the harness.
    pub routes: Router,
    /// Counts of work still held, logged when the shutdown grace runs out.
    pub backlog: Option<Backlog>,
}

impl Service {
    /// Creates a service with routes only.
    pub fn new(routes: Router) -> Self {
        Service {
            routes,
            backlog: None,
        }
    }

    /// Adds a backlog report.
    pub fn with_backlog(mut self, backlog: Backlog) -> Self {
        self.backlog = Some(backlog);
        self
    }
}

/// Runs the given services in one process until SIGINT or SIGTERM; the binaries' `main`.
pub fn main(defs: &[ServiceDef]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(defs))
}

/// Starts the services, waits for a signal and shuts them down.
pub async fn run(defs: &[ServiceDef]) -> ExitCode {
    let telemetry_settings = match config::telemetry_settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = telemetry::init(telemetry_settings.log_format) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }

    for variable in config::unknown_shared_variables() {
        tracing::warn!(%variable, "unknown setting ignored; check its spelling");
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let mut running = Vec::with_capacity(defs.len());
    for def in defs {
        match start(def, shutdown.clone()).await {
            Ok(service) => running.push(service),
            Err(error) => {
                tracing::error!(service = def.name, error = %ErrorChain(error.as_ref()), "startup failed");
                shutdown.cancel();
                stop_all(running).await;
                return ExitCode::from(2);
            }
        }
    }

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    if stop_all(running).await {
        tracing::info!("shutdown complete");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let signal = wait_for_signal().await;
    tracing::info!(signal, "signal received");
    shutdown.cancel();
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};

    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        tracing::warn!("cannot listen for SIGTERM; only SIGINT stops the process");
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

struct Running {
    name: &'static str,
    server: JoinHandle<std::io::Result<()>>,
    workers: Workers,
    backlog: Option<Backlog>,
    grace: Duration,
    pool: Option<PgPool>,
}

async fn start(def: &ServiceDef, shutdown: CancellationToken) -> Result<Running, StartError> {
    let settings = Loader::new(def.config)?;
    let common = settings.common()?;

    let listener = bind(common.http_addr, def.config.prefix).await?;
    let backend = connect(def.name, &common).await?;
    tracing::info!(service = def.name, store = backend.name(), "store ready");

    let workers = Workers::new();
    let known_fields = Arc::new(Mutex::new(config::field_names::<CommonSettings>().to_vec()));
    let context = Context {
        name: def.name,
        settings: settings.clone(),
        common: common.clone(),
        backend: backend.clone(),
        clock: system_clock(),
        shutdown: shutdown.clone(),
        workers: workers.clone(),
        known_fields: known_fields.clone(),
    };
    let service = (def.build)(context).await?;
    for setting in settings.unknown_settings(&known_fields.lock()) {
        tracing::warn!(service = def.name, %setting, "unknown setting ignored; check its spelling");
    }

    let readiness = match &backend {
        Backend::Memory => Readiness::Always,
        Backend::Postgres(pool) => Readiness::Postgres(pool.clone()),
    };
    let limits = HttpLimits {
        max_body: common.max_body,
        request_timeout: common.request_timeout,
    };
    let router = http::app(service.routes, readiness, limits);
    let address = listener.local_addr()?;
    tracing::info!(service = def.name, %address, "listening");

    let server = tokio::spawn(serve(def.name, listener, router, shutdown));
    Ok(Running {
        name: def.name,
        server,
        workers,
        backlog: service.backlog,
        grace: common.shutdown_grace,
        pool: match backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Memory => None,
        },
    })
}

async fn bind(address: SocketAddr, prefix: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(address).await.map_err(|error| {
        format!("cannot listen on {address}: {error}; set {prefix}HTTP_ADDR to a free address")
            .into()
    })
}

async fn connect(name: &'static str, common: &CommonSettings) -> Result<Backend, StartError> {
    if common.store == StoreKind::Memory {
        return Ok(Backend::Memory);
    }
    let Some(url) = &common.database_url else {
        return Err("the store is postgres but DATABASE_URL is not set".into());
    };
    let pool_settings = PoolSettings {
        application_name: name.to_string(),
        max_connections: common.db_max_connections,
    };
    let (pool, options) = db::pool(url.expose(), &pool_settings)?;
    tracing::info!(service = name, target = %db::describe_target(&options), migrate = common.migrate, "connecting to Postgres");
    db::prepare(&pool, &options, common.migrate).await?;
    Ok(Backend::Postgres(pool))
}

/// Serves until the shutdown token fires; a server that fails on its own stops the process.
async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future()
        .await;
    if let Err(error) = &result {
        tracing::error!(service = name, %error, "server failed");
        shutdown.cancel();
    }
    result
}

async fn stop_all(running: Vec<Running>) -> bool {
    let stops = running.into_iter().map(stop);
    futures::future::join_all(stops)
        .await
        .into_iter()
        .all(|clean| clean)
}

async fn stop(service: Running) -> bool {
    let deadline = Instant::now() + service.grace;
    let name = service.name;

    let mut server = service.server;
    let http_drained = match tokio::time::timeout_at(deadline, &mut server).await {
        Ok(Ok(Ok(()))) => true,
        Ok(Ok(Err(_))) => false,
        Ok(Err(error)) => {
            tracing::error!(service = name, %error, "server task failed");
            false
        }
        Err(_) => {
            tracing::error!(
                service = name,
                "in-flight requests did not finish within the shutdown grace"
            );
            server.abort();
            false
        }
    };

    let workers_drained = service.workers.stop(deadline).await;
    if !workers_drained {
        let counts = service.backlog.map(|report| report()).unwrap_or_default();
        let undelivered: Vec<String> = counts
            .iter()
            .map(|(kind, count)| format!("{kind}={count}"))
            .collect();
        tracing::error!(
            service = name,
            grace_ms = service.grace.as_millis() as u64,
            undelivered = %undelivered.join(","),
            "shutdown grace ran out before background work drained"
        );
    }

    if let Some(pool) = service.pool {
        let _ = tokio::time::timeout(Duration::from_secs(1), pool.close()).await;
    }
    let clean = http_drained && workers_drained;
    tracing::info!(service = name, clean, "stopped");
    clean
}

/// Builds a context for tests: given settings and backend, a manual or system clock, and
/// fresh shutdown and worker handles.
pub fn test_context(
    name: &'static str,
    settings: Loader,
    backend: Backend,
    clock: SharedClock,
) -> Result<Context, ConfigError> {
    let common = settings.common()?;
    Ok(Context {
        name,
        settings,
        common,
        backend,
        clock,
        shutdown: CancellationToken::new(),
        workers: Workers::new(),
        known_fields: Arc::default(),
    })
}
