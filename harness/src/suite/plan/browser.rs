//! `[[browser]]`: real browsers beside the HTTP load. Checked here: each
//! page's path template and ready selector, the login (it needs `[auth]`),
//! and whether the machine can hold the browsers asked for — a suite that
//! asks for more is refused before anything starts.

use std::collections::BTreeSet;
use std::time::Duration;

use super::checker::{Checker, check_variables};
use crate::suite::template::Template;
use crate::suite::{BrowserSpec, SuiteFile};

/// One group of browser users, checked.
#[derive(Debug, Clone)]
pub struct BrowserPlan {
    pub name: String,
    pub users: u32,
    pub login: bool,
    pub pause: Duration,
    pub timeout: Duration,
    pub pages: Vec<BrowserPagePlan>,
}

/// One page, checked.
#[derive(Debug, Clone)]
pub struct BrowserPagePlan {
    /// How metrics (`browser.lcp{page:…}`) and reports name it.
    pub name: String,
    pub path: Template,
    pub ready: Option<String>,
}

/// What one browser is allowed of the machine: a browser and its renderer
/// use most of a core while a page loads and a few hundred MB.
pub const CORES_PER_BROWSER: usize = 2;
pub const MEMORY_PER_BROWSER_MB: u64 = 512;

/// How many browsers this machine holds beside the load: one per
/// [`CORES_PER_BROWSER`] cores (at least one) and per
/// [`MEMORY_PER_BROWSER_MB`] of available memory, or
/// `AHSP_PERF_MAX_BROWSERS` when set. The reason reads in the refusal.
pub fn capacity() -> (u32, String) {
    if let Some(max) = std::env::var("AHSP_PERF_MAX_BROWSERS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        return (max, format!("AHSP_PERF_MAX_BROWSERS={max}"));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let available_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kb| kb / 1024);
    let by_cores = (cores / CORES_PER_BROWSER).max(1);
    let by_memory = (available_mb / MEMORY_PER_BROWSER_MB) as usize;
    let max = by_cores.min(by_memory) as u32;
    (
        max,
        format!(
            "one browser per {CORES_PER_BROWSER} cores and {MEMORY_PER_BROWSER_MB} MB: {cores} cores, {available_mb} MB available"
        ),
    )
}

pub(super) fn check_browsers(
    checker: &mut Checker<'_>,
    file: &SuiteFile,
    variables: &BTreeSet<String>,
) -> Vec<BrowserPlan> {
    let mut plans = Vec::new();
    let mut names = BTreeSet::new();
    for (index, spec) in file.browsers.iter().enumerate() {
        if let Some(plan) = check_browser(checker, file, spec, index, variables) {
            for page in &plan.pages {
                if !names.insert(page.name.clone()) {
                    checker.general(format!(
                        "[[browser]]: two pages are named `{}`; give one a `name`",
                        page.name
                    ));
                }
            }
            plans.push(plan);
        }
    }
    let asked: u32 = plans.iter().map(|p| p.users).sum();
    if asked > 0 {
        let (max, why) = capacity();
        if asked > max {
            checker
                .general(format!(
                    "[[browser]]: {asked} browser users asked for, and this machine holds {max} beside the load ({why})"
                ))
                .hint = Some(
                "ask for fewer browser users, run on a larger machine, or set AHSP_PERF_MAX_BROWSERS if you know it holds more".into(),
            );
        }
    }
    plans
}

fn check_browser(
    checker: &mut Checker<'_>,
    file: &SuiteFile,
    spec: &BrowserSpec,
    index: usize,
    variables: &BTreeSet<String>,
) -> Option<BrowserPlan> {
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| format!("browser {}", index + 1));
    let users = spec.users.as_ref().map_or(1, |u| *u.get_ref());
    if users == 0
        && let Some(u) = &spec.users
    {
        checker.at(u.span(), "a browser group needs at least one user");
    }
    let login = match &spec.login {
        Some(login) if *login.get_ref() && file.auth.is_none() => {
            checker.at(
                login.span(),
                "`login = true` logs in through the suite's [auth] form; the suite has none",
            );
            false
        }
        Some(login) => *login.get_ref(),
        None => file.auth.is_some(),
    };
    let pause = spec
        .pause
        .as_ref()
        .and_then(|p| checker.duration(p))
        .unwrap_or(Duration::from_secs(1));
    let timeout = spec
        .timeout
        .as_ref()
        .and_then(|t| checker.duration(t))
        .unwrap_or(Duration::from_secs(15));
    if spec.pages.is_empty() {
        checker.general(format!(
            "[[browser]] `{name}` opens no page: add a [[browser.page]] with a path"
        ));
    }
    let mut pages = Vec::new();
    for page in &spec.pages {
        let path = checker.template(&page.path);
        if let Some(path) = &path {
            check_variables(checker, &page.path, path.variables(), variables);
            if !page.path.get_ref().starts_with('/') {
                checker.at(
                    page.path.span(),
                    "a page's path starts with `/` (the target's URL is put before it)",
                );
            }
        }
        if let Some(ready) = &page.ready
            && let Err(error) = scraper::Selector::parse(ready.get_ref())
        {
            checker.at(
                ready.span(),
                format!("`{}` is not a CSS selector ({error})", ready.get_ref()),
            );
        }
        if let Some(path) = path {
            pages.push(BrowserPagePlan {
                name: page
                    .name
                    .clone()
                    .unwrap_or_else(|| page.path.get_ref().clone()),
                path,
                ready: page.ready.as_ref().map(|r| r.get_ref().clone()),
            });
        }
    }
    Some(BrowserPlan {
        name,
        users,
        login,
        pause,
        timeout,
        pages,
    })
}

