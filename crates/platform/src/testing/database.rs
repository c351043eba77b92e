//! A fresh, migrated Postgres database per test, cloned from a template database.
//!
//! The server comes from `TEST_DATABASE_URL` when it is set, otherwise from a
//! testcontainers container started once per test binary. When neither works, the test
//! fails with a message that explains how to provide one; it never passes silently.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};
use tokio::sync::OnceCell;

use super::TcpProxy;

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
