//! The configuration in effect, read back before load: PgBouncer's
//! `SHOW CONFIG`, PostgreSQL's `SHOW` for every setting the suite sets,
//! Redis's `CONFIG GET`. The history lost days to PgBouncer settings that
//! were never applied (environment variables under the wrong names); a run
//! here refuses to start when what is in effect differs from what was asked.
//!
//! On a stack the harness starts, every setting it applies is compared; on
//! one it only visits, only those the suite's `[infra]` names (the harness's
//! defaults are not the user's request). A setting the role may not read
//! (`shared_preload_libraries` without `pg_read_all_settings`, PgBouncer's
//! console for a role outside `stats_users`, Redis without `CONFIG GET`) is
//! listed as unread, never a refusal.

use serde::{Deserialize, Serialize};
use sqlx::Connection as _;

use crate::db;
use crate::infra::settings::{parse_postgres_memory, parse_redis_memory};
use crate::infra::{InfraConfig, StackUrls};

/// One setting: what the suite asked for and what the service reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConfigEntry {
    pub service: String,
    pub setting: String,
    pub asked: String,
    pub effective: String,
    pub matches: bool,
}

/// Every setting read back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EffectiveConfig {
    pub entries: Vec<ConfigEntry>,
    /// Settings that were to be compared but could not be read, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
}

/// Which settings a read-back compares.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every setting the harness applies (a stack it starts).
    Everything,
    /// Only these, as [`setting_key`] writes them (a stack it visits).
    Asked(&'a std::collections::BTreeSet<String>),
}

impl Scope<'_> {
    fn includes(&self, service: &str, setting: &str) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Asked(asked) => asked.contains(&setting_key(service, setting)),
        }
    }

    fn includes_any(&self, service: &str) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Asked(asked) => asked
                .iter()
                .any(|key| key.starts_with(&format!("{service}."))),
        }
    }
}

/// A setting's key as suite files write it: `postgres.max-connections`.
pub fn setting_key(service: &str, setting: &str) -> String {
    format!("{service}.{}", setting.replace('_', "-"))
}

impl EffectiveConfig {
    pub fn mismatches(&self) -> Vec<&ConfigEntry> {
        self.entries.iter().filter(|e| !e.matches).collect()
    }
}

fn seconds(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64()
}

