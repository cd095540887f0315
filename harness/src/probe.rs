//! Probes: once a second during a run, on connections of their own (never
//! through the application's pool), the harness looks below HTTP —
//! PgBouncer's pools and stats, PostgreSQL's counters and activity, Redis's
//! keyspace, and the CPU and memory of every service and of the target.
//!
//! What they see goes into the time series, into named values thresholds
//! can use (`pgbouncer.cl_waiting.max`, `redis.hit_ratio`, …), and into the
//! diagnosis beside a failing threshold.

pub mod access;
pub mod config;
pub mod logs;
pub mod process;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::Connection as _;

use crate::db;
use crate::infra::StackUrls;

/// PgBouncer's view of the application's pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PgBouncerSample {
    pub cl_active: f64,
    pub cl_waiting: f64,
    pub sv_active: f64,
    pub sv_idle: f64,
    pub sv_used: f64,
    /// The longest a client has waited for a server, in seconds.
    pub maxwait_seconds: f64,
    /// Queries since PgBouncer started (for rates).
    pub total_query_count: f64,
}

/// PostgreSQL's counters (cumulative) and activity (now).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PostgresSample {
    pub commits: f64,
    pub rollbacks: f64,
    pub deadlocks: f64,
    pub blocks_hit: f64,
    pub blocks_read: f64,
    pub temp_bytes: f64,
    pub active: f64,
    pub idle: f64,
    pub idle_in_transaction: f64,
    /// Backends waiting for a lock.
    pub lock_waits: f64,
    /// Statements counted by pg_stat_statements (cumulative).
    pub statements: f64,
}

/// Redis's keyspace and memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RedisSample {
    pub keyspace_hits: f64,
    pub keyspace_misses: f64,
    pub connected_clients: f64,
    pub used_memory_mb: f64,
    pub evicted_keys: f64,
}

/// One process tree's CPU and memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServiceSample {
    pub name: String,
    /// Percent of one core over the last second.
    pub cpu_percent: f64,
    /// Proportional set size of the whole tree, in MB.
    pub memory_mb: f64,
    /// Whether the process was there at all.
    #[serde(default)]
    pub running: bool,
    /// Whether every process of the tree was stopped (SIGSTOP, state `T`)
    /// or frozen in its cgroup (`docker pause`): there, yet unable to answer.
    #[serde(default)]
    pub stopped: bool,
}

/// Everything probed at one second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProbeSample {
    /// Seconds since the run began.
    pub second: u64,
    pub pgbouncer: Option<PgBouncerSample>,
    pub postgres: Option<PostgresSample>,
    pub redis: Option<RedisSample>,
    pub services: Vec<ServiceSample>,
}

/// What the probes saw over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProbeReport {
    pub samples: Vec<ProbeSample>,
    /// Peaks and totals by name, as thresholds use them.
    pub values: BTreeMap<String, f64>,
    /// Probes that could not be read, and why (once each).
    pub unavailable: Vec<String>,
    /// The statements that took the most time during the run (pg_stat_statements).
    #[serde(default)]
    pub top_statements: Vec<Statement>,
}

/// One normalised statement of pg_stat_statements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Statement {
    pub query: String,
    pub calls: f64,
    pub mean_ms: f64,
    pub total_ms: f64,
}

/// Statements of the harness itself, left out of counts and tops.
pub const OWN_STATEMENTS: &str = "query NOT ILIKE '%pg_stat_%' AND query NOT ILIKE 'BEGIN%' AND query NOT ILIKE 'COMMIT%' \
     AND query NOT ILIKE 'ROLLBACK%' AND query NOT ILIKE 'SHOW %' AND query NOT ILIKE 'SET %' AND query NOT ILIKE 'SELECT 1'";

async fn top_statements(connection: &mut sqlx::PgConnection) -> Vec<Statement> {
    use sqlx::Row as _;
    let sql = format!(
        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 160), calls, mean_exec_time, total_exec_time \
         FROM pg_stat_statements WHERE {OWN_STATEMENTS} ORDER BY total_exec_time DESC LIMIT 5"
    );
    let Ok(rows) = sqlx::Executor::fetch_all(&mut *connection, sql.as_str()).await else {
        return Vec::new();
    };
    let text = |row: &sqlx::postgres::PgRow, i: usize| {
        row.try_get_unchecked::<Option<String>, _>(i)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    rows.iter()
        .map(|row| Statement {
            query: text(row, 0),
            calls: text(row, 1).parse().unwrap_or(0.0),
            mean_ms: text(row, 2).parse().unwrap_or(0.0),
            total_ms: text(row, 3).parse().unwrap_or(0.0),
        })
        .collect()
}

