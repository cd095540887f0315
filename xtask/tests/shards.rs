//! Scale-out for real: shard processes, each in its own network namespace
//! (a separate host with its own address on a bridge), drive the reference
//! service listening on the bridge; `perf merge` of their folders judges
//! the whole. The merged run must count what one process at the same total
//! load counts, and a threshold only the combined load breaks must fail in
//! the merge and in no shard's part alone.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::infra::{InfraConfig, Stack};
use harness::run::Domain as _;
use suites::ahsp::Ahsp;

const SHARDS: usize = 2;
const USERS: u64 = 4;
const ITERATIONS: u64 = 30;

/// A bridge in this namespace and one namespace per shard, a veth pair
/// from each into the bridge; removed when dropped.
struct Hosts {
    bridge: String,
    namespaces: Vec<String>,
    gateway: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(status.success(), "ip {}", args.join(" "));
}

impl Hosts {
    fn new(count: usize) -> Hosts {
        let tag = std::process::id() % 10_000;
        let hosts = Hosts {
            bridge: format!("apb{tag}"),
            namespaces: (0..count).map(|i| format!("ahsp-shard{tag}-{i}")).collect(),
            gateway: "10.77.0.1".to_owned(),
        };
        ip(&["link", "add", &hosts.bridge, "type", "bridge"]);
        ip(&["addr", "add", "10.77.0.1/24", "dev", &hosts.bridge]);
        ip(&["link", "set", &hosts.bridge, "up"]);
        for (i, namespace) in hosts.namespaces.iter().enumerate() {
            let outside = format!("apv{tag}{i}");
            let inside = format!("apn{tag}{i}");
            ip(&["netns", "add", namespace]);
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            ip(&["link", "set", &inside, "netns", namespace]);
            ip(&["link", "set", &outside, "master", &hosts.bridge, "up"]);
            let address = format!("10.77.0.{}/24", 11 + i);
            ip(&["-n", namespace, "addr", "add", &address, "dev", &inside]);
            ip(&["-n", namespace, "link", "set", &inside, "up"]);
            ip(&["-n", namespace, "link", "set", "lo", "up"]);
        }
        hosts
    }

    /// `xtask` run inside shard `i`'s namespace.
    fn xtask_in(&self, i: usize, state: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                &self.namespaces[i],
                env!("CARGO_BIN_EXE_xtask"),
            ])
            .env("AHSP_PERF_STATE_DIR", state)
            .env("RUST_BACKTRACE", "0");
        command
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

fn xtask(state: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .env("AHSP_PERF_STATE_DIR", state)
        .env("RUST_BACKTRACE", "0");
    command
}

/// The reference service on `listen`, with the stack's URLs; its URL once
/// it answers.
fn serve(
    state: &Path,
    urls: &harness::infra::StackUrls,
    listen: &str,
) -> (std::process::Child, String) {
    let mut target = xtask(state)
        .args(["serve", "--quiet", "--listen", listen])
        .env("PGBOUNCER_URL", &urls.pgbouncer_url)
        .env("REDIS_URL", &urls.redis_url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(target.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("TARGET_URL=").map(str::to_owned));
    // The rest of its output is read, so it never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    match url {
        Some(url) => (target, url),
        None => {
            let _ = target.kill();
            let _ = target.wait();
            panic!("serve printed no TARGET_URL");
        }
    }
}

/// Unix seconds `ahead` from now: the shards' shared start.
fn start_at(ahead: Duration) -> String {
    let at = (SystemTime::now() + ahead)
        .duration_since(UNIX_EPOCH)
        .unwrap();
    format!("{:.3}", at.as_secs_f64())
}

fn checked(output: Output, code: i32, what: &str) -> Output {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The one run folder under `root`.
fn run_folder(root: &Path) -> PathBuf {
    let folders: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    folders.into_iter().next().unwrap()
}

fn result(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap()
}

fn endpoint<'a>(result: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    result["summary"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name && e["method"] == "GET")
        .unwrap_or_else(|| panic!("no endpoint {name}"))
}

