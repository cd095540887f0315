//! Settings of the three services a suite can set, their validation, and how
//! each is rendered for the service (PostgreSQL `-c` flags, `pgbouncer.ini`,
//! `redis-server` arguments).
//!
//! Every provider renders from these types, so a setting means the same thing
//! whether the service runs in a container or from local binaries.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The database, role and password every provider creates. The role is a
/// superuser of its own throwaway cluster: seeding, `pg_stat_statements` and
/// the probes need that.
pub const DATABASE: &str = "ahsp";
/// See [`DATABASE`].
pub const USER: &str = "ahsp";
/// See [`DATABASE`].
pub const PASSWORD: &str = "ahsp";

/// Connections PostgreSQL must keep free beside PgBouncer's pools: its own
/// superuser reserve (3 by default), the probes, the seeder and the tests'
/// direct connections.
pub const DIRECT_CONNECTION_HEADROOM: u32 = 10;

/// PostgreSQL settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PostgresSettings {
    pub max_connections: NonZeroU32,
    /// `shared_buffers`, in PostgreSQL's memory units (`128MB`, `1GB`, `8192kB`).
    pub shared_buffers: String,
    /// Off by default: a test cluster trades durability for speed.
    pub fsync: bool,
    pub shared_preload_libraries: Vec<String>,
    /// `statement_timeout`; zero means none.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Any other setting, passed as `-c name=value`.
    pub extra: BTreeMap<String, String>,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            max_connections: NonZeroU32::new(200).expect("non-zero"),
            shared_buffers: "128MB".to_owned(),
            fsync: false,
            shared_preload_libraries: vec!["pg_stat_statements".to_owned()],
            statement_timeout: Duration::ZERO,
            extra: BTreeMap::new(),
        }
    }
}

/// PgBouncer's pool mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolMode {
    Session,
    Transaction,
    Statement,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// PgBouncer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PgBouncerSettings {
    pub pool_mode: PoolMode,
    pub default_pool_size: NonZeroU32,
    pub reserve_pool_size: u32,
    #[serde(with = "humantime_serde")]
    pub reserve_pool_timeout: Duration,
    pub max_client_conn: NonZeroU32,
    /// How long a client may wait for a server connection before PgBouncer
    /// drops it: the cause of the history's login 500s.
    #[serde(with = "humantime_serde")]
    pub query_wait_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub server_idle_timeout: Duration,
    /// How soon PgBouncer retries a failed server login. PgBouncer's own
    /// default (15 s) would stall a stack whose PgBouncer starts beside, not
    /// after, PostgreSQL.
    #[serde(with = "humantime_serde")]
    pub server_login_retry: Duration,
    /// Protocol-level prepared statements in transaction mode (PgBouncer ≥ 1.21).
    /// Unset leaves the line out of `pgbouncer.ini`, which older versions need.
    pub max_prepared_statements: Option<u32>,
}

impl Default for PgBouncerSettings {
    fn default() -> Self {
        PgBouncerSettings {
            pool_mode: PoolMode::Transaction,
            default_pool_size: NonZeroU32::new(20).expect("non-zero"),
            reserve_pool_size: 0,
            reserve_pool_timeout: Duration::from_secs(5),
            max_client_conn: NonZeroU32::new(1000).expect("non-zero"),
            query_wait_timeout: Duration::from_secs(120),
            server_idle_timeout: Duration::from_secs(600),
            server_login_retry: Duration::from_millis(100),
            max_prepared_statements: None,
        }
    }
}

/// Redis eviction policy (`maxmemory-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionPolicy {
    Noeviction,
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl EvictionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionPolicy::Noeviction => "noeviction",
            EvictionPolicy::AllkeysLru => "allkeys-lru",
            EvictionPolicy::AllkeysLfu => "allkeys-lfu",
            EvictionPolicy::AllkeysRandom => "allkeys-random",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::VolatileLfu => "volatile-lfu",
            EvictionPolicy::VolatileRandom => "volatile-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
        }
    }
}

/// Redis settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RedisSettings {
    /// `maxmemory` in Redis units (`256mb`, `1gb`, `0` for no limit).
    pub maxmemory: String,
    pub maxmemory_policy: EvictionPolicy,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            maxmemory: "256mb".to_owned(),
            maxmemory_policy: EvictionPolicy::AllkeysLru,
        }
    }
}

