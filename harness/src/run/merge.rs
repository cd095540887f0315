//! `perf merge`: a set of shards' results (`shard.json`) merged into one
//! run, judged on the whole. The merge is exact: each second's HDR
//! histograms, counts, failures and counters are added, the seconds aligned
//! by the wall clock the shards started at, so a threshold is judged on what
//! one generator at the total load would have recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::gate::{Against, Gate, GateOptions, GateOutcome};
use super::outcome::Merged;
use super::shard::{
    ShardResult, ShardSet, StartedBy, Unfinished, check_late, check_set, plan_id, read_set,
};
use super::{Domain, RunOptions, SuiteRun, plan_options, write_reports};
use crate::baseline::RunFigures;
use crate::engine::vu::AckedWrite;
use crate::integrity::Snapshot;
use crate::metrics::kept::KeptSecond;
use crate::metrics::summary::{EndpointMeta, RunHeader};
use crate::metrics::{Aggregator, Gauges, Interval, Phase, RunSummary};
use crate::report::RunReport;
use crate::report::shards::ShardRow;
use crate::suite::plan::{Plan, PlanOptions};

/// The shards' seconds added on one clock: the summary one generator at
/// the total load would have produced.
pub fn merge_summary(shards: &[ShardResult], endpoints: &[EndpointMeta]) -> RunSummary {
    let n = endpoints.len();
    let t0 = shards
        .iter()
        .map(|s| s.started_unix_ms)
        .min()
        .unwrap_or_default();
    // Each shard's offset on the shared clock, in whole seconds.
    let offsets: Vec<u64> = shards
        .iter()
        .map(|s| ((s.started_unix_ms - t0) as f64 / 1000.0).round() as u64)
        .collect();
    let mut by_second: BTreeMap<u64, Vec<&KeptSecond>> = BTreeMap::new();
    for (shard, offset) in shards.iter().zip(&offsets) {
        for second in &shard.seconds {
            by_second
                .entry(second.second + offset)
                .or_default()
                .push(second);
        }
    }
    let mut warm_up = Interval::new(Phase::WarmUp, n);
    let mut measured = Interval::new(Phase::Measured, n);
    // One second at a time, so memory holds one second's histograms.
    let mut series = Aggregator::new(n, 1);
    for (second, parts) in by_second {
        let phase = if parts.iter().any(|p| p.phase == Phase::Measured) {
            Phase::Measured
        } else {
            Phase::WarmUp
        };
        let mut whole = Interval::new(phase, n);
        let mut gauges = Gauges::default();
        for part in parts {
            let interval = part.unpack();
            match interval.phase {
                Phase::WarmUp => warm_up.merge(&interval),
                Phase::Measured => measured.merge(&interval),
            }
            whole.merge(&interval);
            gauges.add(&part.gauges);
        }
        series.add(second as usize, gauges, &whole);
    }
    series.finish();
    let first = &shards[0];
    let measured_from = shards
        .iter()
        .zip(&offsets)
        .map(|(s, o)| *o as f64 + s.warm_up_seconds)
        .fold(f64::INFINITY, f64::min);
    let measured_to = shards
        .iter()
        .zip(&offsets)
        .map(|(s, o)| *o as f64 + s.warm_up_seconds + s.measured_seconds)
        .fold(0.0, f64::max);
    let header = RunHeader {
        suite: first.suite.clone(),
        profile: first.profile.clone(),
        target: first.target.clone(),
        started_at: shards
            .iter()
            .min_by_key(|s| s.started_unix_ms)
            .map(|s| s.started_at.clone())
            .unwrap_or_default(),
        warm_up_seconds: measured_from.max(0.0),
        measured_seconds: (measured_to - measured_from).max(0.0),
        max_users: shards.iter().map(|s| s.max_users).sum(),
        selection: first.selection.clone(),
    };
    RunSummary::build(
        header,
        endpoints,
        &warm_up,
        &measured,
        series.series().to_vec(),
    )
}

