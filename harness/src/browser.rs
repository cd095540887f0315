//! Real browsers beside the HTTP load (`[[browser]]`): headless Chromium
//! driven through chromedriver (WebDriver, with Chromium's DevTools reached
//! through chromedriver's `goog/cdp/execute` for the one thing WebDriver
//! lacks: a script that observes the page from before its own scripts run).
//!
//! Each page view records, in HDR histograms like the HTTP endpoints' and
//! in a per-second series: time to first byte, DOMContentLoaded, the load
//! event, Largest Contentful Paint, total blocking time (each long task's
//! time beyond 50 ms, from navigation until the page was ready), and the
//! count and bytes of the page's requests; the slowest resources of the
//! worst view are kept as a waterfall, and a screenshot of the worst view
//! and of a failed one.

pub mod driver;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::metrics::new_histogram;
use crate::metrics::summary::HistogramData;

/// What the browsers measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BrowserSummary {
    /// Browser users that ran.
    pub users: u32,
    /// Chromium's version, as the browser reported it.
    pub browser_version: String,
    /// Logins through the page's form: attempted and succeeded.
    pub logins_attempted: u64,
    pub logins_succeeded: u64,
    /// Page views that began during the warm-up (not in the figures).
    pub warm_up_views: u64,
    /// One per `[[browser.page]]`, in suite order.
    pub pages: Vec<PageSummary>,
    /// What stopped a browser user (could not start, lost its session).
    #[serde(default)]
    pub errors: Vec<String>,
}

/// The page views of one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PageSummary {
    /// The page's name (`browser.lcp{page:…}`).
    pub page: String,
    /// Measured views, failed ones included.
    pub views: u64,
    /// Views that failed: not ready in time, an error status, a navigation error.
    pub failed: u64,
    /// Times in microseconds from the start of the navigation.
    #[schemars(with = "String")]
    pub ttfb: HistogramData,
    #[schemars(with = "String")]
    pub dcl: HistogramData,
    #[schemars(with = "String")]
    pub load: HistogramData,
    #[schemars(with = "String")]
    pub lcp: HistogramData,
    /// Total blocking time, in microseconds.
    #[schemars(with = "String")]
    pub tbt: HistogramData,
    /// Requests per view (the document included) …
    #[schemars(with = "String")]
    pub requests: HistogramData,
    /// … and the bytes they moved over the network.
    #[schemars(with = "String")]
    pub bytes: HistogramData,
    /// One point per second of the run in which a view of this page ended.
    pub series: Vec<PageSecond>,
    /// The slowest resource any view loaded.
    pub slowest_resource: Option<ResourceTiming>,
    /// The worst view (by LCP, else load): its timings and its resources,
    /// slowest first (at most 25).
    pub worst: Option<ViewTimings>,
    /// Why views failed, a few samples.
    #[serde(default)]
    pub failures: Vec<String>,
    /// Screenshots in the run folder: of the worst view, of the first failed one.
    pub worst_screenshot: Option<String>,
    pub failed_screenshot: Option<String>,
}

/// One second of one page's views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PageSecond {
    /// Seconds since the run began (as the HTTP series counts them).
    pub second: u64,
    pub views: u64,
    pub failed: u64,
    /// The largest LCP of a view that ended in this second, in ms.
    pub lcp_max_ms: f64,
}

/// One resource a page loaded, as the browser's resource timing saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResourceTiming {
    pub name: String,
    /// `script`, `link`, `fetch`, `img`…
    pub kind: String,
    /// From the start of the navigation, in ms.
    pub start_ms: f64,
    pub duration_ms: f64,
    /// Bytes over the network (0 from the cache).
    pub bytes: u64,
}

/// What one view measured, in ms (bytes as bytes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ViewTimings {
    pub url: String,
    pub ttfb_ms: f64,
    pub dcl_ms: f64,
    pub load_ms: f64,
    pub lcp_ms: f64,
    pub tbt_ms: f64,
    /// The long tasks, in ms each.
    pub long_tasks_ms: Vec<f64>,
    pub requests: u64,
    pub bytes: u64,
    pub status: u16,
    pub resources: Vec<ResourceTiming>,
}

