//! The load engine against a small real HTTP server on loopback: the counts
//! the engine reports equal the requests the server saw, logins are judged by
//! their outcome, open-model schedules are kept, and tasks extract and send
//! what they should.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use harness::catalog::{Catalog, Choice, Scope, Secret};
use harness::engine::vu::EngineUser;
use harness::engine::{EngineInput, run};
use harness::metrics::FailureKind;
use harness::suite::{Plan, PlanOptions};

mod support;

#[derive(Default)]
struct Seen {
    /// Route → requests.
    counts: Mutex<HashMap<&'static str, u64>>,
    /// Versions of items, for the write task.
    versions: Mutex<HashMap<u64, u64>>,
    saves: AtomicU64,
    /// Requests to `/stops-answering/` so far.
    answered_then_hung: AtomicU64,
}

impl Seen {
    fn count(&self, route: &'static str) {
        *self.counts.lock().unwrap().entry(route).or_default() += 1;
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split("; "))
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

const FORM: &str = r#"<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="TOKEN"><input name="login"><input name="password" type="password"></form>"#;

async fn login_form(State(seen): State<Arc<Seen>>) -> Response {
    seen.count("GET /login/");
    (
        [(header::SET_COOKIE, "csrftoken=TOKEN; Path=/")],
        axum::response::Html(FORM),
    )
        .into_response()
}

async fn login(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: String) -> Response {
    seen.count("POST /login/");
    let fields: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if fields.get("csrfmiddlewaretoken").map(String::as_str) != Some("TOKEN")
        || cookie(&headers, "csrftoken") != Some("TOKEN")
    {
        return (StatusCode::FORBIDDEN, "CSRF verification failed").into_response();
    }
    let user = fields.get("login").cloned().unwrap_or_default();
    if fields.get("password") != Some(&format!("pw-{user}")) {
        return axum::response::Html(format!("<p>wrong</p>{FORM}")).into_response();
    }
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, "/home/".to_owned()),
            (header::SET_COOKIE, format!("sessionid={user}; Path=/")),
        ],
    )
        .into_response()
}

async fn home(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> Response {
    seen.count("GET /home/");
    match cookie(&headers, "sessionid") {
        Some(user) => axum::response::Html(format!("<ul><li class=\"item\" data-id=\"7\">seven</li><li class=\"item\" data-id=\"8\">eight</li></ul>{user}")).into_response(),
        None => (StatusCode::FOUND, [(header::LOCATION, "/login/?next=/home/")]).into_response(),
    }
}

async fn item(State(seen): State<Arc<Seen>>, Path(id): Path<u64>) -> Response {
    seen.count("GET /items/{id}/");
    let version = *seen.versions.lock().unwrap().entry(id).or_insert(1);
    axum::Json(serde_json::json!({ "id": id, "version": version })).into_response()
}

async fn save(
    State(seen): State<Arc<Seen>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: String,
) -> Response {
    seen.count("POST /items/{id}/save/");
    if headers.get("x-csrftoken").and_then(|v| v.to_str().ok()) != Some("TOKEN") {
        return (StatusCode::FORBIDDEN, "no CSRF").into_response();
    }
    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let sent = body["version"].as_u64().unwrap_or(0);
    let mut versions = seen.versions.lock().unwrap();
    let current = versions.entry(id).or_insert(1);
    if sent != *current {
        return (
            StatusCode::CONFLICT,
            axum::Json(serde_json::json!({ "current_version": *current })),
        )
            .into_response();
    }
    *current += 1;
    seen.saves.fetch_add(1, Ordering::Relaxed);
    axum::Json(serde_json::json!({ "version": *current })).into_response()
}

async fn slow(State(seen): State<Arc<Seen>>) -> &'static str {
    seen.count("GET /slow/");
    tokio::time::sleep(Duration::from_millis(20)).await;
    "ok"
}

/// Answers its first requests, then hangs like a target whose Redis or
/// PgBouncer is gone and whose pool waits for ever.
async fn stops_answering(State(seen): State<Arc<Seen>>) -> &'static str {
    if seen.answered_then_hung.fetch_add(1, Ordering::Relaxed) >= 20 {
        std::future::pending::<()>().await;
    }
    "ok"
}

/// Starts the server on its own runtime thread; returns its base URL.
fn server() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/login/", get(login_form).post(login))
        .route("/home/", get(home))
        .route("/items/{id}/", get(item))
        .route("/items/{id}/save/", post(save))
        .route("/slow/", get(slow))
        .route("/stops-answering/", get(stops_answering))
        .with_state(seen.clone());
    (support::serve(app), seen)
}

