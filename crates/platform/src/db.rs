//! Postgres access shared by every store: the pool, migrations, and error classification
//! by SQLSTATE (never by message text).

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// Builds the migrator over every service's migrations (one schema per service),
/// embedded at build time.
///
/// Migrations newer than this build are ignored, so an older binary keeps running while
/// a rolling upgrade applies them. sqlx takes an advisory lock while it migrates, so
/// replicas that start together apply each migration once.
pub fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("../../migrations");
    migrator.set_ignore_missing(true);
    migrator
}

/// Maximum time a request waits for a pooled connection before the server responds 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Failure to prepare the database at startup.
#[derive(Debug, thiserror::Error)]
pub enum DbStartError {
    /// `DATABASE_URL` does not parse.
    #[error(
        "invalid value for DATABASE_URL: {0}; expected postgres://user:password@host:5432/database"
    )]
    Url(#[source] sqlx::Error),
    /// Postgres did not accept a connection.
    #[error(
        "cannot connect to Postgres at {target} after {attempts} attempts; check DATABASE_URL and that the server is running"
    )]
    Connect {
        target: String,
        attempts: u32,
        #[source]
        source: sqlx::Error,
    },
    /// Postgres returned an error that retrying cannot fix (no such database, bad
    /// credentials).
    #[error("Postgres at {target} rejected the connection: {reason}; {hint}")]
    Rejected {
        target: String,
        reason: String,
        hint: &'static str,
    },
    /// A migration failed.
    #[error(
        "applying migrations failed; fix the database or start with PERIPHERALS_MIGRATE=false if it is migrated separately"
    )]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Options for one service's pool.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Shown in `pg_stat_activity`.
    pub application_name: String,
    /// Pool size.
    pub max_connections: u32,
}

/// Host, port and database of a URL, for logs; never the password.
pub fn describe_target(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// Parses the URL and builds a pool that connects lazily.
pub fn pool(
    url: &str,
    settings: &PoolSettings,
) -> Result<(PgPool, PgConnectOptions), DbStartError> {
    let options: PgConnectOptions = url.parse().map_err(DbStartError::Url)?;
    let options = options
        .application_name(&settings.application_name)
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));

    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(0)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(Duration::from_secs(60))
        // A dead connection fails its first query and is dropped; pinging before every
        // acquire would cost a round trip per request.
        .test_before_acquire(false)
        .connect_lazy_with(options.clone());
    Ok((pool, options))
}

/// Connects and, when asked, applies pending migrations, retrying while the server comes up.
pub async fn prepare(
    pool: &PgPool,
    options: &PgConnectOptions,
    migrate: bool,
) -> Result<(), DbStartError> {
    const ATTEMPTS: u32 = 6;
    let target = describe_target(options);
    let mut delay = Duration::from_millis(250);

    for attempt in 1..=ATTEMPTS {
        match sqlx::query("SELECT 1").execute(pool).await {
            Ok(_) => break,
            Err(error) if permanent_hint(&error).is_some() => {
                return Err(rejected(target, &error));
            }
            Err(error) if attempt == ATTEMPTS => {
                return Err(DbStartError::Connect {
                    target,
                    attempts: ATTEMPTS,
                    source: error,
                });
            }
            Err(error) => {
                tracing::warn!(%target, attempt, retry_in_ms = delay.as_millis() as u64, error = %error, "Postgres is not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }

    if migrate {
        run_migrations(pool).await?;
    }
    Ok(())
}

/// Advice for connection errors that no retry can fix, by SQLSTATE.
fn permanent_hint(error: &sqlx::Error) -> Option<&'static str> {
    match sqlstate(error)?.as_str() {
        "3D000" => Some(
            "create the database (for example `createdb -h HOST -U USER NAME`) or point DATABASE_URL at one that exists",
        ),
        "28P01" | "28000" => Some("check the user and password in DATABASE_URL"),
        "42501" => Some("grant the user CONNECT and CREATE on the database, or use another user"),
        _ => None,
    }
}

fn rejected(target: String, error: &sqlx::Error) -> DbStartError {
    let reason = match error {
        sqlx::Error::Database(database) => database.message().to_string(),
        other => other.to_string(),
    };
    DbStartError::Rejected {
        target,
        reason,
        hint: permanent_hint(error).unwrap_or("check DATABASE_URL"),
    }
}

/// Applies pending migrations.
pub async fn run_migrations(pool: &PgPool) -> Result<(), DbStartError> {
    migrator().run(pool).await.map_err(DbStartError::Migrate)
}

/// Returns the SQLSTATE of a database error.
pub fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// Returns the constraint that a unique violation (`23505`) broke.
pub fn unique_violation(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            Some(db.constraint().unwrap_or("").to_string())
        }
        _ => None,
    }
}

/// True when the error means the server is out of reach or refusing work for now, so the
/// server should respond 503 and the client retry.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // 08: connection exception; 53: insufficient resources; 57P0x: the server is
            // shutting down or starting; 57014: statement timeout or cancel.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P0")
                || code == "57014"
        }
        _ => false,
    }
}
