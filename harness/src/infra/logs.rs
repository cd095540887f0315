//! Where each service's output can be read, whatever runs it: a container's
//! log stream or a file a local process appends to. The rest of the harness
//! follows a [`LogSource`] as a stream of bytes and never learns which.

use std::path::PathBuf;
use std::time::Duration;

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
    /// until the stream is dropped. Chunks need not end at line ends.
    pub fn follow(self) -> BoxStream<'static, Bytes> {
        match self.0 {
            Origin::Container { docker, id } => {
                let options = LogsOptionsBuilder::new()
                    .follow(true)
                    .stdout(true)
                    .stderr(true)
                    .since(0)
                    .build();
                docker
                    .logs(&id, Some(options))
                    .take_while(|item| futures::future::ready(item.is_ok()))
                    .filter_map(|item| futures::future::ready(item.ok().map(|o| o.into_bytes())))
                    .boxed()
            }
            Origin::File(path) => async_stream::stream! {
                let mut offset = 0usize;
                loop {
                    if let Ok(bytes) = tokio::fs::read(&path).await
                        && bytes.len() > offset
                    {
                        let new = Bytes::copy_from_slice(&bytes[offset..]);
                        offset = bytes.len();
                        yield new;
                    }
                    tokio::time::sleep(FILE_POLL).await;
                }
            }
            .boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_followed_file_yields_what_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service.log");
        let mut stream = LogSource::file(path.clone()).follow();
        std::fs::write(&path, "first\n").unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&first[..], b"first\n");
        std::fs::write(&path, "first\nsecond\n").unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&second[..], b"second\n");
    }
}
