//! Scale-out: a shard's result (`shard.json`, written by `--shard I/N`
//! beside its reports) and the merge of a set of them into one run, judged
//! on the whole. The merge is exact: each second's HDR histograms, counts,
//! failures and counters are added, the seconds aligned by the wall clock
//! the shards started at, so a threshold is judged on what one generator
//! at the total load would have recorded. Nothing coordinates the shards
//! while they run; the orchestrator (a Kubernetes Indexed Job, a CI
//! matrix) starts them and the merge reads their folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::gate::{Against, Gate, GateOptions, GateOutcome};
use super::outcome::Merged;
use super::{Domain, RunOptions, SuiteRun, plan_options, write_reports};
use crate::baseline::RunFigures;
use crate::engine::vu::AckedWrite;
use crate::integrity::Snapshot;
use crate::metrics::kept::KeptSecond;
use crate::metrics::summary::{EndpointMeta, RunHeader, TaskSelection};
use crate::metrics::{Aggregator, Gauges, Interval, Phase, RunSummary};
use crate::probe::ProbeReport;
use crate::report::RunReport;
use crate::suite::plan::{Plan, PlanOptions, Shard};

/// A shard's result, in its run folder.
pub const SHARD_FILE: &str = "shard.json";
pub const SCHEMA: &str = "ahsp-perf/shard/v1";

/// What one shard hands to the merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardResult {
    pub schema: String,
    pub harness_version: String,
    pub shard: Shard,
    /// The same for every shard of one run: the suite's text, profile and
    /// tag selection, hashed.
    pub plan_id: String,
    pub suite: String,
    pub profile: String,
    /// The suite file the shards ran; the merge plans it again, and only
    /// when its text still hashes to `plan_id`. (Its text is not kept
    /// here: a suite's `[target] env` may hold secrets.)
    pub suite_path: String,
    pub include_tags: Vec<String>,
    pub exclude_tags: Vec<String>,
    pub target: String,
    /// The instant every shard was told to start at (`--start-at`); `None`
    /// when it started at once. Part of the run's identity, with the plan
    /// and the target: shards told other instants are of other runs.
    #[serde(default)]
    pub start_at_unix_ms: Option<u64>,
    pub started_at: String,
    /// When its load began (what the merge aligns seconds by).
    pub started_unix_ms: u64,
    pub warm_up_seconds: f64,
    pub measured_seconds: f64,
    pub max_users: u64,
    pub selection: TaskSelection,
    pub endpoints: Vec<EndpointMeta>,
    pub seconds: Vec<KeptSecond>,
    /// The stack's probes, from the shard that owns them (index 0).
    pub probes: Option<ProbeReport>,
    pub notes: Vec<String>,
    /// Rows written by tasks with `writes`, before the load, by task (shard
    /// 0 takes them before the shared start).
    #[serde(default)]
    pub integrity_before: Vec<(String, Snapshot)>,
    /// Every write the target acknowledged to this shard.
    #[serde(default)]
    pub writes: Vec<AckedWrite>,
}

/// What a run's options and suite say about the plan, hashed: shards of
/// one run share it.
pub fn plan_id(source: &str, profile: &str, include: &[String], exclude: &[String]) -> String {
    let mut digest = Sha256::new();
    for part in [source, profile, &include.join(","), &exclude.join(",")] {
        digest.update(part.len().to_be_bytes());
        digest.update(part.as_bytes());
    }
    format!("{:x}", digest.finalize())
}

impl ShardResult {
    /// Masks the run's secrets in every string that can hold one (the file
    /// is left out of the run folder's sweep: a mask inside a packed
    /// histogram would corrupt it).
    pub fn redact(&mut self, redactor: &crate::redact::Redactor) {
        let mask = |text: &mut String| {
            if let std::borrow::Cow::Owned(masked) = redactor.text(text) {
                *text = masked;
            }
        };
        mask(&mut self.target);
        mask(&mut self.suite_path);
        self.notes.iter_mut().for_each(mask);
        for second in &mut self.seconds {
            for endpoint in &mut second.endpoints {
                for failure in &mut endpoint.failure_kinds {
                    mask(&mut failure.sample);
                }
            }
        }
        if let Some(probes) = &mut self.probes {
            probes.unavailable.iter_mut().for_each(mask);
            for statement in &mut probes.top_statements {
                mask(&mut statement.query);
            }
        }
        for write in &mut self.writes {
            for (_, value) in &mut write.fields {
                mask(value);
            }
        }
    }

