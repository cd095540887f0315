//! The reason `harness::db` exists, shown on a real PgBouncer: sqlx's default
//! prepared statements through PgBouncer < 1.21 in transaction mode fail or
//! return wrong results under concurrency, and `harness::db` does not.
//! Every result is checked, so each test can fail.

use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use harness::db::{self, Db};
use harness::infra::{InfraConfig, ProviderChoice, Stack};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const CLIENTS: usize = 40;
const ROUNDS: usize = 50;

#[derive(Debug, Default)]
struct Outcome {
    correct: AtomicU64,
    wrong: AtomicU64,
    errors: AtomicU64,
}

/// Two statements of different shapes, alternately; a result that belongs to
/// another client's statement is counted as wrong.
async fn hammer(pool: sqlx::PgPool, safe: bool) -> Arc<Outcome> {
    let outcome = Arc::new(Outcome::default());
    let tasks = (0..CLIENTS).map(|client| {
        let pool = pool.clone();
        let outcome = outcome.clone();
        tokio::spawn(async move {
            for round in 0..ROUNDS {
                let n = (client * 10_000 + round) as i64;
                let result: Result<bool, sqlx::Error> = async {
                    if safe {
                        let mut tx = pool.begin().await?;
                        let ok = if round % 2 == 0 {
                            let v: i64 = db::query_scalar("SELECT $1::int8 + 1")
                                .bind(n)
                                .fetch_one(&mut *tx)
                                .await?;
                            v == n + 1
                        } else {
                            let v: String = db::query_scalar("SELECT 'x' || $1::text")
                                .bind(n.to_string())
                                .fetch_one(&mut *tx)
                                .await?;
                            v == format!("x{n}")
                        };
                        tx.commit().await?;
                        Ok(ok)
                    } else if round % 2 == 0 {
                        let v: i64 = sqlx::query_scalar("SELECT $1::int8 + 1")
                            .bind(n)
                            .fetch_one(&pool)
                            .await?;
                        Ok(v == n + 1)
                    } else {
                        let v: String = sqlx::query_scalar("SELECT 'x' || $1::text")
                            .bind(n.to_string())
                            .fetch_one(&pool)
                            .await?;
                        Ok(v == format!("x{n}"))
                    }
                }
                .await;
                // Relaxed: the counters are read only after every task has been joined.
                match result {
                    Ok(true) => outcome.correct.fetch_add(1, Ordering::Relaxed),
                    Ok(false) => outcome.wrong.fetch_add(1, Ordering::Relaxed),
                    Err(_) => outcome.errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    });
    futures::future::join_all(tasks).await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_break_through_old_pgbouncer_and_harness_db_does_not()
-> anyhow::Result<()> {
    let mut config = InfraConfig {
        provider: ProviderChoice::Auto,
        ..InfraConfig::default()
    };
    config.pgbouncer.default_pool_size = 3.try_into().unwrap();
    let stack = Stack::start(&config).await?;
    let url = stack.urls().pgbouncer_url.clone();

    let mut admin = db::admin_connect(&stack.urls().pgbouncer_admin_url).await?;
    let version_rows = db::admin_command(&mut admin, "SHOW VERSION").await?;
    let version = version_rows[0][0].1.clone().unwrap_or_default();
    let supports_prepared =
        pgbouncer_at_least(&version, 1, 21) && config.pgbouncer.max_prepared_statements.is_some();

    let safe = Db::connect(&url, CLIENTS as u32).await?;
    let safe_outcome = hammer(safe.pool().clone(), true).await;
    safe.close().await;

    // sqlx as most applications use it: named prepared statements, cached.
    let naive = PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect_with(PgConnectOptions::from_str(&url)?)
        .await?;
    let naive_outcome = hammer(naive.clone(), false).await;
    naive.close().await;
    stack.stop().await?;

    let total = (CLIENTS * ROUNDS) as u64;
    assert_eq!(
        safe_outcome.correct.load(Ordering::Relaxed),
        total,
        "harness::db through {version}: {safe_outcome:?}"
    );
    if !supports_prepared {
        let broken = naive_outcome.wrong.load(Ordering::Relaxed)
            + naive_outcome.errors.load(Ordering::Relaxed);
        assert!(
            broken > 0,
            "expected {version} to break named prepared statements in transaction mode: {naive_outcome:?}"
        );
        eprintln!("naive sqlx through {version}: {naive_outcome:?}");
    }
    Ok(())
}

fn pgbouncer_at_least(version: &str, major: u32, minor: u32) -> bool {
    let numbers: Vec<u32> = version
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or("0.0")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
    ) >= (major, minor)
}
