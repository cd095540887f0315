//! The hot path: one HTTP/1.1 connection and one cookie jar per virtual
//! user, over hyper's `client::conn` directly. Measured here, a loop over
//! reqwest cost 2.0× wrk's CPU per request and this 1.15×. Redirects are not
//! followed — a login's 302 must be seen — and cookies are the engine's.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use crate::metrics::FailureKind;

/// Where requests go: `http://host:port`, resolved once.
#[derive(Debug, Clone)]
pub struct Origin {
    pub base: url::Url,
    pub authority: String,
    pub address: SocketAddr,
    /// `authority` as the `Host` header, built once rather than per request.
    host: HeaderValue,
}

impl Origin {
    /// Resolves an `http://` base URL.
    pub async fn resolve(base: &str) -> anyhow::Result<Origin> {
        let mut parsed = url::Url::parse(base)?;
        // Credentials in the URL are nobody's business past this point: not
        // the Referer's, not a report's (the engine sends no Basic auth).
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let base = parsed.as_str().to_owned();
        anyhow::ensure!(
            parsed.scheme() == "http",
            "the load engine speaks plain HTTP/1.1 to the target (got `{}`; put a TLS-terminating proxy in front, or test the plain-HTTP listener)",
            parsed.scheme()
        );
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("`{base}` has no host"))?
            .to_owned();
        let port = parsed.port_or_known_default().unwrap_or(80);
        let address = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("`{host}` does not resolve"))?;
        let authority = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        let host = HeaderValue::from_str(&authority)
            .map_err(|e| anyhow::anyhow!("`{authority}` is not a Host header: {e}"))?;
        Ok(Origin {
            base: parsed,
            authority,
            address,
            host,
        })
    }
}

/// A response with its body (or only its length, when nothing reads it).
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub body_len: u64,
}

impl Response {
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// A failed exchange, classified.
#[derive(Debug)]
pub struct TransportError {
    pub kind: FailureKind,
    pub message: String,
}

/// A virtual user's HTTP client: its connection and its cookies.
///
/// The connection is driven by the user's own task while a request is in
/// flight, not by a task of its own: no second task to wake per request
/// (hyper's dispatch channel between the two is crossed within one task).
/// One timer per user bounds every request. It is moved only when it fires
/// before the request it guards is due, about once per timeout, instead of
/// entering and leaving the timer wheel per request.
#[derive(Debug)]
pub struct Client {
    origin: std::sync::Arc<Origin>,
    connection: Option<Connection>,
    cookies: cookie_store::CookieStore,
    timeout: Duration,
    /// Fires no later than the request in flight is due (see `Client`).
    timer: Timer,
    /// Reused buffers: the cookie header and the request URL.
    cookie_header: String,
    url: url::Url,
}

/// One HTTP/1.1 connection: the handle requests are sent on, and the
/// connection itself, polled by whoever waits on a request.
#[derive(Debug)]
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    io: http1::Connection<TokioIo<tokio::net::TcpStream>, Full<Bytes>>,
}

impl Client {
    pub fn new(origin: std::sync::Arc<Origin>, timeout: Duration) -> Client {
        let url = origin.base.clone();
        Client {
            origin,
            connection: None,
            cookies: cookie_store::CookieStore::default(),
            timeout,
            timer: Timer::new(),
            cookie_header: String::new(),
            url,
        }
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// A cookie's current value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter_unexpired()
            .find(|c| c.name() == name)
            .map(|c| c.value())
    }

    /// Forgets every cookie (a logged-out user) and the connection.
    pub fn reset(&mut self) {
        self.cookies.clear();
        self.connection = None;
    }

