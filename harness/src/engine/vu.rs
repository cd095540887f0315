//! A virtual user: its HTTP client and cookies, its variables, its random
//! source, and what it does — log in, then run tasks, checking and
//! extracting from every response.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use http::header::{ORIGIN, REFERER};
use rand::Rng as _;
use rand::seq::IndexedRandom as _;
use serde::{Deserialize, Serialize};

use super::http::{Client, Response, content_type, form_body, snippet};
use crate::catalog::{Scope, Secret};
use crate::metrics::{FailureKind, Outcome, Recorder};
use crate::suite::plan::{AuthPlan, BodyPlan, ExtractHow, HttpTask, Plan, TaskPlan};
use crate::suite::template::{Function, RenderError, Template, Variables, call_with};

/// A user to log in as, with what they can see.
#[derive(Debug, Clone)]
pub struct EngineUser {
    pub login: String,
    pub password: Secret,
    pub scope: Arc<Scope>,
}

/// A response value to compare with what SQL says, after the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthSample {
    pub task: String,
    /// The truth's query with this request's values in it.
    pub sql: String,
    pub observed: String,
    pub tolerance: f64,
    pub at_ms: u64,
}

/// At most this many samples per worker and task: enough to catch silent
/// wrong results, bounded however long the run.
const MAX_TRUTH_SAMPLES: usize = 200;

/// A write the target acknowledged (2xx), for the integrity check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckedWrite {
    pub task: String,
    pub key: String,
    pub sent_version: String,
    pub fields: Vec<(String, String)>,
    /// Milliseconds since the start of the run, at acknowledgement.
    pub at_ms: u64,
    pub vu: u64,
}

/// What every virtual user of one worker shares. Workers run on
/// current-thread runtimes, so a `RefCell` is enough: nothing holds a borrow
/// across an await.
#[derive(Debug)]
pub struct WorkerShared {
    pub(crate) plan: Arc<Plan>,
    pub(crate) origin: Arc<super::http::Origin>,
    pub(crate) recorder: RefCell<Recorder>,
    pub(crate) writes: RefCell<Vec<AckedWrite>>,
    pub(crate) truths: RefCell<Vec<TruthSample>>,
    pub(crate) global: Arc<Scope>,
    pub(crate) started: Instant,
}

