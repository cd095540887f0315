//! Database access that gives correct results through PgBouncer in
//! transaction mode, whatever its version.
//!
//! Measured here: through PgBouncer 1.18 in transaction mode, sqlx's default
//! (named, cached) prepared statements give errors and silently wrong results
//! under concurrency. Turning the statement cache off is not enough: sqlx then
//! uses the unnamed statement, but sends Parse/Describe and Bind/Execute as two
//! synchronised exchanges, and PgBouncer may hand the second to another server
//! connection whose unnamed statement is someone else's. Inside a transaction
//! the server connection is pinned, so both halves reach the same backend.
//!
//! So every statement here runs inside an explicit transaction
//! ([`Db::begin`]) and is not persistent ([`query`] and friends), and the
//! connections keep no statement cache. `tests/pgbouncer_correctness.rs`
//! proves it under concurrency with every result checked.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Row as _, Transaction};

/// How long a request waits for a pooled connection by default: long
/// enough that PgBouncer's own query_wait_timeout, not ours, decides when a
/// waiting request fails — that is what the history saw.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(180);

/// Connection options for `url` with the statement cache off.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(PgConnectOptions::from_str(url)?
        .statement_cache_capacity(0)
        .application_name("ahsp-perf"))
}

/// A pool whose queries are correct behind PgBouncer in transaction mode,
/// provided they go through [`Db::begin`] and the functions of this module.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, sqlx::Error> {
        Db::connect_with_timeout(url, max_connections, DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// A pool whose requests give up waiting for a connection after `acquire_timeout`.
    pub async fn connect_with_timeout(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Db, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            .connect_with(connect_options(url)?)
            .await?;
        Ok(Db { pool })
    }

    /// Starts a transaction: the only correct way to run a parameterised
    /// statement through PgBouncer in transaction mode before 1.21.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// The underlying pool, for statements without parameters
    /// (`sqlx::raw_sql`), which use the simple protocol and are always safe.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A statement that is not prepared by name: use it inside a transaction.
pub fn query(sql: &str) -> sqlx::query::Query<'_, Postgres, PgArguments> {
    sqlx::query(sql).persistent(false)
}

/// [`query`], mapped to a type.
pub fn query_as<'q, T>(sql: &'q str) -> sqlx::query::QueryAs<'q, Postgres, T, PgArguments>
where
    T: for<'r> sqlx::FromRow<'r, PgRow>,
{
    sqlx::query_as(sql).persistent(false)
}

/// [`query`], for one value.
pub fn query_scalar<'q, T>(sql: &'q str) -> sqlx::query::QueryScalar<'q, Postgres, T, PgArguments>
where
    (T,): for<'r> sqlx::FromRow<'r, PgRow>,
{
    sqlx::query_scalar(sql).persistent(false)
}

/// A row of PgBouncer's admin console, column name to text value.
pub type AdminRow = Vec<(String, Option<String>)>;

/// Runs a `SHOW …` command on PgBouncer's admin console, which speaks only
/// the simple protocol, and returns its rows as text.
pub async fn admin_command(
    connection: &mut PgConnection,
    command: &str,
) -> Result<Vec<AdminRow>, sqlx::Error> {
    // A bare `&str` has no arguments, so sqlx sends it with the simple
    // protocol (and, unlike `raw_sql`, its future is `Send` in spawned tasks).
    let rows = sqlx::Executor::fetch_all(connection, command).await?;
    Ok(rows.iter().map(row_as_text).collect())
}

/// Opens a connection to PgBouncer's admin console (database `pgbouncer`).
pub async fn admin_connect(admin_url: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect_with(&connect_options(admin_url)?).await
}

fn row_as_text(row: &PgRow) -> AdminRow {
    use sqlx::Column as _;
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            // The simple protocol returns every value as text, so reading it
            // as text is right for any column type.
            let value = row.try_get_unchecked::<Option<String>, _>(i).ok().flatten();
            (column.name().to_owned(), value)
        })
        .collect()
}

/// The value of `column` in an admin row.
pub fn admin_value<'r>(row: &'r AdminRow, column: &str) -> Option<&'r str> {
    row.iter()
        .find(|(name, _)| name == column)
        .and_then(|(_, value)| value.as_deref())
}
