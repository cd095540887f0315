//! The shards' folders of one run, found on the volume they share (`perf
//! merge --find DIR`), and, with `--wait`, waited for: until every shard
//! has written its `shard.json`; or each that has not is past the time its
//! result was due (a shard killed mid-run never writes one, and the folder
//! it began says when it was due); or the shards failed together at their
//! barrier; or the wait is spent. What an orchestrator's merge step needs
//! without a `kubectl wait`, which hangs on a failed shard.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;

use super::shard::{BEGUN_FILE, Begun, SHARD_FILE, ShardResult};
use crate::engine::unix_ms;

/// How deep under the folder given the shards' folders may be
/// (`<run>/shard-I/<stamp>-<suite>` is two).
const DEPTH: usize = 4;

/// What the folder holds now.
#[derive(Debug, Default)]
struct Found {
    /// Folders with a `shard.json` or a `shard.begun.json`.
    folders: Vec<PathBuf>,
    /// Why the shards failed at a barrier, from its `failed-I.json` files.
    barrier_failures: Vec<String>,
}

fn walk(dir: &Path, depth: usize, found: &mut Found) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut is_shard = false;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            if depth > 0 {
                walk(&path, depth - 1, found)?;
            }
        } else if name == SHARD_FILE || name == BEGUN_FILE {
            is_shard = true;
        } else if name.starts_with("failed-") && name.ends_with(".json") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            found
                .barrier_failures
                .push(format!("{}: {}", path.display(), text.trim()));
        }
    }
    if is_shard {
        found.folders.push(dir.to_path_buf());
    }
    Ok(())
}

/// Whether every shard of the run is accounted for: finished, or past the
/// time its result was due. A shard with no folder yet may still begin.
/// Which shard a folder holds is read from its small `shard.begun.json`
/// (a result, large, only where there is none).
fn settled(folders: &[PathBuf]) -> bool {
    let mut count = None;
    let mut accounted = std::collections::BTreeSet::new();
    let now = unix_ms(SystemTime::now());
    for folder in folders {
        let finished = folder.join(SHARD_FILE).exists();
        let (shard, due) = match Begun::read(folder) {
            Some(begun) => (begun.shard, begun.due_unix_ms),
            None => match ShardResult::read(folder) {
                Ok(result) => (result.shard, None),
                Err(_) => continue,
            },
        };
        count = Some(shard.count);
        if finished || due.is_some_and(|due| due <= now) {
            accounted.insert(shard.index);
        }
    }
    count.is_some_and(|count| accounted.len() as u32 >= count)
}

/// The shards' folders under `root`; with `wait`, once they are settled
/// (or the wait is spent, or the shards failed at their barrier: an error
/// naming why).
pub async fn gather(
    root: &Path,
    wait: Option<Duration>,
    poll: Duration,
) -> anyhow::Result<Vec<PathBuf>> {
    let waiting = Instant::now();
    loop {
        let mut found = Found::default();
        // A run's folder appears when its first shard begins.
        if wait.is_none() || root.exists() {
            walk(root, DEPTH, &mut found)?;
        }
        anyhow::ensure!(
            found.barrier_failures.is_empty(),
            "the shards under {} did not start: they failed together at their barrier:\n  {}",
            root.display(),
            found.barrier_failures.join("\n  ")
        );
        let spent = wait.is_none_or(|wait| waiting.elapsed() >= wait);
        if spent || settled(&found.folders) {
            found.folders.sort();
            if wait.is_some() && spent && !settled(&found.folders) {
                tracing::warn!(
                    "waited {} for the shards under {}: merging what is there",
                    humantime::format_duration(wait.unwrap_or_default()),
                    root.display()
                );
            }
            return Ok(found.folders);
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::plan::Shard;

    fn begin(dir: &Path, index: u32, due_in_ms: i64) {
        std::fs::create_dir_all(dir).unwrap();
        Begun {
            shard: Shard { index, count: 2 },
            run_id: None,
            start_at_unix_ms: None,
            due_unix_ms: Some((unix_ms(SystemTime::now()) as i64 + due_in_ms) as u64),
        }
        .write(dir)
        .unwrap();
    }

    #[tokio::test]
    async fn a_shard_past_its_due_time_is_not_waited_for() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        begin(&run.join("shard-0/stamp-suite"), 0, -1_000);
        begin(&run.join("shard-1/stamp-suite"), 1, 300);
        std::fs::create_dir_all(root.path().join("run/merged")).unwrap();
        let started = Instant::now();
        let folders = gather(
            &run,
            Some(Duration::from_secs(30)),
            Duration::from_millis(20),
        )
        .await
        .unwrap();
        // Shard 1 was due 300 ms on: waited for until then, not 30 s.
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(folders.len(), 2, "{folders:?}");
        assert!(
            folders.iter().all(|f| f.ends_with("stamp-suite")),
            "{folders:?}"
        );
    }

    #[tokio::test]
    async fn shards_that_failed_at_their_barrier_end_the_wait_with_why() {
        let root = tempfile::tempdir().unwrap();
        let barrier = root.path().join("barrier");
        std::fs::create_dir_all(&barrier).unwrap();
        std::fs::write(barrier.join("failed-1.json"), r#"{"reason":"waited 5m"}"#).unwrap();
        let error = gather(
            root.path(),
            Some(Duration::from_secs(30)),
            Duration::from_millis(20),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("failed together") && error.contains("waited 5m"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn without_a_wait_the_folders_are_what_is_there_now() {
        let root = tempfile::tempdir().unwrap();
        begin(&root.path().join("a"), 0, 60_000);
        let folders = gather(root.path(), None, Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(folders, vec![root.path().join("a")]);
    }
}
