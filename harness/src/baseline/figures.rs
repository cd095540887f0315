//! A suite's figures per endpoint, as a baseline keeps them: p50/p95/p99,
//! error rate and throughput of the measured phase, with their noise.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::statistics::Noise;
use super::statistics::per_second_noise;
use crate::metrics::summary::{EndpointSummary, RunSummary};

/// Where a suite's figures came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Source {
    /// An ahsp-perf run.
    Run { started_at: String, target: String },
    /// A Locust `_stats.csv` (no per-second data: noise unknown).
    Locust { file: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteBaseline {
    /// The profile the figures were measured under; `None` when unknown (Locust).
    pub profile: Option<String>,
    pub source: Source,
    pub measured_seconds: f64,
    /// Keyed by `METHOD name`.
    pub endpoints: BTreeMap<String, EndpointFigures>,
}

/// One endpoint's figures and their noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointFigures {
    pub requests: u64,
    pub failures: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub requests_per_second: f64,
    /// Standard errors of the whole-run figures, from per-second windows.
    pub noise: Option<Noise>,
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

impl SuiteBaseline {
    /// The figures of a finished run (measured phase only).
    pub fn from_run(summary: &RunSummary) -> SuiteBaseline {
        let endpoints = summary
            .endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| {
                (
                    endpoint_key(&endpoint.meta.method, &endpoint.meta.name),
                    figures(endpoint, per_second_noise(&summary.series, index)),
                )
            })
            .collect();
        SuiteBaseline {
            profile: Some(summary.profile.clone()),
            source: Source::Run {
                started_at: summary.started_at.clone(),
                target: summary.target.clone(),
            },
            measured_seconds: summary.measured_seconds,
            endpoints,
        }
    }
}

fn figures(endpoint: &EndpointSummary, noise: Option<Noise>) -> EndpointFigures {
    EndpointFigures {
        requests: endpoint.requests,
        failures: endpoint.failures,
        p50_ms: endpoint.latency_ms.p50,
        p95_ms: endpoint.latency_ms.p95,
        p99_ms: endpoint.latency_ms.p99,
        requests_per_second: endpoint.requests_per_second,
        noise,
    }
}