/// A setting that cannot be applied, found before anything starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
#[non_exhaustive]
pub struct InvalidSetting {
    /// The setting's path as a suite file spells it, e.g. `infra.pgbouncer.default-pool-size`.
    pub setting: String,
    pub message: String,
}

fn invalid(setting: &str, message: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        setting: setting.to_owned(),
        message: message.into(),
    }
}

/// Checks the three services' settings together, as PostgreSQL, PgBouncer and
/// Redis would, so that a bad value fails here and not in a service's log.
pub fn validate(
    postgres: &PostgresSettings,
    pgbouncer: &PgBouncerSettings,
    redis: &RedisSettings,
) -> Result<(), InvalidSetting> {
    parse_postgres_memory(&postgres.shared_buffers)
        .map_err(|message| invalid("infra.postgres.shared-buffers", message))?;
    for library in &postgres.shared_preload_libraries {
        if !is_identifier(library) {
            return Err(invalid(
                "infra.postgres.shared-preload-libraries",
                format!("`{library}` is not a library name"),
            ));
        }
    }
    for (name, value) in &postgres.extra {
        if !name.split('.').all(is_identifier) {
            return Err(invalid(
                "infra.postgres.extra",
                format!("`{name}` is not a setting name"),
            ));
        }
        if value.contains(['\n', '\0']) {
            return Err(invalid(
                &format!("infra.postgres.extra.{name}"),
                "a value cannot hold a newline",
            ));
        }
    }
    let pooled = pgbouncer.default_pool_size.get() + pgbouncer.reserve_pool_size;
    let available = postgres
        .max_connections
        .get()
        .saturating_sub(DIRECT_CONNECTION_HEADROOM);
    if pooled > available {
        return Err(invalid(
            "infra.pgbouncer.default-pool-size",
            format!(
                "a pool of {pooled} server connections (default-pool-size + reserve-pool-size) does not fit in \
                 postgres max-connections = {} (keep {DIRECT_CONNECTION_HEADROOM} for direct connections; \
                 raise infra.postgres.max-connections to at least {})",
                postgres.max_connections,
                pooled + DIRECT_CONNECTION_HEADROOM
            ),
        ));
    }
    for (setting, value) in [
        (
            "infra.pgbouncer.query-wait-timeout",
            pgbouncer.query_wait_timeout,
        ),
        (
            "infra.pgbouncer.server-idle-timeout",
            pgbouncer.server_idle_timeout,
        ),
        (
            "infra.pgbouncer.reserve-pool-timeout",
            pgbouncer.reserve_pool_timeout,
        ),
        (
            "infra.pgbouncer.server-login-retry",
            pgbouncer.server_login_retry,
        ),
    ] {
        if value.as_micros() % 1000 != 0 {
            return Err(invalid(
                setting,
                "PgBouncer takes at most millisecond precision (e.g. `5s`, `250ms`)",
            ));
        }
    }
    if pgbouncer.max_client_conn.get() < pgbouncer.default_pool_size.get() {
        return Err(invalid(
            "infra.pgbouncer.max-client-conn",
            format!(
                "{} client connections cannot fill a pool of {}",
                pgbouncer.max_client_conn, pgbouncer.default_pool_size
            ),
        ));
    }
    parse_redis_memory(&redis.maxmemory)
        .map_err(|message| invalid("infra.redis.maxmemory", message))?;
    Ok(())
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Bytes in a PostgreSQL memory setting (`128MB`, `8kB`, `1GB`).
pub fn parse_postgres_memory(value: &str) -> Result<u64, String> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &value[digits.len()..];
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{value}` is not a size (e.g. `128MB`, `1GB`, `8192kB`)"))?;
    let factor: u64 = match unit {
        "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        "" => 8 << 10, // PostgreSQL counts bare shared_buffers in 8 kB pages
        _ => {
            return Err(format!(
                "`{unit}` is not a PostgreSQL unit (use B, kB, MB, GB or TB; case matters)"
            ));
        }
    };
    let bytes = number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{value}` is too large"))?;
    if bytes < 128 << 10 {
        return Err(format!("`{value}` is below PostgreSQL's minimum of 128kB"));
    }
    Ok(bytes)
}

/// Bytes in a Redis memory setting (`256mb`, `1gb`, `0`).
pub fn parse_redis_memory(value: &str) -> Result<u64, String> {
    let lower = value.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{value}` is not a size (e.g. `256mb`, `1gb`)"))?;
    let factor: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1000 * 1000,
        "mb" => 1 << 20,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "`{unit}` is not a Redis unit (use b, kb, mb or gb)"
            ));
        }
    };
    let bytes = number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{value}` is too large"))?;
    if bytes != 0 && bytes < 1 << 20 {
        return Err(format!(
            "`{value}` leaves Redis no room (use 0 for no limit, or at least 1mb)"
        ));
    }
    Ok(bytes)
}

