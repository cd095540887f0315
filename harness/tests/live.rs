//! The live series sent to a real Prometheus (Debian's 2.42, with its
//! remote-write receiver) while a suite runs, queried back through its HTTP
//! API and compared with `result.json`; and receivers that die or never
//! answer mid-run, which cost the run nothing but a counted number of
//! dropped samples.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use harness::run::domain::NoDomain;
use harness::run::{RunOptions, run_suite};

mod support;

/// Requests the server answered, for the run's own count to be checked.
fn server() -> (String, Arc<AtomicU64>) {
    let seen = Arc::new(AtomicU64::new(0));
    let (fast, slow) = (seen.clone(), seen.clone());
    let app = Router::new()
        .route(
            "/",
            get(move || async move {
                fast.fetch_add(1, Ordering::Relaxed);
                "home"
            }),
        )
        .route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(Duration::from_millis(15)).await;
                slow.fetch_add(1, Ordering::Relaxed);
                "slow"
            }),
        )
        // For the browser user: a page, not counted with the HTTP load's.
        .route(
            "/page",
            get(|| async {
                axum::response::Html(
                    "<!doctype html><title>page</title><h1 id=ready>A page for the browser</h1>",
                )
            }),
        );
    (support::serve(app), seen)
}

/// Debian's Prometheus on a free loopback port, its data in `dir`.
struct Prometheus {
    child: Child,
    base: String,
}

