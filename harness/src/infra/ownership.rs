//! Who owns what: every run records the processes, directories and Docker
//! objects it starts, in memory (for signals and panics) and on disk (for
//! SIGKILL), so that nothing outlives the process that started it.
//!
//! testcontainers-rs has no reaper container: a killed test leaves its
//! containers running. Here each container and network carries labels naming
//! its run and the owner process (pid and start time, so a reused pid is not
//! mistaken for a live owner); a later start, or `cargo xtask down`, removes
//! whatever belongs to an owner that is gone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use testcontainers::bollard::Docker;
use testcontainers::bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
};

/// Label keys on every container and network a run creates.
pub const LABEL_RUN: &str = "io.ahsp-perf.run";
pub const LABEL_OWNER_PID: &str = "io.ahsp-perf.owner-pid";
pub const LABEL_OWNER_START: &str = "io.ahsp-perf.owner-start";
pub const LABEL_OWNER_HOST: &str = "io.ahsp-perf.owner-host";
pub const LABEL_SERVICE: &str = "io.ahsp-perf.service";

/// A process identified robustly: pid plus its start time in clock ticks
/// since boot (field 22 of `/proc/PID/stat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    pub start_ticks: u64,
}

impl ProcessId {
    pub fn current() -> ProcessId {
        let pid = std::process::id();
        ProcessId {
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    pub fn of(pid: u32) -> Option<ProcessId> {
        Some(ProcessId {
            pid,
            start_ticks: start_ticks(pid)?,
        })
    }

    /// Still running, and the same process (not a later one with its pid).
    /// A zombie, dead but not yet reaped by its parent, counts as gone.
    pub fn is_alive(&self) -> bool {
        proc_stat(self.pid)
            .is_some_and(|(state, ticks)| ticks == self.start_ticks && !matches!(state, 'Z' | 'X'))
    }
}

pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, ticks)| ticks)
}

/// State and start time of a process, from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    // Fields after the name start at field 3 (state); start time is field 22.
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A native service process and how to stop it cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedProcess {
    pub name: String,
    pub id: ProcessId,
    /// The signal that stops it quickly but cleanly (PostgreSQL: SIGINT, a
    /// fast shutdown that also removes its shared memory).
    pub stop_signal: i32,
}

impl OwnedProcess {
    /// A process just started, leading its own process group.
    pub fn started(name: &str, pid: u32, stop_signal: Signal) -> OwnedProcess {
        OwnedProcess {
            name: name.to_owned(),
            id: ProcessId::of(pid).unwrap_or(ProcessId {
                pid,
                start_ticks: 0,
            }),
            stop_signal: stop_signal as i32,
        }
    }
}

/// Everything a run has started, as written to its state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub owner: ProcessId,
    pub host: String,
    /// Native services; each leads its own process group.
    pub processes: Vec<OwnedProcess>,
    pub dirs: Vec<PathBuf>,
    /// Whether Docker objects labelled with this run may exist.
    pub docker: bool,
}

impl RunRecord {
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_RUN.to_owned(), self.run_id.clone()),
            (LABEL_OWNER_PID.to_owned(), self.owner.pid.to_string()),
            (
                LABEL_OWNER_START.to_owned(),
                self.owner.start_ticks.to_string(),
            ),
            (LABEL_OWNER_HOST.to_owned(), self.host.clone()),
        ])
    }
}

/// Where run records live: `$AHSP_PERF_STATE_DIR`, else `ahsp-perf/runs` in the
/// system's temporary directory.
pub fn state_dir() -> PathBuf {
    std::env::var_os("AHSP_PERF_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ahsp-perf").join("runs"))
}

/// Runs of this process that are not yet cleaned up, for the signal handler.
static LIVE_RUNS: Mutex<BTreeMap<String, RunRecord>> = Mutex::new(BTreeMap::new());

/// A run's ownership record, kept on disk and in memory until released.
#[derive(Debug)]
pub struct RunGuard {
    record: RunRecord,
    path: PathBuf,
}

impl RunGuard {
    /// Registers a new run owned by this process and arms the signal handler.
    pub fn new() -> anyhow::Result<RunGuard> {
        super::interrupt::clean_up_on_signals();
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        // Two stacks of one process can start in the same millisecond (tests
        // run in parallel threads): a sequence number keeps their records apart.
        static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let sequence = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let run_id = format!("{:x}-{}-{sequence}", millis, std::process::id());
        let record = RunRecord {
            run_id,
            owner: ProcessId::current(),
            host: hostname(),
            processes: Vec::new(),
            dirs: Vec::new(),
            docker: false,
        };
        let dir = state_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let guard = RunGuard {
            path: dir.join(format!("{}.json", record.run_id)),
            record,
        };
        guard.save()?;
        Ok(guard)
    }

    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    pub fn run_id(&self) -> &str {
        &self.record.run_id
    }

