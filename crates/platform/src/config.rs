//! Layered configuration: built-in defaults, then an optional TOML file named by
//! `PERIPHERALS_CONFIG`, then environment variables.
//!
//! Each service reads the shared `PERIPHERALS_` prefix and its own prefix (`MESSAGING_`,
//! `UGC_`, …); a service-prefixed variable overrides a shared one. In the TOML file,
//! shared keys sit at the top level and a service's keys in its own table (`[messaging]`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::error::Kind;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Metadata, Provider, Source};
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Unexpected, Visitor};

/// The prefix of settings that every service reads.
pub const SHARED_PREFIX: &str = "PERIPHERALS_";

/// The variable that names the optional TOML file.
pub const CONFIG_FILE_VARIABLE: &str = "PERIPHERALS_CONFIG";

/// A configuration value that cannot be used; startup stops with this message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable or key has a value of the wrong form.
    #[error("invalid value for {origin}: {detail}")]
    Invalid { origin: String, detail: String },
    /// Settings that are fine one by one but not together.
    #[error("{0}")]
    Inconsistent(String),
    /// The file named by `PERIPHERALS_CONFIG` cannot be used.
    #[error("{CONFIG_FILE_VARIABLE} names {path}, which cannot be read: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Settings sources of one service: environment prefix, TOML table and default port.
#[derive(Clone, Copy, Debug)]
pub struct SourceSpec {
    /// Environment prefix, with the trailing underscore (`MESSAGING_`).
    pub prefix: &'static str,
    /// Table name in the TOML file (`messaging`).
    pub section: &'static str,
    /// Longer prefixes that belong to another service (`UGC_SERVICE_` under `UGC_`).
    pub excluded_prefixes: &'static [&'static str],
    /// Port of the default listen address `0.0.0.0:<port>`.
    pub default_port: u16,
}

/// Store kind a service keeps its state in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Postgres,
}

impl<'de> Deserialize<'de> for StoreKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = lossy_string(deserializer)?;
        match text.to_ascii_lowercase().as_str() {
            "memory" => Ok(StoreKind::Memory),
            "postgres" | "postgresql" => Ok(StoreKind::Postgres),
            _ => Err(de::Error::invalid_value(
                Unexpected::Str(&text),
                &"memory or postgres",
            )),
        }
    }
}