impl Prometheus {
    fn start(dir: &Path) -> Prometheus {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 15s\n").unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("prometheus: {e} (Debian's `prometheus` package; .ci/run installs it)")
            });
        let base = format!("http://127.0.0.1:{port}");
        let prometheus = Prometheus { child, base };
        for _ in 0..300 {
            if answers_ok(&format!("{}/-/ready", prometheus.base)) {
                return prometheus;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "prometheus did not become ready:\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
    }

    fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base)
    }

    /// The values of an instant query, each with its labels.
    async fn query(&self, query: &str) -> Vec<(serde_json::Value, f64)> {
        let answer: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", query)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        answer["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    /// The value of a query that must name exactly one series.
    async fn only(&self, query: &str) -> f64 {
        let answer = self.query(query).await;
        assert_eq!(answer.len(), 1, "{query}: {answer:?}");
        answer[0].1
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET url` answers 200, on a plain socket (the test's own
/// runtime is not running yet where it is asked).
fn answers_ok(url: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let url = url::Url::parse(url).unwrap();
    let address = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = write!(stream, "GET {} HTTP/1.0\r\nHost: x\r\n\r\n", url.path());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// A suite of 4 HTTP users for `seconds`, sending to `receivers`; with
/// `browser`, one browser user too, viewing `/page` in Chromium.
fn suite(
    dir: &Path,
    base: &str,
    receivers: &[String],
    seconds: u32,
    browser: bool,
) -> std::path::PathBuf {
    let list: Vec<String> = receivers.iter().map(|r| format!("\"{r}\"")).collect();
    let browser = if browser {
        "[[browser]]\nname = \"reader\"\nusers = 1\npause = \"200ms\"\n\
         [[browser.page]]\nname = \"/page\"\npath = \"/page\"\nready = \"#ready\"\n"
    } else {
        ""
    };
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[suite]
name = "live"
[target]
url = "{base}"
[load]
executor = "constant-users"
users = 4
duration = "{seconds}s"
warm-up = "1s"
think-time = "5ms..10ms"
[[task]]
name = "/"
get = "/"
[[task]]
name = "/slow"
get = "/slow"
[thresholds]
"http.duration" = "p(95) < 5s"
[metrics-out]
prometheus-rw = [{}]
labels = {{ team = "estimating" }}
{browser}"#,
            list.join(", ")
        ),
    )
    .unwrap();
    path
}

fn options(dir: &Path, run_id: &str) -> RunOptions {
    RunOptions {
        run_id: Some(run_id.to_owned()),
        ..RunOptions::quiet(dir.join("runs"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_the_runs_series_as_result_json_states_them() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(dir.path());
    let (base, seen) = server();
    let path = suite(dir.path(), &base, &[prometheus.write_url()], 6, true);
    let run = run_suite(&NoDomain, &path, &options(dir.path(), "live-a"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let report = &run.report;
    assert_eq!(report.exports.len(), 1, "{:?}", report.exports);
    let export = &report.exports[0];
    assert_eq!(export.dropped, 0, "{export:?}");
    assert!(export.sent > 0, "{export:?}");

    // The counts: every request of both phases, as the server saw them.
    let stored = prometheus
        .query(r#"ahsp_perf_requests_total{run_id="live-a",suite="live",team="estimating"}"#)
        .await;
    assert_eq!(stored.len(), 2, "one series per endpoint: {stored:?}");
    let summary = &report.summary;
    for (labels, value) in &stored {
        let endpoint = labels["endpoint"].as_str().unwrap();
        let measured = summary.endpoint(endpoint).unwrap().requests;
        let warm_up: u64 = summary
            .warm_up
            .iter()
            .filter(|e| e.meta.name == endpoint)
            .map(|e| e.requests)
            .sum();
        assert_eq!(*value, (measured + warm_up) as f64, "{endpoint}");
        assert_eq!(labels["job"], "ahsp-perf");
    }
    let total: f64 = stored.iter().map(|(_, v)| v).sum();
    assert_eq!(total, seen.load(Ordering::Relaxed) as f64);

    // The p95 the report states, to the microsecond.
    for endpoint in ["/slow", "Aggregated"] {
        let p95 = prometheus
            .only(&format!(
                r#"ahsp_perf_run_latency_seconds{{run_id="live-a",endpoint="{endpoint}",quantile="0.95"}}"#
            ))
            .await;
        let expected = match endpoint {
            "Aggregated" => summary.total.latency_ms.p95,
            name => summary.endpoint(name).unwrap().latency_ms.p95,
        };
        assert!(
            (p95 * 1000.0 - expected).abs() < 1e-9,
            "{endpoint}: Prometheus has {} ms, result.json {expected} ms",
            p95 * 1000.0
        );
    }

    // Sent while it ran, once a second: not only at the end.
    let users = prometheus
        .query(r#"count_over_time(ahsp_perf_users{run_id="live-a"}[5m])"#)
        .await;
    assert!(users[0].1 >= 5.0, "seconds of users stored: {users:?}");
    let threshold = prometheus
        .query(r#"ahsp_perf_threshold_passing{run_id="live-a"}"#)
        .await;
    // The suite's own and the defaults every suite gets, each holding.
    let named: Vec<&str> = threshold
        .iter()
        .map(|(labels, _)| labels["threshold"].as_str().unwrap())
        .collect();
    assert!(named.contains(&"http.duration: p(95) < 5s"), "{named:?}");
    for (labels, value) in &threshold {
        let source = labels["threshold"].as_str().unwrap();
        let judged = report.thresholds.iter().find(|t| t.source == source);
        assert_eq!(judged.map(|t| t.passed), Some(*value == 1.0), "{source}");
    }

    // The browser's views and timings, as result.json states them, sent
    // while the run ran too.
    let browser = summary.browser.as_ref().expect("the browser user ran");
    let page = &browser.pages[0];
    assert!(page.views > 0, "{browser:?}");
    let views = prometheus
        .only(r#"ahsp_perf_browser_views_total{run_id="live-a",page="/page"}"#)
        .await;
    assert_eq!(views, page.views as f64);
    let load = prometheus
        .only(r#"ahsp_perf_browser_timing_seconds{run_id="live-a",page="/page",timing="load",quantile="0.95"}"#)
        .await;
    let expected_ms = page.load.0.value_at_quantile(0.95) as f64 / 1000.0;
    assert!(
        (load * 1000.0 - expected_ms).abs() < 1e-6,
        "Prometheus has {} ms, result.json {expected_ms} ms",
        load * 1000.0
    );
    let seconds_with_views = prometheus
        .query(r#"count_over_time(ahsp_perf_browser_views_total{run_id="live-a"}[5m])"#)
        .await;
    assert!(
        seconds_with_views[0].1 >= 3.0,
        "seconds of browser views stored: {seconds_with_views:?}"
    );
    dashboard_answers(&prometheus, "live-a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_dies_or_never_answers_costs_the_run_only_a_count_of_dropped_samples() {
    let dir = tempfile::tempdir().unwrap();
    let mut prometheus = Prometheus::start(dir.path());
    // Accepts connections (the kernel's backlog) and never answers.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole = format!("http://{}/api/v1/write", black_hole.local_addr().unwrap());
    let (base, seen) = server();
    let path = suite(
        dir.path(),
        &base,
        &[prometheus.write_url(), hole.clone()],
        6,
        false,
    );
    let killer = {
        let pid = prometheus.child.id();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        })
    };
    let run = run_suite(&NoDomain, &path, &options(dir.path(), "live-b"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    killer.join().unwrap();
    let _ = prometheus.child.wait();
    let report = &run.report;
    // The run's own results are whole.
    let counted: u64 = report
        .summary
        .endpoints
        .iter()
        .chain(&report.summary.warm_up)
        .map(|e| e.requests)
        .sum();
    assert_eq!(counted, seen.load(Ordering::Relaxed));
    assert!(report.passed, "{:#?}", report.thresholds);
    let [killed, hole_report] = &report.exports[..] else {
        panic!("{:?}", report.exports)
    };
    assert!(
        killed.sent > 0,
        "it took samples before it died: {killed:?}"
    );
    assert!(killed.dropped > 0, "{killed:?}");
    assert_eq!(killed.sent + killed.dropped, killed.samples);
    assert_eq!(hole_report.url, hole);
    assert_eq!(hole_report.sent, 0, "{hole_report:?}");
    assert_eq!(hole_report.dropped, hole_report.samples);
    eprintln!("{}", report.notes.join("\n"));
    for export in &report.exports {
        let note = report
            .notes
            .iter()
            .find(|n| n.contains(&export.url))
            .unwrap_or_else(|| panic!("no note for {}: {:?}", export.url, report.notes));
        assert!(note.contains("samples dropped"), "{note}");
    }
    drop(black_hole);
}

/// The Grafana dashboard's queries (panels' and the run picker's).
fn dashboard_queries() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/ahsp-perf.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            queries.push(variable["query"].as_str().unwrap().to_owned());
        }
    }
    queries
}

/// The harness's series a query names.
fn series_named(query: &str) -> Vec<String> {
    regex::Regex::new(r"ahsp_perf_[a-z_]+")
        .unwrap()
        .find_iter(query)
        .map(|m| m.as_str().to_owned())
        .collect()
}

#[test]
fn every_dashboard_query_names_series_the_harness_writes() {
    let probes = harness::live::snapshot::probe_series();
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    for query in &queries {
        let named = series_named(query);
        assert!(
            !named.is_empty(),
            "`{query}` names no series of the harness"
        );
        for name in named {
            assert!(
                harness::live::snapshot::SERIES
                    .iter()
                    .any(|(s, _)| *s == name)
                    || probes.contains(&name),
                "`{query}`: the harness writes no `{name}`"
            );
        }
    }
}

/// Each dashboard query asked of a Prometheus that holds run `run_id`:
/// valid PromQL, and an answer for every series but the probes' (this run
/// has no stack to probe).
async fn dashboard_answers(prometheus: &Prometheus, run_id: &str) {
    let probes = harness::live::snapshot::probe_series();
    for query in dashboard_queries() {
        let concrete = query
            .replace("$run_id", run_id)
            .replace("$suite", ".*")
            .replace("$__rate_interval", "1m");
        let concrete = match concrete.strip_prefix("label_values(") {
            // Grafana's own function, not PromQL: the series it reads.
            Some(rest) => rest.split(',').next().unwrap().to_owned(),
            None => concrete,
        };
        let answer = prometheus.query(&concrete).await;
        // The probes' (this run has no stack) and the failures by kind
        // (it has no failure) are written only when there is something.
        let probed = series_named(&query)
            .iter()
            .any(|n| probes.contains(n) || n == "ahsp_perf_failures_by_kind_total");
        assert!(
            probed || !answer.is_empty(),
            "the dashboard's `{concrete}` found nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_opened_in_chromium_mid_run_shows_the_running_request_count() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = server();
    // With a browser user: its views show on the page too.
    let path = suite(dir.path(), &base, &[], 12, true);
    let address: std::net::SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let options = RunOptions {
        live: Some(address),
        ..options(dir.path(), "live-page")
    };
    let url = format!("http://{address}/");
    let watch = async {
        // The page answers from before the load; its figures from the
        // first second on.
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let page = client.get(&url).send().await.ok();
            if let Some(page) = page
                && page
                    .text()
                    .await
                    .unwrap_or_default()
                    .contains("live-requests")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let driver = harness::browser::driver::Driver::start().await.unwrap();
        let browser = driver.session().await.unwrap();
        browser.goto(&url).await.unwrap();
        let mut readings = Vec::new();
        let mut browser_views = 0;
        for _ in 0..2 {
            // One read of the page as it is (an event may replace it
            // between two WebDriver calls).
            let read = browser
                .execute(
                    r##"const s = document.getElementById("live-status");
                       const views = document.querySelector("#browser-pages tbody tr td:nth-child(2)");
                       return [s.dataset.second, document.getElementById("live-requests").textContent,
                               views ? views.textContent : "0"];"##,
                    vec![],
                )
                .await
                .unwrap();
            let second: u64 = read[0].as_str().unwrap().parse().unwrap();
            let requests = read[1].as_str().unwrap().to_owned();
            readings.push((second, requests.parse::<u64>().unwrap()));
            browser_views = read[2].as_str().unwrap().parse::<u64>().unwrap();
            // The page is not reloaded: what changes comes by its events.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let charts = browser
            .find_all(fantoccini::Locator::Css("#live svg"))
            .await
            .unwrap()
            .len();
        let _ = browser.close().await;
        driver.stop().await;
        (readings, charts, browser_views)
    };
    let (run, (readings, charts, browser_views)) =
        tokio::join!(run_suite(&NoDomain, &path, &options), watch);
    let run = run.unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "read off the page: (second, requests) {readings:?}, {charts} charts, {browser_views} browser views"
    );
    // The browser's views so far, mid-run: some, and no more than in the end.
    let views = run.report.summary.browser.as_ref().unwrap().pages[0].views;
    assert!(
        (1..=views).contains(&browser_views),
        "the page showed {browser_views} browser views; the run made {views}"
    );
    assert!(charts >= 3, "the report's charts: {charts}");
    let [(first_second, _), (later_second, _)] = readings[..] else {
        unreachable!()
    };
    assert!(
        later_second > first_second,
        "the page did not update by itself: {readings:?}"
    );
    // Each count the page showed is the run's own at that second.
    let series = &run.report.summary.series;
    for &(second, requests) in &readings {
        assert!(requests > 0, "{readings:?}");
        let point = series.iter().find(|p| p.second == second).unwrap();
        assert_eq!(point.totals.requests, requests, "second {second}");
    }
}