    /// Records before acting, so that a kill between the two still finds it.
    pub fn update(&mut self, change: impl FnOnce(&mut RunRecord)) -> anyhow::Result<()> {
        change(&mut self.record);
        self.save()
    }

    fn save(&self) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(&self.record)?;
        let temporary = self.path.with_extension("json.tmp");
        std::fs::write(&temporary, json)
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        LIVE_RUNS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.record.run_id.clone(), self.record.clone());
        Ok(())
    }

    /// Cleans up whatever the record still names and forgets the run.
    pub fn release(self) {
        clean_up_blocking(&self.record);
        self.forget();
    }

    /// Forgets the run once its owner has cleaned up by other means.
    pub fn forget(self) {
        LIVE_RUNS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.record.run_id);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Cleans up every live run of this process and forgets it: what a signal
/// that ends the process does first (`interrupt`).
pub(super) fn clean_up_live_runs() {
    let runs: Vec<RunRecord> = LIVE_RUNS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    if !runs.is_empty() {
        eprintln!(
            "ahsp-perf: interrupted; removing {} run(s) of this process",
            runs.len()
        );
    }
    for run in &runs {
        clean_up_blocking(run);
        let _ = std::fs::remove_file(state_dir().join(format!("{}.json", run.run_id)));
    }
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub runs: Vec<String>,
    pub containers: usize,
    pub networks: usize,
    pub process_groups: usize,
    pub dirs: usize,
    /// Runs whose owner is still alive, left alone.
    pub live_runs: Vec<String>,
}

impl SweepReport {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.containers == 0 && self.networks == 0
    }
}

/// Removes everything that belongs to runs whose owner process is gone: the
/// processes and directories named in their state files, and the Docker
/// containers and networks labelled with them (when a daemon answers).
pub async fn sweep_orphans() -> anyhow::Result<SweepReport> {
    let mut report = SweepReport::default();
    let host = hostname();
    let dir = state_dir();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<RunRecord>(&text) else {
                tracing::warn!(path = %path.display(), "unreadable run record, removed");
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if record.host != host {
                continue;
            }
            if record.owner.is_alive() {
                report.live_runs.push(record.run_id.clone());
                continue;
            }
            let removed = clean_up(&record).await;
            report.process_groups += removed.process_groups;
            report.dirs += removed.dirs;
            report.containers += removed.containers;
            report.networks += removed.networks;
            report.runs.push(record.run_id.clone());
            let _ = std::fs::remove_file(&path);
        }
    }
    if let Some(docker) = docker_if_answering().await {
        let (containers, networks, runs) = sweep_docker(&docker, &host).await?;
        report.containers += containers;
        report.networks += networks;
        for run in runs {
            if !report.runs.contains(&run) {
                report.runs.push(run);
            }
        }
    }
    Ok(report)
}

/// Owners of this host's runs that are still alive.
pub fn live_owners() -> Vec<ProcessId> {
    let host = hostname();
    let mut owners: Vec<ProcessId> = std::fs::read_dir(state_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            serde_json::from_slice::<RunRecord>(&std::fs::read(entry.path()).ok()?).ok()
        })
        .filter(|record| record.host == host && record.owner.is_alive())
        .map(|record| record.owner)
        .collect();
    owners.dedup();
    owners
}

/// Asks a run's owner to stop (SIGTERM); its signal handler cleans up.
pub fn terminate(owner: &ProcessId) -> anyhow::Result<()> {
    if owner.is_alive() {
        kill(Pid::from_raw(owner.pid as i32), Signal::SIGTERM).context("sending SIGTERM")?;
    }
    Ok(())
}

/// A Docker client, if a daemon answers within a second.
pub async fn docker_if_answering() -> Option<Docker> {
    let docker = Docker::connect_with_defaults().ok()?;
    match tokio::time::timeout(Duration::from_secs(1), docker.ping()).await {
        Ok(Ok(_)) => Some(docker),
        _ => None,
    }
}

