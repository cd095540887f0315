//! The proof: for every pathology the reference service can switch on, and
//! for PgBouncer pool exhaustion, the matching suite (a) fails the intended
//! threshold, (b) names the cause in the diagnosis, and (c) passes with the
//! switch off. This is what makes the harness trustworthy.

use std::path::PathBuf;

use harness::baseline::{Metric, Verdict};
use harness::report::RunReport;
use harness::run::{RunOptions, SetOptions, run_set, run_suite};
use suites::ahsp::Ahsp;

/// Load tests side by side would measure each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The AHSP domain with the reference service from this crate's binary.
fn domain() -> Ahsp {
    Ahsp::target_binary(PathBuf::from(env!("CARGO_BIN_EXE_ahsp-target")), &[])
}

fn options(switches: &[&str]) -> RunOptions {
    RunOptions {
        switches: switches.iter().map(|s| s.to_string()).collect(),
        ..RunOptions::quiet(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/perf/proof"))
    }
}

fn suite_path(suite: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("proof")
        .join(format!("{suite}.toml"))
}

async fn run(suite: &str, switches: &[&str]) -> RunReport {
    let run = run_suite(&domain(), &suite_path(suite), &options(switches))
        .await
        .unwrap_or_else(|e| panic!("{suite} {switches:?}: {e:#}"));
    eprintln!("{}", harness::report::terminal::render(&run.report));
    run.report
}

/// Every threshold that did not hold, with its detail.
fn failed_thresholds(report: &RunReport) -> Vec<String> {
    report
        .thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| format!("{}: {}", t.source, t.detail))
        .collect()
}