fn threshold<'a>(result: &'a serde_json::Value, source: &str) -> &'a serde_json::Value {
    result["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["source"].as_str().unwrap().starts_with(source))
        .unwrap_or_else(|| panic!("no threshold {source}: {:#}", result["thresholds"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_on_separate_hosts_merge_into_the_run_one_process_makes() {
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let stack = Stack::start(&InfraConfig::default()).await.unwrap();
    let urls = stack.urls().clone();
    let domain = Ahsp::target_binary(PathBuf::from(env!("CARGO_BIN_EXE_xtask")), &[]);
    let catalog = domain
        .seed(&urls.database_url, "ci", 42, None)
        .await
        .unwrap();
    let pool: Vec<String> = catalog
        .users
        .iter()
        .take(USERS as usize)
        .map(|u| format!("{}:{}", u.login, u.password.expose()))
        .collect();

    let hosts = Hosts::new(SHARDS);
    // The reference service, on the bridge: every shard's host reaches it.
    let (mut target, target_url) = serve(&state, &urls, &format!("{}:0", hosts.gateway));

    let suite = work.path().join("sharded.toml");
    std::fs::write(
        &suite,
        format!(
            r#"
[suite]
name = "sharded"

[target]
url = "{target_url}"
allow-hosts = ["{gateway}"]

[auth]
login-url = "/accounts/login/"
success = {{ status = 302, location = "/dashboard/", cookie = "sessionid" }}
users = {{ from = "env", var = "PERF_USERS" }}

[load]
executor = "per-user-iterations"
users = {USERS}
iterations = {ITERATIONS}
warm-up = "0s"
think-time = "10ms..30ms"

[[task]]
name = "/dashboard/"
get = "/dashboard/"
expect = {{ status = [200], text = "Dashboard" }}

[thresholds]
"http.failed" = "rate == 0%"
# {USERS} users x {ITERATIONS} iterations in all; each of {SHARDS} shards sends half.
"http.requests{{name:/dashboard/}}" = "count < 90"
"#,
            gateway = hosts.gateway,
        ),
    )
    .unwrap();
    let suite = suite.to_str().unwrap();
    let pool = pool.join(",");

    // One process at the whole load, from a host of its own.
    let single = work.path().join("single");
    let baselines = work.path().join("baselines");
    let output = hosts
        .xtask_in(0, &state)
        .args(["perf", suite, "--output", single.to_str().unwrap()])
        .args([
            "--save-baseline",
            "single",
            "--baseline-dir",
            baselines.to_str().unwrap(),
        ])
        .env("PERF_USERS", &pool)
        .output()
        .unwrap();
    checked(output, 1, "one process at the whole load breaks the count");

    // The shards, together from a shared instant on the wall clock.
    let start_at = start_at(Duration::from_secs(4));
    let children: Vec<_> = (0..SHARDS)
        .map(|i| {
            hosts
                .xtask_in(i, &state)
                .args(["perf", suite, "--shard", &format!("{i}/{SHARDS}")])
                .args(["--start-at", &start_at])
                .args([
                    "--output",
                    work.path().join(format!("shard-{i}")).to_str().unwrap(),
                ])
                .env("PERF_USERS", &pool)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        checked(
            child.wait_with_output().unwrap(),
            0,
            &format!("shard {i} does not judge"),
        );
    }
    let _ = target.kill();
    let _ = target.wait();
    stack.stop().await.unwrap();
    drop(hosts);

    let shard_dirs: Vec<PathBuf> = (0..SHARDS)
        .map(|i| run_folder(&work.path().join(format!("shard-{i}"))))
        .collect();
    let merged_dir = work.path().join("merged");
    let mut merge = xtask(&state);
    merge.args(["perf", "merge"]).args(&shard_dirs);
    let output = merge
        .args(["--output", merged_dir.to_str().unwrap()])
        .args(["--baseline", "single", "--save-baseline", "merged"])
        .args(["--baseline-dir", baselines.to_str().unwrap()])
        .output()
        .unwrap();
    checked(output, 1, "the merge judges the whole load");
    // The gate judged the merged whole against the one process's run, and
    // the merged run can be a baseline itself.
    let table = std::fs::read_to_string(merged_dir.join("baseline-single.md")).unwrap();
    assert!(table.contains("/dashboard/"), "{table}");
    assert!(baselines.join("merged.json").is_file());

    let merged = result(&merged_dir);
    let single = result(&run_folder(&single));
    let shards: Vec<serde_json::Value> = shard_dirs.iter().map(|d| result(d)).collect();
    // The same requests as one process: the schedule fixes them exactly.
    let requests = |r: &serde_json::Value| endpoint(r, "/dashboard/")["requests"].as_u64().unwrap();
    assert_eq!(requests(&merged), USERS * ITERATIONS);
    assert_eq!(requests(&single), USERS * ITERATIONS);
    assert_eq!(
        shards.iter().map(requests).sum::<u64>(),
        requests(&merged),
        "the merge adds the shards' counts"
    );
    for r in [&merged, &single] {
        assert_eq!(endpoint(r, "/dashboard/")["failures"], 0);
        assert_eq!(r["summary"]["counters"]["login_successes"], USERS);
    }
    // The merged histogram is the shards' added: its maximum is theirs.
    let max = |r: &serde_json::Value| {
        endpoint(r, "/dashboard/")["latency_ms"]["max"]
            .as_f64()
            .unwrap()
    };
    let shards_max = shards.iter().map(max).fold(0.0, f64::max);
    assert!(
        (max(&merged) - shards_max).abs() < 1e-9,
        "{} vs {shards_max}",
        max(&merged)
    );
    // And its median is the one process's, within what two runs differ by here.
    let median = |r: &serde_json::Value| {
        endpoint(r, "/dashboard/")["latency_ms"]["p50"]
            .as_f64()
            .unwrap()
    };
    let ratio = median(&merged) / median(&single);
    assert!(
        (1.0 / 3.0..3.0).contains(&ratio),
        "median merged {} vs one process {}",
        median(&merged),
        median(&single)
    );
    // The count threshold fails in the whole only.
    assert_eq!(
        threshold(&merged, "http.requests").get("passed"),
        Some(&serde_json::Value::Bool(false))
    );
    assert_eq!(threshold(&merged, "http.failed")["passed"], true);
    for (i, dir) in shard_dirs.iter().enumerate() {
        let part = work.path().join(format!("part-{i}"));
        let output = xtask(&state)
            .args(["perf", "merge", dir.to_str().unwrap(), "--allow-partial"])
            .args(["--output", part.to_str().unwrap()])
            .output()
            .unwrap();
        checked(
            output,
            0,
            &format!("shard {i}'s part alone keeps the count"),
        );
        let notes = result(&part)["notes"].to_string();
        assert!(notes.contains("PARTIAL"), "{notes}");
    }
    // A shard killed before its end leaves a folder without shard.json:
    // merged around with --allow-partial, which names the folder.
    let killed = work.path().join("killed-shard");
    std::fs::create_dir_all(&killed).unwrap();
    let part = work.path().join("part-killed");
    let output = xtask(&state)
        .args(["perf", "merge", shard_dirs[0].to_str().unwrap()])
        .args([killed.to_str().unwrap(), "--allow-partial"])
        .args(["--output", part.to_str().unwrap()])
        .output()
        .unwrap();
    checked(output, 0, "a killed shard's folder is a missing shard");
    let notes = result(&part)["notes"].to_string();
    assert!(notes.contains("killed-shard has no shard.json"), "{notes}");
    assert!(notes.contains("without shard(s) 1/2"), "{notes}");
    // A set with a shard missing is refused without --allow-partial.
    let output = xtask(&state)
        .args(["perf", "merge", shard_dirs[0].to_str().unwrap()])
        .args([
            // The old name is kept as a hidden alias.
            "--out",
            work.path().join("refused").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let output = checked(output, 2, "a missing shard is refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("shard(s) 1/2 missing"), "{stderr}");
}

/// Writes from two shards on this host, one stack visited by URL: shard 0
/// snapshots the rows before the shared start and probes the stack; the
/// merge checks every shard's acknowledged writes against the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merge_checks_every_shards_writes_against_one_snapshot() {
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let stack = Stack::start(&InfraConfig::default()).await.unwrap();
    let urls = stack.urls().clone();
    let domain = Ahsp::target_binary(PathBuf::from(env!("CARGO_BIN_EXE_xtask")), &[]);
    let catalog = domain
        .seed(&urls.database_url, "ci", 42, None)
        .await
        .unwrap();
    // A project several users may edit, and those users as the pool.
    let mut by_project: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for user in &catalog.users {
        for choice in user.scope.vars.get("project_id").into_iter().flatten() {
            by_project
                .entry(choice.value.clone())
                .or_default()
                .push(format!("{}:{}", user.login, user.password.expose()));
        }
    }
    let (project, pool) = by_project
        .into_iter()
        .max_by_key(|(_, users)| users.len())
        .unwrap();
    assert!(pool.len() >= 2, "a project shared by two users");

    let (mut target, target_url) = serve(&state, &urls, "127.0.0.1:0");
    let suite = work.path().join("writes.toml");
    std::fs::write(
        &suite,
        format!(
            r#"
[suite]
name = "sharded-writes"

[target]
url = "{target_url}"

[infra]
provider = "external"
[infra.external]
database-url = "{database_url}"
pgbouncer-url = "{pgbouncer_url}"
pgbouncer-admin-url = "{admin_url}"
redis-url = "{redis_url}"

[data.sql]
shared_project = "SELECT {project}"
shared_pekerjaan = "SELECT id FROM pekerjaan WHERE project_id = {project} ORDER BY id LIMIT 6"

[auth]
login-url = "/accounts/login/"
success = {{ status = 302, location = "/dashboard/", cookie = "sessionid" }}
users = {{ from = "env", var = "PERF_USERS" }}

[load]
users = 4
duration = "6s"
warm-up = "0s"
think-time = "20ms..80ms"

[[task]]
name = "/api/project/[id]/pekerjaan/[pekerjaan_id]/"
weight = 2
get = "/api/project/{{shared_project}}/pekerjaan/{{shared_pekerjaan}}/"
extract = [
    {{ var = "edit_project_id", json = "/project_id" }},
    {{ var = "edit_pekerjaan_id", json = "/id" }},
    {{ var = "version", json = "/version" }},
]

[[task]]
name = "/api/project/[id]/list-pekerjaan/save/"
weight = 2
post = "/api/project/{{edit_project_id}}/list-pekerjaan/save/"
vars = {{ new_volume = "{{random_decimal(1, 500, 2)}}" }}
json = {{ pekerjaan = [{{ id = "{{edit_pekerjaan_id|int}}", volume = "{{new_volume}}", version = "{{version|int}}" }}] }}
expect = {{ status = [200, 409] }}
extract = [{{ var = "version", json = "/saved/0/version" }}]
writes = {{ table = "pekerjaan", key = "id", version-column = "version", key-value = "{{edit_pekerjaan_id}}", version-value = "{{version}}", fields = {{ volume = "{{new_volume}}" }}, audit-table = "audit_trail", audit-key = "entity_id", audit-where = "entity = 'pekerjaan'" }}

[thresholds]
"http.failed" = "rate == 0%"
"integrity.lost-updates" = "count == 0"
"integrity.violations" = "count == 0"
"#,
            database_url = urls.database_url,
            pgbouncer_url = urls.pgbouncer_url,
            admin_url = urls.pgbouncer_admin_url,
            redis_url = urls.redis_url,
        ),
    )
    .unwrap();
    let suite = suite.to_str().unwrap();
    let start_at = start_at(Duration::from_secs(5));
    let children: Vec<_> = (0..SHARDS)
        .map(|i| {
            xtask(&state)
                .args(["perf", suite, "--shard", &format!("{i}/{SHARDS}")])
                .args(["--start-at", &start_at])
                .args([
                    "--output",
                    work.path().join(format!("shard-{i}")).to_str().unwrap(),
                ])
                .env("PERF_USERS", pool.join(","))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        checked(child.wait_with_output().unwrap(), 0, &format!("shard {i}"));
    }
    let _ = target.kill();
    let _ = target.wait();

    let shard_dirs: Vec<PathBuf> = (0..SHARDS)
        .map(|i| run_folder(&work.path().join(format!("shard-{i}"))))
        .collect();
    let merged_dir = work.path().join("merged");
    let output = xtask(&state)
        .args(["perf", "merge"])
        .args(&shard_dirs)
        .args(["--output", merged_dir.to_str().unwrap()])
        .output()
        .unwrap();
    stack.stop().await.unwrap();
    checked(output, 0, "no write lost across the shards");
    let merged = result(&merged_dir);
    let shard_writes: u64 = shard_dirs
        .iter()
        .map(|dir| {
            let shard: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("shard.json")).unwrap()).unwrap();
            shard["writes"].as_array().unwrap().len() as u64
        })
        .sum();
    let integrity = &merged["integrity"];
    assert!(shard_writes > 0, "the shards wrote nothing");
    assert_eq!(
        integrity["acknowledged_writes"].as_u64(),
        Some(shard_writes),
        "{integrity:#}"
    );
    assert!(
        integrity["rows_checked"].as_u64().unwrap() > 0,
        "{integrity:#}"
    );
    // Shard 0 probed the stack; the merged run has its figures.
    assert!(
        merged["probes"]["values"]["postgres.deadlocks"].is_number(),
        "{:#}",
        merged["probes"]
    );
}
