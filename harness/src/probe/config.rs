//! The configuration in effect, read back before load: PgBouncer's
//! `SHOW CONFIG`, PostgreSQL's `SHOW` for every setting the suite sets,
//! Redis's `CONFIG GET`. The history lost days to PgBouncer settings that
//! were never applied (environment variables under the wrong names); a run
//! here refuses to start when what is in effect differs from what was asked.

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

/// Reads back every setting the harness applies.
pub async fn read(urls: &StackUrls, config: &InfraConfig) -> anyhow::Result<EffectiveConfig> {
    let mut entries = Vec::new();
    let mut entry =
        |service: &str, setting: &str, asked: String, effective: String, matches: bool| {
            entries.push(ConfigEntry {
                service: service.into(),
                setting: setting.into(),
                asked,
                effective,
                matches,
            });
        };

    // PgBouncer.
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
    for (key, asked) in [
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
    ] {
        let effective = value(key);
        let matches = number_matches(&effective, asked);
        entry("pgbouncer", key, format!("{asked}"), effective, matches);
    }
    let pool_mode = value("pool_mode");
    let matches = pool_mode == pgbouncer.pool_mode.as_str();
    entry(
        "pgbouncer",
        "pool_mode",
        pgbouncer.pool_mode.as_str().into(),
        pool_mode,
        matches,
    );
    let ignored = value("ignore_startup_parameters");
    let matches = ignored.contains("extra_float_digits");
    entry(
        "pgbouncer",
        "ignore_startup_parameters",
        "extra_float_digits".into(),
        ignored,
        matches,
    );
    if let Some(asked) = pgbouncer.max_prepared_statements {
        let effective = value("max_prepared_statements");
        let matches = number_matches(&effective, f64::from(asked));
        entry(
            "pgbouncer",
            "max_prepared_statements",
            asked.to_string(),
            effective,
            matches,
        );
    }

    // PostgreSQL.
    let mut postgres =
        sqlx::PgConnection::connect_with(&db::connect_options(&urls.database_url)?).await?;
    let postgres_settings = &config.postgres;
    let mut show = async |name: &str| -> anyhow::Result<String> {
        use sqlx::Row as _;
        let row = sqlx::raw_sql(&format!("SHOW {name}"))
            .fetch_one(&mut postgres)
            .await?;
        Ok(row.try_get_unchecked::<String, _>(0)?)
    };
    let effective = show("max_connections").await?;
    let asked = postgres_settings.max_connections.to_string();
    let matches = effective == asked;
    entry("postgres", "max_connections", asked, effective, matches);
    let effective = show("shared_buffers").await?;
    let matches = parse_postgres_memory(&effective).ok()
        == parse_postgres_memory(&postgres_settings.shared_buffers).ok();
    entry(
        "postgres",
        "shared_buffers",
        postgres_settings.shared_buffers.clone(),
        effective,
        matches,
    );
    let effective = show("fsync").await?;
    let asked = if postgres_settings.fsync { "on" } else { "off" };
    let matches = effective == asked;
    entry("postgres", "fsync", asked.into(), effective, matches);
    let effective = show("shared_preload_libraries").await?;
    let asked = postgres_settings.shared_preload_libraries.join(",");
    let matches = postgres_settings
        .shared_preload_libraries
        .iter()
        .all(|l| effective.contains(l.as_str()));
    entry(
        "postgres",
        "shared_preload_libraries",
        asked,
        effective,
        matches,
    );
    let effective = show("statement_timeout").await?;
    let asked = postgres_settings.statement_timeout.as_millis() as f64;
    let matches = postgres_millis(&effective) == Some(asked);
    entry(
        "postgres",
        "statement_timeout",
        format!("{asked}ms"),
        effective,
        matches,
    );
    for (name, asked) in &postgres_settings.extra {
        let effective = show(name).await?;
        let matches = &effective == asked
            || postgres_millis(&effective).is_some()
                && postgres_millis(&effective) == postgres_millis(asked)
            || parse_postgres_memory(&effective).is_ok()
                && parse_postgres_memory(&effective).ok() == parse_postgres_memory(asked).ok();
        entry("postgres", name, asked.clone(), effective, matches);
    }
    let _ = postgres.close().await;

    // Redis.
    let client = redis::Client::open(urls.redis_url.as_str())?;
    let mut redis_connection = client.get_multiplexed_async_connection().await?;
    let redis_settings = &config.redis;
    let get = |values: Vec<String>| values.get(1).cloned().unwrap_or_else(|| "(absent)".into());
    let maxmemory: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut redis_connection)
        .await?;
    let effective = get(maxmemory);
    let matches =
        effective.parse::<u64>().ok() == parse_redis_memory(&redis_settings.maxmemory).ok();
    entry(
        "redis",
        "maxmemory",
        redis_settings.maxmemory.clone(),
        effective,
        matches,
    );
    let policy: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(&mut redis_connection)
        .await?;
    let effective = get(policy);
    let matches = effective == redis_settings.maxmemory_policy.as_str();
    entry(
        "redis",
        "maxmemory-policy",
        redis_settings.maxmemory_policy.as_str().into(),
        effective,
        matches,
    );

    Ok(EffectiveConfig { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_durations() {
        assert_eq!(postgres_millis("0"), Some(0.0));
        assert_eq!(postgres_millis("1500ms"), Some(1500.0));
        assert_eq!(postgres_millis("2s"), Some(2000.0));
        assert_eq!(postgres_millis("1min"), Some(60_000.0));
    }
}