fn owner_from_labels(labels: &HashMap<String, String>) -> Option<(ProcessId, &str)> {
    let pid = labels.get(LABEL_OWNER_PID)?.parse().ok()?;
    let start_ticks = labels.get(LABEL_OWNER_START)?.parse().ok()?;
    Some((
        ProcessId { pid, start_ticks },
        labels.get(LABEL_OWNER_HOST)?.as_str(),
    ))
}

async fn sweep_docker(docker: &Docker, host: &str) -> anyhow::Result<(usize, usize, Vec<String>)> {
    let filters = HashMap::from([("label", vec![LABEL_RUN])]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .context("listing containers")?;
    let mut removed_containers = 0;
    let mut runs = Vec::new();
    for container in containers {
        let labels = container.labels.unwrap_or_default();
        let orphaned = match owner_from_labels(&labels) {
            Some((owner, owner_host)) => owner_host == host && !owner.is_alive(),
            None => false,
        };
        if !orphaned {
            continue;
        }
        if let Some(id) = container.id
            && remove_container(docker, &id).await
        {
            removed_containers += 1;
        }
        if let Some(run) = labels.get(LABEL_RUN)
            && !runs.contains(run)
        {
            runs.push(run.clone());
        }
    }
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .context("listing networks")?;
    let mut removed_networks = 0;
    for network in networks {
        let labels = network.labels.unwrap_or_default();
        let orphaned = match owner_from_labels(&labels) {
            Some((owner, owner_host)) => owner_host == host && !owner.is_alive(),
            None => false,
        };
        if orphaned
            && let Some(name) = network.name
            && docker.remove_network(&name).await.is_ok()
        {
            removed_networks += 1;
        }
    }
    Ok((removed_containers, removed_networks, runs))
}

async fn remove_container(docker: &Docker, id: &str) -> bool {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(container = id, %error, "cannot remove container");
            false
        }
    }
}

#[derive(Debug, Default)]
struct Removed {
    process_groups: usize,
    dirs: usize,
    containers: usize,
    networks: usize,
}

/// Stops a native service, if it is still the process that was recorded:
/// its stop signal first, then SIGKILL to its whole process group
/// (PostgreSQL's backends with its postmaster) after a grace period.
pub fn stop_process(process: &OwnedProcess, grace: Duration) -> bool {
    if !process.id.is_alive() {
        return false;
    }
    let pid = Pid::from_raw(process.id.pid as i32);
    if let Ok(signal) = Signal::try_from(process.stop_signal) {
        let _ = kill(pid, signal);
        let deadline = std::time::Instant::now() + grace;
        while process.id.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = killpg(pid, Signal::SIGKILL);
    if process.id.is_alive() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    true
}

/// How long a native service may take to stop on its own signal.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

async fn clean_up(record: &RunRecord) -> Removed {
    let mut removed = Removed::default();
    let processes = record.processes.clone();
    let stopped = tokio::task::spawn_blocking(move || {
        processes
            .iter()
            .filter(|process| stop_process(process, STOP_GRACE))
            .count()
    });
    removed.process_groups += stopped.await.unwrap_or(0);
    for dir in &record.dirs {
        if remove_dir(dir) {
            removed.dirs += 1;
        }
    }
    if record.docker
        && let Some(docker) = docker_if_answering().await
    {
        let filters = HashMap::from([("label", vec![format!("{LABEL_RUN}={}", record.run_id)])]);
        if let Ok(containers) = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
        {
            for id in containers.into_iter().filter_map(|c| c.id) {
                if remove_container(&docker, &id).await {
                    removed.containers += 1;
                }
            }
        }
        if let Ok(networks) = docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
        {
            for name in networks.into_iter().filter_map(|n| n.name) {
                if docker.remove_network(&name).await.is_ok() {
                    removed.networks += 1;
                }
            }
        }
    }
    removed
}

fn remove_dir(dir: &Path) -> bool {
    dir.exists() && std::fs::remove_dir_all(dir).is_ok()
}

/// Cleans up from any context (a signal thread, a `Drop` inside a runtime):
/// the Docker calls run on a thread of their own with its own runtime.
pub fn clean_up_blocking(record: &RunRecord) {
    let record = record.clone();
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        match runtime {
            Ok(runtime) => {
                runtime.block_on(clean_up(&record));
            }
            Err(error) => tracing::warn!(%error, "cannot clean up run {}", record.run_id),
        }
    });
    let _ = worker.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        let me = ProcessId::current();
        assert!(me.start_ticks > 0);
        assert!(me.is_alive());
        let impostor = ProcessId {
            pid: me.pid,
            start_ticks: me.start_ticks + 1,
        };
        assert!(!impostor.is_alive());
    }
}