impl PageSummary {
    /// The histogram of a browser metric (`browser.lcp` → `lcp`).
    pub fn histogram(&self, metric: &crate::suite::metric::Metric) -> Option<&Histogram<u64>> {
        use crate::suite::metric::Metric;
        Some(match metric {
            Metric::BrowserTtfb => &self.ttfb.0,
            Metric::BrowserDcl => &self.dcl.0,
            Metric::BrowserLoad => &self.load.0,
            Metric::BrowserLcp => &self.lcp.0,
            Metric::BrowserTbt => &self.tbt.0,
            Metric::BrowserRequests => &self.requests.0,
            Metric::BrowserBytes => &self.bytes.0,
            _ => return None,
        })
    }
}

/// Collects page views from every browser user.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    warm_up: Duration,
    pages: Vec<PageRecord>,
    warm_up_views: u64,
    logins_attempted: u64,
    logins_succeeded: u64,
    errors: Vec<String>,
}

#[derive(Debug)]
struct PageRecord {
    summary: PageSummary,
    seconds: BTreeMap<u64, PageSecond>,
    worst_key: f64,
}

/// How a view ended.
#[derive(Debug)]
pub enum ViewOutcome {
    Measured(ViewTimings),
    Failed {
        reason: String,
        timings: Option<ViewTimings>,
    },
}

/// What the recorder wants kept of a view: a screenshot of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Nothing,
    Worst,
    Failed,
}

const MAX_FAILURE_SAMPLES: usize = 5;
const MAX_WATERFALL: usize = 25;

impl Recorder {
    pub fn new(pages: &[String], started: Instant, warm_up: Duration) -> Recorder {
        Recorder {
            started,
            warm_up,
            pages: pages
                .iter()
                .map(|page| PageRecord {
                    summary: PageSummary {
                        page: page.clone(),
                        views: 0,
                        failed: 0,
                        ttfb: HistogramData(new_histogram()),
                        dcl: HistogramData(new_histogram()),
                        load: HistogramData(new_histogram()),
                        lcp: HistogramData(new_histogram()),
                        tbt: HistogramData(new_histogram()),
                        requests: HistogramData(new_histogram()),
                        bytes: HistogramData(plain_histogram()),
                        series: Vec::new(),
                        slowest_resource: None,
                        worst: None,
                        failures: Vec::new(),
                        worst_screenshot: None,
                        failed_screenshot: None,
                    },
                    seconds: BTreeMap::new(),
                    worst_key: -1.0,
                })
                .collect(),
            warm_up_views: 0,
            logins_attempted: 0,
            logins_succeeded: 0,
            errors: Vec::new(),
        }
    }

    pub fn login(&mut self, succeeded: bool) {
        self.logins_attempted += 1;
        self.logins_succeeded += u64::from(succeeded);
    }