/// PostgreSQL's duration text (`0`, `1500ms`, `2s`, `1min`) in milliseconds.
fn postgres_millis(text: &str) -> Option<f64> {
    let digits: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let number: f64 = digits.parse().ok()?;
    let factor = match &text[digits.len()..] {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some(number * factor)
}

/// Reads back the settings `scope` names of those the harness applies.
pub async fn read(
    urls: &StackUrls,
    config: &InfraConfig,
    scope: Scope<'_>,
) -> anyhow::Result<EffectiveConfig> {
    let mut read = EffectiveConfig::default();
    if scope.includes_any("pgbouncer")
        && let Err(error) = read_pgbouncer(urls, config, scope, &mut read).await
    {
        read.unread
            .push(format!("pgbouncer settings (SHOW CONFIG): {error}"));
    }
    if scope.includes_any("postgres") {
        read_postgres(urls, config, scope, &mut read).await?;
    }
    if scope.includes_any("redis") {
        read_redis(urls, config, scope, &mut read).await?;
    }
    Ok(read)
}

impl EffectiveConfig {
    fn entry(
        &mut self,
        service: &str,
        setting: &str,
        asked: String,
        effective: String,
        matches: bool,
    ) {
        self.entries.push(ConfigEntry {
            service: service.into(),
            setting: setting.into(),
            asked,
            effective,
            matches,
        });
    }
}

async fn read_pgbouncer(
    urls: &StackUrls,
    config: &InfraConfig,
    scope: Scope<'_>,
    read: &mut EffectiveConfig,
) -> anyhow::Result<()> {
    let mut admin = db::admin_connect(&urls.pgbouncer_admin_url).await?;
    let rows = db::admin_command(&mut admin, "SHOW CONFIG").await?;
    let value = |key: &str| -> String {
        rows.iter()
            .find(|row| db::admin_value(row, "key") == Some(key))
            .and_then(|row| db::admin_value(row, "value"))
            .unwrap_or("(absent)")
            .to_owned()
    };
    let pgbouncer = &config.pgbouncer;
    let number_matches = |effective: &str, asked: f64| {
        effective
            .parse::<f64>()
            .is_ok_and(|v| (v - asked).abs() < 1e-3)
    };
    let mut numbers = vec![
        (
            "default_pool_size",
            f64::from(pgbouncer.default_pool_size.get()),
        ),
        ("reserve_pool_size", f64::from(pgbouncer.reserve_pool_size)),
        (
            "max_client_conn",
            f64::from(pgbouncer.max_client_conn.get()),
        ),
        ("query_wait_timeout", seconds(pgbouncer.query_wait_timeout)),
        (
            "server_idle_timeout",
            seconds(pgbouncer.server_idle_timeout),
        ),
    ];
    if let Some(asked) = pgbouncer.max_prepared_statements {
        numbers.push(("max_prepared_statements", f64::from(asked)));
    }
    for (key, asked) in numbers {
        if scope.includes("pgbouncer", key) {
            let effective = value(key);
            let matches = number_matches(&effective, asked);
            read.entry("pgbouncer", key, format!("{asked}"), effective, matches);
        }
    }
    if scope.includes("pgbouncer", "pool_mode") {
        let pool_mode = value("pool_mode");
        let matches = pool_mode == pgbouncer.pool_mode.as_str();
        read.entry(
            "pgbouncer",
            "pool_mode",
            pgbouncer.pool_mode.as_str().into(),
            pool_mode,
            matches,
        );
    }
    // The harness's own need (sqlx sends extra_float_digits), not a suite key.
    if scope.includes("pgbouncer", "ignore_startup_parameters") {
        let ignored = value("ignore_startup_parameters");
        let matches = ignored.contains("extra_float_digits");
        read.entry(
            "pgbouncer",
            "ignore_startup_parameters",
            "extra_float_digits".into(),
            ignored,
            matches,
        );
    }
    Ok(())
}

async fn read_postgres(
    urls: &StackUrls,
    config: &InfraConfig,
    scope: Scope<'_>,
    read: &mut EffectiveConfig,
) -> anyhow::Result<()> {
    let mut postgres =
        sqlx::PgConnection::connect_with(&db::connect_options(&urls.database_url)?).await?;
    let settings = &config.postgres;
    // (name, asked as text, whether a value in effect matches it)
    type Matcher<'a> = Box<dyn Fn(&str) -> bool + 'a>;
    let mut wanted: Vec<(&str, String, Matcher)> = vec![
        (
            "max_connections",
            settings.max_connections.to_string(),
            Box::new(|effective: &str| effective == settings.max_connections.to_string()),
        ),
        (
            "shared_buffers",
            settings.shared_buffers.clone(),
            Box::new(|effective: &str| {
                parse_postgres_memory(effective).ok()
                    == parse_postgres_memory(&settings.shared_buffers).ok()
            }),
        ),
        (
            "fsync",
            if settings.fsync { "on" } else { "off" }.to_owned(),
            Box::new(|effective: &str| effective == if settings.fsync { "on" } else { "off" }),
        ),
        (
            "shared_preload_libraries",
            settings.shared_preload_libraries.join(","),
            Box::new(|effective: &str| {
                settings
                    .shared_preload_libraries
                    .iter()
                    .all(|l| effective.contains(l.as_str()))
            }),
        ),
        (
            "statement_timeout",
            format!("{}ms", settings.statement_timeout.as_millis()),
            Box::new(|effective: &str| {
                postgres_millis(effective) == Some(settings.statement_timeout.as_millis() as f64)
            }),
        ),
    ];
    for (name, asked) in &settings.extra {
        wanted.push((
            name.as_str(),
            asked.clone(),
            Box::new(move |effective: &str| {
                effective == asked
                    || postgres_millis(effective).is_some()
                        && postgres_millis(effective) == postgres_millis(asked)
                    || parse_postgres_memory(effective).is_ok()
                        && parse_postgres_memory(effective).ok()
                            == parse_postgres_memory(asked).ok()
            }),
        ));
    }
    for (name, asked, matches) in wanted {
        if !scope.includes("postgres", name) {
            continue;
        }
        match show(&mut postgres, name).await {
            Ok(effective) => {
                let matched = matches(&effective);
                read.entry("postgres", name, asked, effective, matched);
            }
            Err(error) => read.unread.push(format!("postgres {name}: {error}")),
        }
    }
    let _ = postgres.close().await;
    Ok(())
}

/// `SHOW name` as text.
async fn show(postgres: &mut sqlx::PgConnection, name: &str) -> Result<String, sqlx::Error> {
    use sqlx::Row as _;
    let row = sqlx::raw_sql(&format!("SHOW {name}"))
        .fetch_one(&mut *postgres)
        .await?;
    row.try_get_unchecked::<String, _>(0)
}

async fn read_redis(
    urls: &StackUrls,
    config: &InfraConfig,
    scope: Scope<'_>,
    read: &mut EffectiveConfig,
) -> anyhow::Result<()> {
    let client = redis::Client::open(urls.redis_url.as_str())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let settings = &config.redis;
    let wanted = [
        ("maxmemory", settings.maxmemory.clone()),
        (
            "maxmemory-policy",
            settings.maxmemory_policy.as_str().to_owned(),
        ),
    ];
    for (name, asked) in wanted {
        if !scope.includes("redis", name) {
            continue;
        }
        let answer: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut connection)
            .await;
        let effective = match answer {
            Ok(values) => values.get(1).cloned().unwrap_or_else(|| "(absent)".into()),
            Err(error) => {
                read.unread.push(format!("redis {name}: {error}"));
                continue;
            }
        };
        let matches = match name {
            "maxmemory" => effective.parse::<u64>().ok() == parse_redis_memory(&asked).ok(),
            _ => effective == asked,
        };
        read.entry("redis", name, asked, effective, matches);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_keys_are_written_as_suites_write_them() {
        assert_eq!(
            setting_key("postgres", "max_connections"),
            "postgres.max-connections"
        );
        assert_eq!(
            setting_key("redis", "maxmemory-policy"),
            "redis.maxmemory-policy"
        );
        let asked: std::collections::BTreeSet<String> = ["postgres.work-mem".to_owned()].into();
        let scope = Scope::Asked(&asked);
        assert!(scope.includes("postgres", "work_mem"));
        assert!(!scope.includes("postgres", "shared_preload_libraries"));
        assert!(scope.includes_any("postgres") && !scope.includes_any("pgbouncer"));
        assert!(Scope::Everything.includes("pgbouncer", "ignore_startup_parameters"));
    }

    #[test]
    fn postgres_durations() {
        assert_eq!(postgres_millis("0"), Some(0.0));
        assert_eq!(postgres_millis("1500ms"), Some(1500.0));
        assert_eq!(postgres_millis("2s"), Some(2000.0));
        assert_eq!(postgres_millis("1min"), Some(60_000.0));
    }
}
