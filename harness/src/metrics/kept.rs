//! A second of a run kept whole and packed: every endpoint's histogram,
//! counts and failures, the counters and what the users were doing. A
//! shard hands its seconds to the merge, which adds them exactly (HDR
//! histograms add without loss), so the merged run is the run one
//! generator would have recorded.

use serde::{Deserialize, Serialize};

use super::histogram::PackedHistogram;
use super::{Counters, EndpointStats, FailureRecord, Gauges, Interval, Phase};

/// One second of one generator, all endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptSecond {
    pub second: u64,
    pub phase: Phase,
    pub gauges: Gauges,
    pub counters: Counters,
    /// In the order of the plan's endpoints.
    pub endpoints: Vec<KeptEndpoint>,
}

/// One endpoint during one kept second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptEndpoint {
    pub requests: u64,
    pub failures: u64,
    pub bytes: u64,
    pub conflicts: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_kinds: Vec<FailureRecord>,
    pub histogram: PackedHistogram,
}

impl KeptSecond {
    pub fn pack(second: u64, gauges: Gauges, interval: &Interval) -> KeptSecond {
        KeptSecond {
            second,
            phase: interval.phase,
            gauges,
            counters: interval.counters.clone(),
            endpoints: interval
                .endpoints
                .iter()
                .map(|stats| KeptEndpoint {
                    requests: stats.requests,
                    failures: stats.failures,
                    bytes: stats.bytes,
                    conflicts: stats.conflicts,
                    failure_kinds: stats.failure_kinds.clone(),
                    histogram: PackedHistogram::pack(&stats.latency),
                })
                .collect(),
        }
    }

    /// The interval it was packed from.
    pub fn unpack(&self) -> Interval {
        Interval {
            phase: self.phase,
            endpoints: self
                .endpoints
                .iter()
                .map(|kept| EndpointStats {
                    latency: kept.histogram.unpack(),
                    requests: kept.requests,
                    failures: kept.failures,
                    bytes: kept.bytes,
                    conflicts: kept.conflicts,
                    failure_kinds: kept.failure_kinds.clone(),
                    // A shard's slowest requests stay in its own report.
                    slowest: Vec::new(),
                })
                .collect(),
            counters: self.counters.clone(),
        }
    }
}