impl WorkerShared {
    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// A variable's value: one, or a list to sample from (an `all = true` extraction).
#[derive(Debug, Clone)]
enum VarValue {
    One(String),
    Many(Vec<String>),
}

/// One virtual user.
#[derive(Debug)]
pub struct VirtualUser {
    pub id: u64,
    pub(crate) client: Client,
    user: Option<EngineUser>,
    logged_in: bool,
    vars: HashMap<String, VarValue>,
    pub(crate) rng: rand_chacha::ChaCha8Rng,
    iteration: u64,
    /// Catalog paths to each variable, found once.
    paths: HashMap<String, Option<Vec<String>>>,
    path_buffer: String,
    /// Successful responses per task, for truth sampling.
    responses: HashMap<usize, u64>,
}

impl VirtualUser {
    pub fn new(id: u64, client: Client, user: Option<EngineUser>, seed: u64) -> VirtualUser {
        use rand::SeedableRng as _;
        VirtualUser {
            id,
            client,
            user,
            logged_in: false,
            vars: HashMap::new(),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(
                seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            iteration: 0,
            paths: HashMap::new(),
            path_buffer: String::new(),
            responses: HashMap::new(),
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        match self.vars.get(name)? {
            VarValue::One(value) => Some(value),
            VarValue::Many(values) => values.first().map(String::as_str),
        }
    }

    pub fn set_var(&mut self, name: &str, value: String) {
        self.vars.insert(name.to_owned(), VarValue::One(value));
    }

    pub fn needs_login(&self, plan: &Plan) -> bool {
        plan.auth.is_some() && !self.logged_in
    }

    pub fn next_iteration(&mut self) {
        self.iteration += 1;
    }

    /// Logs in: GET the form, read the CSRF token, POST the credentials.
    /// Success is the configured outcome (redirect, session cookie), never
    /// the status alone. Returns whether the user is logged in.
    pub async fn login(&mut self, shared: &WorkerShared, auth: &AuthPlan) -> bool {
        let Some(user) = self.user.clone() else {
            return false;
        };
        self.client.reset();
        let mut vars = TaskVars::new(self, &shared.global);
        let path = match auth.login_url.render_to_string(&mut vars) {
            Ok(path) => path,
            Err(_) => return false,
        };
        // The form.
        let started = Instant::now();
        let form = self
            .client
            .send(http::Method::GET, &path, &[], Bytes::new(), true)
            .await;
        let at = shared.elapsed_ms();
        let form = match form {
            Ok(response) if response.status.is_success() => {
                shared.recorder.borrow_mut().record(
                    auth.form_endpoint,
                    micros(started.elapsed()),
                    response.body_len,
                    Outcome::Success,
                    at,
                );
                response
            }
            Ok(response) => {
                let kind = FailureKind::Status(response.status.as_u16());
                let message = format!(
                    "GET {path}: {} {}",
                    response.status,
                    snippet(&response.text())
                );
                shared.recorder.borrow_mut().record(
                    auth.form_endpoint,
                    micros(started.elapsed()),
                    response.body_len,
                    Outcome::Failure {
                        kind: &kind,
                        message: &message,
                    },
                    at,
                );
                return false;
            }
            Err(error) => {
                shared.recorder.borrow_mut().record(
                    auth.form_endpoint,
                    micros(started.elapsed()),
                    0,
                    Outcome::Failure {
                        kind: &error.kind,
                        message: &error.message,
                    },
                    at,
                );
                return false;
            }
        };
        let token = csrf_token(&self.client, &form, auth);
        let mut fields: Vec<(&str, &str)> = vec![
            (auth.user_field.as_str(), user.login.as_str()),
            (auth.password_field.as_str(), user.password.expose()),
        ];
        if let (Some(field), Some(token)) = (&auth.csrf_field, &token) {
            fields.push((field.as_str(), token.as_str()));
        }
        let referer = format!(
            "{}{}",
            shared.origin.base.as_str().trim_end_matches('/'),
            path
        );
        let origin_header = shared.origin.base.origin().ascii_serialization();
        let mut headers = vec![content_type("application/x-www-form-urlencoded")];
        if let Ok(value) = HeaderValue::from_str(&referer) {
            headers.push((REFERER, value));
        }
        if let Ok(value) = HeaderValue::from_str(&origin_header) {
            headers.push((ORIGIN, value));
        }
        let body = form_body(&fields);
        let started = Instant::now();
        let result = self
            .client
            .send(http::Method::POST, &path, &headers, body, true)
            .await;
        let latency = micros(started.elapsed());
        let at = shared.elapsed_ms();
        let mut recorder = shared.recorder.borrow_mut();
        recorder.counters().login_attempts += 1;
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                recorder.record(
                    auth.login_endpoint,
                    latency,
                    0,
                    Outcome::Failure {
                        kind: &error.kind,
                        message: &error.message,
                    },
                    at,
                );
                return false;
            }
        };
        match login_failure(&self.client, &response, auth) {
            None => {
                recorder.counters().login_successes += 1;
                recorder.record(
                    auth.login_endpoint,
                    latency,
                    response.body_len,
                    Outcome::Success,
                    at,
                );
                self.logged_in = true;
                true
            }
            Some((kind, message)) => {
                let message = format!("user {}: {message}", user.login);
                recorder.record(
                    auth.login_endpoint,
                    latency,
                    response.body_len,
                    Outcome::Failure {
                        kind: &kind,
                        message: &message,
                    },
                    at,
                );
                false
            }
        }
    }

