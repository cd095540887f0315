//! The login flow: the form and its fields, CSRF, what a successful login
//! is (never the status alone), and the pool of users to log in as.

use std::path::Path;
use std::sync::Arc;

use super::checker::Checker;
use super::task::endpoint_for;
use crate::catalog::Secret;
use crate::metrics::summary::{AUTH_TAG, EndpointMeta};
use crate::suite::template::Template;
use crate::suite::{AuthSpec, UserSource};

/// A user a virtual user logs in as, when not drawn from a catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolUser {
    pub login: String,
    pub password: Secret,
}

/// Where the user pool comes from, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum UserPool {
    /// The first `count` users of the catalog (all when `None`).
    Catalog {
        count: Option<u32>,
    },
    Fixed(Vec<PoolUser>),
}

/// The login flow, checked.
#[derive(Debug, Clone)]
pub struct AuthPlan {
    pub login_url: Template,
    pub user_field: String,
    pub password_field: String,
    pub csrf_field: Option<String>,
    pub csrf_cookie: Option<String>,
    pub csrf_header: Option<String>,
    pub success_status: u16,
    pub success_location: Option<String>,
    pub success_cookie: Option<String>,
    /// Marker text → failure kind name.
    pub failure_kinds: Vec<(String, Arc<str>)>,
    pub users: UserPool,
    /// Endpoints of the login form (GET) and the login itself (POST).
    pub form_endpoint: usize,
    pub login_endpoint: usize,
    /// Each iteration logs in afresh (`every-iteration = true`).
    pub every_iteration: bool,
}

/// The login flow, with its user pool read and its two endpoints (the
/// form's GET and the login's POST) added to the endpoint table.
pub(super) fn check_auth(
    checker: &mut Checker<'_>,
    spec: &AuthSpec,
    endpoints: &mut Vec<EndpointMeta>,
    read_pool: bool,
) -> Option<AuthPlan> {
    let login_url = checker.template(&spec.login_url)?;
    let users_span = spec.users.span();
    let users_spec = spec.users.get_ref();
    let users = match users_spec.from {
        // Judging a finished run again: nobody logs in.
        UserSource::File | UserSource::Env if !read_pool => UserPool::Fixed(Vec::new()),
        UserSource::Catalog => {
            if users_spec.count == Some(0) {
                checker.at(users_span, "the user pool is empty (count = 0)");
                return None;
            }
            UserPool::Catalog {
                count: users_spec.count,
            }
        }
        UserSource::File => {
            let Some(path) = &users_spec.path else {
                checker.at(users_span, "users from a file need `path`").hint =
                    Some("a CSV of login,password lines".into());
                return None;
            };
            let base = Path::new(checker.path).parent().unwrap_or(Path::new("."));
            match std::fs::read_to_string(base.join(path)) {
                Ok(text) => match parse_user_lines(text.lines().map(|l| l.split_once(','))) {
                    Ok(users) => UserPool::Fixed(users),
                    Err(problem) => {
                        checker.at(users_span, format!("user file `{path}`: {problem}"));
                        return None;
                    }
                },
                Err(error) => {
                    checker.at(
                        users_span,
                        format!("cannot read user file `{path}`: {error}"),
                    );
                    return None;
                }
            }
        }
        UserSource::Env => {
            let Some(var) = &users_spec.var else {
                checker.at(users_span, "users from the environment need `var`");
                return None;
            };
            match std::env::var(var) {
                Ok(text) => {
                    match parse_user_lines(text.split(',').map(|pair| pair.split_once(':'))) {
                        Ok(users) => UserPool::Fixed(users),
                        Err(problem) => {
                            checker.at(users_span, format!("${var}: {problem}")).hint =
                                Some("write login:password pairs separated by commas".into());
                            return None;
                        }
                    }
                }
                Err(_) => {
                    checker.at(users_span, format!("${var} is not set")).hint =
                        Some("set it to login:password pairs separated by commas".into());
                    return None;
                }
            }
        }
    };
    if spec.success.location.is_none() && spec.success.cookie.is_none() {
        let span = checker.header_span("[auth");
        checker.at(span, "a login's success needs a redirect `location` or a session `cookie`, not the status alone").hint =
            Some("a failed login that answers 200 with the form must not count as a success".into());
    }
    let path = spec.login_url.get_ref().clone();
    let form_endpoint = endpoint_for(
        endpoints,
        &format!("[AUTH] login form {path}"),
        "GET",
        &[AUTH_TAG.to_owned()],
    );
    let login_endpoint = endpoint_for(endpoints, &spec.name, "POST", &[AUTH_TAG.to_owned()]);
    Some(AuthPlan {
        every_iteration: spec.every_iteration,
        login_url,
        user_field: spec.fields.user.clone(),
        password_field: spec.fields.password.clone(),
        csrf_field: spec.fields.csrf.clone(),
        csrf_cookie: spec.csrf.cookie.clone(),
        csrf_header: spec.csrf.header.clone(),
        success_status: spec.success.status,
        success_location: spec.success.location.clone(),
        success_cookie: spec.success.cookie.clone(),
        failure_kinds: spec
            .failure_kinds
            .iter()
            .map(|(kind, marker)| (marker.clone(), Arc::from(kind.as_str())))
            .collect(),
        users,
        form_endpoint,
        login_endpoint,
    })
}

