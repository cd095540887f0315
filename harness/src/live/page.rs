//! The live page (`--live`): a server on loopback that shows the report's
//! own charts and tables on the run so far, updated each second by
//! server-sent events, and `snapshot.json`, the last second's series.
//!
//! The engine's hook only appends the new seconds to a shared history and
//! replaces the latest frame (a watch channel: a page that renders slowly
//! skips frames, it never holds the load); rendering happens in a task of
//! the page's own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use super::Snapshot;
use crate::metrics::RunSummary;
use crate::metrics::summary::SecondPoint;
use crate::probe::{ProbeReport, ProbeSample};
use crate::report::RunReport;
use crate::report::html::live::Progress;
use crate::verdict::ThresholdResult;

/// The run at one second, as the page draws it.
#[derive(Debug)]
pub struct Frame {
    /// The phases' totals so far (its series is the history's).
    pub summary: RunSummary,
    pub thresholds: Vec<ThresholdResult>,
    pub snapshot: Arc<Snapshot>,
    pub planned_seconds: f64,
    pub ended: bool,
}

/// Every second so far, and every probe sample.
#[derive(Debug, Default)]
pub struct History {
    pub series: Vec<SecondPoint>,
    pub samples: Vec<ProbeSample>,
}

impl History {
    /// Adds the seconds and the probe sample not yet kept.
    pub fn extend(&mut self, series: &[SecondPoint], probe: Option<&ProbeSample>) {
        let kept = self.series.len();
        self.series.extend(series.iter().skip(kept).cloned());
        if let Some(probe) = probe
            && self.samples.last().is_none_or(|s| s.second < probe.second)
        {
            self.samples.push(probe.clone());
        }
    }
}

/// What the server hands out: the last body rendered, the page around it
/// and the last snapshot.
#[derive(Debug, Default)]
struct Rendered {
    page: String,
    body: String,
    snapshot: String,
    ended: bool,
}

/// The page's end of the hook: cheap to clone, never waits.
#[derive(Debug, Clone)]
pub struct PageFeed {
    pub history: Arc<Mutex<History>>,
    pub frames: tokio::sync::watch::Sender<Option<Arc<Frame>>>,
}

/// The running server.
#[derive(Debug)]
pub struct PageServer {
    pub address: SocketAddr,
    feed: PageFeed,
    renderer: tokio::task::JoinHandle<()>,
    server: tokio::task::JoinHandle<()>,
}

impl PageServer {
    /// Binds `address` (loopback only: the page shows the run's target and
    /// is served to no one else) and serves until [`PageServer::stop`].
    pub async fn start(address: SocketAddr) -> anyhow::Result<PageServer> {
        anyhow::ensure!(
            address.ip().is_loopback(),
            "--live {address}: the live page is served on loopback only (127.0.0.1 or ::1)"
        );
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("--live {address}: cannot listen there: {e}"))?;
        let address = listener.local_addr()?;
        let (frames, mut frame_receiver) = tokio::sync::watch::channel(None::<Arc<Frame>>);
        let (rendered_sender, rendered) =
            tokio::sync::watch::channel(Arc::new(Rendered::default()));
        let history = Arc::new(Mutex::new(History::default()));
        let renderer = {
            let history = history.clone();
            tokio::spawn(async move {
                while frame_receiver.changed().await.is_ok() {
                    let Some(frame) = frame_receiver.borrow_and_update().clone() else {
                        continue;
                    };
                    let page = render(&frame, &history);
                    let ended = page.ended;
                    rendered_sender.send_replace(Arc::new(page));
                    if ended {
                        break;
                    }
                }
            })
        };
        let app = Router::new()
            .route("/", get(index))
            .route("/events", get(events))
            .route("/snapshot.json", get(snapshot))
            .with_state(rendered);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(PageServer {
            address,
            feed: PageFeed { history, frames },
            renderer,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    pub fn feed(&self) -> PageFeed {
        self.feed.clone()
    }

    /// Shows the run's end (its own summary and every probe sample), lets
    /// open pages take it, and stops serving.
    pub async fn stop(self, last: Frame, summary: &RunSummary, probes: &ProbeReport) {
        {
            let mut history = self.feed.history.lock().expect("not poisoned");
            history.series.clone_from(&summary.series);
            history.samples.clone_from(&probes.samples);
        }
        self.feed.frames.send_replace(Some(Arc::new(last)));
        let _ = tokio::time::timeout(Duration::from_secs(2), self.renderer).await;
        // Open pages get the end event; then the server goes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.server.abort();
    }
}

fn render(frame: &Frame, history: &Mutex<History>) -> Rendered {
    let (series, samples) = {
        let history = history.lock().expect("not poisoned");
        (history.series.clone(), history.samples.clone())
    };
    let mut summary = frame.summary.clone();
    let last = series.last();
    let progress = Progress {
        second: last.map_or(0, |p| p.second),
        planned_seconds: frame.planned_seconds,
        requests: last.map_or(0, |p| p.totals.requests),
        failures: last.map_or(0, |p| p.totals.failures),
        users: last.map_or(0, |p| p.users),
        ended: frame.ended,
    };
    summary.series = series;
    let mut report = RunReport::new(summary, frame.thresholds.clone());
    report.probes = Some(ProbeReport {
        samples,
        ..ProbeReport::default()
    });
    let body = crate::report::html::live::body(&report, &progress);
    Rendered {
        page: crate::report::html::live::page(&report, &body),
        body,
        snapshot: serde_json::to_string(&*frame.snapshot).unwrap_or_default(),
        ended: frame.ended,
    }
}

type Shared = tokio::sync::watch::Receiver<Arc<Rendered>>;

async fn index(State(rendered): State<Shared>) -> impl IntoResponse {
    let rendered = rendered.borrow().clone();
    if rendered.page.is_empty() {
        return Html(
            r#"<!DOCTYPE html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="1"><title>ahsp-perf</title></head><body><p>The load has not begun yet.</p></body></html>"#
                .to_owned(),
        );
    }
    Html(rendered.page.clone())
}

async fn snapshot(State(rendered): State<Shared>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        rendered.borrow().snapshot.clone(),
    )
}

async fn events(
    State(mut rendered): State<Shared>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let stream = async_stream::stream! {
        loop {
            let now = rendered.borrow_and_update().clone();
            if !now.body.is_empty() {
                yield Ok(Event::default().data(now.body.as_str()));
            }
            if now.ended {
                yield Ok(Event::default().event("end").data("ended"));
                break;
            }
            if rendered.changed().await.is_err() {
                break;
            }
        }
    };
    Sse::new(stream).keep_alive(KeepAlive::default())
}
