//! Nothing a run was given leaks: a password in the target's URL, the user
//! pool's passwords and a bearer token go through every command that writes
//! files (`perf` with `--save-baseline`, `--baseline`, `--ab` and `--shard`,
//! `perf merge`, `perf compare`, `perf import-locust`), and through a run
//! killed with SIGKILL in the middle; no file any of them wrote, and nothing
//! they printed, holds one. The target is a small HTTP application of this
//! test's own (a Django-like login with a CSRF token, a session cookie),
//! served on loopback, which is also how a user's own app looks to the
//! harness.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};

const TARGET_PASSWORD: &str = "target-pw-5c1e9a";
const POOL_PASSWORD: &str = "pool-pw-73b0de";
const BEARER: &str = "bearer-tok-8d2f41";
const SECRETS: [&str; 3] = [TARGET_PASSWORD, POOL_PASSWORD, BEARER];

/// The application: a login form with a CSRF token, a login that redirects
/// with a session cookie when the password is right, and pages.
async fn answer(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body);
    let page = |status: u16, text: &str| {
        Response::builder()
            .status(status)
            .header("content-type", "text/html")
            .body(Full::new(Bytes::from(text.to_owned())))
            .unwrap()
    };
    let form = r#"<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="form-token-1234"><input name="login"><input name="password" type="password"></form>"#;
    let response = match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/accounts/login/") => {
            let mut response = page(200, form);
            response.headers_mut().insert(
                "set-cookie",
                "csrftoken=cookie-token-1234; Path=/".parse().unwrap(),
            );
            response
        }
        ("POST", "/accounts/login/") if body.contains(POOL_PASSWORD) => Response::builder()
            .status(302)
            .header("location", "/dashboard/")
            .header("set-cookie", "sessionid=session-5678; Path=/")
            .body(Full::new(Bytes::new()))
            .unwrap(),
        ("POST", "/accounts/login/") => page(200, form),
        _ => page(200, "<html><body>ok</body></html>"),
    };
    Ok(response)
}

/// Serves the application on a free loopback port, on a thread of its own.
fn serve() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(stream),
                            hyper::service::service_fn(answer),
                        )
                        .await;
                });
            }
        });
    });
    address
}

fn xtask(state: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .env("AHSP_PERF_STATE_DIR", state)
        .env("RUST_BACKTRACE", "0")
        .env("NO_COLOR", "1");
    command
}

