//! Each provider starts a stack and the same checks pass on it: SQL through
//! PgBouncer in transaction mode under concurrency with every result checked,
//! Redis commands, and PgBouncer's admin console.

use std::time::Duration;

use harness::db::{self, Db};
use harness::infra::{
    Disturbance, ExternalUrls, InfraConfig, Provider, ProviderChoice, ServiceLocation, ServiceName,
    Stack, StackUrls,
};

/// Concurrent clients, statements per client, and PgBouncer's server pool:
/// far more clients than server connections, so server connections are
/// shared between clients all the time.
const CLIENTS: usize = 48;
const STATEMENTS_PER_CLIENT: usize = 60;
const SERVER_POOL: u32 = 4;

fn config(provider: ProviderChoice) -> InfraConfig {
    let mut config = InfraConfig {
        provider,
        ..InfraConfig::default()
    };
    config.pgbouncer.default_pool_size = SERVER_POOL.try_into().unwrap();
    config
}

/// Parameterised statements of different shapes (so a statement executed on
/// the wrong backend would fail or return a wrong value), every result checked.
async fn concurrent_queries_are_correct(db: &Db) -> anyhow::Result<()> {
    let tasks = (0..CLIENTS).map(|client| {
        let db = db.clone();
        tokio::spawn(async move {
            for i in 0..STATEMENTS_PER_CLIENT {
                let n = (client * 1_000 + i) as i64;
                let mut tx = db.begin().await?;
                if i % 2 == 0 {
                    let (doubled, text): (i64, String) =
                        db::query_as("SELECT $1::int8 * 2, $2::text || '-ok'")
                            .bind(n)
                            .bind(format!("c{n}"))
                            .fetch_one(&mut *tx)
                            .await?;
                    anyhow::ensure!(
                        doubled == n * 2 && text == format!("c{n}-ok"),
                        "client {client}: got {doubled}, {text} for {n}"
                    );
                } else {
                    let rows: Vec<(i32, String)> =
                        db::query_as("SELECT g, $1::text FROM generate_series(1, $2::int4) AS g")
                            .bind(format!("r{n}"))
                            .bind((i % 7 + 1) as i32)
                            .fetch_all(&mut *tx)
                            .await?;
                    anyhow::ensure!(
                        rows.len() == i % 7 + 1,
                        "client {client}: {} rows for {}",
                        rows.len(),
                        i % 7 + 1
                    );
                    for (k, (g, text)) in rows.iter().enumerate() {
                        anyhow::ensure!(
                            *g == k as i32 + 1 && *text == format!("r{n}"),
                            "client {client}: row {k} = ({g}, {text})"
                        );
                    }
                }
                tx.commit().await?;
            }
            Ok::<_, anyhow::Error>(())
        })
    });
    for result in futures::future::join_all(tasks).await {
        result??;
    }
    Ok(())
}

/// Whether Redis answers a PING within a second, on a new connection.
async fn redis_answers(url: &str) -> bool {
    let attempt = async {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(_))
    )
}