/// Login and password pairs; at least one.
fn parse_user_lines<'a>(
    pairs: impl Iterator<Item = Option<(&'a str, &'a str)>>,
) -> Result<Vec<PoolUser>, String> {
    let mut users = Vec::new();
    for (i, pair) in pairs.enumerate() {
        match pair {
            Some((login, password)) if !login.trim().is_empty() && !password.is_empty() => {
                users.push(PoolUser {
                    login: login.trim().to_owned(),
                    password: Secret::new(password.trim()),
                });
            }
            _ => return Err(format!("entry {} is not login and password", i + 1)),
        }
    }
    if users.is_empty() {
        return Err("the user pool is empty".into());
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH: &str = r#"
[suite]
name = "a"
[auth]
login-url = "/accounts/login/"
success = { status = 302, location = "/dashboard/" }
failure-kinds = { rate-limited = "Too many attempts" }
"#;

    #[track_caller]
    fn check(users: &str, expect: &str) -> Option<(AuthPlan, Vec<EndpointMeta>)> {
        let source = format!("{AUTH}users = {users}\n");
        let file = crate::suite::parse(&source, "a.toml").unwrap();
        let mut checker = Checker::new("a.toml", &source);
        let mut endpoints = Vec::new();
        let plan = check_auth(
            &mut checker,
            file.auth.as_ref().unwrap(),
            &mut endpoints,
            true,
        );
        let errors: Vec<String> = checker
            .errors
            .iter()
            .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
            .collect();
        match &plan {
            Some(plan) => assert_eq!(format!("{:?}", plan.users), expect, "{errors:?}"),
            None => assert_eq!(errors.join("\n"), expect),
        }
        plan.map(|plan| (plan, endpoints))
    }

    #[test]
    fn the_login_flow_adds_its_form_and_its_login_endpoints() {
        let (plan, endpoints) = check(
            "{ from = \"catalog\", count = 3 }",
            "Catalog { count: Some(3) }",
        )
        .unwrap();
        assert_eq!((plan.form_endpoint, plan.login_endpoint), (0, 1));
        assert_eq!(endpoints[0].name, "[AUTH] login form /accounts/login/");
        assert!(endpoints[0].is_auth_flow() && !endpoints[0].is_login());
        assert_eq!(endpoints[1].name, "[AUTH] login");
        assert!(endpoints[1].is_login());
        assert_eq!(plan.user_field, "login");
        assert_eq!(plan.csrf_cookie.as_deref(), Some("csrftoken"));
        assert_eq!(
            plan.failure_kinds,
            [("Too many attempts".to_owned(), Arc::from("rate-limited"))]
        );
    }

    #[test]
    fn a_user_pool_must_hold_someone() {
        check(
            "{ from = \"catalog\", count = 0 }",
            "8:9 the user pool is empty (count = 0)",
        );
        check("{ from = \"file\" }", "8:9 users from a file need `path`");
        check(
            "{ from = \"env\" }",
            "8:9 users from the environment need `var`",
        );
        check(
            "{ from = \"env\", var = \"AHSP_PERF_TEST_UNSET_USERS\" }",
            "8:9 $AHSP_PERF_TEST_UNSET_USERS is not set",
        );
        check(
            "{ from = \"file\", path = \"no-such-users.csv\" }",
            "8:9 cannot read user file `no-such-users.csv`: No such file or directory (os error 2)",
        );
    }

    #[test]
    fn user_lines_are_login_and_password() {
        let users =
            parse_user_lines(["a,1", " b ,2"].into_iter().map(|l| l.split_once(','))).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].login, "b");
        assert_eq!(
            parse_user_lines(["a,1", "b"].into_iter().map(|l| l.split_once(','))),
            Err("entry 2 is not login and password".to_owned())
        );
        assert_eq!(
            parse_user_lines(std::iter::empty()),
            Err("the user pool is empty".to_owned())
        );
    }

    #[test]
    fn a_login_judged_by_its_status_alone_is_refused() {
        let source =
            AUTH.replace(", location = \"/dashboard/\"", "") + "users = { from = \"catalog\" }\n";
        let file = crate::suite::parse(&source, "a.toml").unwrap();
        let mut checker = Checker::new("a.toml", &source);
        check_auth(
            &mut checker,
            file.auth.as_ref().unwrap(),
            &mut Vec::new(),
            true,
        );
        assert_eq!(checker.errors.len(), 1);
        assert!(
            checker.errors[0]
                .message
                .starts_with("a login's success needs"),
            "{}",
            checker.errors[0].message
        );
        assert_eq!(checker.errors[0].line, 4);
    }
}
