//! A start barrier for the shards of one run, on a folder they share (a
//! Kubernetes volume, a bind mount): each shard, once ready (stack reached,
//! target answering, data checked, its user pool taken), writes
//! `ready-I.json` and waits until all N have; then every shard computes
//! the same start instant from the same files (the last one ready, plus a
//! lead for the slowest reader) and begins its load there. A shard that
//! waits past the timeout writes `failed-I.json`, and every other shard
//! that sees it fails too, so a run starts whole or not at all.
//!
//! Why a folder and not a coordinator: the shards already share one for
//! their results, files need no port, no service and no leader, and a
//! rename is atomic on every filesystem a Kubernetes volume offers. What
//! it cannot do is start a shard that comes after the others have begun:
//! its `ready-I.json` already exists (from the attempt that began), and it
//! is refused with the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::shard::write_whole;
use crate::engine::unix_ms;
use crate::infra::interrupt::InterruptListener;
use crate::suite::plan::Shard;

/// Where the shards meet, and how long one waits for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarrierOptions {
    pub dir: PathBuf,
    pub timeout: Duration,
}

/// From the last shard ready to the start: long enough for every shard
/// to see the last file (a shared volume's attribute cache, the polling
/// interval) and to start its load's workers.
pub const LEAD: Duration = Duration::from_millis(1500);

/// How often a waiting shard reads the folder.
const POLL: Duration = Duration::from_millis(20);

/// What a shard says when it is ready: which shard, of which run, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub shard: Shard,
    /// The run's plan (`shard::plan_id`), target and id: shards of another
    /// run in the same folder are refused.
    pub plan_id: String,
    pub target: String,
    pub run_id: Option<String>,
    /// This attempt: host, process and a random number.
    pub attempt: String,
    pub ready_unix_ms: u64,
}

/// What a shard that gave up says, so that the others give up with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Failed {
    shard: Shard,
    reason: String,
    at_unix_ms: u64,
}

/// The barrier passed: when every shard starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub start_at_unix_ms: u64,
    /// How long this shard waited for the others.
    pub waited: Duration,
    /// The shard the others waited for.
    pub last: Shard,
}

impl Ready {
    /// This process's readiness, now.
    pub fn now(shard: Shard, plan_id: &str, target: &str, run_id: Option<&str>) -> Ready {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Ready {
            shard,
            plan_id: plan_id.to_owned(),
            target: target.to_owned(),
            run_id: run_id.map(str::to_owned),
            attempt: format!(
                "{host}/{}/{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ),
            ready_unix_ms: unix_ms(SystemTime::now()),
        }
    }
}

fn ready_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("ready-{index}.json"))
}

fn failed_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("failed-{index}.json"))
}

/// The folder's ready and failed files, read; a file being renamed in is
/// read on the next poll.
fn read_folder(dir: &Path) -> anyhow::Result<(Vec<Ready>, Vec<Failed>)> {
    let mut ready = Vec::new();
    let mut failed = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if name.starts_with("ready-") {
            ready.push(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", path.display()))?,
            );
        } else if name.starts_with("failed-") {
            failed.push(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", path.display()))?,
            );
        }
    }
    Ok((ready, failed))
}

/// Why `other` cannot be of `mine`'s run, if it cannot.
fn another_run(mine: &Ready, other: &Ready) -> Option<String> {
    let differs = |what: &str, theirs: &str, ours: &str| {
        Some(format!(
            "shard {} there is of another run: {what} {theirs}, this shard's {ours}",
            other.shard
        ))
    };
    if other.shard.count != mine.shard.count {
        return differs(
            "shard count",
            &other.shard.count.to_string(),
            &mine.shard.count.to_string(),
        );
    }
    if other.plan_id != mine.plan_id {
        return differs(
            "suite or tag selection",
            &other.plan_id[..12.min(other.plan_id.len())],
            &mine.plan_id[..12.min(mine.plan_id.len())],
        );
    }
    if other.target != mine.target {
        return differs("target", &other.target, &mine.target);
    }
    if other.run_id != mine.run_id {
        let id = |id: &Option<String>| id.clone().unwrap_or_else(|| "(none)".to_owned());
        return differs("run id", &id(&other.run_id), &id(&mine.run_id));
    }
    None
}

/// Refuses a shard that already joined this barrier (a retry after the
/// run began): checked before a run folder is made or a target started,
/// and again as it joins.
pub fn refuse_rejoin(options: &BarrierOptions, shard: Shard) -> anyhow::Result<()> {
    let path = ready_path(&options.dir, shard.index);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(());
    };
    let before: Option<Ready> = serde_json::from_slice(&bytes).ok();
    anyhow::bail!(
        "shard {shard} already joined the barrier in {}{}: a run that has begun cannot take a shard again; give each run a folder of its own",
        options.dir.display(),
        before.map_or(String::new(), |before| format!(
            " (attempt {}, ready at {} ms past the epoch)",
            before.attempt, before.ready_unix_ms
        ))
    )
}

