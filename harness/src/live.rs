//! Watching a run while it runs. Once a second the engine hands the run so
//! far to [`Feed::push`] as a [`Snapshot`]: every receiver the suite or the
//! command line names gets it, off the load's path. Today the receivers are
//! Prometheus remote-write endpoints ([`remote_write`]). When the load ends,
//! [`Exporter::finish`] sends the run's own summary as the last snapshot and
//! reports, per receiver, what was sent and what was dropped.
//!
//! OpenTelemetry (OTLP) export is deliberately absent: no OTLP receiver can
//! be installed from the package registries this project is tested with,
//! and an exporter that no test sends to a real receiver is not shipped.

pub mod remote_write;
pub mod snapshot;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::snapshot::Snapshot;
use crate::metrics::summary::{EndpointMeta, RunHeader};
use crate::metrics::{Aggregator, RunSummary};
use crate::probe::ProbeSample;
use crate::secret::SecretUrl;
use crate::suite::plan::{MetricsOutPlan, ThresholdPlan};

/// How long the end of a run waits for receivers to take what is queued.
const FINISH_DEADLINE: Duration = Duration::from_secs(5);

/// Who a run's series belong to: `job`, `suite`, `run_id`, `shard` (of a
/// sharded run) and the static labels.
#[derive(Debug, Clone)]
pub struct RunLabels {
    pub suite: String,
    pub run_id: String,
    pub shard: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl RunLabels {
    fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("job".to_owned(), "ahsp-perf".to_owned()),
            ("suite".to_owned(), self.suite.clone()),
            ("run_id".to_owned(), self.run_id.clone()),
        ];
        if let Some(shard) = &self.shard {
            pairs.push(("shard".to_owned(), shard.clone()));
        }
        pairs.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        pairs
    }
}

/// What one receiver got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExportReport {
    /// `prometheus-rw`.
    pub kind: String,
    /// Masked of any password.
    pub url: String,
    /// Samples the run offered it.
    pub samples: u64,
    /// Samples it accepted.
    pub sent: u64,
    /// Samples lost: a full queue, a backlog past its bound, a refusal, or
    /// still unsent when the run ended.
    pub dropped: u64,
    /// The last failure, if any.
    pub error: Option<String>,
}

impl ExportReport {
    /// The report's note, when something was lost.
    pub fn line(&self) -> Option<String> {
        (self.dropped > 0).then(|| {
            format!(
                "{} {}: {} of {} samples dropped ({}); the run's own results are whole",
                self.kind,
                self.url,
                self.dropped,
                self.samples,
                self.error
                    .as_deref()
                    .unwrap_or("no answer before the run ended")
            )
        })
    }
}

/// Where each second goes: cheap to clone into the engine's once-a-second
/// hook; pushing never waits.
#[derive(Debug, Clone)]
pub struct Feed {
    queues: Vec<remote_write::Queue>,
}

impl Feed {
    pub fn push(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        for queue in &self.queues {
            queue.push(snapshot.clone());
        }
    }
}

/// The senders of a run's receivers.
#[derive(Debug)]
pub struct Exporter {
    feed: Feed,
    receivers: Vec<Receiver>,
}

#[derive(Debug)]
struct Receiver {
    url: SecretUrl,
    counts: Arc<remote_write::Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Starts a sender per receiver on the current runtime; `None` when
    /// the run sends nowhere.
    pub fn start(plan: &MetricsOutPlan, labels: &RunLabels) -> Option<Exporter> {
        if plan.is_empty() {
            return None;
        }
        let mut queues = Vec::new();
        let mut receivers = Vec::new();
        for url in &plan.remote_write {
            let (queue, counts, task) = remote_write::start(url.clone(), labels.pairs());
            queues.push(queue);
            receivers.push(Receiver {
                url: url.clone(),
                counts,
                task,
            });
        }
        Some(Exporter {
            feed: Feed { queues },
            receivers,
        })
    }

    pub fn feed(&self) -> Feed {
        self.feed.clone()
    }

    /// Sends `last` (the run's own summary), waits a bounded time for what
    /// is queued, and says what each receiver got. Every [`Feed`] cloned
    /// from this one must be dropped first, or the wait runs to its end.
    pub async fn finish(self, last: Snapshot) -> Vec<ExportReport> {
        let Exporter { feed, receivers } = self;
        feed.push(last);
        drop(feed);
        let deadline = tokio::time::Instant::now() + FINISH_DEADLINE;
        let mut reports = Vec::new();
        for Receiver { url, counts, task } in receivers {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
            let samples = counts.offered.load(Ordering::Relaxed);
            let sent = counts.sent.load(Ordering::Relaxed);
            reports.push(ExportReport {
                kind: "prometheus-rw".to_owned(),
                url: url.to_string(),
                samples,
                sent,
                dropped: samples.saturating_sub(sent),
                error: counts.last_error.lock().expect("not poisoned").clone(),
            });
        }
        reports
    }
}

/// The run so far, as the engine's aggregator holds it `elapsed` into the
/// load: its phases' totals, its last complete second, the probes' last
/// sample and the thresholds judged on what was measured.
pub fn snapshot_so_far(
    aggregator: &Aggregator,
    endpoints: &[EndpointMeta],
    thresholds: &[ThresholdPlan],
    warm_up: Duration,
    probe: Option<&ProbeSample>,
    elapsed: Duration,
) -> Snapshot {
    let header = RunHeader {
        warm_up_seconds: warm_up.min(elapsed).as_secs_f64(),
        measured_seconds: elapsed.saturating_sub(warm_up).as_secs_f64(),
        ..RunHeader::default()
    };
    let summary = RunSummary::build(
        header,
        endpoints,
        aggregator.warm_up(),
        aggregator.measured(),
        Vec::new(),
    );
    let judged = crate::verdict::evaluate(&summary, thresholds);
    Snapshot::of(
        &summary,
        aggregator.series().last(),
        probe,
        &judged,
        now_unix_ms(),
        elapsed.as_secs_f64(),
    )
}

/// The wall clock, in milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    crate::engine::unix_ms(std::time::SystemTime::now()) as i64
}