impl PostgresSettings {
    /// `-c name=value` arguments for `postgres`, in a stable order.
    pub fn server_args(&self) -> Vec<String> {
        let mut settings: BTreeMap<&str, String> = BTreeMap::new();
        settings.insert("max_connections", self.max_connections.to_string());
        settings.insert("shared_buffers", self.shared_buffers.clone());
        settings.insert("fsync", on_off(self.fsync).to_owned());
        // Without fsync these buy nothing but time; with it they are left alone.
        if !self.fsync {
            settings.insert("synchronous_commit", "off".to_owned());
            settings.insert("full_page_writes", "off".to_owned());
        }
        settings.insert(
            "shared_preload_libraries",
            self.shared_preload_libraries.join(","),
        );
        settings.insert(
            "statement_timeout",
            format!("{}ms", self.statement_timeout.as_millis()),
        );
        // The log signatures the diagnosis looks for need these lines.
        settings.insert("log_lock_waits", "on".to_owned());
        settings.insert("log_min_messages", "warning".to_owned());
        if self.loads_pg_stat_statements() {
            settings.insert("pg_stat_statements.track", "all".to_owned());
        }
        for (name, value) in &self.extra {
            settings.insert(name, value.clone());
        }
        settings
            .into_iter()
            .flat_map(|(name, value)| ["-c".to_owned(), format!("{name}={value}")])
            .collect()
    }

    pub fn loads_pg_stat_statements(&self) -> bool {
        self.shared_preload_libraries
            .iter()
            .any(|l| l == "pg_stat_statements")
    }
}

fn on_off(value: bool) -> &'static str {
    if value { "on" } else { "off" }
}

/// Where PgBouncer listens and where it finds PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgBouncerTopology<'a> {
    pub listen_addr: &'a str,
    pub listen_port: u16,
    pub server_host: &'a str,
    pub server_port: u16,
    pub auth_file: &'a str,
    /// Empty disables the Unix socket.
    pub unix_socket_dir: &'a str,
}

impl PgBouncerSettings {
    /// The whole `pgbouncer.ini`.
    pub fn ini(&self, topology: &PgBouncerTopology<'_>) -> String {
        let mut ini = String::new();
        let PgBouncerTopology {
            listen_addr,
            listen_port,
            server_host,
            server_port,
            auth_file,
            unix_socket_dir,
        } = topology;
        let _ = writeln!(ini, "; written by ahsp-perf");
        let _ = writeln!(ini, "[databases]");
        let _ = writeln!(
            ini,
            "{DATABASE} = host={server_host} port={server_port} dbname={DATABASE}"
        );
        let _ = writeln!(ini);
        let _ = writeln!(ini, "[pgbouncer]");
        let _ = writeln!(ini, "listen_addr = {listen_addr}");
        let _ = writeln!(ini, "listen_port = {listen_port}");
        let _ = writeln!(ini, "unix_socket_dir = {unix_socket_dir}");
        let _ = writeln!(ini, "auth_type = scram-sha-256");
        let _ = writeln!(ini, "auth_file = {auth_file}");
        let _ = writeln!(ini, "admin_users = {USER}");
        let _ = writeln!(ini, "stats_users = {USER}");
        let _ = writeln!(ini, "pool_mode = {}", self.pool_mode.as_str());
        let _ = writeln!(ini, "default_pool_size = {}", self.default_pool_size);
        let _ = writeln!(ini, "reserve_pool_size = {}", self.reserve_pool_size);
        let _ = writeln!(
            ini,
            "reserve_pool_timeout = {}",
            seconds(self.reserve_pool_timeout)
        );
        let _ = writeln!(ini, "max_client_conn = {}", self.max_client_conn);
        let _ = writeln!(
            ini,
            "query_wait_timeout = {}",
            seconds(self.query_wait_timeout)
        );
        let _ = writeln!(
            ini,
            "server_idle_timeout = {}",
            seconds(self.server_idle_timeout)
        );
        let _ = writeln!(
            ini,
            "server_login_retry = {}",
            seconds(self.server_login_retry)
        );
        // sqlx sends extra_float_digits as a startup parameter; PgBouncer
        // refuses unknown ones unless told to ignore them.
        let _ = writeln!(ini, "ignore_startup_parameters = extra_float_digits");
        if let Some(n) = self.max_prepared_statements {
            let _ = writeln!(ini, "max_prepared_statements = {n}");
        }
        // Connections come and go by the thousand under load; the log keeps
        // what explains failures (pooler errors, timeouts) and not every login.
        let _ = writeln!(ini, "log_connections = 0");
        let _ = writeln!(ini, "log_disconnections = 0");
        ini
    }

