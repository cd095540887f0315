//! Prometheus remote write (protocol 1.0): each snapshot becomes a
//! `WriteRequest` of time series, encoded with `prost` and compressed with
//! snappy's block format (`snap`), POSTed to the receiver.
//!
//! A receiver that is slow or gone never slows the load: snapshots reach
//! the sender through a bounded queue, a full queue drops the newest with a
//! count, and a failed send keeps its samples for the next attempt up to
//! [`BACKLOG`] snapshots, after which the oldest are dropped, counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message as _;

use super::snapshot::Snapshot;
use crate::secret::SecretUrl;

/// The protobuf messages of `prompb/remote.proto` and `prompb/types.proto`
/// that protocol 1.0 uses (written with prost's derive: no `protoc` at
/// build time for four messages).
pub mod prompb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// Snapshots kept for a receiver that does not answer, before the oldest
/// are dropped: a minute of the run.
pub const BACKLOG: usize = 60;
/// Snapshots waiting for the sender before the newest is dropped.
const QUEUE: usize = 8;
/// How long one POST may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// The series of `snapshots` with the run's own labels, sorted by name as
/// the protocol asks, compressed for the wire.
pub fn encode(snapshots: &[Arc<Snapshot>], run_labels: &[(String, String)]) -> Vec<u8> {
    let mut request = prompb::WriteRequest::default();
    for snapshot in snapshots {
        for point in &snapshot.points {
            let mut labels: Vec<prompb::Label> = run_labels
                .iter()
                .map(|(name, value)| prompb::Label {
                    name: name.clone(),
                    value: value.clone(),
                })
                .chain(point.labels.iter().map(|(name, value)| prompb::Label {
                    name: (*name).to_owned(),
                    value: value.clone(),
                }))
                .chain([prompb::Label {
                    name: "__name__".to_owned(),
                    value: point.name.clone(),
                }])
                .collect();
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            request.timeseries.push(prompb::TimeSeries {
                labels,
                samples: vec![prompb::Sample {
                    value: point.value,
                    timestamp: snapshot.at_unix_ms,
                }],
            });
        }
    }
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compresses any input")
}

/// What was offered to, sent to and dropped by one receiver.
#[derive(Debug, Default)]
pub struct Counts {
    pub offered: AtomicU64,
    pub sent: AtomicU64,
    pub last_error: std::sync::Mutex<Option<String>>,
}

/// One receiver's end of the queue: what the run pushes into.
#[derive(Debug, Clone)]
pub struct Queue {
    sender: tokio::sync::mpsc::Sender<Arc<Snapshot>>,
    counts: Arc<Counts>,
}

impl Queue {
    /// Offers a snapshot; a full queue drops it (counted, never waited on).
    pub fn push(&self, snapshot: Arc<Snapshot>) {
        self.counts
            .offered
            .fetch_add(snapshot.points.len() as u64, Ordering::Relaxed);
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) = self.sender.try_send(snapshot)
        {
            self.counts
                .last_error
                .lock()
                .expect("not poisoned")
                .get_or_insert_with(|| "the receiver fell behind: its queue was full".to_owned());
        }
    }
}

/// Starts the sender of one receiver on the current runtime.
pub fn start(
    url: SecretUrl,
    run_labels: Vec<(String, String)>,
) -> (Queue, Arc<Counts>, tokio::task::JoinHandle<()>) {
    let (sender, receiver) = tokio::sync::mpsc::channel(QUEUE);
    let counts = Arc::new(Counts::default());
    let task = tokio::spawn(send_loop(url, run_labels, receiver, counts.clone()));
    (
        Queue {
            sender,
            counts: counts.clone(),
        },
        counts,
        task,
    )
}

async fn send_loop(
    url: SecretUrl,
    run_labels: Vec<(String, String)>,
    mut receiver: tokio::sync::mpsc::Receiver<Arc<Snapshot>>,
    counts: Arc<Counts>,
) {
    let client = reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .build()
        .expect("a client without TLS builds");
    let mut backlog: VecDeque<Arc<Snapshot>> = VecDeque::new();
    while let Some(snapshot) = receiver.recv().await {
        backlog.push_back(snapshot);
        while let Ok(more) = receiver.try_recv() {
            backlog.push_back(more);
        }
        while backlog.len() > BACKLOG {
            backlog.pop_front();
        }
        let batch: Vec<Arc<Snapshot>> = backlog.iter().cloned().collect();
        let samples: u64 = batch.iter().map(|s| s.points.len() as u64).sum();
        match send(&client, &url, encode(&batch, &run_labels)).await {
            Ok(()) => {
                counts.sent.fetch_add(samples, Ordering::Relaxed);
                backlog.clear();
            }
            Err(Failure::Refused(why)) => {
                // The receiver refused the data itself (4xx): sending it
                // again cannot succeed.
                *counts.last_error.lock().expect("not poisoned") = Some(why);
                backlog.clear();
            }
            Err(Failure::Retry(why)) => {
                *counts.last_error.lock().expect("not poisoned") = Some(why);
            }
        }
    }
}

enum Failure {
    Refused(String),
    Retry(String),
}

async fn send(client: &reqwest::Client, url: &SecretUrl, body: Vec<u8>) -> Result<(), Failure> {
    let response = client
        .post(url.expose_secret())
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header(
            "User-Agent",
            concat!("ahsp-perf/", env!("CARGO_PKG_VERSION")),
        )
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .map_err(|e| Failure::Retry(describe(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let why = format!("{status}: {}", text.trim());
    if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(Failure::Refused(why))
    } else {
        Err(Failure::Retry(why))
    }
}

/// What went wrong, in words: reqwest's own message names only the URL,
/// and the cause is at the end of its chain of sources.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!(
            "no answer within {}",
            humantime::format_duration(SEND_TIMEOUT)
        );
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let what = if error.is_connect() {
        "cannot connect"
    } else {
        "sending failed"
    };
    format!("{what}: {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::snapshot::Point;

    #[test]
    fn a_request_decodes_to_sorted_labels_and_the_snapshots_instant() {
        let snapshot = Arc::new(Snapshot {
            at_unix_ms: 1_796_000_000_123,
            elapsed_seconds: 1.0,
            points: vec![Point {
                name: "ahsp_perf_requests_total".into(),
                labels: vec![("endpoint", "/".into())],
                value: 42.0,
            }],
        });
        let body = encode(
            &[snapshot],
            &[
                ("suite".into(), "smoke".into()),
                ("job".into(), "ahsp-perf".into()),
            ],
        );
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .expect("snappy");
        let request = prompb::WriteRequest::decode(raw.as_slice()).expect("protobuf");
        let series = &request.timeseries[0];
        let names: Vec<&str> = series.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "endpoint", "job", "suite"]);
        assert_eq!(series.labels[0].value, "ahsp_perf_requests_total");
        assert_eq!(
            series.samples,
            [prompb::Sample {
                value: 42.0,
                timestamp: 1_796_000_000_123
            }]
        );
    }
}
