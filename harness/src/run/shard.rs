//! Scale-out: a shard's result (`shard.json`, written by `--shard I/N`
//! beside its reports), and the checks that a set of them is one run, whole
//! or named as partial. The shards are started together by the
//! orchestrator (a Kubernetes Indexed Job, a CI matrix) at an agreed
//! instant (`--start-at`) or through a barrier (`super::barrier`); the
//! merge (`super::merge`) reads their folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::engine::vu::AckedWrite;
use crate::integrity::Snapshot;
use crate::metrics::kept::KeptSecond;
use crate::metrics::summary::{EndpointMeta, TaskSelection};
use crate::probe::ProbeReport;
use crate::suite::plan::Shard;

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
    /// What the orchestrator calls the run (`--run-id`): shards of other
    /// runs are refused.
    #[serde(default)]
    pub run_id: Option<String>,
    /// How it was started together with the others.
    #[serde(default)]
    pub start: StartedBy,
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
    /// How long after the agreed instant its load began (0 on time or
    /// without one): the merge refuses a shard late beyond its tolerance.
    #[serde(default)]
    pub late_ms: u64,
    /// Whether an abort-on-fail threshold ended its load early.
    #[serde(default)]
    pub aborted: bool,
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

static BUILD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names the binary's build (its version and commit), which `shard.json`
/// records: shards of different builds are not one run. Set once, by the
/// binary, at its start.
pub fn set_build(build: &str) {
    let _ = BUILD.set(build.to_owned());
}

/// The build [`set_build`] named; the library's version without one.
pub fn build() -> &'static str {
    BUILD
        .get()
        .map_or(env!("CARGO_PKG_VERSION"), String::as_str)
}

/// How a shard knew when to start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartedBy {
    /// At once, or at `--start-at` on its own clock.
    #[default]
    Clock,
    /// At the instant the shards agreed through `--barrier`.
    Barrier,
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
        write_whole(&dir.join(SHARD_FILE), self)
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

/// Writes `path` (a `.json` file) whole or not at all, through a temporary
/// file renamed: a reader on a shared volume never sees half of it.
pub fn write_whole(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_vec(value)?)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

/// Shards with the folders they were read from.
pub type ShardSet = Vec<(PathBuf, ShardResult)>;

/// Written in a shard's folder as its load begins, so that a shard killed
/// before its end still says which it was.
pub const BEGUN_FILE: &str = "shard.begun.json";

/// What a shard's folder says before its result is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Begun {
    pub shard: Shard,
    pub run_id: Option<String>,
    pub start_at_unix_ms: Option<u64>,
    /// By when its `shard.json` is due (its load's planned end, the
    /// graceful stop and a margin), in milliseconds since the epoch: a
    /// merge that waits stops waiting for it then.
    #[serde(default)]
    pub due_unix_ms: Option<u64>,
}

/// From a shard's planned end to its `shard.json`: the probes' and logs'
/// last reads, the target's stop, writing the result.
pub const RESULT_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

