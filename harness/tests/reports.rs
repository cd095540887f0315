//! What people and tools read: the terminal summary (a snapshot), the JSON
//! result (valid against the committed schema), the Locust CSV files.

use harness::metrics::summary::{EndpointMeta, RunHeader, TaskSelection};
use harness::metrics::{Aggregator, FailureKind, Outcome, Recorder, RunSummary};
use harness::report::{RunReport, result_schema};
use harness::suite::{Plan, PlanOptions};

/// A run of three endpoints over three seconds, one of warm-up, with a
/// cluster of requests at a shared 100-second timeout.
fn recorded_summary() -> RunSummary {
    let metas = vec![
        EndpointMeta {
            name: "/dashboard/".into(),
            method: "GET".into(),
            tags: vec!["page".into()],
        },
        EndpointMeta {
            name: "/detail_project/[id]/rekap-rab/".into(),
            method: "GET".into(),
            tags: vec!["page".into()],
        },
        EndpointMeta {
            name: "[AUTH] login".into(),
            method: "POST".into(),
            tags: vec!["auth".into()],
        },
    ];
    let mut recorder = Recorder::new(metas.len());
    let mut aggregator = Aggregator::new(metas.len(), 1);
    let server_error = FailureKind::Status(500);
    for second in 0..3u64 {
        recorder.set_phase(if second == 0 {
            harness::metrics::Phase::WarmUp
        } else {
            harness::metrics::Phase::Measured
        });
        for i in 0..100u64 {
            recorder.record(
                0,
                2_000 + i * 37,
                5_000,
                Outcome::Success,
                second * 1000 + i,
            );
            let latency = if i % 25 == 0 {
                100_000_000 + i * 1000
            } else {
                30_000 + i * 200
            };
            let outcome = if i % 25 == 0 {
                Outcome::Failure {
                    kind: &server_error,
                    message: "GET /detail_project/7/rekap-rab/: 500 Internal Server Error",
                }
            } else {
                Outcome::Success
            };
            recorder.record(1, latency, 40_000, outcome, second * 1000 + i);
        }
        recorder.record(2, 45_000, 0, Outcome::Success, second * 1000);
        recorder.counters().login_attempts += 1;
        recorder.counters().login_successes += 1;
        recorder.counters().iterations += 200;
        let interval = recorder.take_interval();
        aggregator.add(
            second as usize,
            harness::metrics::Gauges {
                users: 10,
                ..Default::default()
            },
            &interval,
        );
    }
    aggregator.finish();
    let header = RunHeader {
        suite: "core".into(),
        profile: "ci".into(),
        target: "http://127.0.0.1:8000".into(),
        started_at: "2026-11-23T10:00:00Z".into(),
        warm_up_seconds: 1.0,
        measured_seconds: 2.0,
        max_users: 10,
        selection: TaskSelection {
            included: vec![
                "/dashboard/".into(),
                "/detail_project/[id]/rekap-rab/".into(),
            ],
            excluded: vec![(
                "/api/project/[id]/export/rekap-rab/csv/".into(),
                "tag `export` is excluded".into(),
            )],
            skipped_thresholds: Vec::new(),
        },
    };
    RunSummary::build(
        header,
        &metas,
        aggregator.warm_up(),
        aggregator.measured(),
        aggregator.series().to_vec(),
    )
}

fn recorded_report() -> RunReport {
    let suite = r#"
[suite]
name = "core"
[load]
users = 1
duration = "3s"
[[task]]
name = "/dashboard/"
get = "/dashboard/"
[[task]]
name = "/detail_project/[id]/rekap-rab/"
get = "/detail_project/1/rekap-rab/"
[thresholds]
"http.duration{name:/dashboard/}" = "p(95) < 200ms"
"http.duration" = ["p(99) < 2s", "max < 100s"]
"http.failed" = "rate < 1%"
"auth.success" = "rate > 99%"
"#;
    let plan = Plan::from_source(suite, "core.toml", &PlanOptions::default()).unwrap();
    let summary = recorded_summary();
    let thresholds = harness::verdict::evaluate(&summary, &plan.thresholds);
    RunReport::new(summary, thresholds)
}

#[test]
fn terminal_summary() {
    insta::assert_snapshot!(harness::report::terminal::render(&recorded_report()));
}

#[test]
fn the_committed_schema_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/result.schema.json");
    let generated = serde_json::to_string_pretty(&result_schema()).unwrap() + "\n";
    if std::env::var_os("AHSP_PERF_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "harness/schema/result.schema.json is stale: rerun with AHSP_PERF_UPDATE_SCHEMA=1"
    );
}

