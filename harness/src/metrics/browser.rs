//! What the `[[browser]]` users measured, as the summary keeps it: each
//! page's timings in HDR histograms and a per-second series, the worst view
//! with its resources, and the rows every report prints.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::histogram::HistogramData;

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
    /// What went wrong beside the views (the page observer refused).
    #[serde(default)]
    pub errors: Vec<String>,
    /// Browser users that stopped before the load ended, each with when and
    /// why (could not start, the login did not hold): any fails the run.
    #[serde(default)]
    pub stopped: Vec<String>,
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
