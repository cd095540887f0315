//! `[[browser]]`: real browsers beside the HTTP load. Checked here: each
//! page's path template and ready selector, the login (it needs `[auth]`),
//! and whether the machine can hold the browsers asked for — a suite that
//! asks for more is refused before anything starts.

use std::collections::BTreeSet;
use std::time::Duration;

use toml::Spanned;

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
    let pause = duration(checker, spec.pause.as_ref(), Duration::from_secs(1));
    let timeout = duration(checker, spec.timeout.as_ref(), Duration::from_secs(15));
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

fn duration(
    checker: &mut Checker<'_>,
    text: Option<&Spanned<String>>,
    default: Duration,
) -> Duration {
    let Some(text) = text else {
        return default;
    };
    match humantime::parse_duration(text.get_ref()) {
        Ok(duration) => duration,
        Err(error) => {
            checker.at(
                text.span(),
                format!("`{}` is not a duration: {error}", text.get_ref()),
            );
            default
        }
    }
}
