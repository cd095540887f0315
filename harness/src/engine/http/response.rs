//! Reading one HTTP/1.1 response off a connection, on `httparse`: the
//! head (interim `1xx` answers skipped), then the body by length, in
//! chunks, or until the server closes.

use bytes::{Buf as _, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

use super::{Response, TransportError, classify_io};
use crate::metrics::FailureKind;

/// A response head's fields beyond httparse's slots: refused, not truncated.
const MAX_HEADERS: usize = 96;
/// A response head may take this much, and no more.
const MAX_HEAD: usize = 64 * 1024;
/// Reads go into at least this much free room; the buffer starts there and
/// grows only for a response that needs more.
const READ_ROOM: usize = 2048;

/// How a response's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLength {
    Empty,
    Known(u64),
    Chunked,
    UntilClose,
}

/// A response's head, parsed.
#[derive(Debug)]
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    length: BodyLength,
    /// The server closes the connection after this response.
    close: bool,
}

/// Reads into `input`, with room made first; `Ok(false)` at the end of the
/// stream.
async fn read_more(stream: &mut TcpStream, input: &mut BytesMut) -> Result<bool, TransportError> {
    if input.capacity() - input.len() < READ_ROOM / 2 {
        input.reserve(input.len().max(READ_ROOM));
    }
    match stream.read_buf(input).await {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(error) => Err(classify_io(&error, "receive")),
    }
}

/// Reads more, or fails: the server closed the connection mid-response.
async fn need_more(stream: &mut TcpStream, input: &mut BytesMut) -> Result<(), TransportError> {
    if read_more(stream, input).await? {
        Ok(())
    } else {
        Err(TransportError {
            kind: FailureKind::ConnectionReset,
            message: "the connection closed before the response was complete".to_owned(),
        })
    }
}

fn invalid(what: impl std::fmt::Display) -> TransportError {
    TransportError {
        kind: FailureKind::Transport,
        message: format!("invalid response: {what}"),
    }
}

/// Reads one whole response (skipping interim `1xx` ones); says whether
/// the connection can carry the next request.
pub(super) async fn read_response(
    stream: &mut TcpStream,
    input: &mut BytesMut,
    head_only: bool,
    keep_body: bool,
) -> Result<(Response, bool), TransportError> {
    // A kept connection has nothing pending: what is left is stale.
    input.clear();
    let head = loop {
        match parse_head(input, head_only)? {
            Some((head, consumed)) => {
                input.advance(consumed);
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                break head;
            }
            None if input.len() > MAX_HEAD => {
                return Err(invalid(format!(
                    "a head longer than {} KB",
                    MAX_HEAD / 1024
                )));
            }
            None => need_more(stream, input).await?,
        }
    };
    // Error answers are kept too: their text explains the failure.
    let keep = keep_body || !head.status.is_success();
    let mut body = Body {
        kept: BytesMut::new(),
        len: 0,
        keep,
    };
    match head.length {
        BodyLength::Empty => {}
        BodyLength::Known(length) => {
            while body.len < length {
                if input.is_empty() {
                    need_more(stream, input).await?;
                }
                body.take(input, length - body.len);
            }
        }
        BodyLength::Chunked => read_chunked(stream, input, &mut body).await?,
        BodyLength::UntilClose => loop {
            body.take(input, u64::MAX);
            if !read_more(stream, input).await? {
                break;
            }
        },
    }
    let reusable = !head.close
        && head.length != BodyLength::UntilClose
        && head.status != StatusCode::SWITCHING_PROTOCOLS
        && input.is_empty();
    Ok((
        Response {
            status: head.status,
            headers: head.headers,
            body: body.kept.freeze(),
            body_len: body.len,
        },
        reusable,
    ))
}

/// A body as it is read: kept, or only counted.
struct Body {
    kept: BytesMut,
    len: u64,
    keep: bool,
}

impl Body {
    /// Takes up to `most` bytes off the front of `input`.
    fn take(&mut self, input: &mut BytesMut, most: u64) {
        let n = usize::try_from(most).map_or(input.len(), |most| most.min(input.len()));
        if self.keep {
            if self.kept.is_empty() {
                self.kept = input.split_to(n);
            } else {
                self.kept.extend_from_slice(&input[..n]);
                input.advance(n);
            }
        } else {
            input.advance(n);
        }
        self.len += n as u64;
    }
}

/// A chunked body: each chunk's size line, its data and its CRLF, then the
/// last chunk and the trailer lines up to an empty one.
async fn read_chunked(
    stream: &mut TcpStream,
    input: &mut BytesMut,
    body: &mut Body,
) -> Result<(), TransportError> {
    loop {
        let size = match httparse::parse_chunk_size(input) {
            Ok(httparse::Status::Complete((consumed, size))) => {
                input.advance(consumed);
                size
            }
            Ok(httparse::Status::Partial) => {
                need_more(stream, input).await?;
                continue;
            }
            Err(_) => return Err(invalid("a chunk size that is not one")),
        };
        if size == 0 {
            // Trailer lines, ignored, up to the empty one.
            loop {
                match input.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        input.advance(2);
                        return Ok(());
                    }
                    Some(at) => input.advance(at + 2),
                    None => need_more(stream, input).await?,
                }
            }
        }
        let end = body.len + size;
        while body.len < end {
            if input.is_empty() {
                need_more(stream, input).await?;
            }
            body.take(input, end - body.len);
        }
        while input.len() < 2 {
            need_more(stream, input).await?;
        }
        if &input[..2] != b"\r\n" {
            return Err(invalid("a chunk not ended by CRLF"));
        }
        input.advance(2);
    }
}

/// The head at the front of `input`, with the bytes it took; `None` while
/// it is incomplete.
fn parse_head(input: &[u8], head_only: bool) -> Result<Option<(Head, usize)>, TransportError> {
    // Uninitialised slots: zeroing 96 of them per response was the
    // engine's costliest function in user space (`perf record`).
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        input,
        &mut slots,
    );
    let consumed = match parsed {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(invalid(error)),
    };
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| invalid(format!("status {code}")))?;
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    let mut length = None;
    let mut chunked = false;
    let (mut close, mut keep_alive) = (false, false);
    for header in response.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| invalid(format!("a header named {:?}", header.name)))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| invalid(format!("a value of {name} that is not one")))?;
        // Read as text only for the three headers that shape the body.
        let text = || value.to_str().unwrap_or("");
        if name == http::header::CONTENT_LENGTH {
            let parsed: u64 = text()
                .trim()
                .parse()
                .map_err(|_| invalid(format!("content-length {:?}", text())))?;
            if length.is_some_and(|known| known != parsed) {
                return Err(invalid("two different content-lengths"));
            }
            length = Some(parsed);
        } else if name == http::header::TRANSFER_ENCODING {
            chunked = text()
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name == http::header::CONNECTION {
            for token in text().split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
        headers.append(name, value);
    }
    // HTTP/1.0 closes unless it says otherwise.
    close |= response.version == Some(0) && !keep_alive;
    let length = if head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        BodyLength::Empty
    } else if chunked {
        BodyLength::Chunked
    } else if let Some(length) = length {
        BodyLength::Known(length)
    } else {
        BodyLength::UntilClose
    };
    Ok(Some((
        Head {
            status,
            headers,
            length,
            close,
        },
        consumed,
    )))
}