    /// Writes `shard.json` whole or not at all (a temporary file renamed):
    /// a merge that waits for it on a shared volume never reads half of it.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(SHARD_FILE);
        let partial = dir.join(format!("{SHARD_FILE}.partial"));
        std::fs::write(&partial, serde_json::to_vec(self)?)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(dir: &Path) -> anyhow::Result<ShardResult> {
        let path = dir.join(SHARD_FILE);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "{} has no {SHARD_FILE} (is it the folder of a run with --shard?)",
                dir.display()
            )
        })?;
        let result: ShardResult = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        anyhow::ensure!(
            result.schema == SCHEMA,
            "{}: schema {} (this ahsp-perf reads {SCHEMA})",
            path.display(),
            result.schema
        );
        Ok(result)
    }
}

/// Shards with the folders they were read from.
pub type ShardSet = Vec<(PathBuf, ShardResult)>;

/// The shards in `dirs`, read. A folder without `shard.json` (a shard that
/// failed or was killed before its end) is a missing shard: refused, or
/// with `allow_partial` left out and named.
pub fn read_set(dirs: &[PathBuf], allow_partial: bool) -> anyhow::Result<(ShardSet, Vec<String>)> {
    let mut shards = Vec::new();
    let mut notes = Vec::new();
    for dir in dirs {
        if !dir.join(SHARD_FILE).exists() && dir.is_dir() && allow_partial {
            notes.push(format!(
                "PARTIAL: {} has no {SHARD_FILE} (its shard failed or was stopped before its end), left out",
                dir.display()
            ));
            continue;
        }
        shards.push((dir.clone(), ShardResult::read(dir)?));
    }
    anyhow::ensure!(
        !shards.is_empty() || dirs.is_empty(),
        "none of the folders given has a {SHARD_FILE}"
    );
    Ok((shards, notes))
}