#[test]
fn the_json_result_validates_against_the_committed_schema_and_round_trips() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/result.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // boon: a validator of JSON Schema's drafts (this schema is schemars'
    // 2020-12) that compiles in a fraction of jsonschema's time.
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource("result.schema.json", schema).unwrap();
    let index = compiler
        .compile("result.schema.json", &mut schemas)
        .unwrap();
    let report = recorded_report();
    let json = serde_json::to_value(&report).unwrap();
    if let Err(error) = schemas.validate(&json, index) {
        panic!("result.json does not validate: {error:#}");
    }
    let back: RunReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
    // An object missing a required field is refused: the schema can fail.
    let mut broken = serde_json::to_value(&report).unwrap();
    broken.as_object_mut().unwrap().remove("summary");
    assert!(schemas.validate(&broken, index).is_err());
}

#[test]
fn verdicts_name_the_observed_value_and_the_margin() {
    let report = recorded_report();
    let failed: Vec<(&str, &str)> = report
        .thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| (t.source.as_str(), t.detail.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            // 2 % of requests end near 100 s: the p99 catches them, and so does the max.
            (
                "http.duration: p(99) < 2s",
                "observed 100.07s, 98.07s over the limit of 2000.0ms (402 requests)"
            ),
            (
                "http.duration: max < 100s",
                "observed 100.14s, 139.0ms over the limit of 100.00s (402 requests)"
            ),
            (
                "http.failed: rate < 1%",
                "observed 1.99%, 0.99% over the limit of 1.00% (8 of 402 requests)"
            ),
        ]
    );
}

#[test]
fn markdown_summary() {
    insta::assert_snapshot!(harness::report::markdown::render(&recorded_report()));
}

#[test]
fn junit_has_one_case_per_threshold_as_a_junit_parser_reads_it() {
    let report = recorded_report();
    let xml = harness::report::junit::render(&[&report]).unwrap();
    let parsed = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes())).unwrap();
    assert_eq!(parsed.suites.len(), 1);
    let suite = &parsed.suites[0];
    assert_eq!(suite.name, "core");
    assert_eq!(suite.cases.len(), report.thresholds.len());
    assert!(
        suite
            .cases
            .iter()
            .all(|c| c.classname.as_deref() == Some("ahsp-perf.core"))
    );
    let failed: Vec<&str> = suite
        .cases
        .iter()
        .filter(|c| c.status.is_failure())
        .map(|c| c.original_name.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "http.duration: p(99) < 2s",
            "http.duration: max < 100s",
            "http.failed: rate < 1%"
        ]
    );
    let failure = suite
        .cases
        .iter()
        .find(|c| c.original_name == "http.failed: rate < 1%")
        .unwrap()
        .status
        .failure_as_ref();
    assert_eq!(failure.message, "observed 1.99%");
    assert!(
        failure.text.contains("0.99% over the limit"),
        "{}",
        failure.text
    );
}

/// The HTML report as a browser shows it: headless Chromium renders it,
/// takes a screenshot, and the rendered page has its charts and tables and
/// logged no error.
#[test]
fn the_html_report_renders_in_chromium_with_charts_and_tables() {
    let dir = std::env::temp_dir().join(format!("ahsp-perf-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    std::fs::write(&page, harness::report::html::render(&recorded_report())).unwrap();
    let chromium = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("Chromium is installed (Debian: apt-get install chromium; .ci/run does)");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let profile = format!("--user-data-dir={}", dir.join("profile").display());
    let url = format!("file://{}", page.display());
    let dom = std::process::Command::new(chromium)
        .args(flags)
        .arg(&profile)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let shot = dir.join("report.png");
    let screenshot = std::process::Command::new(chromium)
        .args(flags)
        .arg(&profile)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1400,2400")
        .arg(&url)
        .output()
        .unwrap();
    let rendered = String::from_utf8_lossy(&dom.stdout);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&dom.stderr),
        String::from_utf8_lossy(&screenshot.stderr)
    );
    assert!(dom.status.success(), "chromium failed: {log}");
    assert!(
        rendered.contains(r#"<table id="thresholds">"#)
            && rendered.contains(r#"<table id="endpoints">"#),
        "tables missing"
    );
    for chart in [
        "chart-throughput",
        "chart-users",
        "chart-latency",
        "chart-endpoint-p95",
        "histogram-0",
    ] {
        assert!(
            rendered.contains(&format!(r#"id="{chart}""#)),
            "chart {chart} missing"
        );
    }
    assert!(
        rendered.matches("<polyline").count() >= 6,
        "too few chart lines"
    );
    assert!(
        !log.contains(":CONSOLE(") && !log.contains("Uncaught"),
        "the page logged errors: {log}"
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a blank screenshot ({} bytes)",
        png.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