impl Begun {
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(BEGUN_FILE);
        std::fs::write(&path, serde_json::to_vec(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(dir: &Path) -> Option<Begun> {
        serde_json::from_slice(&std::fs::read(dir.join(BEGUN_FILE)).ok()?).ok()
    }
}

/// A folder given to the merge whose shard did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    pub dir: PathBuf,
    /// Which shard it was, when it got as far as beginning its load.
    pub begun: Option<Begun>,
}

impl Unfinished {
    pub fn note(&self) -> String {
        match &self.begun {
            Some(begun) => format!(
                "PARTIAL: shard {} in {} began its load but wrote no {SHARD_FILE} (it failed or was stopped before its end), left out",
                begun.shard,
                self.dir.display()
            ),
            None => format!(
                "PARTIAL: {} has no {SHARD_FILE} (its shard failed or was stopped before its end), left out",
                self.dir.display()
            ),
        }
    }
}

/// The shards in `dirs`, read. A folder without `shard.json` (a shard that
/// failed or was killed before its end) is a missing shard: refused, or
/// with `allow_partial` left out and returned.
pub fn read_set(
    dirs: &[PathBuf],
    allow_partial: bool,
) -> anyhow::Result<(ShardSet, Vec<Unfinished>)> {
    let mut shards = Vec::new();
    let mut unfinished = Vec::new();
    for dir in dirs {
        if !dir.join(SHARD_FILE).exists() && dir.is_dir() && allow_partial {
            unfinished.push(Unfinished {
                dir: dir.clone(),
                begun: Begun::read(dir),
            });
            continue;
        }
        shards.push((dir.clone(), ShardResult::read(dir)?));
    }
    anyhow::ensure!(
        !shards.is_empty() || dirs.is_empty(),
        "none of the folders given has a {SHARD_FILE}"
    );
    Ok((shards, unfinished))
}

/// The shards that began their load more than `tolerance` after the instant
/// they were told: refused, or with `allow_late` merged and named.
pub fn check_late(
    shards: &[(PathBuf, ShardResult)],
    tolerance: std::time::Duration,
    allow_late: bool,
) -> anyhow::Result<Vec<String>> {
    let late: Vec<String> = shards
        .iter()
        .filter(|(_, shard)| shard.late_ms > tolerance.as_millis() as u64)
        .map(|(dir, shard)| {
            format!(
                "shard {} ({}) began {} ms after the agreed instant",
                shard.shard,
                dir.display(),
                shard.late_ms
            )
        })
        .collect();
    if late.is_empty() {
        return Ok(Vec::new());
    }
    anyhow::ensure!(
        allow_late,
        "{}, more than the tolerance of {} ms: its load did not overlap the others' as planned (--allow-late merges it anyway, --start-tolerance widens the tolerance)",
        late.join("; "),
        tolerance.as_millis()
    );
    Ok(late
        .into_iter()
        .map(|late| format!("LATE: {late}"))
        .collect())
}

/// The set of shards to merge, checked: one run (same plan, harness
/// build, shard count, run id, target and agreed start, the last three
/// only noted with `allow_mixed`), no shard twice, none missing unless `allow_partial`
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
        let run_id = |id: &Option<String>| id.clone().unwrap_or_else(|| "(none)".to_owned());
        let identity = [
            ("run id", run_id(&shard.run_id), run_id(&first.run_id)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u32, target: &str, start_at: Option<u64>) -> ShardResult {
        ShardResult {
            schema: SCHEMA.to_owned(),
            harness_version: "0.1.0".to_owned(),
            shard: Shard { index, count: 2 },
            plan_id: "0".repeat(64),
            run_id: None,
            start: StartedBy::Clock,
            suite: "sharded".to_owned(),
            profile: "base".to_owned(),
            suite_path: "deploy/sharded.toml".to_owned(),
            include_tags: Vec::new(),
            exclude_tags: Vec::new(),
            target: target.to_owned(),
            start_at_unix_ms: start_at,
            late_ms: 0,
            aborted: false,
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

        let (shards, unfinished) = read_set(&dirs, true).unwrap();
        assert_eq!(shards.len(), 1);
        let note = unfinished[0].note();
        assert!(
            note.starts_with("PARTIAL") && note.contains(&failed.display().to_string()),
            "{note}"
        );
        // A shard that began its load names itself.
        Begun {
            shard: Shard { index: 1, count: 2 },
            run_id: None,
            start_at_unix_ms: None,
            due_unix_ms: None,
        }
        .write(&failed)
        .unwrap();
        let (_, unfinished) = read_set(&dirs, true).unwrap();
        assert!(
            unfinished[0].note().contains("shard 1/2 in"),
            "{unfinished:?}"
        );
        let notes = check_set(&shards, true, false).unwrap();
        assert!(notes[0].contains("without shard(s) 1/2"), "{notes:?}");

        // A folder that does not exist is a mistake, not a failed shard.
        let error = read_set(&[done, work.path().join("typo")], true).unwrap_err();
        assert!(error.to_string().contains("typo"), "{error}");
        // Nothing to merge at all is refused even when partial merges are.
        assert!(read_set(std::slice::from_ref(&failed), true).is_err());
    }

    #[test]
    fn a_shard_late_beyond_the_tolerance_is_refused_unless_allowed() {
        let mut late = shard(1, "http://app:8000/", Some(1_000));
        late.late_ms = 2_300;
        let mut on_time = shard(0, "http://app:8000/", Some(1_000));
        on_time.late_ms = 40;
        let shards = set(vec![on_time, late]);
        let tolerance = std::time::Duration::from_secs(1);
        let error = check_late(&shards, tolerance, false)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("shard 1/2") && error.contains("2300 ms"),
            "{error}"
        );
        assert!(!error.contains("shard 0/2"), "{error}");
        let notes = check_late(&shards, tolerance, true).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("LATE: shard 1/2"), "{notes:?}");
        assert!(
            check_late(&shards, std::time::Duration::from_secs(3), false)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn shards_of_another_run_id_are_refused_unless_allowed() {
        let mut other = shard(1, "http://app:8000/", None);
        other.run_id = Some("run-2".to_owned());
        let mut mine = shard(0, "http://app:8000/", None);
        mine.run_id = Some("run-1".to_owned());
        let shards = set(vec![mine, other]);
        let error = check_set(&shards, false, false).unwrap_err().to_string();
        assert!(error.contains("run id run-1 and run-2"), "{error}");
        let notes = check_set(&shards, false, true).unwrap();
        assert!(notes[0].starts_with("MIXED"), "{notes:?}");
    }
}