    /// Runs one HTTP task; `scheduled` is when an open-model iteration was
    /// due (latency counts from then: coordinated omission corrected).
    pub(crate) async fn run_http_task(
        &mut self,
        shared: &WorkerShared,
        task: &TaskPlan,
        http_task: &HttpTask,
        scheduled: Option<Instant>,
    ) {
        let plan = &shared.plan;
        let mut path = std::mem::take(&mut self.path_buffer);
        let mut vars = TaskVars::new(self, &shared.global);
        let prepared = prepare(http_task, &mut vars, &mut path, plan.auth.as_ref());
        let bound = vars.bound;
        let (headers, body) = match prepared {
            Ok(prepared) => prepared,
            Err(RenderError::Missing(variable)) => {
                let mut recorder = shared.recorder.borrow_mut();
                recorder.counters().skipped += 1;
                tracing::debug!(task = %task.name, %variable, "skipped: no value");
                self.path_buffer = path;
                return;
            }
        };
        let keep_body = http_task.expect.text.is_some()
            || http_task.expect.not_text.is_some()
            || http_task.expect.css.is_some()
            || http_task.expect.json_pointer.is_some()
            || !http_task.extract.is_empty()
            || !http_task.truths.is_empty();
        let mut headers = headers;
        if http_task.csrf {
            if let Some(auth) = &plan.auth
                && let (Some(cookie), Some(header)) = (&auth.csrf_cookie, &auth.csrf_header)
                && let (Some(token), Ok(name)) = (
                    self.client.cookie(cookie),
                    http::HeaderName::from_bytes(header.as_bytes()),
                )
                && let Ok(value) = HeaderValue::from_str(token)
            {
                headers.push((name, value));
            }
            let referer = format!(
                "{}{}",
                shared.origin.base.as_str().trim_end_matches('/'),
                "/"
            );
            if let Ok(value) = HeaderValue::from_str(&referer) {
                headers.push((REFERER, value));
            }
        }
        let method = match http_task.method {
            crate::suite::plan::Method::Get => http::Method::GET,
            crate::suite::plan::Method::Post => http::Method::POST,
            crate::suite::plan::Method::Put => http::Method::PUT,
            crate::suite::plan::Method::Patch => http::Method::PATCH,
            crate::suite::plan::Method::Delete => http::Method::DELETE,
        };
        let started = scheduled.unwrap_or_else(Instant::now);
        let result = self
            .client
            .send(method, &path, &headers, body, keep_body)
            .await;
        let latency = micros(started.elapsed());
        let at = shared.elapsed_ms();
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                shared.recorder.borrow_mut().record(
                    task.endpoint,
                    latency,
                    0,
                    Outcome::Failure {
                        kind: &error.kind,
                        message: &format!(
                            "{} {path}: {}",
                            http_task.method.as_str(),
                            error.message
                        ),
                    },
                    at,
                );
                self.path_buffer = path;
                return;
            }
        };
        let verdict = self.judge(plan.auth.as_ref(), http_task, &response, &path);
        let mut recorder = shared.recorder.borrow_mut();
        match &verdict {
            Judgement::Ok => {
                let extracted = self.extract(http_task, &response);
                match extracted {
                    Ok(()) => {
                        recorder.record(
                            task.endpoint,
                            latency,
                            response.body_len,
                            Outcome::Success,
                            at,
                        );
                        if http_task.expect.css.is_some()
                            || http_task.expect.text.is_some()
                            || http_task.expect.json_pointer.is_some()
                        {
                            recorder.counters().checks_passed += 1;
                        }
                        drop(recorder);
                        if let Some(writes) = &http_task.writes {
                            self.remember_write(shared, task, writes, &bound);
                        }
                        if !http_task.truths.is_empty() {
                            self.sample_truths(shared, task, http_task, &response, &bound);
                        }
                    }
                    Err(message) => {
                        recorder.counters().checks_failed += 1;
                        recorder.record(
                            task.endpoint,
                            latency,
                            response.body_len,
                            Outcome::Failure {
                                kind: &FailureKind::CheckFailed,
                                message: &message,
                            },
                            at,
                        );
                    }
                }
            }
            Judgement::Conflict => recorder.record(
                task.endpoint,
                latency,
                response.body_len,
                Outcome::Conflict,
                at,
            ),
            Judgement::Failed(kind, message) => {
                if matches!(kind, FailureKind::CheckFailed) {
                    recorder.counters().checks_failed += 1;
                }
                if matches!(kind, FailureKind::LoginPageReturned) {
                    self.logged_in = false;
                }
                let message = format!("{} {path}: {message}", http_task.method.as_str());
                recorder.record(
                    task.endpoint,
                    latency,
                    response.body_len,
                    Outcome::Failure {
                        kind,
                        message: &message,
                    },
                    at,
                );
            }
        }
        self.path_buffer = path;
    }

    fn judge(
        &self,
        auth: Option<&AuthPlan>,
        task: &HttpTask,
        response: &Response,
        _path: &str,
    ) -> Judgement {
        let status = response.status.as_u16();
        if let Some(auth) = auth {
            let login_path = template_prefix(&auth.login_url);
            let to_login = response.status.is_redirection()
                && response
                    .location()
                    .is_some_and(|l| !login_path.is_empty() && l.contains(&login_path));
            if to_login
                || (status == 401
                    && task
                        .expect
                        .status
                        .as_ref()
                        .is_none_or(|s| !s.contains(&401)))
            {
                return Judgement::Failed(
                    FailureKind::LoginPageReturned,
                    format!("{} (not logged in)", response.status),
                );
            }
        }
        if task.expect.conflict.contains(&status) {
            return Judgement::Conflict;
        }
        let accepted = match &task.expect.status {
            Some(list) => list.contains(&status),
            None => response.status.is_success(),
        };
        if !accepted {
            let csrf_refusal = task.csrf || response.text().to_ascii_lowercase().contains("csrf");
            let kind = if status == 403 && csrf_refusal {
                FailureKind::CsrfRejected
            } else {
                FailureKind::Status(status)
            };
            return Judgement::Failed(
                kind,
                format!("{} {}", response.status, snippet(&response.text())),
            );
        }
        if response.body.is_empty() && response.body_len > 0 {
            return Judgement::Ok;
        }
        let text = response.text();
        if let Some(expected) = &task.expect.text
            && !text.contains(expected.as_str())
        {
            return Judgement::Failed(FailureKind::CheckFailed, format!("body lacks {expected:?}"));
        }
        if let Some(unexpected) = &task.expect.not_text
            && text.contains(unexpected.as_str())
        {
            return Judgement::Failed(
                FailureKind::CheckFailed,
                format!("body contains {unexpected:?}"),
            );
        }
        if let Some((source, selector)) = &task.expect.css {
            let document = scraper::Html::parse_document(&text);
            if document.select(selector).next().is_none() {
                return Judgement::Failed(
                    FailureKind::CheckFailed,
                    format!("nothing matches `{source}`"),
                );
            }
        }
        if let Some(pointer) = &task.expect.json_pointer {
            match serde_json::from_slice::<serde_json::Value>(&response.body) {
                Ok(json) if json.pointer(pointer).is_some() => {}
                Ok(_) => {
                    return Judgement::Failed(
                        FailureKind::CheckFailed,
                        format!("no `{pointer}` in the JSON"),
                    );
                }
                Err(error) => {
                    return Judgement::Failed(
                        FailureKind::CheckFailed,
                        format!("not JSON ({error})"),
                    );
                }
            }
        }
        Judgement::Ok
    }

    fn extract(&mut self, task: &HttpTask, response: &Response) -> Result<(), String> {
        if task.extract.is_empty() {
            return Ok(());
        }
        let mut json: Option<serde_json::Value> = None;
        let mut html: Option<scraper::Html> = None;
        for extract in &task.extract {
            let values: Vec<String> = match &extract.how {
                ExtractHow::JsonPointer(pointer) => {
                    if json.is_none() {
                        json =
                            Some(serde_json::from_slice(&response.body).map_err(|e| {
                                format!("extract `{}`: not JSON ({e})", extract.var)
                            })?);
                    }
                    let root = json.as_ref().expect("parsed");
                    match root.pointer(pointer) {
                        Some(serde_json::Value::Array(items)) if extract.all => {
                            items.iter().map(json_text).collect()
                        }
                        Some(value) => vec![json_text(value)],
                        None => Vec::new(),
                    }
                }
                ExtractHow::Css { selector, attr } => {
                    let document =
                        html.get_or_insert_with(|| scraper::Html::parse_document(&response.text()));
                    let found = document.select(selector).filter_map(|element| match attr {
                        Some(attr) => element.value().attr(attr).map(str::to_owned),
                        None => Some(element.text().collect::<String>().trim().to_owned()),
                    });
                    if extract.all {
                        found.collect()
                    } else {
                        found.take(1).collect()
                    }
                }
                ExtractHow::Regex(regex) => {
                    let text = response.text();
                    let captured = regex.captures_iter(&text).filter_map(|c| {
                        c.get(1).or_else(|| c.get(0)).map(|m| m.as_str().to_owned())
                    });
                    if extract.all {
                        captured.collect()
                    } else {
                        captured.take(1).collect()
                    }
                }
            };
            if values.is_empty() {
                return Err(format!("extract `{}` found nothing", extract.var));
            }
            let value = if extract.all {
                VarValue::Many(values)
            } else {
                VarValue::One(values.into_iter().next().expect("non-empty"))
            };
            self.vars.insert(extract.var.clone(), value);
        }
        Ok(())
    }

    fn sample_truths(
        &mut self,
        shared: &WorkerShared,
        task: &TaskPlan,
        http_task: &HttpTask,
        response: &Response,
        bound: &[(String, String)],
    ) {
        let seen = self.responses.entry(task.endpoint).or_default();
        *seen += 1;
        let seen = *seen;
        for truth in &http_task.truths {
            if !seen.is_multiple_of(u64::from(truth.every)) {
                continue;
            }
            if shared
                .truths
                .borrow()
                .iter()
                .filter(|t| t.task == task.name)
                .count()
                >= MAX_TRUTH_SAMPLES
            {
                continue;
            }
            let Some(observed) = extract_values(&truth.how, false, response)
                .into_iter()
                .next()
            else {
                continue;
            };
            let mut vars = SqlLiterals(TaskVars {
                vu: self,
                global: &shared.global,
                bound: bound.to_vec(),
            });
            let Ok(sql) = truth.sql.render_to_string(&mut vars) else {
                continue;
            };
            shared.truths.borrow_mut().push(TruthSample {
                task: task.name.clone(),
                sql,
                observed,
                tolerance: truth.tolerance,
                at_ms: shared.elapsed_ms(),
            });
        }
    }

    fn remember_write(
        &mut self,
        shared: &WorkerShared,
        task: &TaskPlan,
        writes: &crate::suite::WriteSpec,
        bound: &[(String, String)],
    ) {
        let render = |vu: &mut VirtualUser, text: &str| -> String {
            let Ok(template) = Template::parse(text) else {
                return String::new();
            };
            let mut vars = TaskVars {
                vu,
                global: &shared.global,
                bound: bound.to_vec(),
            };
            template.render_to_string(&mut vars).unwrap_or_default()
        };
        let key = render(self, &writes.key_value);
        let sent_version = render(self, &writes.version_value);
        let fields = writes
            .fields
            .iter()
            .map(|(column, text)| (column.clone(), render(self, text)))
            .collect();
        shared.writes.borrow_mut().push(AckedWrite {
            task: task.name.clone(),
            key,
            sent_version,
            fields,
            at_ms: shared.elapsed_ms(),
            vu: self.id,
        });
    }
}

