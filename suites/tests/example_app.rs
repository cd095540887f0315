//! The example application under `examples/django-ahsp`: a real Django
//! app (PyPI's Django, gunicorn, psycopg, redis) that the harness starts by
//! its suite's `[target] command`, with the stack's URLs, and drives through
//! Django's own login (CSRF, sessions in Redis) and its pages.
//!
//! Needs the example's virtualenv: `cargo xtask examples` (which `cargo
//! xtask test` and `.ci/run` do first).

use std::path::{Path, PathBuf};

use harness::run::{RunOptions, run_suite};
use suites::ahsp::Ahsp;

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/django-ahsp")
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_django_example_started_by_command_logs_in_and_passes() {
    let dir = example_dir();
    assert!(
        dir.join(".venv/bin/gunicorn").exists(),
        "the example's virtualenv is missing: run `cargo xtask examples`"
    );
    let suite = dir.join("suite.toml");
    let text = std::fs::read_to_string(&suite).unwrap();
    let secret_key = text
        .split("DJANGO_SECRET_KEY = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the suite sets DJANGO_SECRET_KEY")
        .to_owned();

    let domain = Ahsp::target_binary(PathBuf::from(env!("CARGO_BIN_EXE_ahsp-target")), &[]);
    let output = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/perf/tests/example");
    let mut options = RunOptions::quiet(output);
    options.profile = Some("ci".to_owned());
    let run = run_suite(&domain, &suite, &options)
        .await
        .expect("the example runs");
    assert!(run.report.passed, "{:#?}", run.report.thresholds);

    // Django's own login, through its CSRF check, for every virtual user.
    let summary = &run.report.summary;
    let logins = summary.counters.login_attempts + summary.warm_up_counters.login_attempts;
    let successes = summary.counters.login_successes + summary.warm_up_counters.login_successes;
    assert!(
        logins > 0 && successes == logins,
        "{successes} of {logins} logins"
    );
    for name in [
        "/dashboard/",
        "/detail_project/[id]/rekap-rab/",
        "/api/project/[id]/list-pekerjaan/tree/",
    ] {
        let endpoint = summary
            .endpoints
            .iter()
            .find(|e| e.meta.name == name)
            .unwrap_or_else(|| panic!("no endpoint {name}"));
        assert!(endpoint.requests > 0, "{name}: no requests");
        assert_eq!(endpoint.failures, 0, "{name}: {:?}", endpoint.failure_kinds);
    }
    // The sessions live in the stack's Redis: every page after the login
    // reads one there.
    let probes = run.report.probes.as_ref().expect("probes ran");
    let hits = probes.values.get("redis.hits").copied().unwrap_or(0.0);
    assert!(hits > 0.0, "no Redis hits: {:?}", probes.values);

    // The app's own output is kept (gunicorn's access log), and the secret
    // the suite gave it is in no file.
    let log = std::fs::read_to_string(run.target_log.expect("a started target")).unwrap()
        + &std::fs::read_to_string(run.dir.join("target.stderr.log")).unwrap();
    assert!(log.contains("Booting worker"), "{log}");
    // Trace context: each slowest request the report names by its trace id
    // is in the app's own access log with that id.
    let mut traced = 0;
    for endpoint in &summary.endpoints {
        for request in &endpoint.slowest {
            traced += 1;
            assert!(
                log.contains(&format!("traceparent=00-{}-", request.trace_id)),
                "{} {}: trace {} is not in the app's log",
                endpoint.meta.name,
                request.latency_ms,
                request.trace_id
            );
        }
    }
    assert!(traced >= 3, "the report names {traced} traced requests");
    let rendered = harness::report::terminal::render(&run.report);
    assert!(
        rendered.contains("slowest requests, by trace id"),
        "{rendered}"
    );
    for file in files(&run.dir) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(
            !text.contains(&secret_key),
            "DJANGO_SECRET_KEY in {}",
            file.display()
        );
    }
}
