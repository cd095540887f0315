//! Ctrl-C in the middle of `cargo xtask perf`, as a user presses it: the
//! load stops, every report is still written and says the run was
//! interrupted, the exit code is 130, and nothing is left running.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Polls `condition` until it holds or `limit` passes.
fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The run's folder under `output`, once the load (not the queries-per-
/// request phase before it) has some requests in the captured access log.
fn loaded_run_dir(output: &Path) -> Option<PathBuf> {
    let dir = std::fs::read_dir(output).ok()?.flatten().next()?.path();
    let captured = std::fs::read_to_string(dir.join("logs/app.log")).ok()?;
    (captured.lines().count() > 50).then_some(dir)
}

#[test]
fn ctrl_c_writes_partial_reports_and_exits_130() {
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("state");
    let output = scratch.path().join("perf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "perf",
            "core",
            "--profile",
            "ci",
            "--infra",
            "native",
            "--output",
        ])
        .arg(&output)
        .env("AHSP_PERF_STATE_DIR", &state)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("xtask perf starts");
    wait_for("the load to start", Duration::from_secs(240), || {
        loaded_run_dir(&output).is_some()
    });
    let dir = loaded_run_dir(&output).unwrap();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let mut status = None;
    wait_for("xtask perf to exit", Duration::from_secs(120), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(130), "exit code on SIGINT");

    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["interrupted"]["signal"], "SIGINT", "result.json");
    let requests: u64 = result["summary"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|second| second["requests"].as_u64().unwrap())
        .sum();
    assert!(requests > 0, "what was measured is kept");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert!(read("summary.md").contains("Partial run"), "summary.md");
    assert!(
        read("report.html").contains(r#"id="interrupted""#),
        "report.html"
    );
    assert!(
        read("junit.xml").contains("interrupted by SIGINT"),
        "junit.xml"
    );

    // Every record of what the run started is gone once it cleaned up.
    let records: Vec<_> = std::fs::read_dir(&state)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(records, Vec::<PathBuf>::new(), "runs left behind");
}
