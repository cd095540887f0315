//! Tasks: what a virtual user does. Declarative HTTP tasks are compiled
//! (method, path, headers, body, checks, extractions); custom tasks are
//! planned from their declaration. Tasks with one name share an endpoint.

use std::collections::BTreeSet;

use serde::Serialize;
use toml::Spanned;

use super::PlanOptions;
use super::checker::{Checker, check_variables, unknown_variable};
use super::tags::TagChoice;
use crate::metrics::summary::{EndpointMeta, TaskSelection};
use crate::suite::template::{JsonTemplate, Template};
use crate::suite::{ExtractSpec, SuiteFile, TaskSpec, WriteSpec};

/// The HTTP method of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// A request body.
#[derive(Debug, Clone)]
pub enum BodyPlan {
    None,
    Form(Vec<(String, Template)>),
    Json(JsonTemplate),
    Raw(Template),
}

/// Checks on a response.
#[derive(Debug, Clone)]
pub struct ExpectPlan {
    /// `None`: any 2xx.
    pub status: Option<Vec<u16>>,
    pub conflict: Vec<u16>,
    pub text: Option<String>,
    pub not_text: Option<String>,
    pub css: Option<(String, scraper::Selector)>,
    pub json_pointer: Option<String>,
}

/// How a value is extracted.
#[derive(Debug, Clone)]
pub enum ExtractHow {
    JsonPointer(String),
    Css {
        selector: scraper::Selector,
        attr: Option<String>,
    },
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub struct ExtractPlan {
    pub var: String,
    pub how: ExtractHow,
    pub all: bool,
}

/// What a task does.
#[derive(Debug, Clone)]
pub enum TaskKind {
    Http(Box<HttpTask>),
    /// Written in Rust with [`super::builder`]; the engine runs the
    /// implementation registered under the task's name.
    Custom,
}

/// A declarative HTTP task.
#[derive(Debug, Clone)]
pub struct HttpTask {
    pub method: Method,
    pub path: Template,
    pub headers: Vec<(http::HeaderName, Template)>,
    pub body: BodyPlan,
    pub csrf: bool,
    pub expect: ExpectPlan,
    pub extract: Vec<ExtractPlan>,
    pub writes: Option<WriteSpec>,
    /// Rendered first, in order, and bound for the rest of the request.
    pub vars: Vec<(String, Template)>,
    /// Ground truths checked on sampled responses.
    pub truths: Vec<TruthPlan>,
}

/// A ground truth for a task's responses.
#[derive(Debug, Clone)]
pub struct TruthPlan {
    pub how: ExtractHow,
    pub sql: Template,
    pub every: u32,
    pub tolerance: f64,
}

/// A task, checked and compiled.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    pub name: String,
    pub endpoint: usize,
    pub weight: u32,
    pub tags: Vec<String>,
    pub on_start: bool,
    pub kind: TaskKind,
}

/// The tasks that run, the endpoint table, and which tasks the tags left out.
#[derive(Debug)]
pub(super) struct CompiledTasks {
    pub(super) tasks: Vec<TaskPlan>,
    pub(super) endpoints: Vec<EndpointMeta>,
    pub(super) selection: TaskSelection,
}

/// The file's tasks then the custom ones, each kept or left out by the tags.
pub(super) fn compile_tasks(
    checker: &mut Checker<'_>,
    file: &SuiteFile,
    options: &PlanOptions,
    tags: &TagChoice,
    variables: &BTreeSet<String>,
) -> CompiledTasks {
    let mut endpoints: Vec<EndpointMeta> = Vec::new();
    let mut tasks = Vec::new();
    let mut selection = TaskSelection::default();
    for task in &file.tasks {
        let task_tags: Vec<String> = task.tags.0.iter().map(|t| t.get_ref().clone()).collect();
        if let Some(reason) = tags.excludes(&task_tags) {
            selection
                .excluded
                .push((task.name.get_ref().clone(), reason));
            continue;
        }
        if let Some(compiled) = compile_task(checker, task, variables, &mut endpoints) {
            selection.included.push(compiled.name.clone());
            tasks.push(compiled);
        }
    }
    for custom in &options.custom_tasks {
        if let Some(reason) = tags.excludes(&custom.tags) {
            selection.excluded.push((custom.name.clone(), reason));
            continue;
        }
        if custom.name.trim().is_empty() {
            checker.general("a custom task needs a name");
            continue;
        }
        let endpoint = endpoint_for(&mut endpoints, &custom.name, &custom.method, &custom.tags);
        selection.included.push(custom.name.clone());
        tasks.push(TaskPlan {
            name: custom.name.clone(),
            endpoint,
            weight: custom.weight,
            tags: custom.tags.clone(),
            on_start: custom.on_start,
            kind: TaskKind::Custom,
        });
    }
    if file.tasks.is_empty() && options.custom_tasks.is_empty() {
        checker.general("the suite has no [[task]]").hint = Some("add at least one task".into());
    } else if tasks.iter().all(|t| t.on_start || t.weight == 0) && checker.errors.is_empty() {
        checker
            .general(
                "no task would run: every task is excluded by tags, on-start only, or of weight 0",
            )
            .hint = Some(format!(
            "selected tags: include {:?}, exclude {:?}",
            tags.include, tags.exclude
        ));
    }
    CompiledTasks {
        tasks,
        endpoints,
        selection,
    }
}