#[cfg(test)]
mod tests {
    use crate::suite::{Plan, PlanOptions};

    const SUITE: &str = r##"
[suite]
name = "pages"
[auth]
login-url = "/accounts/login/"
success = { status = 302, location = "/dashboard/", cookie = "sessionid" }
users = { from = "catalog" }
[load]
users = 1
duration = "5s"
[[task]]
name = "/dashboard/"
get = "/dashboard/"
[[browser]]
users = 1
pause = "250ms"
[[browser.page]]
path = "/dashboard/"
ready = "#ringkasan[data-ready]"
[[browser.page]]
name = "rekap"
path = "/detail_project/{project_id}/rekap-rab/"
[thresholds]
"browser.lcp{page:/dashboard/}" = "p(95) < 2.5s"
"browser.ttfb{page:rekap}" = "p(95) < 500ms"
"browser.failed" = "rate == 0"
"##;

    fn options() -> PlanOptions {
        PlanOptions {
            catalog_variables: ["project_id".to_owned()].into(),
            ..PlanOptions::default()
        }
    }

    fn errors(source: &str) -> String {
        Plan::from_source(source, "pages.toml", &options())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn pages_plan_with_their_names_templates_and_login() {
        let plan = Plan::from_source(SUITE, "pages.toml", &options()).unwrap();
        let browser = &plan.browsers[0];
        assert!(browser.login, "a suite with [auth] logs its browsers in");
        assert_eq!(browser.pause, std::time::Duration::from_millis(250));
        let names: Vec<&str> = browser.pages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["/dashboard/", "rekap"]);
        assert_eq!(
            browser.pages[0].ready.as_deref(),
            Some("#ringkasan[data-ready]")
        );
        let sources: Vec<&str> = plan.thresholds.iter().map(|t| t.source.as_str()).collect();
        for source in [
            "browser.lcp{page:/dashboard/}: p(95) < 2.5s",
            "browser.ttfb{page:rekap}: p(95) < 500ms",
            "browser.failed: rate == 0",
        ] {
            assert!(sources.contains(&source), "{source} not in {sources:?}");
        }
    }

    #[test]
    fn mistakes_are_named_where_they_are() {
        let bad_selector = SUITE.replace("#ringkasan[data-ready]", "#ringkasan[");
        assert!(
            errors(&bad_selector).contains("is not a CSS selector"),
            "{}",
            errors(&bad_selector)
        );
        let unknown_page = SUITE.replace("{page:rekap}", "{page:nowhere}");
        assert!(errors(&unknown_page).contains("no [[browser.page]] is named `nowhere`"));
        let by_name = SUITE.replace("{page:rekap}", "{name:/dashboard/}");
        assert!(
            errors(&by_name).contains("is selected by `page`"),
            "{}",
            errors(&by_name)
        );
        let no_variable = SUITE.replace("{project_id}", "{proyek}");
        assert!(errors(&no_variable).contains("no variable `proyek`"));
        let no_browser = SUITE.split("[[browser]]").next().unwrap().to_owned()
            + "[thresholds]\n\"browser.lcp\" = \"p(95) < 2s\"\n";
        assert!(
            errors(&no_browser).contains("the suite has none"),
            "{}",
            errors(&no_browser)
        );
        let login_without_auth = SUITE
            .replace("[auth]\nlogin-url", "[x]\nlogin-url")
            .replace("[x]\nlogin-url = \"/accounts/login/\"\nsuccess = { status = 302, location = \"/dashboard/\", cookie = \"sessionid\" }\nusers = { from = \"catalog\" }\n", "")
            .replace("pause = \"250ms\"", "pause = \"250ms\"\nlogin = true");
        assert!(
            errors(&login_without_auth).contains("the suite has none"),
            "{}",
            errors(&login_without_auth)
        );
    }

    #[test]
    fn more_browsers_than_the_machine_holds_are_refused_before_the_run() {
        let crowd = SUITE.replace("[[browser]]\nusers = 1", "[[browser]]\nusers = 100000");
        let text = errors(&crowd);
        assert!(
            text.contains("100000 browser users asked for, and this machine holds"),
            "{text}"
        );
    }
}