    pub fn error(&mut self, error: String) {
        if self.errors.len() < MAX_FAILURE_SAMPLES && !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    /// Records a view of page `index` that began at `began`; says whether
    /// its screenshot is worth keeping.
    pub fn view(&mut self, index: usize, began: Instant, outcome: ViewOutcome) -> Keep {
        if began.duration_since(self.started) < self.warm_up {
            self.warm_up_views += 1;
            return Keep::Nothing;
        }
        let second = self.started.elapsed().as_secs();
        let record = &mut self.pages[index];
        let point = record.seconds.entry(second).or_insert(PageSecond {
            second,
            views: 0,
            failed: 0,
            lcp_max_ms: 0.0,
        });
        point.views += 1;
        record.summary.views += 1;
        match outcome {
            ViewOutcome::Failed { reason, timings } => {
                point.failed += 1;
                record.summary.failed += 1;
                let first = record.summary.failures.is_empty();
                if record.summary.failures.len() < MAX_FAILURE_SAMPLES
                    && !record.summary.failures.contains(&reason)
                {
                    record.summary.failures.push(reason);
                }
                if let Some(timings) = timings {
                    record.summary.keep_resources(&timings);
                }
                if first { Keep::Failed } else { Keep::Nothing }
            }
            ViewOutcome::Measured(mut timings) => {
                point.lcp_max_ms = point.lcp_max_ms.max(timings.lcp_ms);
                let s = &mut record.summary;
                let micros = |ms: f64| (ms.max(0.0) * 1000.0).round() as u64;
                let _ = s.ttfb.0.record(micros(timings.ttfb_ms));
                let _ = s.dcl.0.record(micros(timings.dcl_ms));
                let _ = s.load.0.record(micros(timings.load_ms));
                if timings.lcp_ms > 0.0 {
                    let _ = s.lcp.0.record(micros(timings.lcp_ms));
                }
                let _ = s.tbt.0.record(micros(timings.tbt_ms));
                let _ = s.requests.0.record(timings.requests);
                let _ = s.bytes.0.record(timings.bytes);
                s.keep_resources(&timings);
                let key = if timings.lcp_ms > 0.0 {
                    timings.lcp_ms
                } else {
                    timings.load_ms
                };
                if key > record.worst_key {
                    record.worst_key = key;
                    timings
                        .resources
                        .sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
                    timings.resources.truncate(MAX_WATERFALL);
                    s.worst = Some(timings);
                    Keep::Worst
                } else {
                    Keep::Nothing
                }
            }
        }
    }

    /// Notes where a view's screenshot was written.
    pub fn screenshot(&mut self, index: usize, keep: Keep, file: String) {
        let summary = &mut self.pages[index].summary;
        match keep {
            Keep::Worst => summary.worst_screenshot = Some(file),
            Keep::Failed => summary.failed_screenshot = Some(file),
            Keep::Nothing => {}
        }
    }

    pub fn finish(self, users: u32, browser_version: String) -> BrowserSummary {
        BrowserSummary {
            users,
            browser_version,
            logins_attempted: self.logins_attempted,
            logins_succeeded: self.logins_succeeded,
            warm_up_views: self.warm_up_views,
            pages: self
                .pages
                .into_iter()
                .map(|mut record| {
                    record.summary.series = record.seconds.into_values().collect();
                    record.summary
                })
                .collect(),
            errors: self.errors,
        }
    }
}

impl PageSummary {
    fn keep_resources(&mut self, timings: &ViewTimings) {
        if let Some(slowest) = timings
            .resources
            .iter()
            .max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))
            && self
                .slowest_resource
                .as_ref()
                .is_none_or(|s| slowest.duration_ms > s.duration_ms)
        {
            self.slowest_resource = Some(slowest.clone());
        }
    }
}