/// Says `me` is ready in `options.dir`, and waits for the other shards:
/// the instant every shard starts at, or why the run cannot start (then
/// every shard fails). An interrupt gives up at once.
pub async fn join(
    options: &BarrierOptions,
    me: Ready,
    interrupts: &mut InterruptListener,
) -> anyhow::Result<Joined> {
    let dir = &options.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    refuse_rejoin(options, me.shard)?;
    let mine = ready_path(dir, me.shard.index);
    let (_, failed) = read_folder(dir)?;
    if let Some(failed) = failed.first() {
        anyhow::bail!(
            "shard {} failed at the barrier in {} before this one joined: {}",
            failed.shard,
            dir.display(),
            failed.reason
        );
    }
    write_whole(&mine, &me)?;
    let waiting = Instant::now();
    let give_up = |reason: String| -> anyhow::Error {
        let failed = Failed {
            shard: me.shard,
            reason: reason.clone(),
            at_unix_ms: unix_ms(SystemTime::now()),
        };
        if let Err(error) = write_whole(&failed_path(dir, me.shard.index), &failed) {
            tracing::warn!("cannot tell the other shards: {error:#}");
        }
        anyhow::anyhow!(
            "shard {} at the barrier in {}: {reason}",
            me.shard,
            dir.display()
        )
    };
    loop {
        let (ready, failed) = read_folder(dir)?;
        if let Some(failed) = failed.iter().find(|f| f.shard != me.shard) {
            anyhow::bail!(
                "shard {} failed at the barrier in {}, so this one fails with it: {}",
                failed.shard,
                dir.display(),
                failed.reason
            );
        }
        if let Some(reason) = ready.iter().find_map(|other| another_run(&me, other)) {
            return Err(give_up(reason));
        }
        let by_index: BTreeMap<u32, &Ready> = ready.iter().map(|r| (r.shard.index, r)).collect();
        if by_index.len() == me.shard.count as usize {
            let last = by_index
                .values()
                .max_by_key(|r| (r.ready_unix_ms, r.shard.index))
                .expect("at least this shard");
            return Ok(Joined {
                start_at_unix_ms: last.ready_unix_ms + LEAD.as_millis() as u64,
                waited: waiting.elapsed(),
                last: last.shard,
            });
        }
        if waiting.elapsed() >= options.timeout {
            let missing: Vec<String> = (0..me.shard.count)
                .filter(|index| !by_index.contains_key(index))
                .map(|index| format!("{index}/{}", me.shard.count))
                .collect();
            return Err(give_up(format!(
                "waited {} for shard(s) {}, which never said they were ready",
                humantime::format_duration(Duration::from_secs(options.timeout.as_secs())),
                missing.join(", ")
            )));
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = interrupts.changed() => return Err(give_up("interrupted while waiting".to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(index: u32, count: u32) -> Ready {
        Ready::now(
            Shard { index, count },
            "0123456789abcdef",
            "http://t",
            Some("run-1"),
        )
    }

    fn options(dir: &Path, timeout: Duration) -> BarrierOptions {
        BarrierOptions {
            dir: dir.to_path_buf(),
            timeout,
        }
    }

    #[tokio::test]
    async fn shards_ready_at_different_times_agree_on_one_start_after_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut joins = tokio::task::JoinSet::new();
        for index in 0..4 {
            let options = options(dir.path(), Duration::from_secs(10));
            joins.spawn(async move {
                // The last shard is ready 300 ms after the first.
                tokio::time::sleep(Duration::from_millis(100 * u64::from(index))).await;
                let me = ready(index, 4);
                let ready_at = me.ready_unix_ms;
                let joined = join(&options, me, &mut InterruptListener::new()).await;
                (index, ready_at, joined.unwrap())
            });
        }
        let mut joined = joins.join_all().await;
        joined.sort_by_key(|(index, _, _)| *index);
        let last_ready = joined.iter().map(|(_, at, _)| *at).max().unwrap();
        for (index, _, j) in &joined {
            assert_eq!(
                j.start_at_unix_ms,
                last_ready + LEAD.as_millis() as u64,
                "shard {index}"
            );
            assert_eq!(j.last, Shard { index: 3, count: 4 });
        }
        assert!(
            joined[0].2.waited >= Duration::from_millis(250),
            "{joined:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_shard_fails_the_run_after_the_timeout_and_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let options = options(dir.path(), Duration::from_millis(200));
        let error = join(&options, ready(0, 3), &mut InterruptListener::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("shard(s) 1/3, 2/3"), "{error}");
        // The shard that comes later learns why the run did not start.
        let late = join(&options, ready(1, 3), &mut InterruptListener::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(late.contains("shard 0/3 failed at the barrier"), "{late}");
    }

    #[tokio::test]
    async fn a_waiting_shard_fails_with_one_that_gave_up() {
        let dir = tempfile::tempdir().unwrap();
        let patient = options(dir.path(), Duration::from_secs(30));
        let hasty = options(dir.path(), Duration::from_millis(100));
        let waiting = tokio::spawn(async move {
            join(&patient, ready(0, 3), &mut InterruptListener::new()).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            join(&hasty, ready(1, 3), &mut InterruptListener::new())
                .await
                .is_err()
        );
        let error = waiting.await.unwrap().unwrap_err().to_string();
        assert!(error.contains("shard 1/3 failed at the barrier"), "{error}");
    }

    #[tokio::test]
    async fn a_shard_of_another_run_or_a_second_attempt_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = options(dir.path(), Duration::from_secs(5));
        let first = tokio::spawn({
            let options = options.clone();
            async move { join(&options, ready(0, 2), &mut InterruptListener::new()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut other = ready(1, 2);
        other.run_id = Some("run-2".to_owned());
        let error = join(&options, other, &mut InterruptListener::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("run id run-1"), "{error}");
        assert!(first.await.unwrap().is_err());
        // A shard that joined once cannot join again.
        let again = join(&options, ready(0, 2), &mut InterruptListener::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(again.contains("already joined"), "{again}");
    }
}
