//! What the gate keeps of a run, per endpoint: the request and failure
//! counts and the whole latency distribution (the measured phase's
//! histogram and one histogram per measured second), so that any quantile's
//! uncertainty can be computed later, at any confidence. A Locust import
//! keeps what Locust wrote: its percentile columns, rounded as Locust
//! rounds them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::machine::Fingerprint;
use crate::metrics::browser::BrowserSummary;
use crate::metrics::histogram::{HistogramData, PackedHistogram};
use crate::metrics::summary::{EndpointSummary, RunSummary};

/// Where a run's figures came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Source {
    /// An ahsp-perf run.
    Run { started_at: String, target: String },
    /// A Locust `_stats.csv` (no per-second data).
    Locust { file: String },
}

/// One run of one suite, as the gate sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFigures {
    /// The profile the figures were measured under; `None` when unknown (Locust).
    pub profile: Option<String>,
    pub source: Source,
    pub measured_seconds: f64,
    /// The machine the run was measured on; `None` when unknown (Locust).
    pub machine: Option<Fingerprint>,
    /// Keyed by `METHOD name`. Empty for a capacity search, whose
    /// requests mix every step's rate.
    pub endpoints: BTreeMap<String, EndpointFigures>,
    /// A capacity search's result (`--capacity`, `[capacity]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityFigures>,
}

/// What a capacity search found, as the gate keeps it: the rate and the
/// steps around it, in iterations a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityFigures {
    /// The highest step that held below the lowest that failed; `None`
    /// when no step held.
    pub rate: Option<f64>,
    /// The highest step every threshold's interval held at.
    pub low: Option<f64>,
    /// The lowest step that failed; `None` when the highest rate allowed held.
    pub high: Option<f64>,
}

/// One endpoint in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointFigures {
    pub requests: u64,
    pub failures: u64,
    pub latency: Distribution,
}

/// An endpoint's latencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Distribution {
    /// Every request, as an ahsp-perf run recorded it.
    Recorded {
        /// The measured phase, in microseconds.
        histogram: HistogramData,
        /// Each measured second, in order.
        seconds: Vec<Second>,
    },
    /// Locust's percentile columns: `(quantile, milliseconds)`, ascending.
    /// Locust rounds a latency above 100 ms to two significant digits
    /// before counting it, so each figure stands for an interval.
    Percentiles {
        columns: Vec<(f64, f64)>,
        /// Windows of the run from `_stats_history.csv`, when it was given:
        /// how much they differ says how far the requests moved together.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        windows: Vec<Window>,
    },
}

/// A stretch of a Locust run, from its `_stats_history.csv`: the requests
/// and failures it added, and the percentile columns Locust printed at its
/// end (Locust's "current" percentiles, over its last seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub requests: u64,
    pub failures: u64,
    pub columns: Vec<(f64, f64)>,
}

/// One endpoint during one measured second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub requests: u64,
    pub failures: u64,
    pub histogram: PackedHistogram,
}

impl EndpointFigures {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failures as f64 / self.requests as f64
        }
    }
}

pub fn endpoint_key(method: &str, name: &str) -> String {
    format!("{method} {name}")
}

/// The key of a browser page's timing: `BROWSER /dashboard/ (LCP)`.
pub fn browser_key(page: &str, timing: &str) -> String {
    format!("BROWSER {page} ({timing})")
}

/// Each `[[browser.page]]`'s largest contentful paint (its failed views the
/// error rate) and load event, as the gate keeps them. The browser keeps no
/// per-second histograms: each view is taken as independent (a browser
/// user's views are seconds apart).
pub fn browser_figures(browser: &BrowserSummary) -> Vec<(String, EndpointFigures)> {
    let mut figures = Vec::new();
    for page in &browser.pages {
        let timing = |histogram: &HistogramData, failures| EndpointFigures {
            requests: page.views,
            failures,
            latency: Distribution::Recorded {
                histogram: histogram.clone(),
                seconds: Vec::new(),
            },
        };
        figures.push((
            browser_key(&page.page, "LCP"),
            timing(&page.lcp, page.failed),
        ));
        figures.push((browser_key(&page.page, "load"), timing(&page.load, 0)));
    }
    figures
}

impl RunFigures {
    /// The figures of a finished run (measured phase only): each endpoint,
    /// and each `[[browser.page]]`'s largest contentful paint (its failed
    /// views the error rate) and load event.
    pub fn from_run(summary: &RunSummary, machine: Option<Fingerprint>) -> RunFigures {
        let mut endpoints: BTreeMap<String, EndpointFigures> = summary
            .endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| {
                (
                    endpoint_key(&endpoint.meta.method, &endpoint.meta.name),
                    recorded(summary, index, endpoint),
                )
            })
            .collect();
        if let Some(browser) = &summary.browser {
            endpoints.extend(browser_figures(browser));
        }
        RunFigures {
            profile: Some(summary.profile.clone()),
            source: Source::Run {
                started_at: summary.started_at.clone(),
                target: summary.target.clone(),
            },
            measured_seconds: summary.measured_seconds,
            machine,
            endpoints,
            capacity: None,
        }
    }

    /// A capacity search's figures: what it found, and no endpoints (their
    /// requests mix every step's rate, so no latency of theirs is comparable).
    pub fn with_capacity(self, capacity: Option<CapacityFigures>) -> RunFigures {
        match capacity {
            Some(capacity) => RunFigures {
                endpoints: BTreeMap::new(),
                capacity: Some(capacity),
                ..self
            },
            None => self,
        }
    }
}

fn recorded(summary: &RunSummary, index: usize, endpoint: &EndpointSummary) -> EndpointFigures {
    // A summary read back from `result.json` has no per-second histograms:
    // then no seconds at all, rather than seconds that contradict the counts.
    let seconds = summary
        .series
        .iter()
        .filter(|second| !second.warm_up)
        .filter_map(|second| second.endpoints.get(index))
        .map(|second| {
            Some(Second {
                requests: second.requests,
                failures: second.failures,
                histogram: second.histogram.clone()?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    EndpointFigures {
        requests: endpoint.requests,
        failures: endpoint.failures,
        latency: Distribution::Recorded {
            histogram: endpoint.histogram.clone(),
            seconds,
        },
    }
}
