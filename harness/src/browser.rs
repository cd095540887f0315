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
mod variables;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub use crate::metrics::browser::{
    BrowserSummary, PAGE_COLUMNS, PageRow, PageSecond, PageSummary, ResourceTiming, ViewTimings,
    short_url,
};
use crate::metrics::histogram::HistogramData;
use crate::metrics::new_histogram;

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
    stopped: Vec<String>,
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
            stopped: Vec::new(),
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

    /// A browser user that stopped before the load ended, and why.
    pub fn stopped(&mut self, user: u32, reason: &str) {
        let line = format!(
            "browser user {user} stopped {:.0}s into the run: {reason}",
            self.started.elapsed().as_secs_f64()
        );
        if self.stopped.len() < MAX_FAILURE_SAMPLES {
            self.stopped.push(line);
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

    /// What the views so far say, the recorder left as it is: the live
    /// feed's copy, once a second (a few pages' histograms cloned).
    pub fn so_far(&self, users: u32) -> BrowserSummary {
        BrowserSummary {
            users,
            browser_version: String::new(),
            logins_attempted: self.logins_attempted,
            logins_succeeded: self.logins_succeeded,
            warm_up_views: self.warm_up_views,
            pages: self
                .pages
                .iter()
                .map(|record| PageSummary {
                    series: record.seconds.values().cloned().collect(),
                    ..record.summary.clone()
                })
                .collect(),
            errors: self.errors.clone(),
            stopped: self.stopped.clone(),
        }
    }

    pub fn finish(self, users: u32, browser_version: String) -> BrowserSummary {
        BrowserSummary {
            browser_version,
            ..self.so_far(users)
        }
    }
}

/// The recorder every browser user of a run records into, shared with
/// the live feed, which reads the views so far once a second.
#[derive(Debug, Clone)]
pub struct BrowserWatch {
    recorder: Arc<Mutex<Recorder>>,
    users: u32,
}

impl BrowserWatch {
    /// A recorder for `users` browser users viewing `pages`, from `started`.
    pub fn new(pages: &[String], users: u32, started: Instant, warm_up: Duration) -> BrowserWatch {
        BrowserWatch {
            recorder: Arc::new(Mutex::new(Recorder::new(pages, started, warm_up))),
            users,
        }
    }

    /// The browsers' figures so far.
    pub fn so_far(&self) -> BrowserSummary {
        self.recorder
            .lock()
            .expect("not poisoned")
            .so_far(self.users)
    }

    pub(crate) fn recorder(&self) -> Arc<Mutex<Recorder>> {
        self.recorder.clone()
    }

    /// The run's figures, when every user has ended; what the live feed
    /// still holds is left empty.
    pub(crate) fn finish(&self, browser_version: String) -> BrowserSummary {
        let mut recorder = self.recorder.lock().expect("not poisoned");
        let ended = Recorder::new(&[], recorder.started, recorder.warm_up);
        std::mem::replace(&mut *recorder, ended).finish(self.users, browser_version)
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
        // The gate keeps the page's LCP (failed views its error rate) and load.
        let figures = crate::baseline::figures::browser_figures(&summary);
        let keys: Vec<&str> = figures.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            ["BROWSER /dashboard/ (LCP)", "BROWSER /dashboard/ (load)"]
        );
        assert_eq!(figures[0].1.failures, 1);
        assert_eq!(figures[0].1.requests, summary.pages[0].views);
    }
}
