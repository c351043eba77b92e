//! Test support: an in-process HTTP client for routers, a fresh migrated Postgres
//! database per test, and a TCP proxy that can cut a service off from Postgres.
//!
//! The Postgres server comes from `TEST_DATABASE_URL` when it is set, otherwise from a
//! testcontainers container started once per test binary. When neither works, the test
//! fails with a message that explains how to provide one; it never passes silently.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// Sends requests to a router in process, without a socket.
#[derive(Clone)]
pub struct TestClient {
    router: Router,
}

impl TestClient {
    /// Wraps a complete router (usually from `platform::http::app`).
    pub fn new(router: Router) -> Self {
        TestClient { router }
    }

    /// Starts a request with any method.
    pub fn request(&self, method: Method, uri: &str) -> TestRequest {
        TestRequest {
            router: self.router.clone(),
            builder: Request::builder().method(method).uri(uri),
            body: Body::empty(),
        }
    }

    /// Polls `/readyz` until it answers 200 or `timeout` passes; true when ready.
    pub async fn wait_until_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.get("/readyz").send().await.status == StatusCode::OK {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Starts a GET request.
    pub fn get(&self, uri: &str) -> TestRequest {
        self.request(Method::GET, uri)
    }

    /// Starts a POST request.
    pub fn post(&self, uri: &str) -> TestRequest {
        self.request(Method::POST, uri)
    }

    /// Starts a PATCH request.
    pub fn patch(&self, uri: &str) -> TestRequest {
        self.request(Method::PATCH, uri)
    }
}

/// A request under construction.
pub struct TestRequest {
    router: Router,
    builder: axum::http::request::Builder,
    body: Body,
}

impl TestRequest {
    /// Sets a JSON body and its content type.
    pub fn json(self, value: &Value) -> Self {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.body(Some("application/json"), bytes)
    }

    /// Sets a raw body, with a content type or none.
    pub fn body(mut self, content_type: Option<&str>, bytes: impl Into<Bytes>) -> Self {
        if let Some(kind) = content_type {
            self.builder = self.builder.header(header::CONTENT_TYPE, kind);
        }
        self.body = Body::from(bytes.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// Sends the request through the router.
    pub async fn send(self) -> TestResponse {
        let request = self
            .builder
            .body(self.body)
            .expect("request parts are valid");
        let response = self
            .router
            .oneshot(request)
            .await
            .expect("routers are infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("response body can be read")
            .to_bytes();
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

/// A response with its body read.
#[derive(Debug)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl TestResponse {
    /// Returns the body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the body as JSON, failing the test with the body text when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.text()))
    }

    /// Returns a header value as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Fails the test unless the status matches; the message shows the body.
    #[track_caller]
    pub fn expect_status(&self, expected: StatusCode) -> &Self {
        assert_eq!(
            self.status,
            expected,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }

    /// Fails the test unless this is an API error with the given status, code and field,
    /// sent as JSON; returns the error object.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str, field: Option<&str>) -> Value {
        self.expect_status(status);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "error bodies are JSON"
        );
        let body = self.json();
        let error = body["error"].clone();
        assert_eq!(error["code"], code, "error code; body: {body}");
        assert_eq!(error["field"].as_str(), field, "error field; body: {body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error message is present; body: {body}"
        );
        error
    }
}

/// The Postgres server the tests share, with the migrated template database.
struct Server {
    admin: PgConnectOptions,
    template: String,
    _container: Option<ContainerAsync<Postgres>>,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();
static DATABASE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Lock id that serialises template creation and clean-up across test processes.
const TEMPLATE_LOCK: i64 = 0x7065_7269_7068;

/// A fresh database with every migration applied, private to one test.
pub struct TestDatabase {
    /// A small pool on the database.
    pub pool: PgPool,
    /// Connection options of the database, to build more pools or proxied ones.
    pub options: PgConnectOptions,
    /// Database name.
    pub name: String,
}

impl TestDatabase {
    /// Creates the database from the migrated template.
    pub async fn create() -> TestDatabase {
        let server = SERVER.get_or_init(start_server).await;
        let name = format!(
            "peripherals_test_{}_{}",
            std::process::id(),
            DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = connect_admin(&server.admin).await;
        create_from_template(&mut admin, &name, &server.template).await;
        let _ = admin.close().await;

        let options = server.admin.clone().database(&name);
        let pool = Self::pool_with(options.clone(), 5).await;
        TestDatabase {
            pool,
            options,
            name,
        }
    }

    /// Opens another pool on the same database, as a second replica would.
    pub async fn another_pool(&self, max_connections: u32) -> PgPool {
        Self::pool_with(self.options.clone(), max_connections).await
    }

    async fn pool_with(options: PgConnectOptions, max_connections: u32) -> PgPool {
        // Generous, because many test processes may share the server at once; outage
        // tests build their own pools with short timeouts.
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(15))
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .expect("test database accepts connections")
    }

    /// Opens a pool that reaches this database through `proxy`, with a short acquire
    /// timeout so that requests fail fast while the proxy is cut.
    pub async fn pool_through(&self, proxy: &TcpProxy, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(2))
            .test_before_acquire(false)
            .connect_with(proxy.route(&self.options))
            .await
            .expect("pool through the proxy")
    }

    /// Resolves the server's socket address, for a proxy in front of it.
    pub async fn server_address(&self) -> SocketAddr {
        let host = format!("{}:{}", self.options.get_host(), self.options.get_port());
        tokio::net::lookup_host(&host)
            .await
            .ok()
            .and_then(|mut addresses| addresses.next())
            .unwrap_or_else(|| panic!("cannot resolve the Postgres server address {host}"))
    }
}

async fn start_server() -> Server {
    let (admin, container) = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let options: PgConnectOptions = url
                .parse()
                .unwrap_or_else(|error| panic!("TEST_DATABASE_URL is not a Postgres URL: {error}"));
            (options, None)
        }
        _ => start_container().await,
    };