/// Runs `suite` with the switches on and off: on, the threshold whose source
/// starts with `threshold` fails and its diagnosis mentions `cause`; off,
/// every threshold holds.
async fn prove(suite: &str, switches: &[&str], threshold: &str, cause: &str) {
    let _one = ONE_AT_A_TIME.lock().await;
    let on = run(suite, switches).await;
    let failing = on
        .thresholds
        .iter()
        .find(|t| t.source.starts_with(threshold))
        .unwrap_or_else(|| panic!("{suite}: no threshold `{threshold}`"));
    assert!(
        !failing.passed,
        "{suite} with {switches:?}: `{}` held ({})",
        failing.source, failing.observed_text
    );
    let diagnosis = failing.diagnosis.join("\n");
    assert!(
        diagnosis.to_lowercase().contains(&cause.to_lowercase()),
        "{suite} with {switches:?}: the diagnosis of `{}` does not mention {cause:?}:\n{diagnosis}",
        failing.source
    );
    eprintln!(
        "diagnosis of {}:\n  {}",
        failing.source,
        failing.diagnosis.join("\n  ")
    );
    let off = run(suite, &[]).await;
    let broken = failed_thresholds(&off);
    assert!(
        broken.is_empty(),
        "{suite} without switches should pass: {broken:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_plus_one_exceeds_the_query_budget() {
    prove("queries", &["n-plus-one"], "queries_per_request", "N+1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_off_sends_cached_pages_to_the_database() {
    prove("cache", &["cache-off"], "queries_per_request", "cache").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rate_limit_is_its_own_failure_kind() {
    prove(
        "rate_limit",
        &["login-rate-limit=3"],
        "failures{kind:rate-limited}",
        "limits login attempts per IP",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_fails_its_endpoint_and_is_named() {
    prove(
        "slow_query",
        &["slow-query=rekap-rab:300ms"],
        "http.duration{name:/detail_project/[id]/rekap-rab/}",
        "pg_sleep",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_waits_cluster_at_a_shared_timeout() {
    prove(
        "lock_wait",
        &["lock-wait=1s"],
        "http.duration: max",
        "shared timeout",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_optimistic_locking_loses_updates() {
    prove(
        "lost_updates",
        &["skip-optimistic-lock"],
        "integrity.lost-updates",
        "lost update",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_on_client_metrics_rejects_every_beacon() {
    prove(
        "csrf",
        &["csrf-client-metrics"],
        "failures{kind:csrf-rejected}",
        "CSRF",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_leak_drains_the_pool() {
    prove(
        "leak",
        &["connection-leak=3"],
        "http.failed",
        "not given back",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_storm_exhausts_a_tiny_pool() {
    prove(
        "pool_exhaustion",
        &["slow-query=login:1s"],
        "auth.success",
        "query_wait_timeout",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_fails_on_the_stall_and_a_short_pause_recovers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let killed = run("redis_killed", &[]).await;
    let stall = killed
        .thresholds
        .iter()
        .find(|t| t.metric == "http.longest-stall")
        .expect("every suite has the stall threshold");
    assert!(!stall.passed, "a killed Redis passed: {stall:?}");
    let diagnosis = stall.diagnosis.join("\n");
    assert!(
        diagnosis.contains("stopped answering the probes: redis"),
        "the diagnosis does not name Redis:\n{diagnosis}"
    );
    assert!(
        killed
            .notes
            .iter()
            .any(|n| n.starts_with("fault: kill redis")),
        "{:?}",
        killed.notes
    );
    assert!(killed.summary.counters.interrupted_requests > 0);
    eprintln!(
        "diagnosis of {}:\n  {}",
        stall.source,
        stall.diagnosis.join("\n  ")
    );

    let paused = run("redis_paused", &[]).await;
    let broken = failed_thresholds(&paused);
    assert!(
        broken.is_empty(),
        "a one-second pause of Redis should pass: {broken:#?}"
    );
    let window = &paused.summary.faults[0];
    assert!(
        window.fault.starts_with("pause redis") && window.to_second.is_some(),
        "{window:?}"
    );
}

/// The threshold whose source starts with `source`.
fn threshold<'a>(report: &'a RunReport, source: &str) -> &'a harness::verdict::ThresholdResult {
    report
        .thresholds
        .iter()
        .find(|t| t.source.starts_with(source))
        .unwrap_or_else(|| panic!("no threshold `{source}`"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_with_fail_fast_counts_failures_instead_of_hanging() {
    let _one = ONE_AT_A_TIME.lock().await;
    let killed = run("redis_killed", &["fail-fast"]).await;
    let stall = threshold(&killed, "http.longest-stall");
    assert!(stall.passed, "failing fast should not stall: {stall:?}");
    let total = &killed.summary.total;
    assert!(total.failures > 0, "a dead Redis must fail requests");
    assert!(
        total
            .failure_kinds
            .iter()
            .any(|k| k.kind.name() == "http-500"),
        "{:?}",
        total.failure_kinds
    );
    assert_eq!(killed.summary.counters.interrupted_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_loses_the_sessions_and_the_users_recover() {
    let _one = ONE_AT_A_TIME.lock().await;
    let report = run("redis_restarted", &["fail-fast"]).await;
    let broken = failed_thresholds(&report);
    assert!(broken.is_empty(), "{broken:#?}");
    let counters = &report.summary.counters;
    let warm = &report.summary.warm_up_counters;
    // Sessions lived in Redis: each user logged in again after the restart.
    assert!(
        counters.login_attempts + warm.login_attempts > 3,
        "no user logged in again: {counters:?}"
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("recovery after restart redis"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_of_pgbouncer_and_postgres_fail_only_in_their_windows_and_lose_no_write() {
    let _one = ONE_AT_A_TIME.lock().await;
    let report = run("restarts", &["fail-fast"]).await;
    let broken = failed_thresholds(&report);
    assert!(broken.is_empty(), "{broken:#?}");
    let summary = &report.summary;
    let recoveries = summary.recoveries();
    assert_eq!(recoveries.len(), 2);
    // Every failing second lies in a fault's window or its recovery.
    for point in summary.series.iter().filter(|p| p.failures > 0) {
        let second = point.second as f64;
        let explained = summary
            .faults
            .iter()
            .zip(&recoveries)
            .any(|(fault, recovery)| {
                let end = fault.to_second.unwrap_or(f64::INFINITY)
                    + recovery.after_seconds.unwrap_or(0.0)
                    + 1.0;
                second + 1.0 > fault.from_second && second < end
            });
        assert!(
            explained,
            "{} failures in second {second}, outside every fault: {:?}",
            point.failures, summary.faults
        );
    }
    assert!(summary.extra["integrity.acknowledged-writes"] > 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_on_the_database_path_is_named_as_the_path() {
    let _one = ONE_AT_A_TIME.lock().await;
    let report = run("db_latency", &[]).await;
    let during = threshold(&report, "http.duration{phase:fault}");
    assert!(!during.passed, "100 ms on the path passed: {during:?}");
    let diagnosis = during.diagnosis.join("\n");
    assert!(
        diagnosis.contains("network path to pgbouncer")
            && diagnosis.contains("not in a slow statement"),
        "the diagnosis does not name the path:\n{diagnosis}"
    );
    assert!(
        !diagnosis.contains("slowest statement"),
        "a slow path blamed on a statement:\n{diagnosis}"
    );
    assert!(threshold(&report, "http.duration{phase:after-fault}").passed);
    assert!(threshold(&report, "recovery.time").passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_target_is_caught_as_a_stall_and_recovers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let report = run("target_paused", &[]).await;
    let stall = threshold(&report, "http.longest-stall");
    assert!(!stall.passed, "a six-second pause passed: {stall:?}");
    let diagnosis = stall.diagnosis.join("\n");
    assert!(
        diagnosis.contains("pause target")
            && diagnosis.contains("there but stopped")
            && diagnosis.contains("the target itself stopped"),
        "the diagnosis does not name the paused target:\n{diagnosis}"
    );
    assert!(threshold(&report, "recovery.time").passed);
    assert!(threshold(&report, "http.failed{phase:after-fault}").passed);
}

/// A slow front end: the server answers the dashboard fast, the page's
/// script holds the browser's main thread, and LCP fails with the browser's
/// share and the long tasks named; every report format carries the pages'
/// timings, and the HTML embeds the worst view's screenshot. Without the
/// switch, every threshold holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_front_end_fails_lcp_in_the_browser_not_the_server() {
    let _one = ONE_AT_A_TIME.lock().await;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proof/slow_front_end.toml");
    let on = run_suite(&domain(), &path, &options(&["slow-script=2s"]))
        .await
        .expect("the slow front end runs");
    eprintln!("{}", harness::report::terminal::render(&on.report));
    let lcp = threshold(&on.report, "browser.lcp{page:/dashboard/}");
    assert!(!lcp.passed, "a 2 s script passed LCP: {lcp:?}");
    let diagnosis = lcp.diagnosis.join("\n");
    assert!(
        diagnosis.contains("in the browser, not the server") && diagnosis.contains("long tasks"),
        "the diagnosis does not name the browser's time and its long tasks:\n{diagnosis}"
    );
    assert!(
        threshold(&on.report, "http.duration{name:/dashboard/}").passed,
        "the server was slow too: the proof is about the front end"
    );
    let browser = on.report.summary.browser.as_ref().expect("browsers ran");
    assert_eq!((browser.logins_succeeded, browser.logins_attempted), (1, 1));
    let dashboard = &browser.pages[0];
    assert!(
        dashboard.views > 0 && dashboard.failed == 0,
        "{dashboard:?}"
    );
    let worst = dashboard.worst.as_ref().expect("a worst view");
    assert!(
        worst.long_tasks_ms.iter().any(|t| *t >= 1900.0),
        "no long task of the script's 2 s: {:?}",
        worst.long_tasks_ms
    );
    assert!(
        worst
            .resources
            .iter()
            .any(|r| r.name.ends_with("/chart-data/") && r.kind == "fetch")
            && worst
                .resources
                .iter()
                .any(|r| r.name.ends_with("/static/ahsp.css")),
        "the page's fetch and style sheet are not among its resources: {:?}",
        worst.resources
    );
    let file = |name: &str| std::fs::read_to_string(on.dir.join(name)).unwrap();
    let html = file("report.html");
    assert!(
        html.contains(r#"id="browser-pages""#)
            && html.contains(r#"id="waterfall-0""#)
            && html.contains("data:image/png;base64,"),
        "the HTML lacks the browser table, the waterfall or the screenshot"
    );
    assert!(file("summary.md").contains("**Pages in real browsers**"));
    assert!(file("junit.xml").contains("browser.lcp.p95{page:/dashboard/}"));
    assert!(file("result.json").contains("\"browser\""));
    assert!(on.dir.join("browser/dashboard-worst.png").exists());

    let off = run("slow_front_end", &[]).await;
    let broken = failed_thresholds(&off);
    assert!(
        broken.is_empty(),
        "the front end without the switch should pass: {broken:#?}"
    );
}

/// Two known capacities and the gate between them, as `perf --ab` runs
/// them: PgBouncer's pool of 4, held 200 ms by every request of the one
/// route, caps it at 4 / 0.2 s = 20 a second (arm A); held 350 ms, at
/// 11.4 (arm B, 43 % less). Each search finds its capacity within ±15 %,
/// states an interval around it and names the pool at the first step that
/// failed; the gate fails B on its capacity alone, though each run's own
/// thresholds hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_searches_find_a_pools_known_capacities_and_the_gate_fails_the_loss() {
    let _one = ONE_AT_A_TIME.lock().await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/perf/proof/capacity-ab");
    let _ = std::fs::remove_dir_all(&root);
    let baselines = tempfile::tempdir().unwrap();
    let arm = |hold: &str| {
        format!("reference+slow-query=rekap-rab:{hold}")
            .parse()
            .unwrap()
    };
    let options = SetOptions {
        ab: Some((arm("200ms"), arm("350ms"))),
        ..SetOptions::new(RunOptions::quiet(root.clone()), baselines.path().to_owned())
    };
    let outcome = run_set(&domain(), &[suite_path("capacity_pool")], &options)
        .await
        .unwrap_or_else(|e| panic!("capacity_pool --ab: {e:#}"));
    assert!(outcome.broken.is_empty(), "{:?}", outcome.broken);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|dir| dir.join("result.json").exists())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 2, "one search an arm: {dirs:?}");
    for (dir, hold) in dirs.iter().zip([0.200, 0.350]) {
        let json = std::fs::read_to_string(dir.join("result.json")).unwrap();
        let report: RunReport = serde_json::from_str(&json).unwrap();
        eprintln!("{}", harness::report::terminal::render(&report));
        check_known_capacity(&report, 4.0 / hold);
    }
    let (_, comparison) = &outcome.comparisons[0];
    eprintln!(
        "{}",
        harness::report::gate::render_markdown(comparison, &options.gate.settings)
    );
    assert_eq!(
        comparison.rows.len(),
        1,
        "the capacity alone: {comparison:#?}"
    );
    let row = &comparison.rows[0];
    assert_eq!(row.metric, Metric::Capacity);
    assert_eq!(row.verdict, Verdict::Worse, "{row:#?}");
    assert_eq!(outcome.regressed, ["proof-capacity-pool (capacity)"]);
    assert!(outcome.failed.is_empty(), "each run's thresholds hold");
}

/// A pool proof's search: within ±15 % of `known`, an interval around it,
/// the pool named at the first step that failed, nothing at or above that
/// step run after it, and `capacity.rate > 5` held.
#[track_caller]
fn check_known_capacity(report: &RunReport, known: f64) {
    let capacity = report.capacity.as_ref().expect("a capacity search");
    let rate = capacity.rate.expect("a step held");
    assert!(
        (rate - known).abs() <= 0.15 * known,
        "capacity {rate:.1}/s, known {known:.1}/s: {}",
        capacity.line()
    );
    let (low, high) = (
        capacity.low.expect("a step held clearly"),
        capacity.high.expect("a step broke"),
    );
    assert!(low <= rate && rate < high, "{}", capacity.line());
    let causes = first_causes_name(capacity, "waiting for a server connection on a pool of 4");
    let steps: Vec<f64> = capacity.steps.iter().map(|s| s.rate).collect();
    let first_failed = capacity
        .steps
        .iter()
        .position(|s| !s.passed)
        .expect("a failed step");
    assert!(
        steps[first_failed + 1..]
            .iter()
            .all(|r| *r < steps[first_failed]),
        "{steps:?}"
    );
    assert!(
        report.passed,
        "`capacity.rate` > 5 holds: {:#?}",
        failed_thresholds(report)
    );
    eprintln!("known {known:.1}/s: {}\n{causes}", capacity.line());
}

/// The causes named at the first step that failed, which must mention `what`.
#[track_caller]
fn first_causes_name(capacity: &harness::capacity::CapacityReport, what: &str) -> String {
    let broken = capacity.first_broken.as_ref().expect("a step failed");
    let causes = broken.causes.join("\n");
    assert!(
        causes.contains(what),
        "the cause at {:.1}/s does not mention {what:?}:\n{causes}",
        broken.rate
    );
    causes
}

/// A capacity the CPU sets: every iteration logs in, and with `noisy` each
/// login hashes Django's 600,000 PBKDF2 iterations on the target. The known
/// capacity is the machine's cores over one login's time at the lowest
/// step, where the target had a core to spare for it (the hash, measured in
/// the target itself and in this run, as the machine's speed moves between
/// runs). The search finds it within ±15 % and names the CPU.
///
/// Not in CI (`--run-ignored only` runs it): the target shares the CPU it
/// measures with the tests beside it, and one measured sample is too few
/// to say how often it would fail there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "CPU-bound: run with --run-ignored only on a quiet machine"]
async fn a_capacity_search_finds_the_cpus_known_capacity_and_names_the_cpu() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let report = run("capacity_cpu", &["noisy"]).await;
    let capacity = report.capacity.as_ref().expect("a capacity search");
    let lowest = capacity
        .steps
        .iter()
        .min_by(|a, b| a.rate.total_cmp(&b.rate))
        .expect("a step");
    let login_ms = lowest
        .endpoints
        .iter()
        .find(|e| e.name == "[AUTH] login")
        .expect("logins at the lowest step")
        .p50_ms;
    let known = cores / (login_ms / 1000.0);
    let rate = capacity.rate.expect("a step held");
    eprintln!(
        "one login {login_ms:.0} ms at {:.1}/s, known {known:.2} iterations/s; {}",
        lowest.rate,
        capacity.line()
    );
    assert!(
        (rate - known).abs() <= 0.15 * known,
        "capacity {rate:.1}/s, known {known:.1}/s: {}",
        capacity.line()
    );
    // `every-iteration`: a login for every iteration, not one per user.
    let counters = &report.summary.counters;
    assert!(
        counters.login_attempts >= counters.iterations,
        "{} logins for {} iterations",
        counters.login_attempts,
        counters.iterations
    );
    first_causes_name(capacity, "CPU");
}