/// The set of shards to merge, checked: one run (same plan, harness
/// version, shard count, target and agreed start, the last two only noted
/// with `allow_mixed`), no shard twice, none missing unless `allow_partial`
/// (then the missing ones are named).
pub fn check_set(
    shards: &[(PathBuf, ShardResult)],
    allow_partial: bool,
    allow_mixed: bool,
) -> anyhow::Result<Vec<String>> {
    let (first_dir, first) = shards.first().context("no shard folder given")?;
    let mut notes = Vec::new();
    let mut seen: BTreeMap<u32, &Path> = BTreeMap::new();
    let instant = |at: Option<u64>| match at {
        Some(ms) => format!("start at {ms} ms past the epoch"),
        None => "start at once".to_owned(),
    };
    for (dir, shard) in shards {
        let differs = |what: &str, mine: &str, theirs: &str| {
            anyhow::anyhow!(
                "{} and {} are not shards of one run: {what} {theirs} and {mine}",
                first_dir.display(),
                dir.display()
            )
        };
        if shard.harness_version != first.harness_version {
            return Err(differs(
                "harness version",
                &shard.harness_version,
                &first.harness_version,
            ));
        }
        if shard.profile != first.profile {
            return Err(differs("profile", &shard.profile, &first.profile));
        }
        if shard.plan_id != first.plan_id {
            return Err(differs(
                "suite or tag selection",
                &format!("{} ({})", shard.suite, &shard.plan_id[..12]),
                &format!("{} ({})", first.suite, &first.plan_id[..12]),
            ));
        }
        if shard.shard.count != first.shard.count {
            return Err(differs(
                "shard count",
                &shard.shard.count.to_string(),
                &first.shard.count.to_string(),
            ));
        }
        let identity = [
            ("target", shard.target.clone(), first.target.clone()),
            (
                "agreed start",
                instant(shard.start_at_unix_ms),
                instant(first.start_at_unix_ms),
            ),
        ];
        for (what, mine, theirs) in identity {
            if mine == theirs {
                continue;
            }
            anyhow::ensure!(
                allow_mixed,
                "{} (--allow-mixed merges them anyway)",
                differs(what, &mine, &theirs)
            );
            let note =
                format!("MIXED: shards of more than one run merged: {what} {theirs} and {mine}");
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
        if let Some(other) = seen.insert(shard.shard.index, dir) {
            anyhow::bail!(
                "shard {} is given twice: {} and {}",
                shard.shard,
                other.display(),
                dir.display()
            );
        }
    }
    let missing: Vec<String> = (0..first.shard.count)
        .filter(|index| !seen.contains_key(index))
        .map(|index| format!("{index}/{}", first.shard.count))
        .collect();
    if !missing.is_empty() {
        anyhow::ensure!(
            allow_partial,
            "shard(s) {} missing from the set (give every shard's folder, or --allow-partial to merge what there is)",
            missing.join(", ")
        );
        notes.push(format!(
            "PARTIAL: merged without shard(s) {}; the load judged is {} of {} shards'",
            missing.join(", "),
            seen.len(),
            first.shard.count
        ));
    }
    Ok(notes)
}

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

/// How to merge.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// The suite file the shards ran, when it is not where they recorded it
    /// (another machine, another checkout).
    pub suite: Option<PathBuf>,
    /// Merge even when shards are missing (the report names them).
    pub allow_partial: bool,
    /// Merge shards told another target or start instant (the report says so).
    pub allow_mixed: bool,
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
    let (shards, unread) = read_set(dirs, options.allow_partial)?;
    let mut notes = check_set(&shards, options.allow_partial, options.allow_mixed)?;
    notes.extend(unread);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u32, target: &str, start_at: Option<u64>) -> ShardResult {
        ShardResult {
            schema: SCHEMA.to_owned(),
            harness_version: "0.1.0".to_owned(),
            shard: Shard { index, count: 2 },
            plan_id: "0".repeat(64),
            suite: "sharded".to_owned(),
            profile: "base".to_owned(),
            suite_path: "deploy/sharded.toml".to_owned(),
            include_tags: Vec::new(),
            exclude_tags: Vec::new(),
            target: target.to_owned(),
            start_at_unix_ms: start_at,
            started_at: String::new(),
            started_unix_ms: start_at.unwrap_or(1),
            warm_up_seconds: 0.0,
            measured_seconds: 1.0,
            max_users: 1,
            selection: TaskSelection::default(),
            endpoints: Vec::new(),
            seconds: Vec::new(),
            probes: None,
            notes: Vec::new(),
            integrity_before: Vec::new(),
            writes: Vec::new(),
        }
    }

    fn set(shards: Vec<ShardResult>) -> Vec<(PathBuf, ShardResult)> {
        shards
            .into_iter()
            .map(|s| (PathBuf::from(format!("shards/{}", s.shard.index)), s))
            .collect()
    }

    #[test]
    fn shards_of_one_target_and_instant_merge_without_a_note() {
        let shards = set(vec![
            shard(0, "http://app:8000/", Some(5_000)),
            shard(1, "http://app:8000/", Some(5_000)),
        ]);
        assert_eq!(
            check_set(&shards, false, false).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn shards_told_another_target_or_instant_are_refused_unless_allowed() {
        for other in [
            shard(1, "http://staging:8000/", Some(5_000)),
            shard(1, "http://app:8000/", Some(65_000)),
            shard(1, "http://app:8000/", None),
        ] {
            let shards = set(vec![shard(0, "http://app:8000/", Some(5_000)), other]);
            let error = check_set(&shards, false, false).unwrap_err().to_string();
            assert!(error.contains("not shards of one run"), "{error}");
            assert!(error.contains("--allow-mixed"), "{error}");
            let notes = check_set(&shards, false, true).unwrap();
            assert_eq!(notes.len(), 1, "{notes:?}");
            assert!(notes[0].starts_with("MIXED"), "{notes:?}");
        }
    }

    /// A shard killed before its end leaves a folder without `shard.json`:
    /// a missing shard, merged around only when partial merges are allowed.
    #[test]
    fn a_folder_without_its_shard_file_is_a_missing_shard() {
        let work = tempfile::tempdir().unwrap();
        let (done, failed) = (work.path().join("0"), work.path().join("1"));
        std::fs::create_dir_all(&done).unwrap();
        std::fs::create_dir_all(&failed).unwrap();
        shard(0, "http://app:8000/", None).write(&done).unwrap();
        let dirs = [done.clone(), failed.clone()];

        let error = read_set(&dirs, false).unwrap_err().to_string();
        assert!(error.contains("has no shard.json"), "{error}");

        let (shards, notes) = read_set(&dirs, true).unwrap();
        assert_eq!(shards.len(), 1);
        assert!(
            notes[0].starts_with("PARTIAL") && notes[0].contains(&failed.display().to_string()),
            "{notes:?}"
        );
        let notes = check_set(&shards, true, false).unwrap();
        assert!(notes[0].contains("without shard(s) 1/2"), "{notes:?}");

        // A folder that does not exist is a mistake, not a failed shard.
        let error = read_set(&[done, work.path().join("typo")], true).unwrap_err();
        assert!(error.to_string().contains("typo"), "{error}");
        // Nothing to merge at all is refused even when partial merges are.
        assert!(read_set(std::slice::from_ref(&failed), true).is_err());
    }
}