    let template = template_name();
    let mut connection = connect_admin(&admin).await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(TEMPLATE_LOCK)
        .execute(&mut connection)
        .await
        .expect("advisory lock");
    ensure_template(&mut connection, &admin, &template).await;
    drop_stale_databases(&mut connection, &template).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(TEMPLATE_LOCK)
        .execute(&mut connection)
        .await
        .expect("advisory unlock");
    let _ = connection.close().await;

    Server {
        admin,
        template,
        _container: container,
    }
}

async fn start_container() -> (PgConnectOptions, Option<ContainerAsync<Postgres>>) {
    let container = Postgres::default()
        .with_host_auth()
        .with_tag("16-alpine")
        .start()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "Postgres tests need a server. Set TEST_DATABASE_URL=postgres://user@host:5432/database \
                 (any database the user may CREATE DATABASE from), or run Docker so testcontainers \
                 can start one. Starting the container failed: {error}"
            )
        });
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .expect("container exposes port 5432");
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("postgres")
        .database("postgres");
    (options, Some(container))
}

async fn connect_admin(options: &PgConnectOptions) -> PgConnection {
    PgConnection::connect_with(options)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "cannot connect to the test Postgres server at {}:{} ({error}); \
             check TEST_DATABASE_URL or start the server",
                options.get_host(),
                options.get_port()
            )
        })
}

/// Names the template after the migrations, so a changed migration gets a new template.
fn template_name() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for migration in crate::db::migrator().iter() {
        migration.version.hash(&mut hasher);
        migration.checksum.hash(&mut hasher);
    }
    format!("peripherals_template_{:016x}", hasher.finish())
}

async fn ensure_template(connection: &mut PgConnection, admin: &PgConnectOptions, template: &str) {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(template)
        .fetch_optional(&mut *connection)
        .await
        .expect("query pg_database");
    if exists.is_some() {
        return;
    }

    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{template}\"")))
        .execute(&mut *connection)
        .await
        .expect("create template database");
    let mut template_connection = connect_admin(&admin.clone().database(template)).await;
    crate::db::migrator()
        .run(&mut template_connection)
        .await
        .unwrap_or_else(|error| panic!("migrations failed on the template database: {error}"));
    template_connection
        .close()
        .await
        .expect("close template connection");

    // The comment records when the template was made, so clean-up can spare templates
    // that test processes built from other migrations are still cloning.
    let made_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    sqlx::query(AssertSqlSafe(format!(
        "COMMENT ON DATABASE \"{template}\" IS 'made_at={made_at}'"
    )))
    .execute(&mut *connection)
    .await
    .expect("stamp template database");
}