enum Judgement {
    Ok,
    Conflict,
    Failed(FailureKind, String),
}

fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The literal start of a template (the login path without variables).
fn template_prefix(template: &Template) -> String {
    match template.segments.first() {
        Some(crate::suite::template::Segment::Literal(text)) => {
            text.split('?').next().unwrap_or_default().to_owned()
        }
        _ => String::new(),
    }
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros() as u64
}

/// The CSRF token: the cookie if there is one, else the form's hidden field.
fn csrf_token(client: &Client, form: &Response, auth: &AuthPlan) -> Option<String> {
    if let Some(cookie) = &auth.csrf_cookie
        && let Some(value) = client.cookie(cookie)
    {
        // Django's form token and cookie may differ (masking), and both
        // validate; prefer the form's, as a browser would send it.
        if auth.csrf_field.is_none() {
            return Some(value.to_owned());
        }
    }
    let field = auth.csrf_field.as_ref()?;
    extract_hidden_field(&form.text(), field).or_else(|| {
        auth.csrf_cookie
            .as_ref()
            .and_then(|c| client.cookie(c))
            .map(str::to_owned)
    })
}

/// The value of `<input name="FIELD" value="...">` in a page.
pub fn extract_hidden_field(html: &str, field: &str) -> Option<String> {
    let document = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(&format!("input[name=\"{field}\"]")).ok()?;
    document
        .select(&selector)
        .next()
        .and_then(|input| input.value().attr("value"))
        .map(str::to_owned)
}

