//! chromedriver and the browser users it drives. One chromedriver per run
//! (its process group holds every Chromium it starts, so the probes measure
//! them as one tree and the end of the run kills them all); one WebDriver
//! session, one Chromium, per browser user.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use rand::SeedableRng as _;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::variables::{BrowserVars, extract_value};
use super::{
    BrowserSummary, BrowserWatch, Keep, Recorder, ResourceTiming, ViewOutcome, ViewTimings,
};
use crate::catalog::Scope;
use crate::engine::vu::EngineUser;
use crate::infra::ownership::{OwnedProcess, RunGuard};
use crate::suite::plan::{AuthPlan, BrowserPlan};

/// The Chromium binary: `AHSP_PERF_CHROMIUM`, else the first of Debian's,
/// Ubuntu's and Google's names found.
pub fn chromium_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AHSP_PERF_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// chromedriver: `AHSP_PERF_CHROMEDRIVER`, else `chromedriver` on the PATH
/// (Debian's `chromium-driver`; its version must match Chromium's).
fn chromedriver_binary() -> PathBuf {
    std::env::var_os("AHSP_PERF_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromedriver"))
}

/// Whether Chromium and chromedriver are there, with the fix when not.
pub fn preflight() -> anyhow::Result<()> {
    let chromium = chromium_binary().context(
        "[[browser]] needs Chromium and none was found (Debian: apt-get install chromium chromium-driver; or set AHSP_PERF_CHROMIUM)",
    )?;
    anyhow::ensure!(
        chromium.exists(),
        "[[browser]]: Chromium {} does not exist (AHSP_PERF_CHROMIUM)",
        chromium.display()
    );
    let driver = chromedriver_binary();
    let found = if driver.components().count() > 1 {
        driver.exists()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(&driver).is_file()))
    };
    anyhow::ensure!(
        found,
        "[[browser]] needs chromedriver and {} was not found (Debian: apt-get install chromium-driver; or set AHSP_PERF_CHROMEDRIVER to one matching your Chromium)",
        driver.display()
    );
    Ok(())
}

/// Chromium's flags: headless, no sandbox (CI runs as root), and bounded:
/// two renderer processes, a 256 MB JavaScript heap.
const CHROMIUM_ARGS: [&str; 14] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1366,900",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--renderer-process-limit=2",
    "--js-flags=--max-old-space-size=256",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
];

/// A running chromedriver.
#[derive(Debug)]
pub struct Driver {
    child: tokio::process::Child,
    pub url: String,
    pub pid: u32,
    chromium: PathBuf,
    /// chromedriver's process group, recorded before anything else happens:
    /// a run killed with SIGKILL leaves its browsers to `cargo xtask down`.
    run: Option<RunGuard>,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until it answers.
    pub async fn start() -> anyhow::Result<Driver> {
        let chromium = chromium_binary().context(
            "no Chromium found for [[browser]] (Debian: apt-get install chromium chromium-driver; or set AHSP_PERF_CHROMIUM)",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let program = chromedriver_binary();
        let mut run = RunGuard::new()?;
        let child = tokio::process::Command::new(&program)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} for [[browser]] (Debian: apt-get install chromium-driver; or set AHSP_PERF_CHROMEDRIVER)",
                    program.display()
                )
            })?;
        let pid = child.id().context("chromedriver exited at once")?;
        // Every Chromium is in chromedriver's group: none needs a clean
        // stop, all must go.
        run.update(|record| {
            record.processes.push(OwnedProcess::started(
                "browser",
                pid,
                nix::sys::signal::Signal::SIGKILL,
            ))
        })?;
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            pid,
            chromium,
            run: Some(run),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ready = client
                .get(format!("{}/status", driver.url))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                return Ok(driver);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "chromedriver did not answer on {} within 15s",
                driver.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new session: one Chromium.
    pub async fn session(&self) -> anyhow::Result<Client> {
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("pageLoadStrategy".into(), json!("normal"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": self.chromium, "args": CHROMIUM_ARGS }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .context("chromedriver did not start Chromium")?;
        Ok(client)
    }

    /// Kills chromedriver and every Chromium in its process group.
    pub async fn stop(mut self) {
        self.kill();
        let _ = self.child.wait().await;
        if let Some(run) = self.run.take() {
            run.forget();
        }
    }

    fn kill(&self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for Driver {
    /// A run that ends by an error path still takes its browsers with it.
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            self.kill();
            run.forget();
        }
    }
}

/// A DevTools command through chromedriver (`POST /session/{id}/goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "cmd": self.cmd, "params": self.params }).to_string()),
        )
    }
}