/// Minimum age of a template of other migrations before clean-up drops it.
const TEMPLATE_KEEP_SECS: u64 = 3600;

/// Drops databases left by test processes that have exited, and templates of other
/// migrations made over an hour ago. A database still in use fails to drop and is left
/// alone.
async fn drop_stale_databases(connection: &mut PgConnection, template: &str) {
    let databases: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database \
         WHERE datname LIKE 'peripherals\\_test\\_%' OR datname LIKE 'peripherals\\_template\\_%'",
    )
    .fetch_all(&mut *connection)
    .await
    .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());

    for (name, comment) in databases {
        let stale = match name.strip_prefix("peripherals_test_") {
            Some(rest) => rest
                .split('_')
                .next()
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()),
            None => name != template && template_age(comment.as_deref(), now) > TEMPLATE_KEEP_SECS,
        };
        if stale {
            let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\"")))
                .execute(&mut *connection)
                .await;
        }
    }
}

/// Seconds since a template was made, from its comment; a template without one is old.
fn template_age(comment: Option<&str>, now: u64) -> u64 {
    comment
        .and_then(|text| text.strip_prefix("made_at="))
        .and_then(|seconds| seconds.parse::<u64>().ok())
        .map_or(u64::MAX, |made_at| now.saturating_sub(made_at))
}

async fn create_from_template(connection: &mut PgConnection, name: &str, template: &str) {
    let statement = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
    let mut attempt = 0;
    loop {
        match sqlx::query(AssertSqlSafe(statement.clone()))
            .execute(&mut *connection)
            .await
        {
            Ok(_) => return,
            // 55006: the template is briefly in use by another test's CREATE DATABASE.
            Err(error)
                if crate::db::sqlstate(&error).as_deref() == Some("55006") && attempt < 50 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            Err(error) => panic!("cannot create test database {name}: {error}"),
        }
    }
}

/// A TCP proxy in front of Postgres that a test can cut and restore, to simulate an
/// outage without stopping the shared server.
pub struct TcpProxy {
    address: SocketAddr,
    state: Arc<ProxyState>,
    accept_task: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    cut: AtomicBool,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1 on a free port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy port");
        let address = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState::default());
        let accept_task = tokio::spawn(accept_loop(listener, target, state.clone()));
        TcpProxy {
            address,
            state,
            accept_task,
        }
    }

    /// Returns the address clients connect to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Closes every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for connection in self.state.connections.lock().drain(..) {
            connection.abort();
        }
    }

    /// Forwards connections again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Connection options that reach `options`' database through this proxy.
    pub fn route(&self, options: &PgConnectOptions) -> PgConnectOptions {
        options
            .clone()
            .host(&self.address.ip().to_string())
            .port(self.address.port())
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: Arc<ProxyState>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        if state.cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let task = tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
        let mut connections = state.connections.lock();
        connections.retain(|connection| !connection.is_finished());
        connections.push(task);
    }
}

/// Builds a header value for tests, failing loudly on invalid text.
pub fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("valid header value")
}

/// Generates, for each named async test function taking an app, one test against the
/// memory store and one against Postgres. The app type needs `async fn memory() -> Self`
/// and `async fn postgres() -> Self`.
///
/// ```ignore
/// platform::store_suite!(TestApp; creates_item, rejects_duplicate);
/// ```
#[macro_export]
macro_rules! store_suite {
    ($app:ty; $($name:ident),+ $(,)?) => {
        mod memory {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(<$app>::memory().await).await;
                }
            )+
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(<$app>::postgres().await).await;
                }
            )+
        }
    };
}
