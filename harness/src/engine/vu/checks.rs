//! Judging a response: a redirect to the login page, a conflict, a status
//! outside the accepted ones, or a body that lacks what the task expects.

use super::VirtualUser;
use super::login::template_prefix;
use crate::engine::http::{Response, snippet};
use crate::metrics::FailureKind;
use crate::suite::plan::{AuthPlan, HttpTask};

/// What a response was, judged against its task.
pub(super) enum Judgement {
    Ok,
    Conflict,
    Failed(FailureKind, String),
}

impl VirtualUser {
    pub(super) fn judge(
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
}