/// Why a login attempt failed, or `None` when it succeeded.
fn login_failure(
    client: &Client,
    response: &Response,
    auth: &AuthPlan,
) -> Option<(FailureKind, String)> {
    let text = response.text();
    for (marker, kind) in &auth.failure_kinds {
        if text.contains(marker.as_str()) {
            return Some((
                FailureKind::Named(kind.clone()),
                format!("{} with {marker:?}", response.status),
            ));
        }
    }
    let status = response.status.as_u16();
    if status == 403 {
        return Some((FailureKind::CsrfRejected, format!("403 {}", snippet(&text))));
    }
    if status != auth.success_status {
        if status == 200
            && auth
                .csrf_field
                .as_ref()
                .is_some_and(|f| text.contains(f.as_str()))
            || text.contains(&format!("name=\"{}\"", auth.password_field))
        {
            return Some((
                FailureKind::LoginPageReturned,
                format!("{} with the login form again", response.status),
            ));
        }
        return Some((
            FailureKind::Status(status),
            format!("{} {}", response.status, snippet(&text)),
        ));
    }
    if let Some(expected) = &auth.success_location {
        match response.location() {
            Some(location) if location == expected || location.ends_with(expected.as_str()) => {}
            Some(location) => {
                return Some((
                    FailureKind::LoginPageReturned,
                    format!("redirected to {location}, not {expected}"),
                ));
            }
            None => {
                return Some((
                    FailureKind::CheckFailed,
                    format!("{} without a Location", response.status),
                ));
            }
        }
    }
    if let Some(cookie) = &auth.success_cookie
        && client.cookie(cookie).is_none()
    {
        return Some((
            FailureKind::CheckFailed,
            format!("no `{cookie}` cookie was set"),
        ));
    }
    None
}