/// A histogram of plain values up to a few GB (bytes).
fn plain_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1 << 40, 3).expect("valid bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(lcp: f64) -> ViewTimings {
        ViewTimings {
            ttfb_ms: 5.0,
            dcl_ms: 40.0,
            load_ms: 60.0,
            lcp_ms: lcp,
            tbt_ms: 0.0,
            requests: 4,
            bytes: 12_000,
            status: 200,
            resources: vec![ResourceTiming {
                name: "/static/ahsp.js".into(),
                kind: "script".into(),
                start_ms: 10.0,
                duration_ms: lcp / 2.0,
                bytes: 2_000,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn views_after_the_warm_up_are_recorded_and_the_worst_is_kept() {
        let started = Instant::now() - Duration::from_secs(10);
        let mut recorder = Recorder::new(&["/dashboard/".into()], started, Duration::from_secs(2));
        assert_eq!(
            recorder.view(0, started, ViewOutcome::Measured(timings(100.0))),
            Keep::Nothing,
            "a warm-up view is not measured"
        );
        let now = Instant::now();
        assert_eq!(
            recorder.view(0, now, ViewOutcome::Measured(timings(100.0))),
            Keep::Worst
        );
        assert_eq!(
            recorder.view(0, now, ViewOutcome::Measured(timings(50.0))),
            Keep::Nothing
        );
        assert_eq!(
            recorder.view(0, now, ViewOutcome::Measured(timings(900.0))),
            Keep::Worst
        );
        let failed = ViewOutcome::Failed {
            reason: "not ready".into(),
            timings: None,
        };
        assert_eq!(recorder.view(0, now, failed), Keep::Failed);
        let summary = recorder.finish(1, "test".into());
        let page = &summary.pages[0];
        assert_eq!((page.views, page.failed, summary.warm_up_views), (4, 1, 1));
        assert_eq!(page.lcp.0.len(), 3);
        assert_eq!(page.worst.as_ref().unwrap().lcp_ms, 900.0);
        assert_eq!(page.slowest_resource.as_ref().unwrap().duration_ms, 450.0);
        assert_eq!(page.series.iter().map(|s| s.views).sum::<u64>(), 4);
    }
}

/// One page's figures as every report prints them (ms, KB).
#[derive(Debug, Clone, PartialEq)]
pub struct PageRow {
    pub page: String,
    pub views: u64,
    pub failed: u64,
    pub ttfb_p95: Option<f64>,
    pub dcl_p95: Option<f64>,
    pub load_p95: Option<f64>,
    pub lcp_p50: Option<f64>,
    pub lcp_p95: Option<f64>,
    pub tbt_p95: Option<f64>,
    /// Median requests and kilobytes of a view.
    pub requests: Option<f64>,
    pub kilobytes: Option<f64>,
    /// `name (kind) 123ms`.
    pub slowest: String,
}

/// The columns of [`PageRow`], as the text reports head them.
pub const PAGE_COLUMNS: [&str; 12] = [
    "page",
    "views",
    "fails",
    "TTFB p95",
    "DCL p95",
    "load p95",
    "LCP p50",
    "LCP p95",
    "TBT p95",
    "requests",
    "KB",
    "slowest resource",
];

impl BrowserSummary {
    /// A line that says what ran: `1 browser user (HeadlessChrome/156…), logins 1/1, 2 warm-up views`.
    pub fn headline(&self) -> String {
        format!(
            "{} browser user{} ({}), logins {}/{}, warm-up views (not judged) {}",
            self.users,
            if self.users == 1 { "" } else { "s" },
            self.browser_version,
            self.logins_succeeded,
            self.logins_attempted,
            self.warm_up_views
        )
    }

    pub fn rows(&self) -> Vec<PageRow> {
        let quantile = |h: &Histogram<u64>, q: f64, scale: f64| {
            (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / scale)
        };
        self.pages
            .iter()
            .map(|p| PageRow {
                page: p.page.clone(),
                views: p.views,
                failed: p.failed,
                ttfb_p95: quantile(&p.ttfb.0, 0.95, 1000.0),
                dcl_p95: quantile(&p.dcl.0, 0.95, 1000.0),
                load_p95: quantile(&p.load.0, 0.95, 1000.0),
                lcp_p50: quantile(&p.lcp.0, 0.5, 1000.0),
                lcp_p95: quantile(&p.lcp.0, 0.95, 1000.0),
                tbt_p95: quantile(&p.tbt.0, 0.95, 1000.0),
                requests: quantile(&p.requests.0, 0.5, 1.0),
                kilobytes: quantile(&p.bytes.0, 0.5, 1024.0),
                slowest: p
                    .slowest_resource
                    .as_ref()
                    .map(|r| format!("{} ({}) {:.0}ms", short_url(&r.name), r.kind, r.duration_ms))
                    .unwrap_or_default(),
            })
            .collect()
    }
}

impl PageRow {
    /// The row's cells, formatted, in [`PAGE_COLUMNS`] order.
    pub fn cells(&self) -> Vec<String> {
        let ms = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
        let plain = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.0}"));
        vec![
            self.page.clone(),
            self.views.to_string(),
            self.failed.to_string(),
            ms(self.ttfb_p95),
            ms(self.dcl_p95),
            ms(self.load_p95),
            ms(self.lcp_p50),
            ms(self.lcp_p95),
            ms(self.tbt_p95),
            plain(self.requests),
            plain(self.kilobytes),
            self.slowest.clone(),
        ]
    }
}

/// A resource's URL without the target's origin: `/static/ahsp.js`.
pub fn short_url(url: &str) -> &str {
    url.find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
        .unwrap_or(url)
}