/// Installed before any script of every page: Largest Contentful Paint and
/// long tasks as they happen (long tasks are not buffered for a later observer).
const OBSERVE: &str = r#"(function () {
  var s = window.__ahspPerf = { lcp: 0, longTasks: [] };
  try { new PerformanceObserver(function (l) { l.getEntries().forEach(function (e) { s.lcp = e.startTime; }); })
    .observe({ type: "largest-contentful-paint", buffered: true }); } catch (e) {}
  try { new PerformanceObserver(function (l) { l.getEntries().forEach(function (e) { s.longTasks.push(e.duration); }); })
    .observe({ type: "longtask", buffered: true }); } catch (e) {}
})();"#;

/// Read when the page is ready, after two frames: what the page measured.
const COLLECT: &str = r#"var done = arguments[arguments.length - 1];
requestAnimationFrame(function () { requestAnimationFrame(function () { setTimeout(function () {
  var nav = performance.getEntriesByType("navigation")[0] || {};
  var s = window.__ahspPerf || { lcp: 0, longTasks: [] };
  var resources = performance.getEntriesByType("resource").map(function (r) {
    return { name: r.name, kind: r.initiatorType, start_ms: r.startTime, duration_ms: r.duration, bytes: r.transferSize || 0 };
  });
  done({ url: location.href, ttfb: nav.responseStart || 0, dcl: nav.domContentLoadedEventEnd || 0,
    load: nav.loadEventEnd || 0, status: nav.responseStatus || 0, doc_bytes: nav.transferSize || 0,
    lcp: s.lcp || 0, long_tasks: s.longTasks, resources: resources });
}, 50); }); });"#;

/// Fills and submits the login form in the page.
const LOGIN: &str = r#"var user = arguments[0], password = arguments[1], userField = arguments[2], passwordField = arguments[3];
var input = document.querySelector('input[name="' + passwordField + '"]');
if (!input || !input.form) return "no login form with a `" + passwordField + "` field";
var form = input.form;
if (!form.elements[userField]) return "the login form has no `" + userField + "` field";
form.elements[userField].value = user;
input.value = password;
if (form.requestSubmit) form.requestSubmit(); else form.submit();
return "";"#;

/// Everything the browser users need.
#[derive(Debug, Clone)]
pub struct BrowserInput {
    pub plans: Vec<BrowserPlan>,
    pub base_url: crate::secret::SecretUrl,
    pub auth: Option<AuthPlan>,
    pub users: Vec<EngineUser>,
    pub global: Arc<Scope>,
    pub seed: u64,
    /// Where screenshots go (`browser/` inside it).
    pub dir: PathBuf,
    /// Views that begin before it ends are not judged.
    pub warm_up: Duration,
}

impl BrowserInput {
    /// The recorder this input's users record into, from `started` (the
    /// load's first second): hand it to [`run`], and to what watches the
    /// run live.
    pub fn watch(&self, started: Instant) -> BrowserWatch {
        let pages: Vec<String> = self
            .plans
            .iter()
            .flat_map(|b| b.pages.iter().map(|p| p.name.clone()))
            .collect();
        let users = self.plans.iter().map(|plan| plan.users).sum();
        BrowserWatch::new(&pages, users, started, self.warm_up)
    }
}