/// A database URL; its `Debug` form hides the password.
#[derive(Clone, Deserialize)]
pub struct DatabaseUrl(#[serde(deserialize_with = "lossy_string")] String);

impl DatabaseUrl {
    /// Returns the full URL, password included. Pass it to the driver, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

/// Settings every service has. Service-prefixed variables override the shared ones.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct CommonSettings {
    /// `memory` or `postgres`.
    pub store: StoreKind,
    /// Required when `store` is `postgres`.
    pub database_url: Option<DatabaseUrl>,
    /// Apply pending migrations at startup.
    pub migrate: bool,
    /// Pool size of this service.
    pub db_max_connections: u32,
    /// Time to drain on SIGTERM before undelivered work is logged and the process fails.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Listen address.
    #[serde(deserialize_with = "socket_addr")]
    pub http_addr: SocketAddr,
    /// Largest accepted request body, in bytes.
    #[serde(deserialize_with = "byte_size")]
    pub max_body: usize,
    /// Maximum time a request may run before the server responds 503.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
}

impl Default for CommonSettings {
    fn default() -> Self {
        CommonSettings {
            store: StoreKind::Memory,
            database_url: None,
            migrate: true,
            // Seven services, each with its pool, times replicas, must fit Postgres's
            // max_connections (100 by default).
            db_max_connections: 5,
            shutdown_grace: Duration::from_secs(30),
            // Replaced by the service's own port before extraction.
            http_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            max_body: 1024 * 1024,
            // Long polls wait up to 30 s, so the limit leaves room above that.
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Process-wide settings read only from the shared prefix.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// `pretty` or `json`.
    pub log_format: LogFormat,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            log_format: LogFormat::Pretty,
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = lossy_string(deserializer)?;
        match text.to_ascii_lowercase().as_str() {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err(de::Error::invalid_value(
                Unexpected::Str(&text),
                &"pretty or json",
            )),
        }
    }
}

/// Reads the process-wide settings.
pub fn telemetry_settings() -> Result<TelemetrySettings, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = config_file()? {
        figment = figment.merge(Toml::file(path));
    }
    figment = figment.merge(Env::prefixed(SHARED_PREFIX));
    figment.extract().map_err(describe)
}

/// The layered settings of one service.
#[derive(Clone, Debug)]
pub struct Loader {
    figment: Figment,
    spec: SourceSpec,
    file: Option<PathBuf>,
}

impl Loader {
    /// Layers defaults, the TOML file, shared variables and the service's variables.
    pub fn new(spec: SourceSpec) -> Result<Self, ConfigError> {
        let default_addr = SocketAddr::from(([0, 0, 0, 0], spec.default_port)).to_string();
        let mut figment = Figment::new().merge(Serialized::default("http_addr", default_addr));

        let file = config_file()?;
        if let Some(path) = &file {
            let section = Figment::from(Toml::file(path)).focus(spec.section);
            figment = figment.merge(Toml::file(path)).merge(section);
        }

        let excluded = spec.excluded_prefixes;
        let prefix = spec.prefix;
        let own = Env::prefixed(prefix).filter(move |key| {
            !excluded
                .iter()
                .any(|other| starts_with_ignore_case(&format!("{prefix}{key}"), other))
        });
        figment = figment
            .merge(Env::prefixed(SHARED_PREFIX))
            .merge(Env::raw().only(&["DATABASE_URL"]))
            .merge(own);

        Ok(Loader {
            figment,
            spec,
            file,
        })
    }

    /// Builds a loader over explicit values, for tests; no file or environment is read.
    pub fn from_values(spec: SourceSpec, values: &[(&str, &str)]) -> Self {
        let default_addr = SocketAddr::from(([127, 0, 0, 1], 0)).to_string();
        let mut figment = Figment::new().merge(Serialized::default("http_addr", default_addr));
        for (key, value) in values {
            let parsed: figment::value::Value =
                value.parse().unwrap_or_else(|never| match never {});
            figment = figment.merge(Serialized::default(key, parsed));
        }
        Loader {
            figment,
            spec,
            file: None,
        }
    }

    /// Returns the sources this loader reads.
    pub fn spec(&self) -> SourceSpec {
        self.spec
    }

    /// Extracts the settings every service has, and checks that they fit together.
    pub fn common(&self) -> Result<CommonSettings, ConfigError> {
        let settings: CommonSettings = self.extract()?;
        if settings.store == StoreKind::Postgres && settings.database_url.is_none() {
            return Err(ConfigError::Inconsistent(format!(
                "the store is postgres ({SHARED_PREFIX}STORE or {}STORE) but DATABASE_URL is not set; \
                 set DATABASE_URL=postgres://user@host:5432/database",
                self.spec.prefix
            )));
        }
        if settings.db_max_connections == 0 {
            return Err(ConfigError::Invalid {
                origin: format!("{SHARED_PREFIX}DB_MAX_CONNECTIONS"),
                detail: "expected at least 1, found 0".into(),
            });
        }
        Ok(settings)
    }

    /// Extracts a service's own settings type.
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.figment.extract().map_err(describe)
    }

    /// Lists settings that no settings type reads: variables under this service's
    /// prefix, keys of its TOML table, and scalar keys at the top of the TOML file.
    /// Top-level tables are taken as other services' sections and not checked.
    pub fn unknown_settings(&self, known_fields: &[&str]) -> Vec<String> {
        let mut unknown = self.unknown_variables(known_fields);
        if let Some(path) = &self.file {
            unknown.extend(unknown_file_keys(path, self.spec.section, known_fields));
        }
        unknown
    }

    /// Lists variables under this service's prefix that no settings type reads.
    pub fn unknown_variables(&self, known_fields: &[&str]) -> Vec<String> {
        let prefix = self.spec.prefix;
        std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .filter(|name| starts_with_ignore_case(name, prefix))
            .filter(|name| {
                !self
                    .spec
                    .excluded_prefixes
                    .iter()
                    .any(|other| starts_with_ignore_case(name, other))
            })
            .filter(|name| {
                let key = name[prefix.len()..].to_ascii_lowercase();
                !known_fields.contains(&key.as_str())
            })
            .collect()
    }
}