/// A fault reaches its service: paused Redis answers nothing and answers
/// again once resumed; restarted PostgreSQL keeps a committed row and
/// answers on the same URL, and so do restarted PgBouncer and Redis (with a
/// new process); killed PgBouncer refuses connections. Last on a stack: it
/// leaves PgBouncer dead.
async fn disturbances_reach_the_service(stack: &Stack) -> anyhow::Result<()> {
    let urls = stack.urls().clone();
    let db = Db::connect(&urls.database_url, 1).await?;
    sqlx::raw_sql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        .execute(db.pool())
        .await?;
    db.close().await;
    let before: Vec<(String, u32)> = stack.processes().await;
    for service in [
        ServiceName::Postgres,
        ServiceName::Pgbouncer,
        ServiceName::Redis,
    ] {
        stack.restart(service).await?;
    }
    let db = Db::connect(&urls.pgbouncer_url, 1).await?;
    let (kept,): (i32,) = sqlx::query_as("SELECT v FROM kept")
        .fetch_one(db.pool())
        .await?;
    db.close().await;
    anyhow::ensure!(kept == 42, "a committed row did not survive the restart");
    anyhow::ensure!(redis_answers(&urls.redis_url).await, "redis after restart");
    let after = stack.processes().await;
    anyhow::ensure!(
        before.iter().all(|old| !after.contains(old)) && after.len() == before.len(),
        "restarted services keep their processes: {before:?} → {after:?}"
    );
    anyhow::ensure!(
        redis_answers(&urls.redis_url).await,
        "redis before the pause"
    );
    stack
        .disturb(ServiceName::Redis, Disturbance::Pause)
        .await?;
    anyhow::ensure!(
        !redis_answers(&urls.redis_url).await,
        "a paused redis answered"
    );
    stack
        .disturb(ServiceName::Redis, Disturbance::Resume)
        .await?;
    anyhow::ensure!(redis_answers(&urls.redis_url).await, "redis after resume");
    stack
        .disturb(ServiceName::Pgbouncer, Disturbance::Kill)
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while harness::infra::readiness::postgres_answers(&urls.pgbouncer_url)
        .await
        .is_ok()
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "pgbouncer still answers after a kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn redis_round_trip(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("SET")
        .arg("ahsp-perf:probe")
        .arg("42")
        .arg("EX")
        .arg(60)
        .query_async(&mut connection)
        .await?;
    let value: String = redis::cmd("GET")
        .arg("ahsp-perf:probe")
        .query_async(&mut connection)
        .await?;
    anyhow::ensure!(value == "42", "GET returned {value}");
    let incremented: i64 = redis::cmd("INCRBY")
        .arg("ahsp-perf:probe")
        .arg(8)
        .query_async(&mut connection)
        .await?;
    anyhow::ensure!(incremented == 50, "INCRBY returned {incremented}");
    Ok(())
}

async fn admin_console_shows_the_pool(admin_url: &str) -> anyhow::Result<()> {
    let mut connection = db::admin_connect(admin_url).await?;
    let pools = db::admin_command(&mut connection, "SHOW POOLS").await?;
    let pool = pools
        .iter()
        .find(|row| db::admin_value(row, "database") == Some("ahsp"))
        .ok_or_else(|| anyhow::anyhow!("SHOW POOLS has no `ahsp` pool: {pools:?}"))?;
    anyhow::ensure!(
        db::admin_value(pool, "pool_mode") == Some("transaction"),
        "pool: {pool:?}"
    );
    let config = db::admin_command(&mut connection, "SHOW CONFIG").await?;
    let pool_size = config
        .iter()
        .find(|row| db::admin_value(row, "key") == Some("default_pool_size"))
        .and_then(|row| db::admin_value(row, "value"))
        .map(str::to_owned);
    anyhow::ensure!(
        pool_size.as_deref() == Some(&*SERVER_POOL.to_string()),
        "default_pool_size = {pool_size:?}"
    );
    Ok(())
}

async fn pg_stat_statements_counts(database_url: &str) -> anyhow::Result<()> {
    let db = Db::connect(database_url, 1).await?;
    let mut tx = db.begin().await?;
    let calls: Option<i64> = db::query_scalar("SELECT sum(calls)::int8 FROM pg_stat_statements")
        .fetch_one(&mut *tx)
        .await?;
    anyhow::ensure!(calls.unwrap_or(0) > 0, "pg_stat_statements counted nothing");
    tx.commit().await?;
    Ok(())
}