/// Prepared headers and body of a request.
type Prepared = (Vec<(http::HeaderName, HeaderValue)>, Bytes);

fn prepare(
    task: &HttpTask,
    vars: &mut TaskVars<'_>,
    path: &mut String,
    _auth: Option<&AuthPlan>,
) -> Result<Prepared, RenderError> {
    for (name, template) in &task.vars {
        let value = template.render_to_string(vars)?;
        vars.bound.retain(|(bound_name, _)| bound_name != name);
        vars.bound.push((name.clone(), value));
    }
    task.path.render(vars, path)?;
    let mut headers = Vec::with_capacity(task.headers.len() + 3);
    let mut buffer = String::new();
    for (name, template) in &task.headers {
        template.render(vars, &mut buffer)?;
        if let Ok(value) = HeaderValue::from_str(&buffer) {
            headers.push((name.clone(), value));
        }
    }
    let body = match &task.body {
        BodyPlan::None => Bytes::new(),
        BodyPlan::Form(fields) => {
            let mut rendered = Vec::with_capacity(fields.len());
            for (name, template) in fields {
                rendered.push((name.clone(), template.render_to_string(vars)?));
            }
            let pairs: Vec<(&str, &str)> = rendered
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            headers.push(content_type("application/x-www-form-urlencoded"));
            form_body(&pairs)
        }
        BodyPlan::Json(template) => {
            let value = template.render(vars)?;
            headers.push(content_type("application/json"));
            Bytes::from(serde_json::to_vec(&value).expect("JSON values serialise"))
        }
        BodyPlan::Raw(template) => Bytes::from(template.render_to_string(vars)?),
    };
    Ok((headers, body))
}

/// Variables while one task renders: values chosen for this task stay bound,
/// so `{pekerjaan_id}` comes from the project `{project_id}` named.
pub(crate) struct TaskVars<'a> {
    vu: &'a mut VirtualUser,
    global: &'a Scope,
    pub(crate) bound: Vec<(String, String)>,
}