    /// The connection to send on: the kept one if it is still open (polled
    /// once, since nobody polls it between requests, to learn whether the
    /// server closed it meanwhile), else a new one.
    async fn connect<'a>(
        origin: &Origin,
        slot: &'a mut Option<Connection>,
    ) -> Result<&'a mut Connection, TransportError> {
        if let Some(connection) = slot {
            let ended = std::future::poll_fn(|cx| {
                Poll::Ready(connection.io.poll_without_shutdown(cx).is_ready())
            })
            .await;
            if ended || connection.sender.is_closed() {
                *slot = None;
            }
        }
        if slot.is_none() {
            let stream = tokio::net::TcpStream::connect(origin.address)
                .await
                .map_err(|e| classify_io(&e, "connect"))?;
            let _ = stream.set_nodelay(true);
            let (sender, io) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| classify_hyper(&e))?;
            *slot = Some(Connection { sender, io });
        }
        Ok(slot.as_mut().expect("connected"))
    }

    /// Sends a request and reads the whole response. `keep_body` false
    /// drains the body, counting its bytes, without keeping them.
    pub async fn send(
        &mut self,
        method: http::Method,
        path_and_query: &str,
        headers: &[(http::HeaderName, HeaderValue)],
        body: Bytes,
        keep_body: bool,
    ) -> Result<Response, TransportError> {
        let now = tokio::time::Instant::now();
        let due = now + self.timeout;
        self.timer.arm(now, due);
        let result = self
            .exchange(method, path_and_query, headers, body, keep_body, due)
            .await;
        if result.is_err() {
            // The connection may be mid-response: never reuse it.
            self.connection = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        method: http::Method,
        path_and_query: &str,
        headers: &[(http::HeaderName, HeaderValue)],
        body: Bytes,
        keep_body: bool,
        due: tokio::time::Instant,
    ) -> Result<Response, TransportError> {
        // The jar and the URL it matches cookies by are touched only when
        // there are cookies to send or to keep: a client without any (an
        // anonymous user, a benchmark) pays nothing for them.
        let has_cookies = self.cookies.iter_any().next().is_some();
        if has_cookies {
            self.set_url(path_and_query);
            self.cookie_header.clear();
            for (name, value) in self.cookies.get_request_values(&self.url) {
                if !self.cookie_header.is_empty() {
                    self.cookie_header.push_str("; ");
                }
                self.cookie_header.push_str(name);
                self.cookie_header.push('=');
                self.cookie_header.push_str(value);
            }
        }
        let mut builder = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, self.origin.host.clone());
        if has_cookies && !self.cookie_header.is_empty() {
            builder = builder.header(COOKIE, &self.cookie_header);
        }
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(body)).map_err(|e| TransportError {
            kind: FailureKind::Transport,
            message: format!("invalid request {path_and_query}: {e}"),
        })?;
        let timeout = self.timeout;
        let (origin, slot, timer) = (&self.origin, &mut self.connection, &mut self.timer);
        let within_time = async {
            let Connection { sender, io } = Self::connect(origin, slot).await?;
            let exchange = async {
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let (parts, mut incoming) = response.into_parts();
                // Error answers are kept too: their text explains the failure.
                if keep_body || !parts.status.is_success() {
                    let bytes = incoming.collect().await?.to_bytes();
                    return Ok((parts, bytes.len() as u64, bytes));
                }
                let mut body_len = 0u64;
                while let Some(frame) = incoming.frame().await {
                    if let Some(data) = frame?.data_ref() {
                        body_len += data.len() as u64;
                    }
                }
                Ok((parts, body_len, Bytes::new()))
            };
            drive(exchange, io).await.map_err(|e| classify_hyper(&e))
        };
        let (parts, body_len, body) = expire(within_time, timer, due, timeout).await?;
        let mut set_cookies = parts.headers.get_all(SET_COOKIE).iter().peekable();
        if set_cookies.peek().is_some() {
            if !has_cookies {
                self.set_url(path_and_query);
            }
            for value in set_cookies {
                if let Ok(text) = value.to_str() {
                    let _ = self.cookies.parse(text, &self.url);
                }
            }
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
            body_len,
        })
    }
}

/// Polls `exchange` and, beside it, the connection it runs on (which writes
/// the request and reads the response), until the exchange ends. A
/// connection that ends first (closed by the server) is not polled again;
/// the exchange then fails on its own.
async fn drive<T>(
    exchange: impl Future<Output = Result<T, hyper::Error>>,
    io: &mut http1::Connection<TokioIo<tokio::net::TcpStream>, Full<Bytes>>,
) -> Result<T, hyper::Error> {
    let mut exchange = std::pin::pin!(exchange);
    let mut io_ended = false;
    std::future::poll_fn(|cx| {
        if !io_ended {
            match io.poll_without_shutdown(cx) {
                Poll::Ready(Err(error)) => {
                    // The exchange fails too; its own error says it better,
                    // unless it never learns (a request not yet written).
                    if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
                        return Poll::Ready(result);
                    }
                    return Poll::Ready(Err(error));
                }
                Poll::Ready(Ok(())) => io_ended = true,
                Poll::Pending => {}
            }
        }
        exchange.as_mut().poll(cx)
    })
    .await
}

/// One timer per user, shared by its requests one after another.
#[derive(Debug)]
struct Timer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// When `sleep` fires; never later than the request in flight is due.
    set_for: tokio::time::Instant,
}

