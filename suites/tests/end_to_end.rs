//! A short suite against the reference service on the real stack: the
//! requests the JSON result counts are the requests the target logged, the
//! CSV files carry Locust's exact headers, and every suite file is valid
//! under every standard profile.

use std::path::PathBuf;

use harness::report::locust::{FAILURES_COLUMNS, HISTORY_COLUMNS, STATS_COLUMNS};
use harness::run::{RunOptions, plan, run_suite};
use suites::ahsp::Ahsp;

/// The AHSP domain with the reference service from this crate's binary.
fn domain() -> Ahsp {
    Ahsp::target_binary(PathBuf::from(env!("CARGO_BIN_EXE_ahsp-target")), &[])
}

fn options(output: &str) -> RunOptions {
    RunOptions {
        profile: Some("ci".to_owned()),
        ..RunOptions::quiet(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/perf/tests")
                .join(output),
        )
    }
}

#[test]
fn every_suite_file_is_valid_under_every_standard_profile() {
    for path in suites::suite_files().unwrap() {
        for profile in ["ci", "full"] {
            let options = RunOptions {
                profile: Some(profile.to_owned()),
                ..options("plans")
            };
            if let Err(errors) = plan(&domain(), &path, &options) {
                panic!("{} under {profile}:\n{errors}", path.display());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_in_the_result_equal_the_requests_the_target_logged() {
    let run = run_suite(
        &domain(),
        &suites::find_suite("core").unwrap(),
        &options("end-to-end"),
    )
    .await
    .unwrap();
    let summary = &run.report.summary;
    let counted: u64 = summary
        .endpoints
        .iter()
        .chain(&summary.warm_up)
        .map(|e| e.requests)
        .sum();
    let log = std::fs::read_to_string(run.target_log.as_ref().unwrap()).unwrap();
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("access ") && !l.contains("route=/__ahsp"))
        .collect();
    assert!(
        counted > 100,
        "too short a run to compare: {counted} requests"
    );
    // Before the load, the query-budget phase sends each task alone (its
    // requests are in the report's query budgets) after one login (the
    // login form and its POST).
    let budgets = &run.report.query_budgets;
    assert!(!budgets.is_empty(), "core has query budgets");
    let isolated: u64 = budgets.iter().map(|b| b.requests).sum::<u64>() + 2;
    assert_eq!(
        counted + isolated,
        logged.len() as u64,
        "the JSON counts {counted} requests under load and {isolated} measured alone, the target logged {}",
        logged.len()
    );
    // Per route, too: task names are the routes with [id] for {id}.
    for endpoint in summary
        .endpoints
        .iter()
        .filter(|e| !e.meta.name.starts_with("[AUTH]"))
    {
        let route = endpoint
            .meta
            .name
            .replace("[id]", "{id}")
            .replace("[pekerjaan_id]", "{pekerjaan_id}");
        let route = route.split('?').next().unwrap();
        let in_log = logged
            .iter()
            .filter(|l| l.contains(&format!(" route={route} ")))
            .count() as u64;
        let warm: u64 = summary
            .warm_up
            .iter()
            .filter(|w| w.meta.name == endpoint.meta.name)
            .map(|w| w.requests)
            .sum();
        let alone: u64 = budgets
            .iter()
            .filter(|b| b.task == endpoint.meta.name)
            .map(|b| b.requests)
            .sum();
        assert_eq!(endpoint.requests + warm + alone, in_log, "{route}");
    }

    let header = |file: &str| -> Vec<String> {
        let mut reader = csv::Reader::from_path(run.dir.join(format!("core_{file}.csv"))).unwrap();
        reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(header("stats"), STATS_COLUMNS);
    assert_eq!(header("failures"), FAILURES_COLUMNS);
    assert_eq!(header("stats_history"), HISTORY_COLUMNS);
    // The last stats row is Locust's "Aggregated" one.
    let mut reader = csv::Reader::from_path(run.dir.join("core_stats.csv")).unwrap();
    let last = reader.records().last().unwrap().unwrap();
    assert_eq!(&last[1], "Aggregated");
    assert_eq!(last[2].parse::<u64>().unwrap(), summary.total.requests);
}