/// Lists keys of the TOML file that no settings type reads, named as `file: key`.
fn unknown_file_keys(path: &Path, section: &str, known_fields: &[&str]) -> Vec<String> {
    let Ok(data) = Toml::file(path).data() else {
        // A file that does not parse is reported by extraction, with the parse error.
        return Vec::new();
    };
    let Some(root) = data.get(&figment::Profile::Default) else {
        return Vec::new();
    };
    let shared = field_names::<TelemetrySettings>();
    let mut unknown = Vec::new();

    for (key, value) in root {
        match value {
            figment::value::Value::Dict(_, table) if key == section => {
                let stray = table
                    .keys()
                    .filter(|name| !known_fields.contains(&name.as_str()))
                    .map(|name| format!("{}: [{section}] {name}", path.display()));
                unknown.extend(stray);
            }
            figment::value::Value::Dict(..) => {}
            _ if known_fields.contains(&key.as_str()) || shared.contains(&key.as_str()) => {}
            _ => unknown.push(format!("{}: {key}", path.display())),
        }
    }
    unknown
}

/// Lists `PERIPHERALS_*` variables that no shared setting reads.
pub fn unknown_shared_variables() -> Vec<String> {
    let common = field_names::<CommonSettings>();
    let telemetry = field_names::<TelemetrySettings>();
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| starts_with_ignore_case(name, SHARED_PREFIX))
        .filter(|name| {
            let key = name[SHARED_PREFIX.len()..].to_ascii_lowercase();
            key != "config" && !common.contains(&key.as_str()) && !telemetry.contains(&key.as_str())
        })
        .collect()
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn config_file() -> Result<Option<PathBuf>, ConfigError> {
    let Some(raw) = std::env::var_os(CONFIG_FILE_VARIABLE) else {
        return Ok(None);
    };
    if raw.is_empty() {
        return Ok(None);
    }
    let path = PathBuf::from(raw);
    check_readable(&path)?;
    Ok(Some(path))
}

fn check_readable(path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(ConfigError::File {
            path: path.to_path_buf(),
            reason: "it is not a file".into(),
        }),
        Err(error) => Err(ConfigError::File {
            path: path.to_path_buf(),
            reason: error.to_string(),
        }),
    }
}

/// Turns figment's error into one line naming the variable or key and what it expects.
fn describe(error: figment::Error) -> ConfigError {
    let origin = origin_of(&error);
    let detail = match &error.kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let expected = crate::extract::friendly_expectation(expected);
            format!("expected {expected}, found {actual}")
        }
        Kind::MissingField(field) => format!("{field} is required"),
        Kind::Message(message) => message.clone(),
        other => other.to_string(),
    };
    ConfigError::Invalid { origin, detail }
}

fn origin_of(error: &figment::Error) -> String {
    let key = error.path.join(".");
    let Some(metadata) = &error.metadata else {
        return key;
    };
    if let (true, Some(Source::File(path))) = (key.is_empty(), &metadata.source) {
        return format!("the file {}", path.display());
    }
    if metadata.name.contains("environment variable") {
        return format!(
            "{}{}",
            env_prefix(metadata),
            error.path.join("_").to_ascii_uppercase()
        );
    }
    match &metadata.source {
        Some(Source::File(path)) => format!("key `{key}` in {}", path.display()),
        _ => key,
    }
}

/// Recovers the prefix from figment's provider name, which reads "`PREFIX_` environment variable(s)".
fn env_prefix(metadata: &Metadata) -> &str {
    metadata
        .name
        .strip_prefix('`')
        .and_then(|rest| rest.split('`').next())
        .unwrap_or("")
}

/// Lists the field names a settings struct reads, for warnings about unknown variables.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl std::fmt::Display for Found {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names")
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Found(&[])
        }
    }
    impl<'de> Deserializer<'de> for Probe {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Found(fields)) => fields,
        Ok(_) => &[],
    }
}

/// Deserializes a duration: `500ms`, `30s`, `5m`, `1h`, `7d`, or a bare number of seconds.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    const EXPECTED: &str = "a duration such as 500ms, 30s, 5m, 1h or 7d (a bare number is seconds)";
    let text = lossy_string(deserializer)?;
    parse_duration(&text).ok_or_else(|| de::Error::invalid_value(Unexpected::Str(&text), &EXPECTED))
}

/// Parses the duration forms `duration` accepts.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    humantime::parse_duration(text).ok()
}

/// Writes a duration the way `duration` reads one, for messages about settings:
/// `13h`, `1m 30s`, `250ms`.
pub fn display_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// Deserializes a size in bytes: a bare number, or a number with `KiB`, `MiB`, `KB` or `MB`.
pub fn byte_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    const EXPECTED: &str = "a size such as 1048576, 512KiB or 1MiB";
    let text = lossy_string(deserializer)?;
    parse_byte_size(&text)
        .ok_or_else(|| de::Error::invalid_value(Unexpected::Str(&text), &EXPECTED))
}

