//! `cargo xtask up` and `down` as a user runs them: a stack's owner killed
//! with SIGKILL leaves services that the next `down` removes; SIGTERM and
//! SIGINT leave nothing at all.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

struct Up {
    child: Child,
    run: String,
    urls: Vec<(String, String)>,
}

fn xtask(state_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .env("AHSP_PERF_STATE_DIR", state_dir)
        .env("RUST_BACKTRACE", "0");
    command
}

fn up(state_dir: &Path, infra: &str) -> Up {
    let mut child = xtask(state_dir)
        .args(["up", "--infra", infra])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("xtask up starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut run = String::new();
    let mut urls = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let (name, value) = line.split_once('=').expect("NAME=value lines");
        if name == "AHSP_PERF_RUN" {
            run = value.to_owned();
        } else {
            urls.push((name.to_owned(), value.to_owned()));
        }
        if name == "REDIS_URL" {
            break;
        }
    }
    assert!(!run.is_empty(), "xtask up printed no run id");
    assert_eq!(
        urls.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "DATABASE_URL",
            "PGBOUNCER_URL",
            "PGBOUNCER_ADMIN_URL",
            "REDIS_URL"
        ]
    );
    Up { child, run, urls }
}

fn signal(up: &mut Up, signal: Signal) {
    kill(Pid::from_raw(up.child.id() as i32), signal).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if up.child.try_wait().unwrap().is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "xtask up did not exit on {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn docker_objects(run: &str) -> Vec<String> {
    let label = format!("label=io.ahsp-perf.run={run}");
    let mut found = Vec::new();
    for what in [
        vec!["ps", "-aq", "--filter", &label],
        vec!["network", "ls", "-q", "--filter", &label],
    ] {
        let output = Command::new("docker")
            .args(&what)
            .output()
            .expect("docker CLI");
        found.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    found
}

/// Native service processes: those whose command line mentions the run's
/// temporary directory.
fn native_processes(run: &str) -> Vec<u32> {
    let marker = format!("ahsp-perf-{run}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmd| String::from_utf8_lossy(&cmd).contains(&marker))
                .unwrap_or(false)
        })
        .collect()
}

fn native_dir(run: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ahsp-perf-{run}"))
}

fn down(state_dir: &Path) {
    let status = xtask(state_dir).arg("down").status().unwrap();
    assert!(status.success());
}

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ahsp-perf-test-state-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn containers_sigkill_then_down_leaves_nothing() {
    let state = state_dir("containers-kill");
    let mut up = up(&state, "containers");
    assert_eq!(
        docker_objects(&up.run).len(),
        4,
        "three containers and a network"
    );
    signal(&mut up, Signal::SIGKILL);
    // SIGKILL cannot be handled: the containers are still there until `down`.
    down(&state);
    assert_eq!(docker_objects(&up.run), Vec::<String>::new());
    assert!(!state.join(format!("{}.json", up.run)).exists());
}

#[test]
fn native_sigkill_then_down_leaves_nothing() {
    let state = state_dir("native-kill");
    let mut up = up(&state, "native");
    assert!(native_dir(&up.run).exists());
    assert!(!native_processes(&up.run).is_empty());
    signal(&mut up, Signal::SIGKILL);
    assert!(
        !native_processes(&up.run).is_empty(),
        "services outlive a SIGKILLed owner until `down`"
    );
    down(&state);
    assert_eq!(native_processes(&up.run), Vec::<u32>::new());
    assert!(!native_dir(&up.run).exists());
}

#[test]
fn sigterm_and_sigint_leave_nothing_without_down() {
    let state = state_dir("term");
    for (infra, sig) in [("containers", Signal::SIGTERM), ("native", Signal::SIGINT)] {
        let mut up = up(&state, infra);
        // The URLs work while it is up.
        let pgbouncer = &up.urls[1].1;
        let status = Command::new("psql")
            .args([pgbouncer.as_str(), "-Atc", "SELECT 1"])
            .output();
        if let Ok(output) = status {
            assert_eq!(
                String::from_utf8_lossy(&output.stdout).trim(),
                "1",
                "psql through PgBouncer"
            );
        }
        signal(&mut up, sig);
        assert_eq!(
            docker_objects(&up.run),
            Vec::<String>::new(),
            "{infra} on {sig}"
        );
        assert_eq!(
            native_processes(&up.run),
            Vec::<u32>::new(),
            "{infra} on {sig}"
        );
        assert!(!native_dir(&up.run).exists());
        assert!(!state.join(format!("{}.json", up.run)).exists());
    }
}

#[test]
fn an_unknown_provider_is_refused_with_the_choices() {
    let output = xtask(&state_dir("unknown"))
        .args(["up", "--infra", "kubernetes"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown infrastructure provider `kubernetes` (use auto, containers, native or external)"),
        "{stderr}"
    );
}

/// Every process in process group `group` (chromedriver leads the one that
/// holds every Chromium of a run).
fn group_members(group: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // After the command's `)`: state, ppid, pgrp. A zombie
                // (`Z`) is gone, only not yet reaped by its new parent.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                fields.first() != Some(&"Z")
                    && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(group)
            })
        })
        .collect()
}

/// The pid of the `browser` process a run recorded in `state_dir`, once it has.
fn recorded_browser(state_dir: &Path, deadline: Instant) -> Option<u32> {
    while Instant::now() < deadline {
        for entry in std::fs::read_dir(state_dir).unwrap().flatten() {
            let Ok(record) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let Ok(record) = serde_json::from_str::<serde_json::Value>(&record) else {
                continue;
            };
            let browser = record["processes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "browser");
            if let Some(pid) = browser.and_then(|p| p["id"]["pid"].as_u64()) {
                return Some(pid as u32);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_browser_run_killed_with_sigkill_leaves_no_browser_after_down() {
    let state = state_dir("browser-kill");
    let site = tempfile::tempdir().unwrap();
    std::fs::write(
        site.path().join("index.html"),
        "<html><body><h1 id=\"ready\">ok</h1></body></html>",
    )
    .unwrap();
    let suite = site.path().join("browser.toml");
    std::fs::write(
        &suite,
        r##"[suite]
name = "browser-kill"
[target]
command = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
[load]
executor = "constant-users"
users = 1
duration = "60s"
think-time = "200ms"
[[task]]
name = "/"
get = "/"
[[browser]]
users = 1
pause = "200ms"
[[browser.page]]
path = "/index.html"
ready = "#ready"
"##,
    )
    .unwrap();
    let mut run = xtask(&state)
        .args(["perf", suite.to_str().unwrap(), "--output"])
        .arg(site.path().join("runs"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = recorded_browser(&state, Instant::now() + Duration::from_secs(60))
        .expect("the run recorded its browser process");
    // Chromium starts under chromedriver: wait until it is there.
    let deadline = Instant::now() + Duration::from_secs(60);
    while group_members(driver).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = group_members(driver);
    assert!(
        before.len() >= 2,
        "no Chromium under chromedriver: {before:?}"
    );
    kill(Pid::from_raw(run.id() as i32), Signal::SIGKILL).unwrap();
    let _ = run.wait();
    assert!(
        !group_members(driver).is_empty(),
        "SIGKILL cannot be handled: the browsers are there until `down`"
    );
    down(&state);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !group_members(driver).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        group_members(driver),
        Vec::<u32>::new(),
        "browsers outlived `down`"
    );
}