/// Every shard's acknowledged writes checked against shard 0's snapshot,
/// in the database the suite names (`[infra.external]` or
/// `DATABASE_URL`); `None` when no task writes.
async fn check_writes(
    plan: &Plan,
    options: &RunOptions,
    shards: &[ShardResult],
) -> anyhow::Result<Option<crate::integrity::IntegrityReport>> {
    let before: BTreeMap<&str, &Snapshot> = shards
        .iter()
        .flat_map(|s| s.integrity_before.iter())
        .map(|(task, snapshot)| (task.as_str(), snapshot))
        .collect();
    let specs: Vec<(&str, &crate::suite::WriteSpec)> = plan
        .tasks
        .iter()
        .filter_map(|task| match &task.kind {
            crate::suite::plan::TaskKind::Http(http) => {
                http.writes.as_ref().map(|spec| (task.name.as_str(), spec))
            }
            _ => None,
        })
        .collect();
    if specs.is_empty() {
        return Ok(None);
    }
    anyhow::ensure!(
        !before.is_empty(),
        "the suite's tasks write, but no shard took the snapshot before the load (shard 0, with the stack's URLs, does): the merge cannot check the writes"
    );
    let infra = super::infra_config(plan, options)?;
    let url = infra.external.database_url.as_deref().context(
        "checking the shards' writes needs the database: DATABASE_URL or [infra.external] database-url",
    )?;
    let db = crate::db::Db::connect(url, 2).await?;
    // Each write's time on the shared clock.
    let t0 = shards.iter().map(|s| s.started_unix_ms).min().unwrap_or(0);
    let writes: Vec<AckedWrite> = shards
        .iter()
        .flat_map(|s| {
            let offset = s.started_unix_ms - t0;
            s.writes.iter().map(move |w| AckedWrite {
                at_ms: w.at_ms + offset,
                ..w.clone()
            })
        })
        .collect();
    let mut checked = crate::integrity::IntegrityReport::default();
    for (task, spec) in specs {
        let Some(snapshot) = before.get(task) else {
            continue;
        };
        let acked: Vec<AckedWrite> = writes.iter().filter(|w| w.task == task).cloned().collect();
        crate::integrity::check(&db, spec, snapshot, &acked, &mut checked).await?;
    }
    db.close().await;
    Ok(Some(checked))
}

/// A row per shard for the report: those merged, then those that did not
/// finish, then those of the count that no folder given holds.
fn shard_rows(
    shards: &ShardSet,
    unfinished: &[Unfinished],
    tolerance: std::time::Duration,
) -> Vec<ShardRow> {
    let Some(count) = shards.first().map(|(_, s)| s.shard.count) else {
        return Vec::new();
    };
    let t0 = shards
        .iter()
        .map(|(_, s)| s.started_unix_ms)
        .min()
        .unwrap_or_default();
    let mut rows: Vec<(u32, ShardRow)> = shards
        .iter()
        .map(|(dir, s)| {
            let measured = s
                .seconds
                .iter()
                .filter(|second| second.phase == Phase::Measured);
            let (requests, failures) = measured
                .flat_map(|second| &second.endpoints)
                .fold((0, 0), |(r, f), e| (r + e.requests, f + e.failures));
            let row = ShardRow {
                shard: s.shard.to_string(),
                folder: dir.display().to_string(),
                merged: true,
                requests,
                failures,
                start_offset_ms: Some(s.started_unix_ms - t0),
                late_ms: s.start_at_unix_ms.map(|_| s.late_ms),
                late: s.late_ms > tolerance.as_millis() as u64,
                started_by: s.start_at_unix_ms.map(|_| {
                    match s.start {
                        StartedBy::Barrier => "barrier",
                        StartedBy::Clock => "clock",
                    }
                    .to_owned()
                }),
                aborted: s.aborted,
            };
            (s.shard.index, row)
        })
        .collect();
    let missing_row = |index: Option<u32>, folder: String| ShardRow {
        shard: index.map_or_else(|| "?".to_owned(), |i| format!("{i}/{count}")),
        folder,
        merged: false,
        requests: 0,
        failures: 0,
        start_offset_ms: None,
        late_ms: None,
        late: false,
        started_by: None,
        aborted: false,
    };
    for left in unfinished {
        let index = left.begun.as_ref().map(|b| b.shard.index);
        let row = missing_row(index, left.dir.display().to_string());
        rows.push((index.unwrap_or(u32::MAX), row));
    }
    for index in 0..count {
        if !rows.iter().any(|(i, _)| *i == index) {
            rows.push((
                index,
                missing_row(Some(index), "(in no folder given)".to_owned()),
            ));
        }
    }
    rows.sort_by_key(|(index, _)| *index);
    rows.into_iter().map(|(_, row)| row).collect()
}

/// How to merge.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// The suite file the shards ran, when it is not where they recorded it
    /// (another machine, another checkout).
    pub suite: Option<PathBuf>,
    /// Merge even when shards are missing (the report names them).
    pub allow_partial: bool,
    /// Merge shards told another target, start instant or run id (the
    /// report says so).
    pub allow_mixed: bool,
    /// How late after the agreed instant a shard's load may begin.
    pub start_tolerance: std::time::Duration,
    /// Merge shards later than that (the report says so).
    pub allow_late: bool,
    pub print_summary: bool,
    /// The baseline the merged run is judged against or saved into.
    pub gate: GateOptions,
}