    /// The `auth_file`: the one role, with its password in clear so PgBouncer
    /// can answer SCRAM both ways.
    pub fn userlist() -> String {
        format!("\"{USER}\" \"{PASSWORD}\"\n")
    }
}

/// PgBouncer reads times as (fractional) seconds.
fn seconds(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{}.{:03}", millis / 1000, millis % 1000)
    }
}

impl RedisSettings {
    /// `redis-server` arguments after the binary name.
    pub fn server_args(&self, bind: &str, port: u16) -> Vec<String> {
        [
            "--bind",
            bind,
            "--port",
            &port.to_string(),
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory",
            &self.maxmemory,
            "--maxmemory-policy",
            self.maxmemory_policy.as_str(),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_invalid(
        edit: impl FnOnce(&mut PostgresSettings, &mut PgBouncerSettings, &mut RedisSettings),
        expect: &str,
    ) {
        let (mut pg, mut pgb, mut redis) = Default::default();
        edit(&mut pg, &mut pgb, &mut redis);
        let error = validate(&pg, &pgb, &redis).expect_err("settings should be refused");
        assert_eq!(error.to_string(), expect);
    }

    #[test]
    fn defaults_are_valid() {
        validate(
            &Default::default(),
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
    }

    #[test]
    fn refuses_bad_values() {
        check_invalid(
            |pg, _, _| pg.shared_buffers = "128mb".into(),
            "infra.postgres.shared-buffers: `mb` is not a PostgreSQL unit (use B, kB, MB, GB or TB; case matters)",
        );
        check_invalid(
            |pg, _, _| pg.shared_buffers = "lots".into(),
            "infra.postgres.shared-buffers: `lots` is not a size (e.g. `128MB`, `1GB`, `8192kB`)",
        );
        check_invalid(
            |pg, pgb, _| {
                pg.max_connections = NonZeroU32::new(20).unwrap();
                pgb.default_pool_size = NonZeroU32::new(15).unwrap();
            },
            "infra.pgbouncer.default-pool-size: a pool of 15 server connections (default-pool-size + \
             reserve-pool-size) does not fit in postgres max-connections = 20 (keep 10 for direct connections; \
             raise infra.postgres.max-connections to at least 25)",
        );
        check_invalid(
            |_, pgb, _| pgb.query_wait_timeout = Duration::from_micros(1500),
            "infra.pgbouncer.query-wait-timeout: PgBouncer takes at most millisecond precision (e.g. `5s`, `250ms`)",
        );
        check_invalid(
            |_, _, redis| redis.maxmemory = "12zb".into(),
            "infra.redis.maxmemory: `zb` is not a Redis unit (use b, kb, mb or gb)",
        );
        check_invalid(
            |pg, _, _| {
                pg.extra.insert("work_mem; drop".into(), "1".into());
            },
            "infra.postgres.extra: `work_mem; drop` is not a setting name",
        );
    }

    #[test]
    fn zero_pool_size_is_refused_when_read() {
        let error = toml::from_str::<PgBouncerSettings>("default-pool-size = 0").unwrap_err();
        assert!(error.to_string().contains("nonzero"), "{error}");
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_postgres_memory("128MB"), Ok(128 << 20));
        assert_eq!(parse_postgres_memory("16384"), Ok(16384 * 8192));
        assert_eq!(parse_redis_memory("256mb"), Ok(256 << 20));
        assert_eq!(parse_redis_memory("0"), Ok(0));
    }

    #[test]
    fn pgbouncer_ini_carries_the_settings() {
        let settings = PgBouncerSettings {
            max_prepared_statements: Some(100),
            ..Default::default()
        };
        let ini = settings.ini(&PgBouncerTopology {
            listen_addr: "0.0.0.0",
            listen_port: 6432,
            server_host: "pg",
            server_port: 5432,
            auth_file: "/etc/pgbouncer/userlist.txt",
            unix_socket_dir: "",
        });
        insta::assert_snapshot!(ini);
    }
}