/// Named values the probes add, for plan validation.
pub fn metric_names(services: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = [
        "pgbouncer.cl_waiting.max",
        "pgbouncer.cl_active.max",
        "pgbouncer.sv_active.max",
        "pgbouncer.maxwait.max",
        "postgres.deadlocks",
        "postgres.rollbacks",
        "postgres.lock_waits.max",
        "postgres.idle_in_transaction.max",
        "postgres.temp_bytes",
        "postgres.cache_hit_ratio",
        "redis.hit_ratio",
        "redis.hits",
        "redis.misses",
        "redis.evicted_keys",
        "redis.memory.max",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for service in services {
        names.push(format!("service.{service}.memory.max"));
        names.push(format!("service.{service}.memory.growth"));
        names.push(format!("service.{service}.cpu.avg"));
        names.push(format!("service.{service}.cpu.max"));
    }
    names
}

/// The services probes can know by name.
pub const SERVICE_NAMES: [&str; 5] = ["app", "postgres", "pgbouncer", "redis", "browser"];

/// Where to look.
#[derive(Debug, Clone, Default)]
pub struct ProbeTargets {
    pub urls: Option<StackUrls>,
    /// A name and the root pid of its process tree.
    pub processes: Vec<(String, u32)>,
}

struct Connections {
    admin: Option<sqlx::PgConnection>,
    postgres: Option<sqlx::PgConnection>,
    redis: Option<redis::aio::MultiplexedConnection>,
}

/// Samples once a second until stopped.
#[derive(Debug)]
pub struct Sampler {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<ProbeReport>,
    latest: tokio::sync::watch::Receiver<Option<ProbeSample>>,
}

impl Sampler {
    /// Starts sampling; second 0 is `started`.
    pub fn start(targets: ProbeTargets, started: Instant) -> Sampler {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (latest_sender, latest) = tokio::sync::watch::channel(None);
        let task = tokio::spawn(async move {
            let mut report = ProbeReport::default();
            let mut connections = connect(&targets, &mut report.unavailable).await;
            // Statement statistics from here on are the run's own.
            if let Some(postgres) = connections.postgres.as_mut() {
                let _ =
                    sqlx::Executor::execute(&mut *postgres, "SELECT pg_stat_statements_reset()")
                        .await;
            }
            let mut cpu = process::CpuMeter::default();
            let mut second = 0u64;
            loop {
                let sample = sample(
                    &targets,
                    &mut connections,
                    &mut cpu,
                    second,
                    &mut report.unavailable,
                )
                .await;
                latest_sender.send_replace(Some(sample.clone()));
                report.samples.push(sample);
                second += 1;
                let next = started + Duration::from_secs(second);
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = stopped.changed() => break,
                }
            }
            report.values = summarise(&report.samples);
            if let Some(postgres) = connections.postgres.as_mut() {
                report.top_statements = top_statements(postgres).await;
            }
            report
        });
        Sampler { stop, task, latest }
    }

    /// The last sample taken, as it changes (for what watches the run live).
    pub fn latest(&self) -> tokio::sync::watch::Receiver<Option<ProbeSample>> {
        self.latest.clone()
    }

    pub async fn stop(self) -> ProbeReport {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

async fn connect(targets: &ProbeTargets, unavailable: &mut Vec<String>) -> Connections {
    let mut connections = Connections {
        admin: None,
        postgres: None,
        redis: None,
    };
    let Some(urls) = &targets.urls else {
        return connections;
    };
    match db::admin_connect(&urls.pgbouncer_admin_url).await {
        Ok(c) => connections.admin = Some(c),
        Err(e) => unavailable.push(format!("pgbouncer: {e}")),
    }
    match db::connect_options(&urls.database_url) {
        Ok(options) => match sqlx::PgConnection::connect_with(&options).await {
            Ok(c) => connections.postgres = Some(c),
            Err(e) => unavailable.push(format!("postgres: {e}")),
        },
        Err(e) => unavailable.push(format!("postgres: {e}")),
    }
    match redis::Client::open(urls.redis_url.as_str()) {
        Ok(client) => match client.get_multiplexed_async_connection().await {
            Ok(c) => connections.redis = Some(c),
            Err(e) => unavailable.push(format!("redis: {e}")),
        },
        Err(e) => unavailable.push(format!("redis: {e}")),
    }
    connections
}

fn note(unavailable: &mut Vec<String>, what: &str, error: impl std::fmt::Display) {
    if !unavailable.iter().any(|u| u.starts_with(what)) {
        unavailable.push(format!("{what}: {error}"));
    }
}

/// How long one probe may take before its service counts as not answering
/// in that second.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

async fn bounded<T, E: std::fmt::Display>(
    probe: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

async fn sample(
    targets: &ProbeTargets,
    connections: &mut Connections,
    cpu: &mut process::CpuMeter,
    second: u64,
    unavailable: &mut Vec<String>,
) -> ProbeSample {
    let mut sample = ProbeSample {
        second,
        ..Default::default()
    };
    // A service that hangs (paused, or behind a black hole) must show as
    // not answering in this second, not stop the sampling of the others.
    if let Some(admin) = connections.admin.as_mut() {
        match bounded(pgbouncer(admin)).await {
            Ok(s) => sample.pgbouncer = Some(s),
            Err(e) => note(unavailable, "pgbouncer", e),
        }
    }
    if let Some(postgres) = connections.postgres.as_mut() {
        match bounded(postgres_sample(postgres)).await {
            Ok(s) => sample.postgres = Some(s),
            Err(e) => note(unavailable, "postgres", e),
        }
    }
    if let Some(redis) = connections.redis.as_mut() {
        match bounded(redis_sample(redis)).await {
            Ok(s) => sample.redis = Some(s),
            Err(e) => note(unavailable, "redis", e),
        }
    }
    let table = process::ProcessTable::read();
    for (name, pid) in &targets.processes {
        let pids = table.tree(*pid);
        sample.services.push(ServiceSample {
            name: name.clone(),
            running: !pids.is_empty(),
            stopped: process::stopped(&pids),
            cpu_percent: cpu.percent(name, &pids),
            memory_mb: process::pss_mb(&pids),
        });
    }
    sample
}

fn number(row: &db::AdminRow, column: &str) -> f64 {
    db::admin_value(row, column)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn pgbouncer(admin: &mut sqlx::PgConnection) -> Result<PgBouncerSample, sqlx::Error> {
    let pools = db::admin_command(admin, "SHOW POOLS").await?;
    let stats = db::admin_command(admin, "SHOW STATS").await?;
    let mut sample = PgBouncerSample::default();
    for pool in pools
        .iter()
        .filter(|row| db::admin_value(row, "database") != Some("pgbouncer"))
    {
        sample.cl_active += number(pool, "cl_active");
        sample.cl_waiting += number(pool, "cl_waiting");
        sample.sv_active += number(pool, "sv_active");
        sample.sv_idle += number(pool, "sv_idle");
        sample.sv_used += number(pool, "sv_used");
        let wait = number(pool, "maxwait") + number(pool, "maxwait_us") / 1e6;
        sample.maxwait_seconds = sample.maxwait_seconds.max(wait);
    }
    for row in stats
        .iter()
        .filter(|row| db::admin_value(row, "database") != Some("pgbouncer"))
    {
        sample.total_query_count += number(row, "total_query_count");
    }
    Ok(sample)
}

async fn postgres_sample(
    connection: &mut sqlx::PgConnection,
) -> Result<PostgresSample, sqlx::Error> {
    use sqlx::Row as _;
    // Parameterless, so the simple protocol: every value comes back as text.
    let text = |row: &sqlx::postgres::PgRow, i: usize| -> f64 {
        row.try_get_unchecked::<Option<String>, _>(i)
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let rows = sqlx::Executor::fetch_all(
        &mut *connection,
        "SELECT xact_commit, xact_rollback, deadlocks, blks_hit, blks_read, temp_bytes \
         FROM pg_stat_database WHERE datname = current_database();
         SELECT count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE state = 'idle'), \
                count(*) FILTER (WHERE state LIKE 'idle in transaction%'), count(*) FILTER (WHERE wait_event_type = 'Lock') \
         FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid();",
    )
    .await?;
    let mut sample = PostgresSample::default();
    if let [database, activity, ..] = rows.as_slice() {
        sample.commits = text(database, 0);
        sample.rollbacks = text(database, 1);
        sample.deadlocks = text(database, 2);
        sample.blocks_hit = text(database, 3);
        sample.blocks_read = text(database, 4);
        sample.temp_bytes = text(database, 5);
        sample.active = text(activity, 0);
        sample.idle = text(activity, 1);
        sample.idle_in_transaction = text(activity, 2);
        sample.lock_waits = text(activity, 3);
    }
    // Absent without the extension: then statements stay 0.
    if let Ok(rows) = sqlx::Executor::fetch_all(
        &mut *connection,
        "SELECT sum(calls) FROM pg_stat_statements",
    )
    .await
        && let Some(row) = rows.first()
    {
        sample.statements = text(row, 0);
    }
    Ok(sample)
}

async fn redis_sample(
    connection: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<RedisSample> {
    let info: String = redis::cmd("INFO").query_async(connection).await?;
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(RedisSample {
        keyspace_hits: field("keyspace_hits"),
        keyspace_misses: field("keyspace_misses"),
        connected_clients: field("connected_clients"),
        used_memory_mb: field("used_memory") / 1_048_576.0,
        evicted_keys: field("evicted_keys"),
    })
}

/// Peaks, totals over the run (last minus first for counters) and ratios.
fn summarise(samples: &[ProbeSample]) -> BTreeMap<String, f64> {
    let mut values = BTreeMap::new();
    let max = |f: &dyn Fn(&ProbeSample) -> Option<f64>| {
        samples
            .iter()
            .filter_map(f)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let delta = |f: &dyn Fn(&ProbeSample) -> Option<f64>| {
        let first = samples.iter().find_map(f)?;
        let last = samples.iter().rev().find_map(f)?;
        Some((last - first).max(0.0))
    };
    let mut put = |name: &str, value: Option<f64>| {
        if let Some(value) = value {
            values.insert(name.to_owned(), value);
        }
    };
    put(
        "pgbouncer.cl_waiting.max",
        max(&|s| s.pgbouncer.as_ref().map(|p| p.cl_waiting)),
    );
    put(
        "pgbouncer.cl_active.max",
        max(&|s| s.pgbouncer.as_ref().map(|p| p.cl_active)),
    );
    put(
        "pgbouncer.sv_active.max",
        max(&|s| s.pgbouncer.as_ref().map(|p| p.sv_active)),
    );
    put(
        "pgbouncer.maxwait.max",
        max(&|s| s.pgbouncer.as_ref().map(|p| p.maxwait_seconds)),
    );
    put(
        "postgres.deadlocks",
        delta(&|s| s.postgres.as_ref().map(|p| p.deadlocks)),
    );
    put(
        "postgres.rollbacks",
        delta(&|s| s.postgres.as_ref().map(|p| p.rollbacks)),
    );
    put(
        "postgres.lock_waits.max",
        max(&|s| s.postgres.as_ref().map(|p| p.lock_waits)),
    );
    put(
        "postgres.idle_in_transaction.max",
        max(&|s| s.postgres.as_ref().map(|p| p.idle_in_transaction)),
    );
    put(
        "postgres.temp_bytes",
        delta(&|s| s.postgres.as_ref().map(|p| p.temp_bytes)),
    );
    if let (Some(hit), Some(read)) = (
        delta(&|s| s.postgres.as_ref().map(|p| p.blocks_hit)),
        delta(&|s| s.postgres.as_ref().map(|p| p.blocks_read)),
    ) && hit + read > 0.0
    {
        put("postgres.cache_hit_ratio", Some(hit / (hit + read)));
    }
    let hits = delta(&|s| s.redis.as_ref().map(|r| r.keyspace_hits));
    let misses = delta(&|s| s.redis.as_ref().map(|r| r.keyspace_misses));
    put("redis.hits", hits);
    put("redis.misses", misses);
    if let (Some(hits), Some(misses)) = (hits, misses)
        && hits + misses > 0.0
    {
        put("redis.hit_ratio", Some(hits / (hits + misses)));
    }
    put(
        "redis.evicted_keys",
        delta(&|s| s.redis.as_ref().map(|r| r.evicted_keys)),
    );
    put(
        "redis.memory.max",
        max(&|s| s.redis.as_ref().map(|r| r.used_memory_mb)),
    );
    let names: Vec<String> = samples
        .iter()
        .flat_map(|s| s.services.iter().map(|x| x.name.clone()))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for name in names.into_iter().filter(|n| seen.insert(n.clone())) {
        let series: Vec<&ServiceSample> = samples
            .iter()
            .filter_map(|s| s.services.iter().find(|x| x.name == name))
            .collect();
        let memory_max = series.iter().map(|s| s.memory_mb).fold(0.0, f64::max);
        let cpu: Vec<f64> = series.iter().skip(1).map(|s| s.cpu_percent).collect();
        put(&format!("service.{name}.memory.max"), Some(memory_max));
        if let (Some(first), Some(last)) = (series.get(1).or(series.first()), series.last()) {
            put(
                &format!("service.{name}.memory.growth"),
                Some(last.memory_mb - first.memory_mb),
            );
        }
        if !cpu.is_empty() {
            put(
                &format!("service.{name}.cpu.avg"),
                Some(cpu.iter().sum::<f64>() / cpu.len() as f64),
            );
            put(
                &format!("service.{name}.cpu.max"),
                Some(cpu.iter().copied().fold(0.0, f64::max)),
            );
        }
    }
    values
}