/// `perf merge`: the shards in `dirs` merged into one run in `out`,
/// judged and reported as a single run is.
pub async fn merge(
    domain: &dyn Domain,
    dirs: &[PathBuf],
    out: &Path,
    options: &MergeOptions,
) -> anyhow::Result<Merged> {
    let (shards, unfinished) = read_set(dirs, options.allow_partial)?;
    let mut notes = check_set(&shards, options.allow_partial, options.allow_mixed)?;
    notes.extend(check_late(
        &shards,
        options.start_tolerance,
        options.allow_late,
    )?);
    notes.extend(unfinished.iter().map(Unfinished::note));
    let rows = shard_rows(&shards, &unfinished, options.start_tolerance);
    let mut shards: Vec<ShardResult> = shards.into_iter().map(|(_, s)| s).collect();
    shards.sort_by_key(|s| s.shard.index);
    let first = &shards[0];
    let suite = options
        .suite
        .clone()
        .unwrap_or_else(|| PathBuf::from(&first.suite_path));
    let source = std::fs::read_to_string(&suite).with_context(|| {
        format!(
            "reading the shards' suite {} (give it with --suite)",
            suite.display()
        )
    })?;
    anyhow::ensure!(
        plan_id(
            &source,
            &first.profile,
            &first.include_tags,
            &first.exclude_tags
        ) == first.plan_id,
        "{} is not the suite the shards ran (its text differs from theirs)",
        suite.display()
    );
    let run_options = RunOptions {
        profile: (first.profile != "base").then(|| first.profile.clone()),
        include_tags: first.include_tags.clone(),
        exclude_tags: first.exclude_tags.clone(),
        target_url: Some(first.target.as_str().into()),
        ..RunOptions::quiet(out.to_path_buf())
    };
    let plan = Plan::from_source(
        &source,
        &suite.display().to_string(),
        &PlanOptions {
            judging_only: true,
            ..plan_options(domain, &run_options)
        },
    )
    .map_err(|errors| anyhow::anyhow!("planning the shards' suite again:\n{errors}"))?;
    anyhow::ensure!(
        plan.endpoints == first.endpoints,
        "the suite plans other endpoints than the shards recorded"
    );
    let mut summary = merge_summary(&shards, &plan.endpoints);
    let spread = shards.iter().map(|s| s.started_unix_ms).max().unwrap_or(0)
        - shards.iter().map(|s| s.started_unix_ms).min().unwrap_or(0);
    notes.insert(
        0,
        format!(
            "merged {} shard(s) of {} ({}), their loads started within {spread} ms of each other",
            shards.len(),
            first.shard.count,
            shards
                .iter()
                .map(|s| s.shard.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    for shard in &shards {
        for note in &shard.notes {
            if !note.starts_with("shard ") && !notes.contains(note) {
                notes.push(note.clone());
            }
        }
    }
    let integrity = check_writes(&plan, &run_options, &shards).await?;
    if let Some(checked) = &integrity {
        summary.extra.extend(checked.values());
    }
    let probes = shards.iter().find_map(|s| s.probes.clone());
    if let Some(probes) = &probes {
        summary
            .extra
            .extend(probes.values.iter().map(|(k, v)| (k.clone(), *v)));
    }
    let mut thresholds = crate::verdict::evaluate(&summary, &plan.thresholds);
    thresholds.push(super::judge::tasks_ran(&summary));
    thresholds.extend(super::judge::browsers_lasted(&summary));
    let mut report = RunReport::new(summary, thresholds);
    report.notes = notes;
    report.shards = rows;
    report.probes = probes;
    report.integrity = integrity;
    crate::diagnosis::diagnose(
        &mut report,
        &crate::diagnosis::Context {
            pool_size: Some(plan.infra.pgbouncer.default_pool_size.get()),
            query_wait_timeout: Some(plan.infra.pgbouncer.query_wait_timeout.as_secs_f64()),
            postgres_unsynced: !plan.infra.postgres.fsync,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
    );
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let redactor = crate::redact::Redactor::default();
    write_reports(&report, &plan.name, out, options.print_summary, &redactor)?;
    let figures = RunFigures::from_run(&report.summary, None);
    std::fs::write(
        out.join(super::gate::FIGURES_FILE),
        serde_json::to_vec(&figures)?,
    )?;
    // The gate judges the merged whole, as it judges one run.
    let gate = Gate::open(&options.gate)?;
    let outcome = gate.judge(
        &plan.name,
        std::slice::from_ref(&figures),
        Against::Saved,
        out,
        &gate.settings_for(plan.gate.as_deref()),
        &[],
    )?;
    if options.print_summary {
        match &outcome {
            Some(GateOutcome::Compared { table, .. }) => eprintln!("{table}"),
            Some(GateOutcome::NotInBaseline) => eprintln!("{}", gate.not_in_baseline(&plan.name)),
            None => {}
        }
    }
    if let Some(saved) = gate.save(vec![(plan.name.clone(), vec![figures])])?
        && options.print_summary
    {
        eprintln!("{saved}");
    }
    Ok(Merged {
        run: SuiteRun {
            report,
            dir: out.to_path_buf(),
            target_log: None,
            gate: plan.gate.clone(),
        },
        gate: outcome,
    })
}
