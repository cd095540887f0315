//! The AHSP hot queries against a seeded stack, through PgBouncer in
//! transaction mode exactly as the reference service runs them: rekap RAB
//! aggregated in SQL against the per-row (N+1) version, the list-pekerjaan
//! tree, kurva-S, a page of the audit trail; and the Redis cache's get and
//! set of a cached chart.
//!
//! `cargo bench -p benches --bench queries` provisions PostgreSQL, PgBouncer
//! and Redis (containers when Docker answers, else local binaries), seeds the
//! `ci` data profile, measures, and removes the stack.

use std::time::Duration;

use benches::SeededStack;
use criterion::Criterion;
use fixtures::service::database::Tx;
use fixtures::service::{rab, read_api};
use harness::db::Db;
use redis::AsyncCommands as _;

/// One transaction through PgBouncer, as one request of the service.
async fn in_transaction<T, F>(db: &Db, body: F) -> T
where
    F: AsyncFnOnce(&mut Tx) -> T,
{
    let mut tx = db.begin().await.expect("a transaction");
    let value = body(&mut tx).await;
    tx.commit().await.expect("commit");
    value
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let seeded = match runtime.block_on(SeededStack::start()) {
        Ok(seeded) => seeded,
        Err(error) => {
            eprintln!("error: the query benchmarks need a stack: {error:#}");
            std::process::exit(2);
        }
    };
    let project = seeded.project_id;
    let db = runtime
        .block_on(Db::connect(&seeded.stack.urls().pgbouncer_url, 2))
        .expect("PgBouncer answers");
    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();

    let mut group = criterion.benchmark_group("queries/rekap_rab");
    group.bench_function("aggregated", |b| {
        b.to_async(&runtime).iter(|| {
            in_transaction(&db, async |tx: &mut Tx| {
                rab::rekap_rab(tx, project).await.expect("rekap RAB")
            })
        })
    });
    group.bench_function("per_row", |b| {
        b.to_async(&runtime).iter(|| {
            in_transaction(&db, async |tx: &mut Tx| {
                rab::rekap_rab_n_plus_one(tx, project)
                    .await
                    .expect("rekap RAB, per row")
            })
        })
    });
    group.finish();

    let mut group = criterion.benchmark_group("queries");
    group.bench_function("list_pekerjaan_tree", |b| {
        b.to_async(&runtime).iter(|| {
            in_transaction(&db, async |tx: &mut Tx| {
                rab::work_tree(tx, project).await.expect("the work tree")
            })
        })
    });
    group.bench_function("kurva_s", |b| {
        b.to_async(&runtime).iter(|| {
            in_transaction(&db, async |tx: &mut Tx| {
                rab::kurva_s(tx, project).await.expect("kurva S")
            })
        })
    });
    group.bench_function("audit_trail_page", |b| {
        b.to_async(&runtime).iter(|| {
            in_transaction(&db, async |tx: &mut Tx| {
                read_api::audit_page(tx, project, 2)
                    .await
                    .expect("an audit page")
            })
        })
    });
    group.finish();

    // The cache holds serialized chart data, as the service stores it.
    let chart = runtime.block_on(in_transaction(&db, async |tx: &mut Tx| {
        rab::kurva_s(tx, project).await.expect("kurva S")
    }));
    let payload = serde_json::to_vec(&chart).expect("serializable chart data");
    let redis = runtime.block_on(async {
        let client = redis::Client::open(seeded.stack.urls().redis_url.as_str())?;
        redis::aio::ConnectionManager::new(client).await
    });
    let redis = redis.expect("Redis answers");
    let key = format!("cache:project:{project}:g1:kurva-s");
    let mut group = criterion.benchmark_group("redis_cache");
    group.bench_function("set", |b| {
        b.to_async(&runtime).iter(|| {
            let (mut redis, key, payload) = (redis.clone(), key.clone(), payload.clone());
            async move {
                let () = redis.set_ex(&key, payload, 300).await.expect("SET");
            }
        })
    });
    // A hit whatever ran before: under nextest every benchmark runs in a
    // process of its own, on a stack of its own, so `set` has not run.
    runtime
        .block_on(async {
            let mut redis = redis.clone();
            redis.set_ex::<_, _, ()>(&key, payload.clone(), 300).await
        })
        .expect("SET before GET");
    group.bench_function("get", |b| {
        b.to_async(&runtime).iter(|| {
            let (mut redis, key) = (redis.clone(), key.clone());
            async move {
                let value: Vec<u8> = redis.get(&key).await.expect("GET");
                assert!(!value.is_empty(), "a cache hit");
                value
            }
        })
    });
    group.finish();

    criterion.final_summary();
    drop(db);
    if let Err(error) = runtime.block_on(seeded.stack.stop()) {
        eprintln!("warning: stopping the stack: {error:#}");
    }
}