/// Runs `command`; its output must not hold a secret, and its exit code must be `code`.
fn run(command: &mut Command, code: i32, what: &str) -> Output {
    let output = command.output().unwrap();
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(code), "{what}:\n{printed}");
    for secret in SECRETS {
        assert!(
            !printed.contains(secret),
            "{what} printed `{secret}`:\n{printed}"
        );
    }
    output
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Each `file: secret` where a file under `dir` holds a secret.
fn leaks(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .flat_map(|file| {
            let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            SECRETS
                .iter()
                .filter(|secret| text.contains(**secret))
                .map(|secret| format!("{}: {secret}", file.display()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The run folders directly under `dir` (each holds a `result.json` or a `shard.json`).
fn runs_in(dir: &Path) -> Vec<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    runs.sort();
    runs
}

/// The login through the pool's passwords and the task with the bearer
/// token: what both suites of this test load with.
fn secret_load(duration: &str, think_time: &str) -> String {
    format!(
        r#"[auth]
login-url = "/accounts/login/"
success = {{ status = 302, location = "/dashboard/", cookie = "sessionid" }}
users = {{ from = "file", path = "users.csv" }}
[load]
executor = "constant-users"
users = 2
duration = "{duration}"
think-time = "{think_time}"
[[task]]
name = "/dashboard/"
get = "/dashboard/"
headers = {{ Authorization = "Bearer {BEARER}" }}
"#
    )
}

fn suite(work: &Path, address: SocketAddr, duration: &str) -> PathBuf {
    std::fs::write(
        work.join("users.csv"),
        format!("ana,{POOL_PASSWORD}\nbudi,{POOL_PASSWORD}\n"),
    )
    .unwrap();
    let path = work.join(format!("leak-{duration}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[suite]
name = "leak"
[target]
url = "http://bob:{TARGET_PASSWORD}@{address}/"
{}"#,
            secret_load(duration, "10ms")
        ),
    )
    .unwrap();
    path
}

/// An application the run starts: Python's http.server with the same
/// routes, logging secrets as a careless application does.
const APP: &str = r#"
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

print("starting with APP_SECRET_KEY=" + os.environ["APP_SECRET_KEY"], file=sys.stderr, flush=True)
FORM = b'<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="form-token-1234"><input name="login"><input name="password"></form>'

class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body=b"ok", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        print("GET", self.path, "Authorization:", self.headers.get("Authorization"), file=sys.stderr, flush=True)
        if self.path == "/accounts/login/":
            self.reply(200, FORM, [("Set-Cookie", "csrftoken=cookie-token-1234; Path=/")])
        else:
            self.reply(200)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        print("POST", self.path, "body:", body, file=sys.stderr, flush=True)
        if os.environ["POOL_PASSWORD"] in body:
            self.reply(302, b"", [("Location", "/dashboard/"), ("Set-Cookie", "sessionid=session-5678; Path=/")])
        else:
            self.reply(200, FORM)

    def log_message(self, *args):
        print(self.address_string(), *args, file=sys.stdout, flush=True)

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), App).serve_forever()
"#;

fn app_suite(work: &Path) -> PathBuf {
    std::fs::write(work.join("app.py"), APP).unwrap();
    let path = work.join("leak-app.toml");
    std::fs::write(
        &path,
        format!(
            r#"[suite]
name = "leak-app"
[target]
command = ["python3", "app.py"]
env = {{ APP_SECRET_KEY = "{TARGET_PASSWORD}", POOL_PASSWORD = "{POOL_PASSWORD}" }}
{}"#,
            secret_load("60s", "50ms")
        ),
    )
    .unwrap();
    path
}

#[test]
fn no_command_writes_or_prints_a_secret_it_was_given() {
    let address = serve();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let state = work.join("state");
    let suite_file = suite(work, address, "2s");
    let suite_arg = suite_file.to_str().unwrap();
    let baselines = work.join("perf-baselines");
    let baselines_arg = baselines.to_str().unwrap();
    let out = |name: &str| work.join(name).to_str().unwrap().to_owned();

    run(
        xtask(&state)
            .args(["perf", suite_arg, "--output", &out("saved")])
            .args(["--save-baseline", "leak", "--baseline-dir", baselines_arg]),
        0,
        "perf --save-baseline",
    );
    run(
        xtask(&state)
            .args(["perf", suite_arg, "--output", &out("judged")])
            .args(["--baseline", "leak", "--baseline-dir", baselines_arg]),
        0,
        "perf --baseline",
    );
    let url = format!("http://bob:{TARGET_PASSWORD}@{address}/");
    run(
        xtask(&state)
            .args(["perf", suite_arg, "--output", &out("ab")])
            .args(["--ab", &url, &url]),
        0,
        "perf --ab",
    );
    let start = (std::time::SystemTime::now() + Duration::from_secs(3))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let shards: Vec<_> = (0..2)
        .map(|i| {
            xtask(&state)
                .args(["perf", suite_arg, "--output", &out(&format!("shard{i}"))])
                .args([
                    "--shard",
                    &format!("{i}/2"),
                    "--start-at",
                    &format!("{start:.3}"),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, shard) in shards.into_iter().enumerate() {
        let output = shard.wait_with_output().unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "shard {i}:\n{printed}");
        assert!(
            SECRETS.iter().all(|s| !printed.contains(s)),
            "shard {i} printed a secret:\n{printed}"
        );
    }
    let shard_dirs: Vec<String> = (0..2)
        .flat_map(|i| runs_in(&work.join(format!("shard{i}"))))
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    run(
        xtask(&state)
            .args(["perf", "merge"])
            .args(&shard_dirs)
            .args(["--output", &out("merged"), "--save-baseline", "merged"])
            .args(["--baseline-dir", baselines_arg]),
        0,
        "perf merge",
    );
    let saved = runs_in(&work.join("saved"));
    let judged = runs_in(&work.join("judged"));
    run(
        xtask(&state).args([
            "perf",
            "compare",
            saved[0].to_str().unwrap(),
            judged[0].to_str().unwrap(),
        ]),
        0,
        "perf compare",
    );
    let locust = work.join("locust_stats.csv");
    std::fs::write(
        &locust,
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\nGET,/dashboard/,100,0,10,11,5,40,100,10,0,10,11,12,13,15,20,25,30,40,40,40\n,Aggregated,100,0,10,11,5,40,100,10,0,10,11,12,13,15,20,25,30,40,40,40\n",
    )
    .unwrap();
    run(
        xtask(&state)
            .args(["perf", "import-locust", locust.to_str().unwrap()])
            .args([
                "--as",
                "locust",
                "--suite",
                suite_arg,
                "--baseline-dir",
                baselines_arg,
            ]),
        0,
        "perf import-locust",
    );

    // Killed in the middle: nothing sweeps afterwards, so what is on disk
    // must have been safe as it was written. The application is started by
    // the run (its output is captured) and logs what a careless app logs:
    // its secret setting, each request's Authorization header and body.
    let killed_suite = app_suite(work);
    let mut killed = xtask(&state)
        .args([
            "perf",
            killed_suite.to_str().unwrap(),
            "--output",
            &out("killed"),
        ])
        // The application needs a stack: local binaries start in seconds.
        .args(["--infra", "native"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let logged_a_request = || {
        files(&work.join("killed")).iter().any(|f| {
            f.ends_with("target.stderr.log")
                && std::fs::read_to_string(f).is_ok_and(|t| t.contains("Authorization"))
        })
    };
    while !logged_a_request() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(logged_a_request(), "the application never logged a request");
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = killed.wait();
    run(xtask(&state).args(["down"]), 0, "down after SIGKILL");

    for folder in [
        "saved", "judged", "ab", "shard0", "shard1", "merged", "killed",
    ] {
        assert!(
            !files(&work.join(folder)).is_empty(),
            "{folder}: the command wrote nothing, so the search proves nothing"
        );
    }
    assert!(files(&baselines).len() >= 3, "{:?}", files(&baselines));
    let found = leaks(work)
        .into_iter()
        // The suite and the user file are the user's own inputs.
        .filter(|leak| !leak.contains("leak-") && !leak.contains("users.csv"))
        .collect::<Vec<_>>();
    assert!(found.is_empty(), "secrets in files:\n{}", found.join("\n"));
}