impl<'a> TaskVars<'a> {
    fn new(vu: &'a mut VirtualUser, global: &'a Scope) -> TaskVars<'a> {
        TaskVars {
            vu,
            global,
            bound: Vec::new(),
        }
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        if let Some((_, value)) = self.bound.iter().find(|(n, _)| n == name) {
            return Some(value.clone());
        }
        if let Some(value) = self.vu.vars.get(name) {
            let chosen = match value {
                VarValue::One(v) => v.clone(),
                VarValue::Many(values) => values.choose(&mut self.vu.rng)?.clone(),
            };
            self.bound.push((name.to_owned(), chosen.clone()));
            return Some(chosen);
        }
        match name {
            "vu" => return Some(self.vu.id.to_string()),
            "iteration" => return Some(self.vu.iteration.to_string()),
            "user" => return self.vu.user.as_ref().map(|u| u.login.clone()),
            _ => {}
        }
        let user_scope = self.vu.user.as_ref().map(|u| u.scope.clone());
        for scope in user_scope
            .as_deref()
            .into_iter()
            .chain(std::iter::once(self.global))
        {
            if let Some(value) = self.lookup_in_scope(scope, name) {
                return Some(value);
            }
        }
        None
    }

    /// Walks the catalog from `root` to `name`, choosing (or reusing bound)
    /// values along the way.
    fn lookup_in_scope(&mut self, root: &Scope, name: &str) -> Option<String> {
        let path = match self.vu.paths.get(name) {
            Some(path) => path.clone(),
            None => {
                let path = root.path_to(name);
                self.vu.paths.insert(name.to_owned(), path.clone());
                path
            }
        }?;
        let mut scope = root;
        let mut value = String::new();
        for step in &path {
            let choices = scope.vars.get(step)?;
            let chosen = match self.bound.iter().find(|(n, _)| n == step) {
                Some((_, bound_value)) => choices.iter().find(|c| &c.value == bound_value)?,
                None => {
                    let choice = choices.choose(&mut self.vu.rng)?;
                    self.bound.push((step.clone(), choice.value.clone()));
                    choice
                }
            };
            value.clone_from(&chosen.value);
            scope = &chosen.scope;
        }
        Some(value)
    }
}

/// Variables written as SQL string literals, for ground-truth queries.
struct SqlLiterals<'a>(TaskVars<'a>);

impl Variables for SqlLiterals<'_> {
    fn write_var(&mut self, name: &str, out: &mut String) -> bool {
        match self.0.lookup(name) {
            Some(value) => {
                out.push('\'');
                out.push_str(&value.replace('\'', "''"));
                out.push('\'');
                true
            }
            None => false,
        }
    }

    fn call(&mut self, function: &Function, out: &mut String) {
        self.0.call(function, out);
    }
}

/// Values one extraction finds in a response.
fn extract_values(how: &ExtractHow, all: bool, response: &Response) -> Vec<String> {
    match how {
        ExtractHow::JsonPointer(pointer) => {
            let Ok(root) = serde_json::from_slice::<serde_json::Value>(&response.body) else {
                return Vec::new();
            };
            match root.pointer(pointer) {
                Some(serde_json::Value::Array(items)) if all => {
                    items.iter().map(json_text).collect()
                }
                Some(value) => vec![json_text(value)],
                None => Vec::new(),
            }
        }
        ExtractHow::Css { selector, attr } => {
            let document = scraper::Html::parse_document(&response.text());
            let found = document.select(selector).filter_map(|element| match attr {
                Some(attr) => element.value().attr(attr).map(str::to_owned),
                None => Some(element.text().collect::<String>().trim().to_owned()),
            });
            if all {
                found.collect()
            } else {
                found.take(1).collect()
            }
        }
        ExtractHow::Regex(regex) => {
            let text = response.text();
            let captured = regex
                .captures_iter(&text)
                .filter_map(|c| c.get(1).or_else(|| c.get(0)).map(|m| m.as_str().to_owned()));
            if all {
                captured.collect()
            } else {
                captured.take(1).collect()
            }
        }
    }
}

impl Variables for TaskVars<'_> {
    fn write_var(&mut self, name: &str, out: &mut String) -> bool {
        match self.lookup(name) {
            Some(value) => {
                out.push_str(&value);
                true
            }
            None => false,
        }
    }

    fn call(&mut self, function: &Function, out: &mut String) {
        call_with(function, &mut self.vu.rng, out);
    }
}

/// A think time drawn uniformly from the plan's range.
pub fn think_time(vu: &mut VirtualUser, min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    let span = (max - min).as_micros() as u64;
    min + Duration::from_micros(vu.rng.random_range(0..=span))
}
