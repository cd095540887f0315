//! The login: GET the form, read the CSRF token, POST the credentials, and
//! judge the outcome by what success means for the target (a redirect, a
//! session cookie), never by the status alone.

use std::time::Instant;

use bytes::Bytes;
use http::HeaderValue;
use http::header::{ORIGIN, REFERER};

use super::variables::TaskVars;
use super::{VirtualUser, WorkerShared, micros};
use crate::engine::http::{Client, Response, content_type, form_body, snippet};
use crate::metrics::{FailureKind, Outcome};
use crate::suite::plan::AuthPlan;
use crate::suite::template::Template;

impl VirtualUser {
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
        let flight = shared.take_off(auth.form_endpoint);
        let form = self
            .client
            .send(http::Method::GET, &path, &[], Bytes::new(), true)
            .await;
        flight.land();
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
        let flight = shared.take_off(auth.login_endpoint);
        let result = self
            .client
            .send(http::Method::POST, &path, &headers, body, true)
            .await;
        flight.land();
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
}

/// The literal start of a template (the login path without variables).
pub(super) fn template_prefix(template: &Template) -> String {
    match template.segments.first() {
        Some(crate::suite::template::Segment::Literal(text)) => {
            text.split('?').next().unwrap_or_default().to_owned()
        }
        _ => String::new(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_fields_are_read_from_the_form() {
        let html = r#"<form><input type="hidden" name="csrfmiddlewaretoken" value="abc123"><input name="login"></form>"#;
        assert_eq!(
            extract_hidden_field(html, "csrfmiddlewaretoken").as_deref(),
            Some("abc123")
        );
        assert_eq!(extract_hidden_field(html, "login"), None);
        assert_eq!(extract_hidden_field(html, "missing"), None);
    }

    #[test]
    fn the_login_path_is_the_literal_start_of_its_template() {
        let prefix = |text: &str| template_prefix(&Template::parse(text).unwrap());
        assert_eq!(prefix("/accounts/login/?next=/"), "/accounts/login/");
        assert_eq!(prefix("/accounts/{tenant}/login/"), "/accounts/");
        assert_eq!(prefix("{base}/login/"), "");
    }
}
