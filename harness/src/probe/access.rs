//! What the roles of a stack the harness only visits let it read. A user's
//! own application connects with an ordinary role: no superuser, perhaps no
//! PgBouncer console, a Redis ACL. Nothing here refuses a run; each thing
//! the role cannot read is named once, with the grant that would enable it,
//! and the read-backs and probes make do with the rest.

use crate::db;
use crate::infra::StackUrls;

/// One thing the harness could not read, and the grant that would let it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub what: String,
    pub grant: String,
}

/// Checks each service with the URLs' own roles.
pub async fn check(urls: &StackUrls) -> Vec<Missing> {
    let mut missing = Vec::new();
    postgres(&urls.database_url, &mut missing).await;
    pgbouncer(&urls.pgbouncer_admin_url, &mut missing).await;
    redis(&urls.redis_url, &mut missing).await;
    missing
}

/// The note a run carries, or `None` when the roles can read everything.
pub fn note(missing: &[Missing]) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let each: Vec<String> = missing
        .iter()
        .map(|m| format!("{} — {}", m.what, m.grant))
        .collect();
    Some(format!(
        "the stack's roles do not let the harness read everything; not read, and the grant that would enable it: {}",
        each.join("; ")
    ))
}

/// The user a URL connects as.
fn user(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| u.username().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "the role".to_owned())
}

async fn postgres(url: &str, missing: &mut Vec<Missing>) {
    let role = user(url);
    let mut connection = match db::admin_connect(url).await {
        Ok(connection) => connection,
        // The run needs this connection: its own error says more.
        Err(_) => return,
    };
    let rows = db::admin_command(
        &mut connection,
        "SELECT pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')::text AS settings, \
                pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')::text AS stats, \
                EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')::text AS statements",
    )
    .await;
    let Ok(rows) = rows else { return };
    let Some(row) = rows.first() else { return };
    let yes = |column: &str| db::admin_value(row, column) == Some("true");
    if !yes("settings") {
        missing.push(Missing {
            what: "PostgreSQL settings only privileged roles may read (shared_preload_libraries and the like)"
                .into(),
            grant: format!("GRANT pg_read_all_settings TO {role}"),
        });
    }
    if !yes("stats") {
        missing.push(Missing {
            what: "other roles' sessions in pg_stat_activity (states, lock waits) and their statements".into(),
            grant: format!("GRANT pg_read_all_stats TO {role} (or pg_monitor)"),
        });
    }
    if !yes("statements") {
        missing.push(Missing {
            what: "statement counts: queries per request and the slowest statements".into(),
            grant: "CREATE EXTENSION pg_stat_statements (with it in shared_preload_libraries)"
                .into(),
        });
    }
}

async fn pgbouncer(url: &str, missing: &mut Vec<Missing>) {
    let role = user(url);
    let refused = match db::admin_connect(url).await {
        Ok(mut console) => db::admin_command(&mut console, "SHOW POOLS").await.err(),
        Err(error) => Some(error),
    };
    if let Some(error) = refused {
        missing.push(Missing {
            what: format!("PgBouncer's pools, waits and settings (its console answered: {error})"),
            grant: format!("list {role} in PgBouncer's stats_users"),
        });
    }
}

async fn redis(url: &str, missing: &mut Vec<Missing>) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let config: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut connection)
        .await;
    if let Err(error) = config {
        missing.push(Missing {
            what: format!("Redis's memory settings (CONFIG GET answered: {error})"),
            grant: "allow +config|get in the Redis user's ACL".into(),
        });
    }
    let info: redis::RedisResult<String> = redis::cmd("INFO").query_async(&mut connection).await;
    if let Err(error) = info {
        missing.push(Missing {
            what: format!("Redis's hit ratio, memory and evictions (INFO answered: {error})"),
            grant: "allow +info in the Redis user's ACL".into(),
        });
    }
}