/// Parses the size forms `byte_size` accepts.
pub fn parse_byte_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1024,
        "kb" => 1000,
        "m" | "mib" => 1024 * 1024,
        "mb" => 1_000_000,
        "g" | "gib" => 1024 * 1024 * 1024,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Deserializes a listen address such as `0.0.0.0:8092` or `:8092` (all interfaces).
pub fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = lossy_string(deserializer)?;
    let trimmed = text.trim();
    let full = match trimmed.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => trimmed.to_string(),
    };
    full.parse().map_err(|_| {
        de::Error::invalid_value(
            Unexpected::Str(&text),
            &"an address such as 0.0.0.0:8092 or 127.0.0.1:8092",
        )
    })
}

/// Deserializes a string, accepting numbers and booleans as their text: environment
/// values such as `UGC_BANNED_TERMS=123` arrive typed.
pub fn lossy_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct Text;
    impl Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_string<E: de::Error>(self, value: String) -> Result<String, E> {
            Ok(value)
        }
        fn visit_bool<E: de::Error>(self, value: bool) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_f64<E: de::Error>(self, value: f64) -> Result<String, E> {
            Ok(value.to_string())
        }
    }
    deserializer.deserialize_any(Text)
}

#[cfg(test)]
// figment::Jail fixes the closure type, whose error variant clippy finds large.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    const SPEC: SourceSpec = SourceSpec {
        prefix: "DEMO_",
        section: "demo",
        excluded_prefixes: &[],
        default_port: 9000,
    };

    #[derive(Debug, Deserialize)]
    #[serde(default)]
    struct Demo {
        #[serde(deserialize_with = "duration")]
        retention: Duration,
        #[serde(deserialize_with = "byte_size")]
        max_payload: usize,
        workers: u32,
    }

    impl Default for Demo {
        fn default() -> Self {
            Demo {
                retention: Duration::from_secs(60),
                max_payload: 10,
                workers: 4,
            }
        }
    }

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-3"), None);
    }

    #[test]
    fn byte_sizes_accept_units() {
        assert_eq!(parse_byte_size("1048576"), Some(1_048_576));
        assert_eq!(parse_byte_size("256KiB"), Some(262_144));
        assert_eq!(parse_byte_size("1MiB"), Some(1_048_576));
        assert_eq!(parse_byte_size("2MB"), Some(2_000_000));
        assert_eq!(parse_byte_size("lots"), None);
    }

    #[test]
    fn values_override_defaults() {
        let loader = Loader::from_values(SPEC, &[("retention", "2h"), ("workers", "8")]);
        let demo: Demo = loader.extract().expect("valid");
        assert_eq!(demo.retention, Duration::from_secs(7200));
        assert_eq!(demo.workers, 8);
        assert_eq!(demo.max_payload, 10);
    }

    #[test]
    fn bad_duration_names_key_and_form() {
        let loader = Loader::from_values(SPEC, &[("retention", "forever")]);
        let error = loader.extract::<Demo>().unwrap_err().to_string();
        assert!(error.contains("retention"), "{error}");
        assert!(error.contains("500ms, 30s"), "{error}");
        assert!(error.contains("forever"), "{error}");
    }

    #[test]
    fn integer_error_reads_plainly() {
        let loader = Loader::from_values(SPEC, &[("workers", "lots")]);
        let error = loader.extract::<Demo>().unwrap_err().to_string();
        assert!(error.contains("non-negative integer"), "{error}");
    }

    #[test]
    fn postgres_without_url_is_rejected() {
        let loader = Loader::from_values(SPEC, &[("store", "postgres")]);
        let error = loader.common().unwrap_err().to_string();
        assert!(error.contains("DATABASE_URL"), "{error}");
    }

    #[test]
    fn unknown_store_lists_choices() {
        let loader = Loader::from_values(SPEC, &[("store", "redis")]);
        let error = loader.common().unwrap_err().to_string();
        assert!(error.contains("memory or postgres"), "{error}");
    }

    #[test]
    fn field_names_lists_struct_fields() {
        assert_eq!(
            field_names::<Demo>(),
            ["retention", "max_payload", "workers"]
        );
    }

    #[test]
    fn listen_address_accepts_go_style_port() {
        let loader = Loader::from_values(SPEC, &[("http_addr", ":8092")]);
        let common = loader.common().expect("valid");
        assert_eq!(common.http_addr, SocketAddr::from(([0, 0, 0, 0], 8092)));
    }

    #[test]
    fn database_url_debug_is_redacted() {
        let url = DatabaseUrl("postgres://user:secret@host/db".into());
        assert!(!format!("{url:?}").contains("secret"));
    }

    #[test]
    fn bad_variable_is_named_in_error() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DEMO_RETENTION", "forever");
            let loader = Loader::new(SPEC).expect("no file");
            let error = loader.extract::<Demo>().unwrap_err().to_string();
            assert!(error.contains("DEMO_RETENTION"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn service_prefix_overrides_shared_prefix() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PERIPHERALS_MAX_BODY", "2048");
            jail.set_env("PERIPHERALS_DB_MAX_CONNECTIONS", "7");
            jail.set_env("DEMO_MAX_BODY", "4096");
            let common = Loader::new(SPEC).expect("no file").common().expect("valid");
            assert_eq!(common.max_body, 4096);
            assert_eq!(common.db_max_connections, 7);
            assert_eq!(common.http_addr, SocketAddr::from(([0, 0, 0, 0], 9000)));
            Ok(())
        });
    }

    #[test]
    fn excluded_prefix_belongs_to_another_service() {
        const UGC: SourceSpec = SourceSpec {
            prefix: "UGC_",
            section: "ugc",
            excluded_prefixes: &["UGC_SERVICE_"],
            default_port: 8083,
        };
        figment::Jail::expect_with(|jail| {
            jail.set_env("UGC_SERVICE_HTTP_ADDR", "127.0.0.1:1");
            jail.set_env("UGC_WORKERZ", "3");
            let loader = Loader::new(UGC).expect("no file");
            let common = loader.common().expect("valid");
            assert_eq!(common.http_addr, SocketAddr::from(([0, 0, 0, 0], 8083)));
            let unknown = loader.unknown_variables(field_names::<CommonSettings>());
            assert_eq!(unknown, vec!["UGC_WORKERZ".to_string()]);
            Ok(())
        });
    }

    #[test]
    fn toml_section_overrides_top_level() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "peripherals.toml",
                "max_body = 100\nretention = \"5m\"\n[demo]\nretention = \"10m\"\n",
            )?;
            jail.set_env(CONFIG_FILE_VARIABLE, "peripherals.toml");
            let loader = Loader::new(SPEC).expect("file exists");
            let demo: Demo = loader.extract().expect("valid");
            assert_eq!(demo.retention, Duration::from_secs(600));
            assert_eq!(loader.common().expect("valid").max_body, 100);
            Ok(())
        });
    }

    #[test]
    fn unknown_toml_keys_are_listed() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "peripherals.toml",
                "max_body = 100\nstoer = \"postgres\"\n[demo]\nretention = \"5m\"\nretentoin = \"1m\"\n[other]\nanything = 1\n",
            )?;
            jail.set_env(CONFIG_FILE_VARIABLE, "peripherals.toml");
            let loader = Loader::new(SPEC).expect("file exists");
            let mut known = field_names::<CommonSettings>().to_vec();
            known.extend_from_slice(field_names::<Demo>());
            let unknown = loader.unknown_settings(&known);
            assert_eq!(unknown.len(), 2, "{unknown:?}");
            assert!(
                unknown[0].ends_with(": stoer") || unknown[1].ends_with(": stoer"),
                "{unknown:?}"
            );
            assert!(
                unknown.iter().any(|key| key.ends_with("[demo] retentoin")),
                "{unknown:?}"
            );
            Ok(())
        });
    }

    #[test]
    fn toml_syntax_error_names_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("broken.toml", "store = \n")?;
            jail.set_env(CONFIG_FILE_VARIABLE, "broken.toml");
            let error = Loader::new(SPEC)
                .expect("file exists")
                .common()
                .unwrap_err()
                .to_string();
            assert!(error.contains("the file"), "{error}");
            assert!(error.contains("broken.toml"), "{error}");
            assert!(!error.contains("key ``"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn unknown_shared_variables_are_listed() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PERIPHERALS_STOER", "postgres");
            jail.set_env("PERIPHERALS_LOG_FORMAT", "json");
            let unknown = unknown_shared_variables();
            assert!(
                unknown.contains(&"PERIPHERALS_STOER".to_string()),
                "{unknown:?}"
            );
            assert!(
                !unknown.contains(&"PERIPHERALS_LOG_FORMAT".to_string()),
                "{unknown:?}"
            );
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(CONFIG_FILE_VARIABLE, "nowhere.toml");
            let error = Loader::new(SPEC).unwrap_err().to_string();
            assert!(error.contains("nowhere.toml"), "{error}");
            Ok(())
        });
    }
}
