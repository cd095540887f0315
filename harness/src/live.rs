//! Watching a run while it runs. Once a second the engine's hook hands the
//! run so far to [`Feed::second`]: it becomes a [`Snapshot`] for every
//! Prometheus remote-write receiver the suite or the command line names
//! ([`remote_write`]) and a frame for the live page (`--live`, [`page`]),
//! both off the load's path. When the load ends, [`Live::finish`] sends the
//! run's own summary last and reports, per receiver, what was sent and what
//! was dropped.
//!
//! OpenTelemetry (OTLP) export is deliberately absent: no OTLP receiver can
//! be installed from the package registries this project is tested with,
//! and an exporter that no test sends to a real receiver is not shipped.

pub mod page;
pub mod remote_write;
pub mod snapshot;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use self::snapshot::Snapshot;
use crate::metrics::summary::{EndpointMeta, RunHeader};
use crate::metrics::{Aggregator, RunSummary};
use crate::probe::ProbeSample;
use crate::report::ExportReport;
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

/// Where each second goes: moved into the engine's once-a-second hook;
/// nothing in it waits.
#[derive(Debug)]
pub struct Feed {
    queues: Vec<remote_write::Queue>,
    page: Option<page::PageFeed>,
    /// The suite's name and the target (masked), for the page's heading.
    suite: String,
    target: String,
    endpoints: Vec<EndpointMeta>,
    thresholds: Vec<ThresholdPlan>,
    warm_up: Duration,
    planned: Duration,
    /// The browsers' recorder, read each second, when the suite has any.
    browsers: Option<crate::browser::BrowserWatch>,
}

impl Feed {
    /// Each second carries the browsers' figures so far too.
    pub fn with_browsers(self, browsers: Option<crate::browser::BrowserWatch>) -> Feed {
        Feed { browsers, ..self }
    }

    /// The run so far, as the engine's aggregator holds it `elapsed` into
    /// the load: its phases' totals, its seconds, the probes' last sample
    /// and the thresholds judged on what was measured.
    pub fn second(&self, aggregator: &Aggregator, probe: Option<&ProbeSample>, elapsed: Duration) {
        let header = RunHeader {
            suite: self.suite.clone(),
            target: self.target.clone(),
            warm_up_seconds: self.warm_up.min(elapsed).as_secs_f64(),
            measured_seconds: elapsed.saturating_sub(self.warm_up).as_secs_f64(),
            ..RunHeader::default()
        };
        let mut summary = RunSummary::build(
            header,
            &self.endpoints,
            aggregator.warm_up(),
            aggregator.measured(),
            Vec::new(),
        );
        summary.browser = self
            .browsers
            .as_ref()
            .map(crate::browser::BrowserWatch::so_far);
        let judged = crate::verdict::evaluate(&summary, &self.thresholds);
        let snapshot = Arc::new(Snapshot::of(
            &summary,
            aggregator.series().last(),
            probe,
            &judged,
            now_unix_ms(),
            elapsed.as_secs_f64(),
        ));
        for queue in &self.queues {
            queue.push(snapshot.clone());
        }
        if let Some(page) = &self.page {
            page.history
                .lock()
                .expect("not poisoned")
                .extend(aggregator.series(), probe);
            page.frames.send_replace(Some(Arc::new(page::Frame {
                summary,
                thresholds: judged,
                snapshot,
                planned_seconds: self.planned.as_secs_f64(),
                ended: false,
            })));
        }
    }
}

/// What watches a run: its receivers' senders and its live page.
#[derive(Debug)]
pub struct Live {
    queues: Vec<remote_write::Queue>,
    receivers: Vec<Receiver>,
    page: Option<page::PageServer>,
}

#[derive(Debug)]
struct Receiver {
    url: SecretUrl,
    counts: Arc<remote_write::Counts>,
    task: tokio::task::JoinHandle<()>,
}

/// The run's own figures at its end, sent last.
#[derive(Debug, Clone, Copy)]
pub struct Last<'a> {
    pub summary: &'a RunSummary,
    pub probes: &'a crate::probe::ProbeReport,
    pub thresholds: &'a [crate::verdict::ThresholdResult],
}

impl Live {
    /// Starts a sender per receiver and the live page (on `page`, when
    /// given) on the current runtime; `None` when nothing watches the run.
    pub async fn start(
        plan: &MetricsOutPlan,
        labels: &RunLabels,
        page: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Option<Live>> {
        if plan.is_empty() && page.is_none() {
            return Ok(None);
        }
        let page = match page {
            Some(address) => Some(page::PageServer::start(address).await?),
            None => None,
        };
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
        Ok(Some(Live {
            queues,
            receivers,
            page,
        }))
    }

    /// The live page's address, when it serves one.
    pub fn page_url(&self) -> Option<String> {
        self.page.as_ref().map(page::PageServer::url)
    }

    /// The feed the engine's hook pushes into.
    pub fn feed(
        &self,
        suite: &str,
        target: &str,
        endpoints: &[EndpointMeta],
        thresholds: &[ThresholdPlan],
        warm_up: Duration,
        planned: Duration,
    ) -> Feed {
        Feed {
            queues: self.queues.clone(),
            page: self.page.as_ref().map(page::PageServer::feed),
            suite: suite.to_owned(),
            target: target.to_owned(),
            endpoints: endpoints.to_vec(),
            thresholds: thresholds.to_vec(),
            warm_up,
            planned,
            browsers: None,
        }
    }

    /// Sends the run's own figures last (so what the receivers keep last
    /// is what `result.json` states, and the page shows the end), waits a
    /// bounded time for what is queued, and says what each receiver got.
    /// The [`Feed`] must be dropped first, or the wait runs to its end.
    pub async fn finish(self, last: Last<'_>) -> Vec<ExportReport> {
        let Live {
            queues,
            receivers,
            page,
        } = self;
        let summary = last.summary;
        let elapsed = summary.warm_up_seconds + summary.measured_seconds;
        let snapshot = Arc::new(Snapshot::of(
            summary,
            summary.series.last(),
            last.probes.samples.last(),
            last.thresholds,
            now_unix_ms(),
            elapsed,
        ));
        for queue in &queues {
            queue.push(snapshot.clone());
        }
        drop(queues);
        if let Some(page) = page {
            let frame = page::Frame {
                summary: summary.clone(),
                thresholds: last.thresholds.to_vec(),
                snapshot,
                planned_seconds: elapsed,
                ended: true,
            };
            page.stop(frame, summary, last.probes).await;
        }
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

/// The engine's once-a-second hook: `check` (a capacity search or the
/// abort-on-fail thresholds), then the run so far handed to what watches it.
pub fn each_second(
    mut check: Option<crate::engine::AbortCheck>,
    feed: Option<Feed>,
    probe: tokio::sync::watch::Receiver<Option<ProbeSample>>,
) -> Option<crate::engine::AbortCheck> {
    let Some(feed) = feed else {
        return check;
    };
    Some(Box::new(move |aggregator, elapsed| {
        let stop = check
            .as_mut()
            .is_some_and(|check| check(aggregator, elapsed));
        feed.second(aggregator, probe.borrow().as_ref(), elapsed);
        stop
    }))
}

/// The wall clock, in milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    crate::engine::unix_ms(std::time::SystemTime::now()) as i64
}