/// One declarative task, or `None` when it is wrong (the errors are in the checker).
fn compile_task(
    checker: &mut Checker<'_>,
    task: &TaskSpec,
    variables: &BTreeSet<String>,
    endpoints: &mut Vec<EndpointMeta>,
) -> Option<TaskPlan> {
    let errors_before = checker.errors.len();
    let mut local_vars = Vec::new();
    let mut with_locals = variables.clone();
    for (name, text) in &task.vars {
        if let Some(template) = checker.template(text) {
            check_variables(checker, text, template.variables(), &with_locals);
            local_vars.push((name.clone(), template));
        }
        with_locals.insert(name.clone());
    }
    let variables = &with_locals;
    let name = task.name.get_ref().trim().to_owned();
    if name.is_empty() {
        checker.at(
            task.name.span(),
            "a task needs a name (its requests' grouping key)",
        );
    }
    let methods: Vec<(Method, &Spanned<String>)> = [
        (Method::Get, &task.get),
        (Method::Post, &task.post),
        (Method::Put, &task.put),
        (Method::Patch, &task.patch),
        (Method::Delete, &task.delete),
    ]
    .into_iter()
    .filter_map(|(m, p)| p.as_ref().map(|p| (m, p)))
    .collect();
    let (method, path_text) = match methods.as_slice() {
        [(method, path)] => (*method, *path),
        [] => {
            checker
                .at(task.name.span(), format!("task `{name}` has no request"))
                .hint = Some("give one of get, post, put, patch or delete with a path".into());
            return None;
        }
        [_, (_, second), ..] => {
            checker
                .at(
                    second.span(),
                    format!("task `{name}` has more than one method"),
                )
                .hint = Some("one request per task; split it into two tasks".into());
            return None;
        }
    };
    let path = checker.template(path_text);
    if let Some(path) = &path {
        if !path_text.get_ref().starts_with('/') {
            checker.at(
                path_text.span(),
                "a task's path starts with `/` (the target's base URL is prepended)",
            );
        }
        check_variables(checker, path_text, path.variables(), variables);
    }
    let mut headers = Vec::new();
    for (header, value) in &task.headers {
        let Ok(header_name) = http::HeaderName::from_bytes(header.as_bytes()) else {
            checker.at(value.span(), format!("`{header}` is not a header name"));
            continue;
        };
        if let Some(template) = checker.template(value) {
            check_variables(checker, value, template.variables(), variables);
            headers.push((header_name, template));
        }
    }
    let bodies = [
        task.form.is_some(),
        task.json.is_some(),
        task.body.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if bodies > 1 {
        checker.at(
            task.name.span(),
            format!("task `{name}` has more than one body (form, json, body)"),
        );
    }
    let body = if let Some(form) = &task.form {
        let mut fields = Vec::new();
        for (field, value) in form {
            if let Some(template) = checker.template(value) {
                check_variables(checker, value, template.variables(), variables);
                fields.push((field.clone(), template));
            }
        }
        BodyPlan::Form(fields)
    } else if let Some(json) = &task.json {
        match JsonTemplate::compile(json.get_ref()) {
            Ok(template) => {
                for variable in template.variables() {
                    if !variables.contains(variable) {
                        unknown_variable(checker, json.span(), variable, variables);
                    }
                }
                BodyPlan::Json(template)
            }
            Err(error) => {
                checker.at(json.span(), format!("in the JSON body: {}", error.message));
                BodyPlan::None
            }
        }
    } else if let Some(body) = &task.body {
        match checker.template(body) {
            Some(template) => {
                check_variables(checker, body, template.variables(), variables);
                BodyPlan::Raw(template)
            }
            None => BodyPlan::None,
        }
    } else {
        BodyPlan::None
    };
    if method == Method::Get && !matches!(body, BodyPlan::None) {
        checker.at(
            path_text.span(),
            format!("task `{name}` sends a body with GET"),
        );
    }
    let expect = &task.expect;
    let conflict = expect.conflict.clone().unwrap_or_else(|| {
        expect
            .status
            .as_ref()
            .map(|s| s.iter().copied().filter(|c| *c == 409).collect())
            .unwrap_or_default()
    });
    let css = expect
        .css
        .as_ref()
        .and_then(|css| match scraper::Selector::parse(css.get_ref()) {
            Ok(selector) => Some((css.get_ref().clone(), selector)),
            Err(error) => {
                checker.at(
                    css.span(),
                    format!("`{}` is not a CSS selector ({error})", css.get_ref()),
                );
                None
            }
        });
    if let Some(pointer) = &expect.json
        && !pointer.is_empty()
        && !pointer.starts_with('/')
    {
        checker.at(
            task.name.span(),
            format!("expect.json `{pointer}` is not a JSON pointer (they start with `/`)"),
        );
    }
    let extract = task
        .extract
        .iter()
        .filter_map(|e| check_extract(checker, e))
        .collect();
    if checker.errors.len() > errors_before {
        return None;
    }
    let endpoint = endpoint_for(
        endpoints,
        &name,
        method.as_str(),
        &task
            .tags
            .0
            .iter()
            .map(|t| t.get_ref().clone())
            .collect::<Vec<_>>(),
    );
    Some(TaskPlan {
        name,
        endpoint,
        weight: task.weight,
        tags: task.tags.0.iter().map(|t| t.get_ref().clone()).collect(),
        on_start: task.on_start,
        kind: TaskKind::Http(Box::new(HttpTask {
            method,
            path: path?,
            headers,
            body,
            csrf: task.csrf.unwrap_or(method != Method::Get),
            expect: ExpectPlan {
                status: expect.status.clone(),
                conflict,
                text: expect.text.clone(),
                not_text: expect.not_text.clone(),
                css,
                json_pointer: expect.json.clone(),
            },
            extract,
            writes: task.writes.clone(),
            vars: local_vars,
            truths: Vec::new(),
        })),
    })
}

/// The endpoint of a name, creating it the first time.
pub(crate) fn endpoint_for(
    endpoints: &mut Vec<EndpointMeta>,
    name: &str,
    method: &str,
    tags: &[String],
) -> usize {
    match endpoints.iter().position(|e| e.name == name) {
        Some(index) => {
            for tag in tags {
                if !endpoints[index].tags.contains(tag) {
                    endpoints[index].tags.push(tag.clone());
                }
            }
            index
        }
        None => {
            endpoints.push(EndpointMeta {
                name: name.to_owned(),
                method: method.to_owned(),
                tags: tags.to_vec(),
            });
            endpoints.len() - 1
        }
    }
}

pub(super) fn check_extract(checker: &mut Checker<'_>, spec: &ExtractSpec) -> Option<ExtractPlan> {
    let var = spec.var.get_ref().clone();
    let given = [
        spec.json.is_some(),
        spec.css.is_some(),
        spec.regex.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        checker.at(
            spec.var.span(),
            format!("extract `{var}` needs exactly one of json, css or regex"),
        );
        return None;
    }
    let how = if let Some(pointer) = &spec.json {
        if !pointer.is_empty() && !pointer.starts_with('/') {
            checker.at(
                spec.var.span(),
                format!("`{pointer}` is not a JSON pointer (they start with `/`)"),
            );
            return None;
        }
        ExtractHow::JsonPointer(pointer.clone())
    } else if let Some(css) = &spec.css {
        match scraper::Selector::parse(css.get_ref()) {
            Ok(selector) => ExtractHow::Css {
                selector,
                attr: spec.attr.clone(),
            },
            Err(error) => {
                checker.at(
                    css.span(),
                    format!("`{}` is not a CSS selector ({error})", css.get_ref()),
                );
                return None;
            }
        }
    } else {
        let regex = spec.regex.as_ref().expect("one of three");
        match regex::Regex::new(regex.get_ref()) {
            Ok(compiled) => ExtractHow::Regex(compiled),
            Err(error) => {
                checker.at(regex.span(), format!("invalid regex: {error}"));
                return None;
            }
        }
    };
    Some(ExtractPlan {
        var,
        how,
        all: spec.all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::plan::{CustomTaskDecl, Plan};

    #[track_caller]
    fn check(tasks: &str, expect: &str) -> Option<Plan> {
        let source =
            format!("[suite]\nname = \"t\"\n[load]\nusers = 1\nduration = \"1s\"\n{tasks}\n");
        let options = PlanOptions {
            catalog_variables: BTreeSet::from(["project_id".to_owned()]),
            ..PlanOptions::default()
        };
        super::super::check_plan(&source, &options, expect, |plan| {
            let got: Vec<String> = plan
                .tasks
                .iter()
                .map(|t| format!("{} #{} w{}", t.name, t.endpoint, t.weight))
                .collect();
            got.join(", ")
        })
    }

    #[test]
    fn tasks_with_one_name_share_an_endpoint() {
        let plan = check(
            "[[task]]\nname = \"/p/\"\nget = \"/p/{project_id}/\"\n[[task]]\nname = \"/p/\"\nweight = 3\ntags = [\"api\"]\npost = \"/p/\"\nform = { a = \"1\" }\n[[task]]\nname = \"/q/\"\nget = \"/q/\"",
            "/p/ #0 w1, /p/ #0 w3, /q/ #1 w1",
        )
        .unwrap();
        assert_eq!(plan.endpoints.len(), 2);
        assert_eq!(plan.endpoints[0].method, "GET");
        assert_eq!(plan.endpoints[0].tags, ["api"]);
        let TaskKind::Http(post) = &plan.tasks[1].kind else {
            panic!("an HTTP task")
        };
        assert_eq!(post.method, Method::Post);
        // CSRF is on by default for everything but GET.
        assert!(post.csrf);
        assert!(matches!(post.body, BodyPlan::Form(ref fields) if fields.len() == 1));
    }

    #[test]
    fn a_task_needs_one_request_and_a_path_from_the_root() {
        check("[[task]]\nname = \"/a/\"", "7:8 task `/a/` has no request");
        check(
            "[[task]]\nname = \"/a/\"\nget = \"/a/\"\npost = \"/a/\"",
            "9:8 task `/a/` has more than one method",
        );
        check(
            "[[task]]\nname = \"/a/\"\nget = \"a/\"",
            "8:7 a task's path starts with `/` (the target's base URL is prepended)",
        );
        check(
            "[[task]]\nname = \"/a/\"\nget = \"/a/\"\nbody = \"x\"",
            "8:7 task `/a/` sends a body with GET",
        );
    }

    #[test]
    fn variables_must_be_known_or_extracted() {
        check(
            "[[task]]\nname = \"/a/\"\nget = \"/a/{pekerjaan_id}/\"",
            "8:12 no variable `pekerjaan_id`: the catalog does not offer it and no task extracts it",
        );
        check(
            "[[task]]\nname = \"/a/\"\nget = \"/a/{id}/\"\n[[task]]\nname = \"/b/\"\nget = \"/b/\"\nextract = [{ var = \"id\", json = \"/id\" }]",
            "/a/ #0 w1, /b/ #1 w1",
        );
    }

    #[test]
    fn extractions_take_exactly_one_way() {
        check(
            "[[task]]\nname = \"/a/\"\nget = \"/a/\"\nextract = [{ var = \"x\", json = \"/x\", regex = \"x\" }]",
            "9:20 extract `x` needs exactly one of json, css or regex",
        );
        check(
            "[[task]]\nname = \"/a/\"\nget = \"/a/\"\nextract = [{ var = \"x\", regex = \"(\" }]",
            "9:33 invalid regex: regex parse error:\n    (\n    ^\nerror: unclosed group",
        );
    }

    #[test]
    fn custom_tasks_are_planned_from_their_declaration() {
        let options = PlanOptions {
            custom_tasks: vec![CustomTaskDecl {
                name: "checkout".into(),
                method: "CUSTOM".into(),
                weight: 2,
                tags: vec!["shop".into()],
                on_start: false,
            }],
            ..PlanOptions::default()
        };
        let plan = Plan::from_source(
            "[suite]\nname = \"c\"\n[load]\nusers = 1\nduration = \"1s\"\n",
            "c.toml",
            &options,
        )
        .unwrap();
        assert_eq!(plan.tasks.len(), 1);
        assert!(matches!(plan.tasks[0].kind, TaskKind::Custom));
        assert_eq!(plan.endpoints[0].method, "CUSTOM");
        assert_eq!(plan.selection.included, ["checkout"]);
    }

    #[test]
    fn endpoints_gather_the_tags_of_every_task_of_their_name() {
        let mut endpoints = Vec::new();
        assert_eq!(endpoint_for(&mut endpoints, "a", "GET", &["x".into()]), 0);
        assert_eq!(endpoint_for(&mut endpoints, "b", "GET", &[]), 1);
        assert_eq!(
            endpoint_for(&mut endpoints, "a", "POST", &["y".into(), "x".into()]),
            0
        );
        assert_eq!(endpoints[0].tags, ["x", "y"]);
        assert_eq!(endpoints[0].method, "GET");
    }
}
