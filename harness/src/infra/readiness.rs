//! Waiting honestly: a service is ready when a real connection and command
//! succeed, never after a sleep and never on a log line alone (the official
//! PostgreSQL image prints "ready to accept connections" for its temporary
//! init server too).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::Connection as _;

use crate::db;

/// Polls `attempt` until it succeeds or `timeout` passes; returns its value
/// and the time from `since` (the start of the stack) to success. The last
/// error explains a timeout.
pub async fn poll<T, F, Fut>(
    what: &str,
    since: Instant,
    timeout: Duration,
    mut attempt: F,
) -> anyhow::Result<(T, Duration)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        let outcome =
            match tokio::time::timeout(remaining.min(Duration::from_secs(5)), attempt()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(anyhow::anyhow!(
                    "no answer within {:?}",
                    remaining.min(Duration::from_secs(5))
                )),
            };
        match outcome {
            Ok(value) => return Ok((value, since.elapsed())),
            Err(error) if started.elapsed() >= timeout => {
                return Err(error.context(format!("{what} not ready after {timeout:?}")));
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// A connection and `SELECT 1`, through PostgreSQL or PgBouncer.
pub async fn postgres_answers(url: &str) -> anyhow::Result<()> {
    let mut connection = sqlx::PgConnection::connect_with(&db::connect_options(url)?).await?;
    sqlx::raw_sql("SELECT 1").execute(&mut connection).await?;
    connection.close().await?;
    Ok(())
}

/// `SHOW VERSION` on PgBouncer's admin console; returns the version line.
pub async fn pgbouncer_admin_answers(admin_url: &str) -> anyhow::Result<String> {
    let mut connection = db::admin_connect(admin_url).await?;
    let rows = db::admin_command(&mut connection, "SHOW VERSION").await?;
    let version = rows
        .first()
        .and_then(|row| row.first())
        .and_then(|(_, value)| value.clone())
        .context("SHOW VERSION returned nothing")?;
    Ok(version)
}

/// `PING` answered with `PONG`.
pub async fn redis_answers(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let pong: String = redis::cmd("PING").query_async(&mut connection).await?;
    anyhow::ensure!(pong == "PONG", "PING answered {pong:?}");
    Ok(())
}
