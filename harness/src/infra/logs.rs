//! Where each service's output can be read, whatever runs it: a container's
//! log stream or a file a local process appends to. The rest of the harness
//! follows a [`LogSource`] as a stream of bytes and never learns which.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use testcontainers::bollard::Docker;
use testcontainers::bollard::query_parameters::LogsOptionsBuilder;

/// Where a service's log comes from.
#[derive(Debug, Clone)]
pub struct LogSource(Origin);

#[derive(Debug, Clone)]
enum Origin {
    Container { docker: Docker, id: String },
    File(PathBuf),
}

/// How often a followed file is read again.
const FILE_POLL: Duration = Duration::from_millis(200);

impl LogSource {
    /// A file another process appends to (it need not exist yet).
    pub fn file(path: PathBuf) -> LogSource {
        LogSource(Origin::File(path))
    }

    pub(crate) fn container(docker: Docker, id: String) -> LogSource {
        LogSource(Origin::Container { docker, id })
    }

    /// Everything the service printed, from its start, then what it prints
    /// until the stream is dropped. Chunks need not end at line ends; each
    /// says whether it was printed before `since` (the service's start-up,
    /// readiness checks included) or after.
    pub fn follow(self, since: SystemTime) -> BoxStream<'static, Chunk> {
        match self.0 {
            Origin::Container { docker, id } => {
                let options = LogsOptionsBuilder::new()
                    .follow(true)
                    .stdout(true)
                    .stderr(true)
                    .since(0)
                    .timestamps(true)
                    .build();
                docker
                    .logs(&id, Some(options))
                    .take_while(|item| futures::future::ready(item.is_ok()))
                    .filter_map(move |item| {
                        futures::future::ready(item.ok().map(|o| stamped(o.into_bytes(), since)))
                    })
                    .boxed()
            }
            Origin::File(path) => async_stream::stream! {
                let mut offset = 0usize;
                let mut first = true;
                loop {
                    if let Ok(bytes) = tokio::fs::read(&path).await
                        && bytes.len() > offset
                    {
                        let new = Bytes::copy_from_slice(&bytes[offset..]);
                        offset = bytes.len();
                        // What the file held when following began.
                        yield Chunk { bytes: new, before: first };
                    }
                    first = false;
                    tokio::time::sleep(FILE_POLL).await;
                }
            }
            .boxed(),
        }
    }
}

/// Part of a service's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub bytes: Bytes,
    /// Printed before the time following was asked from.
    pub before: bool,
}

/// A Docker log frame with its timestamp (`2026-12-02T07:10:00.123456789Z `)
/// taken off and compared with `since`.
fn stamped(frame: Bytes, since: SystemTime) -> Chunk {
    let Some(space) = frame.iter().position(|b| *b == b' ') else {
        return Chunk {
            bytes: frame,
            before: false,
        };
    };
    let printed = std::str::from_utf8(&frame[..space])
        .ok()
        .and_then(|stamp| humantime::parse_rfc3339(stamp).ok());
    match printed {
        Some(printed) => Chunk {
            bytes: frame.slice(space + 1..),
            before: printed < since,
        },
        None => Chunk {
            bytes: frame,
            before: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_timestamps_say_which_lines_came_before() {
        let since = humantime::parse_rfc3339("2026-12-02T07:10:00Z").unwrap();
        let old = stamped(
            Bytes::from_static(b"2026-12-02T07:09:59.5Z FATAL database \"ahsp\" does not exist\n"),
            since,
        );
        assert!(old.before);
        assert_eq!(&old.bytes[..], b"FATAL database \"ahsp\" does not exist\n");
        let new = stamped(
            Bytes::from_static(b"2026-12-02T07:10:00.25Z LOG stats\n"),
            since,
        );
        assert!(!new.before);
        assert_eq!(&new.bytes[..], b"LOG stats\n");
    }

    #[tokio::test]
    async fn a_followed_file_yields_what_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service.log");
        std::fs::write(&path, "start-up\n").unwrap();
        let mut stream = LogSource::file(path.clone()).follow(SystemTime::now());
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&first.bytes[..], first.before), (&b"start-up\n"[..], true));
        std::fs::write(&path, "start-up\nsecond\n").unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (&second.bytes[..], second.before),
            (&b"second\n"[..], false)
        );
    }
}
