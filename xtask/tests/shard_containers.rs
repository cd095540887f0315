//! Scale-out as a cluster runs it, on this machine: the image built from
//! `deploy/Containerfile` (the shards run as its non-root user), four shard
//! containers sharing one volume, started through the barrier (one of them
//! seconds after the others), one killed mid-run, the merge of what is
//! left, and a second run on the same volume. The Kubernetes objects
//! themselves cannot run here (no cluster); `deploy.rs` checks them offline.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const SHARDS: u32 = 4;

fn docker(args: &[&str]) -> Output {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The image and the containers of this test, removed when dropped.
struct Cluster {
    image: String,
    prefix: String,
}

impl Cluster {
    /// Builds the image from `deploy/Containerfile`, with this build's
    /// binary as the one it copies and a local Debian image as its base.
    fn build(work: &Path) -> Cluster {
        let tag = std::process::id();
        let cluster = Cluster {
            image: format!("ahsp-perf-test:{tag}"),
            prefix: format!("ahsp-perf-test-{tag}"),
        };
        let context = work.join("context");
        std::fs::create_dir_all(context.join("target/release")).unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_xtask"),
            context.join("target/release/xtask"),
        )
        .unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let base = harness::infra::images::local_image(harness::infra::ServiceName::Redis);
        docker(&[
            "build",
            "--quiet",
            "--file",
            root.join("deploy/Containerfile").to_str().unwrap(),
            "--build-arg",
            &format!("BASE={base}"),
            "--tag",
            &cluster.image,
            context.to_str().unwrap(),
        ]);
        cluster
    }

    /// The container of shard `index` of `run`; a second attempt's is
    /// `run` with a suffix.
    fn name(&self, container: &str, index: u32) -> String {
        format!("{}-{container}-{index}", self.prefix)
    }

    /// Starts shard `index` of `run` in a container of its own; the
    /// volume is `work`, mounted at /work.
    fn start_shard(&self, work: &Path, run: &str, index: u32, count: u32) {
        self.start_shard_as(run, work, run, index, count);
    }

    fn start_shard_as(&self, container: &str, work: &Path, run: &str, index: u32, count: u32) {
        let name = self.name(container, index);
        let volume = format!("{}:/work", work.display());
        let shard = format!("{index}/{count}");
        let barrier = format!("/work/runs/{run}/barrier");
        let output = format!("/work/runs/{run}/shard-{index}");
        docker(&[
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            "host",
            "--volume",
            &volume,
            "--env",
            "AHSP_PERF_STATE_DIR=/tmp/state",
            &self.image,
            "perf",
            "/work/barrier.toml",
            "--shard",
            &shard,
            "--barrier",
            &barrier,
            "--barrier-timeout",
            "60s",
            "--run-id",
            run,
            "--output",
            &output,
        ]);
    }

    /// The container's exit code, once it has ended; its log on failure.
    fn wait(&self, run: &str, index: u32) -> (i32, String) {
        let name = self.name(run, index);
        let code = String::from_utf8_lossy(&docker(&["wait", &name]).stdout)
            .trim()
            .parse()
            .unwrap();
        let logs = Command::new("docker")
            .args(["logs", &name])
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
        (code, log)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let listed = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("name={}", self.prefix)])
            .output();
        if let Ok(listed) = listed {
            for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

/// A bare HTTP server on loopback that answers every request with 200;
/// its port.
fn serve() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                loop {
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    request.drain(..end);
                    if stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn shard_json(work: &Path, run: &str, index: u32) -> Option<serde_json::Value> {
    let root = work.join(format!("runs/{run}/shard-{index}"));
    let folder = std::fs::read_dir(root).ok()?.next()?.ok()?.path();
    let bytes = std::fs::read(folder.join("shard.json")).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// Each shard's run folder (one per shard's output).
fn folders(work: &Path, run: &str, count: u32) -> Vec<PathBuf> {
    (0..count)
        .map(|index| {
            let root = work.join(format!("runs/{run}/shard-{index}"));
            std::fs::read_dir(&root)
                .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
                .next()
                .unwrap()
                .unwrap()
                .path()
        })
        .collect()
}

fn merge_command(work: &Path, folders: &[PathBuf], out: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .env("AHSP_PERF_STATE_DIR", work.join("state"))
        .args(["perf", "merge"])
        .args(folders)
        .args(["--suite", work.join("barrier.toml").to_str().unwrap()])
        .args(["--output", work.join(out).to_str().unwrap()])
        .args(extra);
    command
}

fn merge(work: &Path, folders: &[PathBuf], out: &str, extra: &[&str]) -> Output {
    merge_command(work, folders, out, extra).output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn shards_in_containers_start_together_through_the_barrier_and_merge_what_finished() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    // The shards run as uid 10001: the shared volume is theirs to write.
    std::fs::set_permissions(work, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let port = serve();
    std::fs::write(
        work.join("barrier.toml"),
        format!(
            r#"
[suite]
name = "barrier"

[target]
url = "http://127.0.0.1:{port}"

[load]
executor = "constant-users"
users = 8
duration = "8s"
warm-up = "0s"
graceful-stop = "1s"
think-time = "20ms..40ms"

[[task]]
name = "/"
get = "/"
expect = {{ status = [200] }}

[thresholds]
"http.failed" = "rate == 0%"
"#
        ),
    )
    .unwrap();
    let cluster = Cluster::build(work);

    // Run a: three shards at once, the fourth 3 s later (a slow pull, a
    // node the autoscaler adds): the barrier waits for it.
    for index in 0..SHARDS - 1 {
        cluster.start_shard(work, "run-a", index, SHARDS);
    }
    // The merge starts with them, as a Kubernetes Job beside the shards',
    // and waits by itself for their results.
    let run_a_root = work.join("runs/run-a");
    let waiting_merge = merge_command(
        work,
        &[],
        "merged-a",
        &[
            "--find",
            run_a_root.to_str().unwrap(),
            "--wait",
            "3m",
            "--allow-partial",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    cluster.start_shard(work, "run-a", SHARDS - 1, SHARDS);
    // Shard 2 is killed mid-run, once its load has begun.
    let begun = work.join("runs/run-a/shard-2");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_dir(&begun)
        .into_iter()
        .flatten()
        .flatten()
        .any(|folder| folder.path().join("shard.begun.json").exists())
    {
        assert!(std::time::Instant::now() < deadline, "shard 2 never began");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    docker(&["kill", &cluster.name("run-a", 2)]);
    for index in 0..SHARDS {
        let (code, log) = cluster.wait("run-a", index);
        let expected = if index == 2 { 137 } else { 0 };
        assert_eq!(code, expected, "shard {index}/{SHARDS}:\n{log}");
    }

    // They began within 100 ms of each other, the late one included.
    let finished: Vec<serde_json::Value> = [0, 1, 3]
        .iter()
        .map(|&i| shard_json(work, "run-a", i).expect("a finished shard's shard.json"))
        .collect();
    let started: Vec<u64> = finished
        .iter()
        .map(|s| s["started_unix_ms"].as_u64().unwrap())
        .collect();
    let spread = started.iter().max().unwrap() - started.iter().min().unwrap();
    eprintln!("run a: shards 0, 1 and 3 began their loads within {spread} ms: {started:?}");
    assert!(
        spread <= 100,
        "the shards began {spread} ms apart: {started:?}"
    );
    for shard in &finished {
        assert_eq!(shard["start"], "barrier");
        assert_eq!(shard["run_id"], "run-a");
        assert!(
            shard["late_ms"].as_u64().unwrap() <= 100,
            "{}",
            shard["late_ms"]
        );
        assert!(
            shard["harness_version"].as_str().unwrap().contains("+g"),
            "the build is named by its commit: {}",
            shard["harness_version"]
        );
    }
    assert!(
        shard_json(work, "run-a", 2).is_none(),
        "the killed shard wrote its result"
    );

    // A shard that comes again after the run began is refused.
    cluster.start_shard_as("run-a-again", work, "run-a", 2, SHARDS);
    let (code, log) = cluster.wait("run-a-again", 2);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("already joined the barrier"), "{log}");

    // The merge names the killed shard, and merges around it when told.
    let run_a = folders(work, "run-a", SHARDS);
    let refused = merge(work, &run_a, "merged-a-refused", &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let merged = waiting_merge.wait_with_output().unwrap();
    assert_eq!(merged.status.code(), Some(0), "{}", text(&merged));
    let result_dir = std::fs::read_dir(work.join("merged-a"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("result.json").exists())
        .unwrap_or_else(|| work.join("merged-a"));
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(result_dir.join("result.json")).unwrap()).unwrap();
    let notes = result["notes"].to_string();
    assert!(notes.contains("shard 2/4 in"), "{notes}");
    let rows = result["shards"].as_array().unwrap();
    assert_eq!(rows.len(), SHARDS as usize, "{rows:?}");
    assert_eq!(rows[2]["merged"], false);
    assert!(rows[0]["requests"].as_u64().unwrap() > 0, "{rows:?}");

    // Run b on the same volume: its own folder, its own barrier; its merge
    // holds only its shards, and one of run a's is refused beside them.
    for index in 0..2 {
        cluster.start_shard(work, "run-b", index, 2);
    }
    for index in 0..2 {
        let (code, log) = cluster.wait("run-b", index);
        assert_eq!(code, 0, "run-b shard {index}:\n{log}");
    }
    let run_b = folders(work, "run-b", 2);
    let merged = merge(work, &run_b, "merged-b", &[]);
    assert_eq!(merged.status.code(), Some(0), "{}", text(&merged));
    let mixed = merge(work, &[run_b[0].clone(), run_a[1].clone()], "mixed", &[]);
    assert_eq!(mixed.status.code(), Some(2), "{}", text(&mixed));
    assert!(
        text(&mixed).contains("not shards of one run"),
        "{}",
        text(&mixed)
    );
}