async fn check_stack(stack: &Stack) -> anyhow::Result<()> {
    let urls = stack.urls();
    let db = Db::connect(&urls.pgbouncer_url, CLIENTS as u32).await?;
    concurrent_queries_are_correct(&db).await?;
    db.close().await;
    redis_round_trip(&urls.redis_url).await?;
    admin_console_shows_the_pool(&urls.pgbouncer_admin_url).await?;
    pg_stat_statements_counts(&urls.database_url).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_provider() -> anyhow::Result<()> {
    let stack = Stack::start(&config(ProviderChoice::Containers)).await?;
    assert_eq!(stack.provider(), Provider::Containers);
    let ids: Vec<String> = stack
        .services()
        .iter()
        .map(|s| match &s.location {
            ServiceLocation::Container { id, .. } => id.clone(),
            other => panic!("a container stack with {other:?}"),
        })
        .collect();
    let mut result = check_stack(&stack).await;
    if result.is_ok() {
        result = disturbances_reach_the_service(&stack).await;
    }
    let docker = testcontainers::bollard::Docker::connect_with_local_defaults()?;
    stack.stop().await?;
    result?;
    for id in ids {
        assert!(
            docker.inspect_container(&id, None).await.is_err(),
            "container {id} outlived its stack"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_provider_and_external_provider_over_it() -> anyhow::Result<()> {
    let stack = Stack::start(&config(ProviderChoice::Native)).await?;
    assert_eq!(stack.provider(), Provider::Native);
    let dirs: Vec<std::path::PathBuf> = stack
        .services()
        .iter()
        .filter_map(|s| match &s.location {
            ServiceLocation::Process { log, .. } => log.parent().map(|p| p.to_path_buf()),
            _ => None,
        })
        .collect();
    assert_eq!(dirs.len(), 3);
    let native = check_stack(&stack).await;

    // The external provider over the native stack's URLs: nothing is started.
    let StackUrls {
        database_url,
        pgbouncer_url,
        pgbouncer_admin_url,
        redis_url,
    } = stack.urls().clone();
    let external_config = InfraConfig {
        provider: ProviderChoice::External,
        external: ExternalUrls {
            database_url: Some(database_url),
            pgbouncer_url: Some(pgbouncer_url),
            pgbouncer_admin_url: Some(pgbouncer_admin_url),
            redis_url: Some(redis_url),
        },
        ..config(ProviderChoice::External)
    };
    let external = Stack::start(&external_config).await?;
    assert_eq!(external.provider(), Provider::External);
    let checked = check_stack(&external).await;
    let refused = external
        .disturb(ServiceName::Redis, Disturbance::Pause)
        .await
        .expect_err("an external stack is only visited");
    assert!(
        refused.to_string().contains("only visits it"),
        "{refused:#}"
    );
    let refused = external
        .restart(ServiceName::Postgres)
        .await
        .expect_err("an external stack is only visited");
    assert!(
        refused.to_string().contains("only visits it"),
        "{refused:#}"
    );
    external.stop().await?;
    // Stopping an external stack stops nothing.
    let still_up = harness::infra::readiness::postgres_answers(&stack.urls().pgbouncer_url).await;
    let disturbed = disturbances_reach_the_service(&stack).await;
    stack.stop().await?;
    native?;
    checked?;
    still_up?;
    disturbed?;
    for dir in dirs {
        assert!(!dir.exists(), "{} outlived its stack", dir.display());
    }
    Ok(())
}

#[tokio::test]
async fn unreachable_external_url_fails_fast_and_names_the_variable() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://ahsp:secret@127.0.0.1:{closed_port}/ahsp");
    let config = InfraConfig {
        provider: ProviderChoice::External,
        external: ExternalUrls {
            database_url: Some(url.clone()),
            pgbouncer_url: Some(url.clone()),
            pgbouncer_admin_url: None,
            redis_url: Some(format!("redis://127.0.0.1:{closed_port}/0")),
        },
        ..InfraConfig::default()
    };
    let started = std::time::Instant::now();
    let error = Stack::start(&config)
        .await
        .expect_err("nothing listens there");
    let message = format!("{error:#}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(message.contains("does not answer"), "{message}");
    assert!(
        message.contains("_URL = postgres://ahsp:***@127.0.0.1"),
        "{message}"
    );
    assert!(
        !message.contains("secret"),
        "a password reached an error message: {message}"
    );
}

#[tokio::test]
async fn invalid_settings_are_refused_before_anything_starts() {
    let mut config = InfraConfig {
        provider: ProviderChoice::Native,
        ..InfraConfig::default()
    };
    config.redis.maxmemory = "lots".into();
    let error = Stack::start(&config).await.expect_err("invalid maxmemory");
    assert_eq!(
        format!("{error:#}"),
        "invalid infrastructure settings: infra.redis.maxmemory: `lots` is not a size (e.g. `256mb`, `1gb`)"
    );
    let unknown: Result<ProviderChoice, _> = "kubernetes".parse();
    assert_eq!(
        unknown.unwrap_err(),
        "unknown infrastructure provider `kubernetes` (use auto, containers, native or external)"
    );
}