impl Timer {
    fn new() -> Timer {
        let now = tokio::time::Instant::now();
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(now)),
            set_for: now,
        }
    }

    /// Readies the timer for a request due at `due`. One set for an earlier
    /// request's deadline still fires first, which is early enough; only a
    /// timer already past is moved.
    fn arm(&mut self, now: tokio::time::Instant, due: tokio::time::Instant) {
        if self.set_for <= now {
            self.set(due);
        }
    }

    fn set(&mut self, due: tokio::time::Instant) {
        self.sleep.as_mut().reset(due);
        self.set_for = due;
    }

    /// Whether the request due at `due` is late; otherwise the timer is
    /// registered to wake the task no later than `due`.
    fn poll_late(&mut self, cx: &mut std::task::Context<'_>, due: tokio::time::Instant) -> bool {
        while self.sleep.as_mut().poll(cx).is_ready() {
            if self.set_for >= due {
                return true;
            }
            self.set(due);
        }
        false
    }
}

/// `work`, unless the request due at `due` is late first.
async fn expire<T>(
    work: impl Future<Output = Result<T, TransportError>>,
    timer: &mut Timer,
    due: tokio::time::Instant,
    timeout: Duration,
) -> Result<T, TransportError> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = work.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if timer.poll_late(cx, due) {
            return Poll::Ready(Err(TransportError {
                kind: FailureKind::Timeout,
                message: format!(
                    "no complete response within {}",
                    humantime::format_duration(timeout)
                ),
            }));
        }
        Poll::Pending
    })
    .await
}

impl Client {
    /// The request's URL, for matching and keeping cookies.
    fn set_url(&mut self, path_and_query: &str) {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        self.url.set_path(path);
        self.url.set_query(query);
    }
}

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form_body(fields: &[(&str, &str)]) -> Bytes {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        serializer.append_pair(name, value);
    }
    Bytes::from(serializer.finish())
}

pub fn content_type(value: &'static str) -> (http::HeaderName, HeaderValue) {
    (CONTENT_TYPE, HeaderValue::from_static(value))
}

fn classify_io(error: &std::io::Error, during: &str) -> TransportError {
    use std::io::ErrorKind;
    let kind = match error.kind() {
        ErrorKind::ConnectionRefused => FailureKind::ConnectionRefused,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            FailureKind::ConnectionReset
        }
        ErrorKind::TimedOut => FailureKind::Timeout,
        _ => FailureKind::Transport,
    };
    TransportError {
        kind,
        message: format!("{during}: {error}"),
    }
}

fn classify_hyper(error: &hyper::Error) -> TransportError {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return classify_io(io, "exchange");
        }
        source = inner.source();
    }
    let kind = if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
        FailureKind::ConnectionReset
    } else if error.is_timeout() {
        FailureKind::Timeout
    } else {
        FailureKind::Transport
    };
    TransportError {
        kind,
        message: error.to_string(),
    }
}

/// The first characters of a body, on one line, for failure samples.
pub fn snippet(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A server on loopback that answers the first request on each
    /// connection at once and never answers any after it.
    async fn answers_once() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    // Reads the next request and holds it unanswered.
                    let _ = stream.read(&mut buffer).await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                });
            }
        });
        format!("http://{address}/")
    }

    async fn get(client: &mut Client) -> Result<Response, TransportError> {
        client
            .send(http::Method::GET, "/", &[], Bytes::new(), false)
            .await
    }

    /// The timer set for the first request fires before the second is due:
    /// the second must still get its whole timeout, and then fail as a
    /// timeout, on a connection that is not reused.
    #[tokio::test]
    async fn each_request_gets_its_whole_timeout_from_one_timer() {
        let origin = std::sync::Arc::new(Origin::resolve(&answers_once().await).await.unwrap());
        let timeout = Duration::from_millis(300);
        let mut client = Client::new(origin, timeout);
        assert_eq!(get(&mut client).await.unwrap().body_len, 2);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started = std::time::Instant::now();
        let error = get(&mut client).await.unwrap_err();
        assert!(matches!(error.kind, FailureKind::Timeout), "{error:?}");
        assert!(
            started.elapsed() >= timeout,
            "cut off after {:?}",
            started.elapsed()
        );
        assert!(
            client.connection.is_none(),
            "a timed-out connection was kept"
        );
        // A new connection, answered at once, is not cut off by the old timer.
        assert_eq!(get(&mut client).await.unwrap().body_len, 2);
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet("a\n  b\tc"), "a b c");
        assert_eq!(snippet(&"x".repeat(500)).len(), 160);
    }
}