/// Runs every browser user until `stop` turns true, recording into
/// `watch`; returns what they measured.
pub async fn run(
    driver: &Driver,
    input: BrowserInput,
    watch: &BrowserWatch,
    stop: watch::Receiver<bool>,
) -> BrowserSummary {
    let recorder = watch.recorder();
    let shots = input.dir.join("browser");
    let _ = std::fs::create_dir_all(&shots);
    let input = Arc::new(input);
    let mut tasks = tokio::task::JoinSet::new();
    let mut number = 0u32;
    let mut first_page = 0usize;
    for (group, plan) in input.plans.iter().enumerate() {
        for _ in 0..plan.users {
            let user = BrowserUser {
                input: input.clone(),
                group,
                number,
                first_page,
                recorder: recorder.clone(),
                shots: shots.clone(),
            };
            // Chromium starts one at a time: two starting at once on two
            // cores would each take the other's time.
            let session = driver.session().await;
            tasks.spawn(user.run(session, stop.clone()));
            number += 1;
        }
        first_page += plan.pages.len();
    }
    let mut version = String::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(v)) = done
            && version.is_empty()
        {
            version = v;
        }
    }
    // Every user has ended (joined above).
    watch.finish(version)
}

struct BrowserUser {
    input: Arc<BrowserInput>,
    group: usize,
    number: u32,
    /// The index of this group's first page among all pages.
    first_page: usize,
    recorder: Arc<Mutex<Recorder>>,
    shots: PathBuf,
}

