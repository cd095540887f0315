//! Shared by the benchmarks: a seeded stack for the query benchmarks, and a
//! recorded run for the harness's own hot paths.

use harness::infra::{InfraConfig, Stack};
use harness::metrics::summary::{EndpointMeta, RunHeader, TaskSelection};
use harness::metrics::{Aggregator, FailureKind, Outcome, Phase, Recorder, RunSummary};

/// A stack seeded with the `ci` data profile, and the project the hot
/// queries read: the one with the most pekerjaan.
#[derive(Debug)]
pub struct SeededStack {
    pub stack: Stack,
    pub project_id: i64,
}

impl SeededStack {
    pub async fn start() -> anyhow::Result<SeededStack> {
        let stack = Stack::start(&InfraConfig::default()).await?;
        let options = fixtures::SeedOptions {
            password_iterations: 1,
            ..fixtures::SeedOptions::default()
        };
        fixtures::seed(&stack.urls().database_url, &options).await?;
        // Quiesce before measuring: the freshly loaded tables would otherwise
        // draw autovacuum (and its analyze) in the middle of a benchmark on a
        // 2-core machine, and dirty pages a checkpoint at a random moment.
        // VACUUM runs outside a transaction, so straight to PostgreSQL, in
        // the simple protocol.
        let mut direct = harness::db::admin_connect(&stack.urls().database_url).await?;
        for statement in ["VACUUM (ANALYZE)", "CHECKPOINT"] {
            harness::db::admin_command(&mut direct, statement).await?;
        }
        let db = harness::db::Db::connect(&stack.urls().pgbouncer_url, 1).await?;
        let mut tx = db.begin().await?;
        let project_id: i64 = harness::db::query_scalar(
            "SELECT project_id FROM pekerjaan GROUP BY project_id ORDER BY count(*) DESC, project_id LIMIT 1",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SeededStack { stack, project_id })
    }
}

/// A run of `endpoints` endpoints over `seconds` seconds at `per_second`
/// requests per endpoint and second, as the aggregator would build it.
pub fn recorded_summary(endpoints: usize, seconds: u64, per_second: u64) -> RunSummary {
    let metas: Vec<EndpointMeta> = (0..endpoints)
        .map(|i| EndpointMeta {
            name: format!("/detail_project/[id]/page-{i}/"),
            method: if i % 4 == 3 { "POST" } else { "GET" }.into(),
            tags: vec!["page".into()],
        })
        .collect();
    let mut recorder = Recorder::new(metas.len());
    let mut aggregator = Aggregator::new(metas.len(), 1);
    let server_error = FailureKind::Status(500);
    for second in 0..seconds {
        recorder.set_phase(if second == 0 {
            Phase::WarmUp
        } else {
            Phase::Measured
        });
        for endpoint in 0..endpoints {
            for i in 0..per_second {
                let latency = 1_000 + (i * 7919 + endpoint as u64 * 104_729) % 250_000;
                let outcome = if i % 97 == 0 {
                    Outcome::Failure {
                        kind: &server_error,
                        message: "500 Internal Server Error",
                    }
                } else {
                    Outcome::Success
                };
                recorder.record(endpoint, latency, 8_000, outcome, second * 1000 + i);
            }
        }
        let interval = recorder.take_interval();
        aggregator.add(
            second as usize,
            harness::metrics::Gauges {
                users: 20,
                ..Default::default()
            },
            &interval,
        );
    }
    aggregator.finish();
    let header = RunHeader {
        suite: "bench".into(),
        profile: "ci".into(),
        target: "http://127.0.0.1:8000".into(),
        started_at: "2026-11-23T10:00:00Z".into(),
        warm_up_seconds: 1.0,
        measured_seconds: (seconds - 1) as f64,
        max_users: 20,
        selection: TaskSelection {
            included: metas.iter().map(|m| m.name.clone()).collect(),
            excluded: Vec::new(),
            skipped_thresholds: Vec::new(),
        },
    };
    RunSummary::build(
        header,
        &metas,
        aggregator.warm_up(),
        aggregator.measured(),
        aggregator.series().to_vec(),
    )
}
