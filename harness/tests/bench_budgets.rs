//! Benchmark budgets checked on recorded criterion results
//! (`tests/data/criterion`, copied from real `cargo bench -p benches` runs of
//! this repository; see its README), never on live timings.

use std::path::PathBuf;

use harness::bench_budget::{BenchBudget, BudgetRule, CriterionResults, check};
use harness::suite::{Plan, PlanOptions};

fn recorded() -> CriterionResults {
    CriterionResults::read(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/criterion"))
        .unwrap()
}

fn budget(benchmark: &str, rule: &str) -> BenchBudget {
    BenchBudget {
        benchmark: benchmark.to_owned(),
        rule: rule.parse::<BudgetRule>().unwrap(),
        source: format!("{benchmark}: {rule}"),
    }
}

#[test]
fn benchmarks_are_found_by_full_id_not_by_directory_name() {
    let ids: Vec<String> = recorded().ids().map(str::to_owned).collect();
    // criterion stores `queries/rekap_rab/…` under `queries_rekap_rab/…`.
    assert!(
        ids.contains(&"queries/rekap_rab/aggregated".to_owned()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"queries/rekap_rab/per_row".to_owned()),
        "{ids:?}"
    );
    assert!(ids.contains(&"queries/kurva_s".to_owned()), "{ids:?}");
}

#[test]
fn a_time_budget_passes_under_and_fails_over_with_the_numbers() {
    let results = recorded();
    let held = check(
        &budget("queries/rekap_rab/aggregated", "mean < 25ms"),
        &results,
    )
    .unwrap()
    .unwrap();
    assert!(held.passed, "{}", held.detail);
    assert!(held.detail.contains("to spare"), "{}", held.detail);
    let broken = check(
        &budget("queries/rekap_rab/per_row", "mean < 25ms"),
        &results,
    )
    .unwrap()
    .unwrap();
    assert!(!broken.passed, "{}", broken.detail);
    assert!(
        broken.detail.contains("over") && broken.detail.contains("budget < 25.000 ms"),
        "{}",
        broken.detail
    );
    let median = check(&budget("queries/kurva_s", "median <= 1ms"), &results)
        .unwrap()
        .unwrap();
    assert!(
        !median.passed && median.detail.starts_with("median "),
        "{}",
        median.detail
    );
}

#[test]
fn no_regression_judges_the_recorded_runs_against_their_spread() {
    let results = recorded();
    // Real runs of the same code: 3.9 and 3.3 ms against 4.3, 3.9 and 3.3 ms.
    let same = check(
        &budget("queries/kurva_s", "no-regression against main"),
        &results,
    )
    .unwrap()
    .unwrap();
    assert!(same.passed, "{}", same.detail);
    // `main` of per_row holds the aggregated query's estimates: the code
    // before someone replaced one query by one per row.
    let slower = check(
        &budget("queries/rekap_rab/per_row", "no-regression against main"),
        &results,
    )
    .unwrap()
    .unwrap();
    assert!(!slower.passed, "{}", slower.detail);
    assert!(
        slower
            .detail
            .contains("slower beyond the spread and the 10 % tolerance"),
        "{}",
        slower.detail
    );
    assert!(
        slower.detail.contains("against `main`'s 3 runs ("),
        "{}",
        slower.detail
    );
    // Beyond the spread is not enough: a change inside the tolerance holds.
    let tolerated = check(
        &budget(
            "queries/rekap_rab/per_row",
            "no-regression against main within 100000%",
        ),
        &results,
    )
    .unwrap()
    .unwrap();
    assert!(tolerated.passed, "{}", tolerated.detail);
    assert!(
        tolerated
            .detail
            .contains("beyond the spread but within the 100000 % tolerance"),
        "{}",
        tolerated.detail
    );
}

#[test]
fn missing_estimates_say_what_to_run() {
    let results = recorded();
    let missing = check(&budget("queries/nope", "mean < 1ms"), &results)
        .unwrap()
        .unwrap_err();
    assert!(missing.0.contains("run `cargo bench` first"), "{missing}");
    let no_baseline = check(
        &budget("queries/kurva_s", "no-regression against v2"),
        &results,
    )
    .unwrap()
    .unwrap_err();
    assert!(
        no_baseline.0.contains("--save-baseline v2"),
        "{no_baseline}"
    );
    // One run of `main` gives no spread between runs: not judged, and says how to save more.
    let one_run = check(
        &budget("queries/rekap_rab/aggregated", "no-regression against main"),
        &results,
    )
    .unwrap()
    .unwrap_err();
    assert!(
        one_run.0.contains("is one run") && one_run.0.contains("--save-baseline main --runs 3"),
        "{one_run}"
    );
    let nothing = CriterionResults::read(&PathBuf::from("/nonexistent/criterion")).unwrap();
    assert_eq!(nothing.ids().count(), 0);
}

#[test]
fn suite_files_carry_budgets_and_reject_bad_ones_where_they_are() {
    let suite = r#"
[suite]
name = "budgets"
[load]
users = 1
duration = "1s"
[[task]]
name = "/"
get = "/"
[benchmarks]
"queries/kurva_s" = ["mean < 10ms", "no-regression against main"]
"harness/csrf_extraction" = "median <= 200us"
"#;
    let plan = Plan::from_source(suite, "budgets.toml", &PlanOptions::default()).unwrap();
    let sources: Vec<&str> = plan
        .bench_budgets
        .iter()
        .map(|b| b.source.as_str())
        .collect();
    assert_eq!(
        sources,
        [
            "queries/kurva_s: mean < 10ms",
            "queries/kurva_s: no-regression against main",
            "harness/csrf_extraction: median <= 200us"
        ]
    );
    let bad = suite.replace("median <= 200us", "p95 < 200us");
    let errors = Plan::from_source(&bad, "budgets.toml", &PlanOptions::default()).unwrap_err();
    let text = errors.to_string();
    assert!(text.contains("budgets.toml:12:29"), "{text}");
    assert!(text.contains("mean, median or slope"), "{text}");
}