impl BrowserUser {
    /// Returns the browser's version.
    async fn run(
        self,
        session: anyhow::Result<Client>,
        mut stop: watch::Receiver<bool>,
    ) -> Option<String> {
        let client = match session {
            Ok(client) => client,
            Err(error) => {
                self.stopped(&format!("{error:#}"));
                return None;
            }
        };
        let version = browser_version(&client).await;
        let outcome = tokio::select! {
            result = self.browse(&client) => result,
            _ = stop.wait_for(|s| *s) => Ok(()),
        };
        // `browse` only returns when the user cannot go on: the load has
        // not ended, so this user's share of it is missing.
        if let Err(error) = outcome {
            self.stopped(&format!("{error:#}"));
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
        Some(version)
    }

    fn error(&self, error: String) {
        self.recorder.lock().expect("not poisoned").error(error);
    }

    fn stopped(&self, reason: &str) {
        self.recorder
            .lock()
            .expect("not poisoned")
            .stopped(self.number, reason);
    }

    /// A view that could not be made: a failed view of its page, with why.
    fn not_made(&self, index: usize, reason: String) {
        self.recorder.lock().expect("not poisoned").view(
            index,
            Instant::now(),
            ViewOutcome::Failed {
                reason,
                timings: None,
            },
        );
    }

    async fn browse(&self, client: &Client) -> anyhow::Result<()> {
        let plan = &self.input.plans[self.group];
        // Without it there is no record of long tasks; LCP is still read.
        let observed = client
            .issue_cmd(Cdp {
                cmd: "Page.addScriptToEvaluateOnNewDocument",
                params: json!({ "source": OBSERVE }),
            })
            .await;
        if let Err(error) = observed {
            self.error(format!(
                "DevTools through chromedriver refused the page observer ({error}): no total blocking time"
            ));
        }
        let user = (!self.input.users.is_empty())
            .then(|| &self.input.users[self.number as usize % self.input.users.len()]);
        if plan.login
            && let (Some(auth), Some(user)) = (&self.input.auth, user)
        {
            let ok = match self.login(client, auth, user, plan.timeout).await {
                Ok(ok) => ok,
                Err(error) => {
                    self.not_made(self.first_page, format!("the login failed: {error:#}"));
                    return Err(error);
                }
            };
            self.recorder.lock().expect("not poisoned").login(ok);
            if !ok {
                let reason = format!("the login as {} did not succeed in the page", user.login);
                self.not_made(self.first_page, reason.clone());
                anyhow::bail!(reason);
            }
        }
        let mut random = rand_chacha::ChaCha8Rng::seed_from_u64(
            self.input.seed ^ (u64::from(self.number) << 32),
        );
        let empty = Scope::default();
        let scope = user.map_or(&empty, |u| &*u.scope);
        // What the pages extracted, for the pages after them; and why an
        // extract found nothing, for the view that then cannot be made.
        let mut extracted: HashMap<String, String> = HashMap::new();
        let mut not_found: HashMap<String, String> = HashMap::new();
        loop {
            for (i, page) in plan.pages.iter().enumerate() {
                let mut vars = BrowserVars {
                    scopes: [scope, &self.input.global],
                    chosen: extracted.clone(),
                    random: &mut random,
                };
                let index = self.first_page + i;
                let path = match page.path.render_to_string(&mut vars) {
                    Ok(path) => path,
                    Err(error) => {
                        let mut reason = format!("the page's path cannot be made: {error}");
                        for why in page.path.variables().filter_map(|v| not_found.get(v)) {
                            reason.push_str(&format!(" ({why})"));
                        }
                        self.not_made(index, reason);
                        tokio::time::sleep(plan.pause).await;
                        continue;
                    }
                };
                let url = format!(
                    "{}{}",
                    self.input.base_url.expose_secret().trim_end_matches('/'),
                    path
                );
                let began = Instant::now();
                let outcome = view(client, &url, page.ready.as_deref(), plan.timeout).await;
                if let ViewOutcome::Failed { reason, .. } = &outcome
                    && session_lost(reason)
                {
                    let reason = reason.clone();
                    self.recorder
                        .lock()
                        .expect("not poisoned")
                        .view(index, began, outcome);
                    anyhow::bail!("its browser is gone ({reason})");
                }
                let made = matches!(outcome, ViewOutcome::Measured(_));
                let keep = self
                    .recorder
                    .lock()
                    .expect("not poisoned")
                    .view(index, began, outcome);
                for extract in page.extract.iter().filter(|_| made) {
                    match extract_value(client, extract).await {
                        Ok(value) => {
                            not_found.remove(&extract.var);
                            extracted.insert(extract.var.clone(), value);
                        }
                        Err(why) => {
                            extracted.remove(&extract.var);
                            not_found.insert(
                                extract.var.clone(),
                                format!("page `{}` offered no `{}`: {why}", page.name, extract.var),
                            );
                        }
                    }
                }
                if keep != Keep::Nothing
                    && let Ok(png) = client.screenshot().await
                {
                    let file = format!(
                        "{}-{}.png",
                        slug(&page.name),
                        if keep == Keep::Worst {
                            "worst"
                        } else {
                            "failed"
                        }
                    );
                    if std::fs::write(self.shots.join(&file), png).is_ok() {
                        self.recorder.lock().expect("not poisoned").screenshot(
                            index,
                            keep,
                            format!("browser/{file}"),
                        );
                    }
                }
                tokio::time::sleep(plan.pause).await;
            }
        }
    }

    async fn login(
        &self,
        client: &Client,
        auth: &AuthPlan,
        user: &EngineUser,
        timeout: Duration,
    ) -> anyhow::Result<bool> {
        let mut random = rand_chacha::ChaCha8Rng::seed_from_u64(self.input.seed);
        let empty = Scope::default();
        let mut vars = BrowserVars {
            scopes: [&empty, &self.input.global],
            chosen: HashMap::new(),
            random: &mut random,
        };
        let path = auth
            .login_url
            .render_to_string(&mut vars)
            .map_err(|e| anyhow::anyhow!("login-url: {e}"))?;
        let url = format!(
            "{}{}",
            self.input.base_url.expose_secret().trim_end_matches('/'),
            path
        );
        client.goto(&url).await.context("opening the login page")?;
        let error = client
            .execute(
                LOGIN,
                vec![
                    json!(user.login),
                    json!(user.password.expose()),
                    json!(auth.user_field),
                    json!(auth.password_field),
                ],
            )
            .await
            .context("filling the login form")?;
        if let Some(error) = error.as_str().filter(|e| !e.is_empty()) {
            anyhow::bail!("{error}");
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let now = client.current_url().await?;
            if now.path() != path {
                return Ok(match &auth.success_location {
                    Some(location) => now.path() == location,
                    None => true,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(false)
    }
}

/// Whether a view failed because the browser itself is gone (Chromium
/// crashed, chromedriver died, the session was closed): going on would only
/// fail every view at once.
fn session_lost(reason: &str) -> bool {
    let reason = reason.to_lowercase();
    [
        "invalid session id",
        "session deleted",
        "chrome not reachable",
        "disconnected",
        "webdriver session has been lost",
        "connection refused",
        "tab crashed",
    ]
    .iter()
    .any(|sign| reason.contains(sign))
}

/// One page view: navigate (returns at the load event), wait for the ready
/// selector, collect what the page measured.
async fn view(client: &Client, url: &str, ready: Option<&str>, timeout: Duration) -> ViewOutcome {
    let navigated = tokio::time::timeout(timeout, client.goto(url)).await;
    match navigated {
        Err(_) => {
            return ViewOutcome::Failed {
                reason: format!(
                    "did not load within {}",
                    humantime::format_duration(timeout)
                ),
                timings: None,
            };
        }
        Ok(Err(error)) => {
            return ViewOutcome::Failed {
                reason: format!("navigation failed: {error}"),
                timings: None,
            };
        }
        Ok(Ok(())) => {}
    }
    let mut not_ready = None;
    if let Some(selector) = ready {
        let found = client
            .wait()
            .at_most(timeout)
            .every(Duration::from_millis(25))
            .for_element(Locator::Css(selector))
            .await;
        if found.is_err() {
            not_ready = Some(format!(
                "`{selector}` did not appear within {}",
                humantime::format_duration(timeout)
            ));
        }
    }
    let timings = match client.execute_async(COLLECT, Vec::new()).await {
        Ok(value) => timings(&value),
        Err(error) => {
            return ViewOutcome::Failed {
                reason: format!("reading the page's timings: {error}"),
                timings: None,
            };
        }
    };
    if let Some(reason) = not_ready {
        return ViewOutcome::Failed {
            reason,
            timings: Some(timings),
        };
    }
    if timings.status >= 400 {
        return ViewOutcome::Failed {
            reason: format!("the page answered HTTP {}", timings.status),
            timings: Some(timings),
        };
    }
    ViewOutcome::Measured(timings)
}

fn timings(value: &Value) -> ViewTimings {
    let number = |key: &str| value.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    let resources: Vec<ResourceTiming> = value
        .get("resources")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default();
    let long_tasks: Vec<f64> = value
        .get("long_tasks")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    ViewTimings {
        url: value
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        ttfb_ms: number("ttfb"),
        dcl_ms: number("dcl"),
        load_ms: number("load"),
        lcp_ms: number("lcp"),
        tbt_ms: long_tasks.iter().map(|d| (d - 50.0).max(0.0)).sum(),
        long_tasks_ms: long_tasks,
        requests: resources.len() as u64 + 1,
        bytes: number("doc_bytes") as u64 + resources.iter().map(|r| r.bytes).sum::<u64>(),
        status: number("status") as u16,
        resources,
    }
}

async fn browser_version(client: &Client) -> String {
    client
        .execute("return navigator.userAgent", Vec::new())
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .and_then(|ua| {
            ua.split_whitespace()
                .find(|part| part.starts_with("HeadlessChrome/") || part.starts_with("Chrome/"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "Chromium".to_owned())
}

/// A file name from a page name: `/dashboard/` → `dashboard`.
fn slug(name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let slug = slug
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    if slug.is_empty() { "root".into() } else { slug }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_make_file_names() {
        assert_eq!(slug("/dashboard/"), "dashboard");
        assert_eq!(
            slug("/detail_project/{project_id}/rekap-rab/"),
            "detail-project-project-id-rekap-rab"
        );
        assert_eq!(slug("/"), "root");
    }
}
