//! Service logs: captured into the run's folder while the run goes on, each
//! line stamped with the second of the run it arrived in, then scanned for
//! the signatures that explained the history's failures — PgBouncer's
//! `query_wait_timeout` behind the login 500s above all.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

pub use crate::infra::logs::LogSource;

/// Known causes, by the text that shows them.
pub const SIGNATURES: [(&str, &str, &str); 12] = [
    ("pgbouncer", "query_wait_timeout", "query_wait_timeout"),
    (
        "pgbouncer",
        "no more connections allowed",
        "no more connections allowed (max_client_conn)",
    ),
    ("pgbouncer", "server login failed", "server login failed"),
    ("postgres", "deadlock detected", "deadlock detected"),
    (
        "postgres",
        "remaining connection slots are reserved",
        "remaining connection slots are reserved",
    ),
    (
        "postgres",
        "too many clients already",
        "too many clients already",
    ),
    (
        "postgres",
        "canceling statement due to statement timeout",
        "statement timeout",
    ),
    (
        "postgres",
        "canceling statement due to lock timeout",
        "lock timeout",
    ),
    (
        "postgres",
        "still waiting for",
        "lock wait (log_lock_waits)",
    ),
    ("redis", "OOM", "out of memory (OOM)"),
    ("app", "panicked at", "panic"),
    ("app", " status=5", "5xx answer"),
];

/// A signature's occurrences in one service's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SignatureHit {
    pub service: String,
    pub signature: String,
    pub count: u64,
    pub first_second: f64,
    pub last_second: f64,
    pub sample: String,
}

/// Captures logs until stopped.
#[derive(Debug)]
pub struct LogCapture {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    files: Vec<(String, PathBuf)>,
}

impl LogCapture {
    /// Starts one capture per source into `<dir>/logs/<name>.log`.
    pub fn start(
        sources: Vec<(String, LogSource)>,
        dir: &Path,
        started: Instant,
        redactor: std::sync::Arc<crate::redact::Redactor>,
    ) -> std::io::Result<LogCapture> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let mut files = Vec::new();
        for (name, source) in sources {
            let path = logs.join(format!("{name}.log"));
            files.push((name, path.clone()));
            let stopped = stopped.clone();
            let redactor = redactor.clone();
            tasks.push(tokio::spawn(async move {
                let _ = capture(source, path, started, stopped, &redactor).await;
            }));
        }
        Ok(LogCapture { stop, tasks, files })
    }

    /// Stops capturing and returns the files, service by service.
    pub async fn stop(self) -> Vec<(String, PathBuf)> {
        // A last read of files and streams before stopping.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.files
    }
}

async fn capture(
    source: LogSource,
    path: PathBuf,
    started: Instant,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    redactor: &crate::redact::Redactor,
) -> std::io::Result<()> {
    let since = std::time::SystemTime::now() - started.elapsed();
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::create(&path).await?);
    let stamp = |line: &str| {
        format!(
            "[+{:.3}s] {}\n",
            started.elapsed().as_secs_f64(),
            line.trim_end()
        )
    };
    let mut stream = source.follow(since);
    let mut pending = String::new();
    loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(chunk) => {
                    pending.push_str(&String::from_utf8_lossy(&chunk.bytes));
                    while let Some(end) = pending.find('\n') {
                        let line: String = pending.drain(..=end).collect();
                        let line = if chunk.before {
                            format!("{START_UP} {}\n", line.trim_end())
                        } else {
                            stamp(&line)
                        };
                        // Masked as it is written: a run killed with
                        // SIGKILL gets no sweep afterwards.
                        out.write_all(redactor.text(&line).as_bytes()).await?;
                    }
                }
                None => break,
            },
            _ = stopped.changed() => break,
        }
    }
    out.flush().await
}

/// How a captured line printed before the run began is marked: the
/// service's start-up and the harness's readiness checks, kept for the
/// reader and left out of the scan (PgBouncer's "database does not exist"
/// while PostgreSQL was still creating it is no finding).
pub const START_UP: &str = "[start-up]";

/// Counts every signature in the captured files, start-up lines left out.
pub fn scan(files: &[(String, PathBuf)]) -> Vec<SignatureHit> {
    let mut hits: Vec<SignatureHit> = Vec::new();
    for (service, path) in files {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in text.lines().filter(|l| !l.starts_with(START_UP)) {
            let (second, rest) = match line.strip_prefix("[+").and_then(|l| l.split_once("s] ")) {
                Some((second, rest)) => (second.parse().unwrap_or(0.0), rest),
                None => (0.0, line),
            };
            for (owner, needle, signature) in SIGNATURES {
                if !service.starts_with(owner) || !rest.contains(needle) {
                    continue;
                }
                match hits
                    .iter_mut()
                    .find(|h| &h.service == service && h.signature == signature)
                {
                    Some(hit) => {
                        hit.count += 1;
                        hit.last_second = second;
                    }
                    None => hits.push(SignatureHit {
                        service: service.clone(),
                        signature: signature.to_owned(),
                        count: 1,
                        first_second: second,
                        last_second: second,
                        sample: rest.chars().take(200).collect(),
                    }),
                }
            }
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_signatures_with_their_time() {
        let dir = std::env::temp_dir().join(format!("ahsp-perf-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pgbouncer.log");
        std::fs::write(
            &path,
            "[+1.000s] LOG stats\n[+12.500s] WARNING C-0x1: ahsp/ahsp@127.0.0.1:1 pooler error: query_wait_timeout\n[+14.250s] WARNING C-0x2: pooler error: query_wait_timeout\n",
        )
        .unwrap();
        let hits = scan(&[("pgbouncer".to_owned(), path)]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(
            (hits[0].count, hits[0].first_second, hits[0].last_second),
            (2, 12.5, 14.25)
        );
        assert_eq!(hits[0].signature, "query_wait_timeout");
    }
}
