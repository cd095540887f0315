//! Variables while a task renders (bound values, the user's extractions,
//! the catalog), extraction from responses, and preparing a request's
//! headers and body.

use bytes::Bytes;
use http::HeaderValue;
use rand::seq::IndexedRandom as _;

use super::VirtualUser;
use crate::catalog::Scope;
use crate::engine::http::{Response, content_type, form_body};
use crate::suite::plan::{AuthPlan, BodyPlan, ExtractHow, HttpTask};
use crate::suite::template::{Function, RenderError, Variables, call_with};

/// A variable's value: one, or a list to sample from (an `all = true` extraction).
#[derive(Debug, Clone)]
pub(super) enum VarValue {
    One(String),
    Many(Vec<String>),
}

impl VirtualUser {
    pub(super) fn extract(&mut self, task: &HttpTask, response: &Response) -> Result<(), String> {
        if task.extract.is_empty() {
            return Ok(());
        }
        let mut body = ParsedBody::new(response);
        for extract in &task.extract {
            let values = body
                .values(&extract.how, extract.all)
                .map_err(|e| format!("extract `{}`: not JSON ({e})", extract.var))?;
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
}

fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Prepared headers and body of a request.
pub(super) type Prepared = (Vec<(http::HeaderName, HeaderValue)>, Bytes);

pub(super) fn prepare(
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
    pub(super) vu: &'a mut VirtualUser,
    pub(super) global: &'a Scope,
    pub(crate) bound: Vec<(String, String)>,
}

impl<'a> TaskVars<'a> {
    pub(super) fn new(vu: &'a mut VirtualUser, global: &'a Scope) -> TaskVars<'a> {
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
        if let Some(scope) = user_scope.as_deref()
            && let Some(value) = self.lookup_in_scope(scope, 0, name)
        {
            return Some(value);
        }
        self.lookup_in_scope(self.global, 1, name)
    }

    /// Walks the catalog from `root` to `name`, choosing (or reusing bound)
    /// values along the way; `which` names the root's path cache.
    fn lookup_in_scope(&mut self, root: &Scope, which: usize, name: &str) -> Option<String> {
        let paths = &mut self.vu.paths[which];
        let path = match paths.get(name) {
            Some(path) => path.clone(),
            None => {
                let path = root.path_to(name);
                paths.insert(name.to_owned(), path.clone());
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
pub(super) struct SqlLiterals<'a>(pub(super) TaskVars<'a>);

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

/// Values one extraction finds in a response; none when the body is not
/// what the extraction reads.
pub(super) fn extract_values(how: &ExtractHow, all: bool, response: &Response) -> Vec<String> {
    ParsedBody::new(response)
        .values(how, all)
        .unwrap_or_default()
}

/// A response's body, parsed at most once as JSON and once as HTML however
/// many extractions read it.
struct ParsedBody<'r> {
    response: &'r Response,
    json: Option<serde_json::Value>,
    html: Option<scraper::Html>,
}

impl<'r> ParsedBody<'r> {
    fn new(response: &'r Response) -> ParsedBody<'r> {
        ParsedBody {
            response,
            json: None,
            html: None,
        }
    }

    /// The first value found (every value with `all`), or why a JSON
    /// pointer could not read the body.
    fn values(&mut self, how: &ExtractHow, all: bool) -> Result<Vec<String>, serde_json::Error> {
        let values = match how {
            ExtractHow::JsonPointer(pointer) => {
                if self.json.is_none() {
                    self.json = Some(serde_json::from_slice(&self.response.body)?);
                }
                let root = self.json.as_ref().expect("parsed");
                match root.pointer(pointer) {
                    Some(serde_json::Value::Array(items)) if all => {
                        items.iter().map(json_text).collect()
                    }
                    Some(value) => vec![json_text(value)],
                    None => Vec::new(),
                }
            }
            ExtractHow::Css { selector, attr } => {
                let response = self.response;
                let document = self
                    .html
                    .get_or_insert_with(|| scraper::Html::parse_document(&response.text()));
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
                let text = self.response.text();
                let captured = regex
                    .captures_iter(&text)
                    .filter_map(|c| c.get(1).or_else(|| c.get(0)).map(|m| m.as_str().to_owned()));
                if all {
                    captured.collect()
                } else {
                    captured.take(1).collect()
                }
            }
        };
        Ok(values)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: &str) -> Response {
        Response {
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
            body_len: body.len() as u64,
        }
    }

    #[track_caller]
    fn check(how: ExtractHow, all: bool, body: &str, expect: &[&str]) {
        assert_eq!(extract_values(&how, all, &response(body)), expect);
    }

    fn css(selector: &str, attr: Option<&str>) -> ExtractHow {
        ExtractHow::Css {
            selector: scraper::Selector::parse(selector).unwrap(),
            attr: attr.map(str::to_owned),
        }
    }

    #[test]
    fn values_are_found_by_json_pointer_css_and_regex() {
        let json = r#"{"ids": [3, "4"], "name": "x"}"#;
        let pointer = |p: &str| ExtractHow::JsonPointer(p.to_owned());
        check(pointer("/name"), false, json, &["x"]);
        check(pointer("/ids"), true, json, &["3", "4"]);
        check(pointer("/ids/0"), false, json, &["3"]);
        check(pointer("/none"), false, json, &[]);
        check(pointer("/name"), false, "<html>", &[]);
        let html = r#"<a data-id="1"> one </a><a data-id="2">two</a>"#;
        check(css("a", None), false, html, &["one"]);
        check(css("a", Some("data-id")), true, html, &["1", "2"]);
        let regex = |r: &str| ExtractHow::Regex(regex::Regex::new(r).unwrap());
        check(regex(r"id=(\d+)"), true, "id=7 id=8", &["7", "8"]);
        check(regex(r"\d+"), false, "a 12 b 13", &["12"]);
    }
}
