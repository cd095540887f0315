//! The harness against a stack it did not start, visited with an
//! application's ordinary roles: a PostgreSQL role with SELECT on its
//! tables and nothing more, no place in PgBouncer's console, a Redis user
//! without CONFIG. The run must go through, name what it could not read
//! with the grant for each, and leave none of the roles' secrets in any
//! file it wrote.

use std::path::{Path, PathBuf};

use harness::db::{admin_command, admin_connect};
use harness::infra::{InfraConfig, Stack};
use harness::run::Domain as _;
use harness::run::{RunOptions, run_suite};
use suites::ahsp::Ahsp;

fn domain() -> Ahsp {
    Ahsp::target_binary(PathBuf::from(env!("CARGO_BIN_EXE_ahsp-target")), &[])
}

const PG_SECRET: &str = "reader-secret-7f3a";
const REDIS_SECRET: &str = "cache-secret-91b2";

fn with_user(url: &str, user: &str, password: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_username(user).unwrap();
    parsed.set_password(Some(password)).unwrap();
    parsed.to_string()
}

/// Each (file, secret) where a file under `dir` holds one of `secrets`.
fn secrets_in(dir: &Path, secrets: &[&str]) -> Vec<(PathBuf, String)> {
    files(dir)
        .into_iter()
        .flat_map(|file| {
            let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            secrets
                .iter()
                .filter(|secret| text.contains(**secret))
                .map(|secret| (file.clone(), (*secret).to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
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
async fn an_external_stack_visited_with_ordinary_roles_runs_and_names_each_grant() {
    // The user's stack: the harness starts it here only to have one.
    let stack = Stack::start(&InfraConfig::default()).await.unwrap();
    let urls = stack.urls().clone();
    domain()
        .seed(&urls.database_url, "ci", 42, None)
        .await
        .unwrap();
    let mut superuser = admin_connect(&urls.database_url).await.unwrap();
    for statement in [
        format!("CREATE ROLE app_reader LOGIN PASSWORD '{PG_SECRET}'"),
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_reader".to_owned(),
    ] {
        admin_command(&mut superuser, &statement).await.unwrap();
    }
    let client = redis::Client::open(urls.redis_url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app_cache")
        .arg("on")
        .arg(format!(">{REDIS_SECRET}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-@admin")
        .query_async(&mut redis)
        .await
        .unwrap();

    // The suite a user writes for it: their app by command, the stack by
    // URL, one setting of their own asked for.
    let database_url = with_user(&urls.database_url, "app_reader", PG_SECRET);
    let admin_url = with_user(&urls.pgbouncer_admin_url, "app_reader", PG_SECRET);
    let redis_url = with_user(&urls.redis_url, "app_cache", REDIS_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("own.toml");
    std::fs::write(
        &suite,
        format!(
            r#"
[suite]
name = "own-app"

[target]
command = ["{target}", "--listen", "127.0.0.1:{{port}}", "--quiet"]
ready-url = "/health/ready/"

[infra]
provider = "external"
[infra.postgres]
shared-preload-libraries = ["pg_stat_statements"]
[infra.external]
database-url = "{database_url}"
pgbouncer-url = "{pgbouncer_url}"
pgbouncer-admin-url = "{admin_url}"
redis-url = "{redis_url}"

[data.sql]
project_id = "SELECT id FROM projects ORDER BY id LIMIT 5"

[load]
users = 2
duration = "4s"

[[task]]
name = "/health/ready/"
get = "/health/ready/?project={{project_id}}"

[thresholds]
"http.failed" = "rate == 0%"
"#,
            target = env!("CARGO_BIN_EXE_ahsp-target"),
            pgbouncer_url = urls.pgbouncer_url,
        ),
    )
    .unwrap();

    let output = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/perf/tests/own-app");
    let run = run_suite(&domain(), &suite, &RunOptions::quiet(output)).await;
    stack.stop().await.unwrap();
    let run = run.expect("an ordinary role never refuses a run");
    assert!(run.report.passed, "{:#?}", run.report.thresholds);
    let notes = run.report.notes.join("\n");
    for grant in [
        "GRANT pg_read_all_settings TO app_reader",
        "GRANT pg_read_all_stats TO app_reader",
        "list app_reader in PgBouncer's stats_users",
        "allow +config|get in the Redis user's ACL",
    ] {
        assert!(notes.contains(grant), "no `{grant}` in the notes:\n{notes}");
    }
    // Only the setting the suite asked for is compared, and it could not be read.
    assert!(
        notes.contains("could not be read back: postgres shared_preload_libraries"),
        "{notes}"
    );
    assert!(
        !notes.contains("fsync"),
        "a default blamed on the user:\n{notes}"
    );

    let found = secrets_in(&run.dir, &[PG_SECRET, REDIS_SECRET]);
    assert!(
        found.is_empty(),
        "passwords of the stack's URLs in files: {found:?}"
    );
}

/// A secret in every place a user can put one: the target URL's userinfo,
/// the user pool's passwords (a file), a task's `Authorization` header, a
/// token in a task's path the suite's `[secrets] patterns` names, a password
/// in a query string the service answers 404 to (so it is in the failure
/// samples), and what the traffic carries (session cookies, CSRF tokens).
/// No file the run writes may hold any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_file_the_run_writes() {
    let stack = Stack::start(&InfraConfig::default()).await.unwrap();
    let urls = stack.urls().clone();
    let catalog = domain()
        .seed(&urls.database_url, "ci", 42, None)
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut target = tokio::process::Command::new(env!("CARGO_BIN_EXE_ahsp-target"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--quiet"])
        .env("PGBOUNCER_URL", &urls.pgbouncer_url)
        .env("REDIS_URL", &urls.redis_url)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the service never listened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let users: Vec<(String, String)> = catalog
        .users
        .iter()
        .take(3)
        .map(|u| (u.login.clone(), u.password.expose().to_owned()))
        .collect();
    let pool = dir.path().join("users.csv");
    let lines: Vec<String> = users.iter().map(|(l, p)| format!("{l},{p}")).collect();
    std::fs::write(&pool, lines.join("\n") + "\n").unwrap();
    const URL_SECRET: &str = "url-secret-5d1e";
    const HEADER_SECRET: &str = "header-secret-88aa";
    const PATTERN_SECRET: &str = "tok_patsecret0001";
    const QUERY_SECRET: &str = "query-secret-1234";
    let suite = dir.path().join("secrets.toml");
    std::fs::write(
        &suite,
        format!(
            r#"
[suite]
name = "secrets"

[target]
url = "http://probe:{URL_SECRET}@127.0.0.1:{port}"

[auth]
login-url = "/accounts/login/"
success = {{ status = 302, location = "/dashboard/", cookie = "sessionid" }}
users = {{ from = "file", path = "{pool}" }}

[secrets]
patterns = ["tok_[a-z0-9]{{13}}"]

[load]
users = 3
duration = "3s"

[[task]]
name = "/dashboard/ {PATTERN_SECRET}"
get = "/dashboard/?token={PATTERN_SECRET}"
headers = {{ Authorization = "Bearer {HEADER_SECRET}" }}

[[task]]
name = "/missing/"
get = "/missing/?password={QUERY_SECRET}"
"#,
            pool = pool.display(),
        ),
    )
    .unwrap();
    let output = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/perf/tests/secrets");
    let run = run_suite(&domain(), &suite, &RunOptions::quiet(output)).await;
    let _ = target.kill().await;
    stack.stop().await.unwrap();
    let run = run.unwrap();
    // The run did what puts secrets at risk: it logged in and met failures.
    let summary = &run.report.summary;
    assert!(
        summary.total.requests > 0 && summary.total.failures > 0,
        "{summary:#?}"
    );

    let mut secrets: Vec<String> = users.into_iter().map(|(_, p)| p).collect();
    secrets.extend([URL_SECRET, HEADER_SECRET, PATTERN_SECRET, QUERY_SECRET].map(String::from));
    let written = files(&run.dir);
    assert!(written.len() >= 6, "{written:?}");
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let found = secrets_in(&run.dir, &secrets);
    assert!(found.is_empty(), "secrets in files: {found:?}");
    for file in written {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        // What only the traffic carries: a session id or a CSRF token value.
        for marker in ["sessionid=", "csrftoken=", "csrfmiddlewaretoken\" value=\""] {
            if let Some(at) = text.find(marker) {
                let value = &text[at + marker.len()..];
                assert!(
                    value.starts_with("***") || value.starts_with(';') || value.starts_with('"'),
                    "{} holds a {marker} value: {}",
                    file.display(),
                    &value[..value.len().min(40)]
                );
            }
        }
    }
}