fn users(n: usize, good_password: bool) -> Vec<EngineUser> {
    (0..n)
        .map(|i| {
            let login = format!("u{i}");
            let password = if good_password {
                format!("pw-{login}")
            } else {
                "nope".to_owned()
            };
            EngineUser {
                login,
                password: Secret::new(password),
                scope: Arc::new(Scope::default()),
            }
        })
        .collect()
}

const AUTH: &str = r#"
[auth]
login-url = "/login/"
success = { status = 302, location = "/home/", cookie = "sessionid" }
users = { from = "catalog" }
"#;

fn plan(body: &str) -> Arc<Plan> {
    let options = PlanOptions {
        catalog_variables: ["item_id".to_owned()].into(),
        ..PlanOptions::default()
    };
    Arc::new(Plan::from_source(body, "test.toml", &options).unwrap_or_else(|e| panic!("{e}")))
}

fn input(plan: Arc<Plan>, base_url: String, users: Vec<EngineUser>) -> EngineInput {
    let scope = Scope {
        vars: [(
            "item_id".to_owned(),
            vec![Choice::leaf("1"), Choice::leaf("2")],
        )]
        .into(),
    };
    let users = users
        .into_iter()
        .map(|u| EngineUser {
            scope: Arc::new(scope.clone()),
            ..u
        })
        .collect();
    EngineInput {
        plan,
        base_url: base_url.as_str().into(),
        users,
        global: Arc::new(Catalog::default().global),
        seed: 7,
        custom_tasks: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_equal_what_the_server_saw_and_writes_extract_their_version() {
    let (base, seen) = server();
    let plan = plan(&format!(
        r#"
[suite]
name = "engine"
{AUTH}
[load]
executor = "constant-users"
users = 6
duration = "2s"
workers = 2

[[task]]
name = "/home/"
weight = 2
get = "/home/"
expect = {{ css = "li.item" }}
extract = [{{ var = "listed", css = "li.item", attr = "data-id", all = true }}]

[[task]]
name = "/items/[id]/"
get = "/items/{{item_id}}/"
extract = [{{ var = "version", json = "/version" }}]

[[task]]
name = "/items/[id]/save/"
post = "/items/{{item_id}}/save/"
json = {{ version = "{{version|int}}" }}
expect = {{ status = [200, 409] }}
"#
    ));
    let output = run(input(plan, base, users(3, true)), None, None)
        .await
        .unwrap();
    let summary = output.summary;
    let counts = seen.counts.lock().unwrap().clone();
    let engine_count = |name: &str| -> u64 {
        summary
            .endpoints
            .iter()
            .chain(&summary.warm_up)
            .filter(|e| e.meta.name == name)
            .map(|e| e.requests)
            .sum()
    };
    assert_eq!(
        engine_count("[AUTH] login form /login/"),
        counts["GET /login/"]
    );
    assert_eq!(engine_count("[AUTH] login"), counts["POST /login/"]);
    assert_eq!(engine_count("/home/"), counts["GET /home/"]);
    assert_eq!(engine_count("/items/[id]/"), counts["GET /items/{id}/"]);
    assert_eq!(
        engine_count("/items/[id]/save/"),
        *counts.get("POST /items/{id}/save/").unwrap_or(&0)
    );
    assert_eq!(
        summary.counters.login_attempts,
        summary.counters.login_successes
    );
    assert_eq!(
        summary.counters.login_successes, 6,
        "every virtual user logs in once"
    );
    assert!(
        summary.total.requests > 50,
        "{} requests",
        summary.total.requests
    );
    // Saves either succeed (the version was current) or conflict — never fail.
    let saves = summary.endpoint("/items/[id]/save/").unwrap();
    assert_eq!(saves.failures, 0, "{:?}", saves.failure_kinds);
    // Saves sent before the user read a version are skipped, never sent with a made-up one.
    assert_eq!(
        saves.requests - saves.conflicts,
        seen.saves.load(Ordering::Relaxed)
    );
    assert_eq!(summary.max_users, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_failures_not_successes() {
    let (base, _seen) = server();
    let plan = plan(&format!(
        r#"
[suite]
name = "bad-logins"
{AUTH}
[load]
executor = "per-user-iterations"
users = 2
iterations = 3

[[task]]
name = "/home/"
get = "/home/"
"#
    ));
    let output = run(input(plan, base, users(2, false)), None, None)
        .await
        .unwrap();
    let summary = output.summary;
    assert_eq!(summary.counters.login_successes, 0);
    assert_eq!(summary.counters.login_attempts, 6);
    let login = summary.endpoint("[AUTH] login").unwrap();
    assert_eq!(login.failures, 6);
    assert_eq!(login.failure_kinds[0].kind, FailureKind::LoginPageReturned);
    assert!(
        login.failure_kinds[0].sample.contains("login form again"),
        "{}",
        login.failure_kinds[0].sample
    );
    assert!(
        !login.failure_kinds[0].sample.contains("nope"),
        "a password reached a failure sample"
    );
    // No task ran without a session.
    assert_eq!(summary.endpoint("/home/").unwrap().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arrival_rate_keeps_its_schedule_and_measures_from_it() {
    let (base, seen) = server();
    let plan = plan(
        r#"
[suite]
name = "open"

[load]
executor = "constant-arrival-rate"
rate = 40
duration = "2s"
pre-allocated-users = 4

[[task]]
name = "/slow/"
get = "/slow/"
"#,
    );
    let output = run(input(plan, base, Vec::new()), None, None)
        .await
        .unwrap();
    let summary = output.summary;
    let all = summary.total.requests + summary.warm_up.iter().map(|e| e.requests).sum::<u64>();
    // 40 per second for 2 s: 80 iterations are due, each sent or counted as dropped.
    assert_eq!(all + summary.counters.dropped_iterations, 80);
    assert_eq!(all, seen.counts.lock().unwrap()["GET /slow/"]);
    assert!(
        summary.total.latency_ms.min >= 20.0,
        "latency below the server's 20 ms: {:?}",
        summary.total.latency_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_is_a_stall_and_requests_cut_off_are_failures_with_their_wait() {
    let (base, _seen) = server();
    let plan = plan(
        r#"
[suite]
name = "hang"
[load]
executor = "constant-users"
users = 2
duration = "6s"
graceful-stop = "1s"

[[task]]
name = "/stops-answering/"
get = "/stops-answering/"
"#,
    );
    let thresholds = plan.thresholds.clone();
    let output = run(input(plan, base, Vec::new()), None, None)
        .await
        .unwrap();
    let summary = output.summary;

    // Both users hang from the first second to the end: every second after
    // the first few answers is a stall, and the series says why.
    let stalled: Vec<_> = summary.series.iter().filter(|p| p.stalled).collect();
    assert!(
        summary.stalls.longest_seconds >= 3,
        "longest stall {:?} in {:?}",
        summary.stalls,
        summary
            .series
            .iter()
            .map(|p| (p.requests, p.in_flight, p.oldest_in_flight_ms))
            .collect::<Vec<_>>()
    );
    assert!(stalled.iter().all(|p| p.in_flight == 2 && p.requests == 0));
    assert!(stalled.last().unwrap().oldest_in_flight_ms >= 2_000.0);

    // The two requests cut off at the end are failures of their own kind,
    // and their wait (a lower bound) is in the histogram.
    let endpoint = &summary.endpoints[0];
    let cut = endpoint
        .failure_kinds
        .iter()
        .find(|r| r.kind == FailureKind::Interrupted)
        .expect("interrupted requests are failures");
    assert_eq!(cut.count, 2);
    assert_eq!(summary.counters.interrupted_requests, 2);
    assert!(summary.counters.interrupted_longest_ms >= 5_000);
    assert!(
        endpoint.latency_ms.max >= 5_000.0,
        "{:?}",
        endpoint.latency_ms
    );
    assert!(summary.stalls.max_in_flight_age_ms >= 5_000.0);

    // The default stall threshold fails the run.
    let results = harness::verdict::evaluate(&summary, &thresholds);
    let stall = results
        .iter()
        .find(|r| r.metric == "http.longest-stall")
        .expect("the default stall threshold");
    assert!(!stall.passed, "{stall:?}");
}

/// A server that answers one request per connection, without saying
/// `Connection: close`, and closes the connection 20 ms later: an idle
/// keep-alive timeout (gunicorn's is 2 s), shortened. Returns its URL and
/// how many connections it accepted.
fn closes_idle_connections() -> (String, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let accepted = Arc::new(AtomicU64::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                });
            }
        });
    });
    (format!("http://{address}"), accepted)
}

/// The user's task drives its connection only while a request is in flight;
/// a connection the server closed while the user thought is seen before the
/// next request, which goes out on a new one instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_while_idle_is_replaced_not_failed() {
    let (base, accepted) = closes_idle_connections();
    let plan = plan(
        r#"
[suite]
name = "idle-close"
[load]
executor = "per-user-iterations"
users = 2
iterations = 10
think-time = "60ms..80ms"

[[task]]
name = "/"
get = "/"
"#,
    );
    let output = run(input(plan, base, Vec::new()), None, None)
        .await
        .unwrap();
    let summary = output.summary;
    let requests = summary.total.requests + summary.warm_up.iter().map(|e| e.requests).sum::<u64>();
    assert_eq!(requests, 20);
    assert_eq!(summary.total.failures, 0, "{:?}", summary.failures());
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        20,
        "one connection per request"
    );
}
