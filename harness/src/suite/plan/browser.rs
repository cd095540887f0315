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
    /// Values taken from the page once it is ready, for the pages after it.
    pub extract: Vec<PageExtract>,
}

/// A value a browser page offers the pages after it.
#[derive(Debug, Clone)]
pub struct PageExtract {
    pub var: String,
    pub css: String,
    /// The attribute to read; the element's text without one.
    pub attribute: Option<String>,
    /// Its first capture group (or whole match) is the value.
    pub regex: Option<regex::Regex>,
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
    // A page may use what the pages before it extracted.
    let mut variables = variables.clone();
    for page in &spec.pages {
        let path = checker.template(&page.path);
        if let Some(path) = &path {
            check_variables(checker, &page.path, path.variables(), &variables);
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
            checker
                .at(
                    ready.span(),
                    format!(
                        "`{}` is not a CSS selector: {}",
                        ready.get_ref(),
                        selector_mistake(&error)
                    ),
                )
                .hint = Some(
                "`ready` is a CSS selector the page matches when it is ready, e.g. `#summary[data-ready]`".into(),
            );
        }
        let extract = check_extracts(checker, page.extract.as_ref());
        variables.extend(extract.iter().map(|e| e.var.clone()));
        if let Some(path) = path {
            pages.push(BrowserPagePlan {
                name: page
                    .name
                    .clone()
                    .unwrap_or_else(|| page.path.get_ref().clone()),
                path,
                ready: page.ready.as_ref().map(|r| r.get_ref().clone()),
                extract,
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

/// A page's `extract`s: a valid selector and regex each.
fn check_extracts(
    checker: &mut Checker<'_>,
    extracts: Option<&crate::suite::PageExtracts>,
) -> Vec<PageExtract> {
    let mut checked = Vec::new();
    for spec in extracts.map(|e| e.all()).unwrap_or_default() {
        let mut ok = true;
        if let Err(error) = scraper::Selector::parse(spec.css.get_ref()) {
            checker.at(
                spec.css.span(),
                format!(
                    "`{}` is not a CSS selector: {}",
                    spec.css.get_ref(),
                    selector_mistake(&error)
                ),
            );
            ok = false;
        }
        let regex = match &spec.regex {
            Some(regex) => match regex::Regex::new(regex.get_ref()) {
                Ok(compiled) => Some(compiled),
                Err(error) => {
                    checker.at(
                        regex.span(),
                        format!("`{}` is not a regular expression: {error}", regex.get_ref()),
                    );
                    ok = false;
                    None
                }
            },
            None => None,
        };
        if ok {
            checked.push(PageExtract {
                var: spec.var.get_ref().clone(),
                css: spec.css.get_ref().clone(),
                attribute: spec.attribute.clone(),
                regex,
            });
        }
    }
    checked
}

/// A CSS parser's complaint in the project's words: the parsing crate's own
/// text for some mistakes is "Unexpected error occurred. Please report this
/// to the developer", which is not about the user's selector at all.
fn selector_mistake(error: &scraper::error::SelectorErrorKind<'_>) -> String {
    use scraper::error::SelectorErrorKind as Kind;
    match error {
        Kind::UnexpectedToken(token) => format!("`{}` is not expected there", token_text(token)),
        Kind::EndOfLine => {
            "it ends too early (an unclosed `[`, `(` or a dangling combinator?)".into()
        }
        Kind::InvalidAtRule(rule) => format!("`@{rule}` has no place in a selector"),
        Kind::InvalidAtRuleBody | Kind::QualRuleInvalid => "it is not a selector".into(),
        Kind::ExpectedColonOnPseudoElement(token)
        | Kind::ExpectedIdentityOnPseudoElement(token) => {
            format!(
                "a pseudo-element is written `::name`, not `{}`",
                token_text(token)
            )
        }
        Kind::UnexpectedSelectorParseError(_) => {
            "it uses a form the selector parser does not take (an empty or unsupported part)".into()
        }
    }
}

/// A CSS token as it was written, near enough to find it.
fn token_text(token: &cssparser::Token<'_>) -> String {
    use cssparser::ToCss as _;
    token.to_css_string()
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

    /// The same pages on an application the harness does not seed.
    fn own_app(suite: &str) -> String {
        suite.replacen(
            "[auth]",
            "[target]\nurl = \"http://127.0.0.1:8000/\"\n[auth]",
            1,
        )
    }

    #[test]
    fn a_page_variable_no_source_can_fill_is_refused_where_it_is_used() {
        // The catalog is seeded only for the reference service.
        let unseeded = own_app(SUITE);
        let message = errors(&unseeded);
        assert!(
            message.starts_with("error: pages.toml:24:26: no value can fill `project_id`: it comes from the seeded catalog, and this suite seeds no data")
                && message.contains("hint: list its values with `[data.sql]`"),
            "{message}"
        );
        // A task's extract is no value for a browser user.
        let from_a_task = SUITE.replace(
            "get = \"/dashboard/\"\n[[browser]]",
            "get = \"/dashboard/\"\nextract = [{ var = \"chart_id\", css = \"a.chart\", attr = \"href\" }]\n[[browser]]",
        )
        .replace("{project_id}/rekap-rab/", "{chart_id}/chart/");
        assert!(
            errors(&from_a_task).contains(
                "no value can fill `chart_id`: a task extracts it, and a browser user runs no task"
            ),
            "{}",
            errors(&from_a_task)
        );
        // `[data.sql]` fills it, and so does an earlier page.
        let listed = format!(
            "{}\n[data.sql]\nproject_id = \"SELECT id FROM projects\"\n",
            own_app(SUITE)
        );
        assert!(Plan::from_source(&listed, "pages.toml", &options()).is_ok());
        let extracted = own_app(SUITE).replace(
            "ready = \"#ringkasan[data-ready]\"",
            "ready = \"#ringkasan[data-ready]\"\nextract = { var = \"project_id\", css = \"a[href*=rekap-rab]\", attribute = \"href\", regex = \"/(\\\\d+)/\" }",
        );
        let plan = Plan::from_source(&extracted, "pages.toml", &options())
            .unwrap_or_else(|e| panic!("{e}"));
        let extract = &plan.browsers[0].pages[0].extract[0];
        assert_eq!(
            (extract.var.as_str(), extract.attribute.as_deref()),
            ("project_id", Some("href"))
        );
        assert_eq!(
            extract
                .regex
                .as_ref()
                .unwrap()
                .captures("/detail_project/17/rekap-rab/")
                .unwrap()[1],
            *"17"
        );
        // A later page's extract does not fill an earlier page.
        let too_late = own_app(SUITE).replace(
            "[[browser.page]]\nname = \"rekap\"",
            "[[browser.page]]\nname = \"rekap\"\nextract = { var = \"project_id\", css = \"a\" }",
        );
        assert!(errors(&too_late).contains("no value can fill `project_id`"));
        let bad = extracted
            .replace("a[href*=rekap-rab]", "a[")
            .replace("/(\\\\d+)/", "(");
        let message = errors(&bad);
        assert!(message.contains("`a[` is not a CSS selector"), "{message}");
        assert!(
            message.contains("`(` is not a regular expression"),
            "{message}"
        );
    }

    #[test]
    fn mistakes_are_named_where_they_are() {
        let bad_selector = SUITE.replace("#ringkasan[data-ready]", "#ringkasan[");
        assert!(
            errors(&bad_selector).contains("is not a CSS selector"),
            "{}",
            errors(&bad_selector)
        );
        // In the project's words, never the parsing crate's "Unexpected
        // error occurred. Please report this to the developer".
        for selector in ["#ringkasan[", "div >", "::", "a:nope(", "@media x"] {
            let message = errors(&SUITE.replace("#ringkasan[data-ready]", selector));
            assert!(
                message.contains("is not a CSS selector: ")
                    && !message.to_lowercase().contains("report this"),
                "{message}"
            );
        }
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
