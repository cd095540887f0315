//! The baseline gate on real runs: a baseline saved from one run, an
//! unchanged rerun passes the gate, and the reference service's slow-query
//! switch on rekap-rab fails it on that endpoint and no other endpoint's
//! latency. The run's own Locust `_stats.csv`, imported as a baseline, gates
//! the unchanged rerun the same way.

use std::path::{Path, PathBuf};

use harness::baseline::{self, Baseline, Comparison, GateSettings, Metric, SuiteBaseline, Verdict};
use harness::run::{RunOptions, SuiteRun, run_suite};
use suites::ahsp::Ahsp;

const REKAP: &str = "GET /detail_project/[id]/rekap-rab/";
const DASHBOARD: &str = "GET /dashboard/";

/// The AHSP domain with the reference service from this crate's binary.
fn domain() -> Ahsp {
    Ahsp::target_binary(PathBuf::from(env!("CARGO_BIN_EXE_ahsp-target")), &[])
}

fn options(switches: &[&str]) -> RunOptions {
    RunOptions {
        switches: switches.iter().map(|s| s.to_string()).collect(),
        ..RunOptions::quiet(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/perf/gate"))
    }
}

async fn run(switches: &[&str]) -> SuiteRun {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proof/baseline_gate.toml");
    run_suite(&domain(), &path, &options(switches))
        .await
        .unwrap_or_else(|e| panic!("baseline_gate {switches:?}: {e:#}"))
}

fn gate(baseline: &Baseline, run: &SuiteRun) -> Comparison {
    let suite = &run.report.summary.suite;
    let comparison = baseline::compare(
        &baseline.name,
        suite,
        &baseline.suites[suite],
        &SuiteBaseline::from_run(&run.report.summary),
        &GateSettings::default(),
    );
    eprintln!(
        "{}",
        harness::report::gate::render_markdown(&comparison, &GateSettings::default())
    );
    comparison
}

fn stats_csv(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().ends_with("_stats.csv"))
        .expect("the run wrote a Locust _stats.csv")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_passes_an_unchanged_rerun_and_fails_a_slow_query_on_its_endpoint() {
    let baselines = tempfile::tempdir().unwrap();

    let first = run(&[]).await;
    let suite = first.report.summary.suite.clone();
    let mut saved = Baseline::new("main");
    saved.suites.insert(
        suite.clone(),
        SuiteBaseline::from_run(&first.report.summary),
    );
    saved.save(baselines.path()).unwrap();
    let main = Baseline::load(baselines.path(), "main").unwrap();
    let rekap = &main.suites[&suite].endpoints[REKAP];
    assert!(rekap.noise.is_some(), "a run's baseline carries its noise");
    assert!(
        rekap.requests >= 100,
        "too few requests to judge p95: {}",
        rekap.requests
    );

    let unchanged = run(&[]).await;
    let comparison = gate(&main, &unchanged);
    assert!(
        comparison.passed(),
        "an unchanged rerun regressed: {:#?}",
        comparison.worse().collect::<Vec<_>>()
    );
    assert!(
        comparison.rows.iter().any(|row| row.endpoint == REKAP
            && row.metric == Metric::P95
            && row.verdict == Verdict::Same),
        "p95 of rekap-rab was not judged"
    );

    let from_locust = baseline::import_locust(&stats_csv(&first.dir), &suite, "locust").unwrap();
    let comparison = gate(&from_locust, &unchanged);
    assert!(comparison.missing.is_empty() && comparison.new.is_empty());
    assert!(
        comparison.passed(),
        "an unchanged rerun regressed against the imported Locust CSV: {:#?}",
        comparison.worse().collect::<Vec<_>>()
    );

    let slow = run(&["slow-query=rekap-rab:300ms"]).await;
    let comparison = gate(&main, &slow);
    assert!(!comparison.passed(), "the slow query passed the gate");
    let worse_latency: Vec<(&str, Metric)> = comparison
        .worse()
        .filter(|row| matches!(row.metric, Metric::P50 | Metric::P95 | Metric::P99))
        .map(|row| (row.endpoint.as_str(), row.metric))
        .collect();
    assert!(
        worse_latency.contains(&(REKAP, Metric::P50))
            && worse_latency.contains(&(REKAP, Metric::P95)),
        "rekap-rab's latency is not named: {worse_latency:?}"
    );
    assert!(
        worse_latency
            .iter()
            .all(|(endpoint, _)| *endpoint != DASHBOARD),
        "the dashboard's latency was blamed: {worse_latency:?}"
    );
    let table = harness::report::gate::render_markdown(&comparison, &GateSettings::default());
    assert!(table.contains("gate FAILED"));
    let first_row = table.lines().find(|line| line.starts_with("| `")).unwrap();
    assert!(
        first_row.contains(REKAP) && first_row.contains("WORSE"),
        "regressions come first: {first_row}"
    );
}
