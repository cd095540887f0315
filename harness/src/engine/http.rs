//! The hot path: one HTTP/1.1 connection and one cookie jar per virtual
//! user. Redirects are not followed — a login's 302 must be seen — and
//! cookies are the engine's.
//!
//! The exchange itself is written here, on `httparse` (the parser hyper
//! uses): the request written in one buffer, the response read into one
//! that grows only as a response needs, bodies by length, chunked or until
//! close. Hand-written because no maintained crate offers an HTTP/1.1
//! client on a connection the caller's own task drives: over reqwest a
//! request cost 2.0× wrk's CPU; over hyper's `client::conn`, 1.2–1.3×, and
//! each connection held two 8 KB buffers and a dispatch channel's block of
//! 32 request slots, 26 KB a user (279 MB at 10,000 users).

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use self::response::read_response;
use crate::metrics::FailureKind;

mod response;

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
/// The connection is driven by the user's own task: no task of its own to
/// wake per request. One timer per user bounds every request. It is moved
/// only when it fires before the request it guards is due, about once per
/// timeout, instead of entering and leaving the timer wheel per request.
#[derive(Debug)]
pub struct Client {
    origin: std::sync::Arc<Origin>,
    connection: Option<TcpStream>,
    cookies: cookie_store::CookieStore,
    timeout: Duration,
    /// Fires no later than the request in flight is due (see `Client`).
    timer: Timer,
    /// Reused buffers: the cookie header and the request URL …
    cookie_header: String,
    url: url::Url,
    /// … the request as written …
    out: Vec<u8>,
    /// … and what was read of the response and not yet taken.
    input: BytesMut,
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
            out: Vec::new(),
            input: BytesMut::new(),
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

    /// The connection to send on: the kept one unless the server has closed
    /// it meanwhile (learnt from the readiness the reactor already holds:
    /// no system call), else a new one.
    async fn connect<'a>(
        origin: &Origin,
        slot: &'a mut Option<TcpStream>,
    ) -> Result<&'a mut TcpStream, TransportError> {
        if slot.as_ref().is_some_and(closed_by_peer) {
            *slot = None;
        }
        if slot.is_none() {
            let stream = TcpStream::connect(origin.address)
                .await
                .map_err(|e| classify_io(&e, "connect"))?;
            let _ = stream.set_nodelay(true);
            *slot = Some(stream);
        }
        Ok(slot.as_mut().expect("connected"))
    }

    /// Sends a request and reads the whole response. `keep_body` false
    /// drains the body, counting its bytes, without keeping them.
    pub async fn send(
        &mut self,
        method: http::Method,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
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
        headers: &[(HeaderName, HeaderValue)],
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
        self.write_request(&method, path_and_query, headers, &body, has_cookies)?;
        let head_only = method == http::Method::HEAD;
        let timeout = self.timeout;
        let (origin, slot, timer) = (&self.origin, &mut self.connection, &mut self.timer);
        let (out, input) = (&self.out, &mut self.input);
        let within_time = async {
            let stream = Self::connect(origin, slot).await?;
            stream
                .write_all(out)
                .await
                .map_err(|e| classify_io(&e, "send"))?;
            read_response(stream, input, head_only, keep_body).await
        };
        let (response, reusable) = expire(within_time, timer, due, timeout).await?;
        if !reusable {
            self.connection = None;
        }
        let mut set_cookies = response.headers.get_all(SET_COOKIE).iter().peekable();
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
        Ok(response)
    }

    /// The request line, `Host`, the cookies, `headers`, a length, and the
    /// body, into `out`.
    fn write_request(
        &mut self,
        method: &http::Method,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: &Bytes,
        has_cookies: bool,
    ) -> Result<(), TransportError> {
        use std::io::Write as _;
        if path_and_query.is_empty() || path_and_query.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(TransportError {
                kind: FailureKind::Transport,
                message: format!("invalid request {path_and_query:?}: not a request target"),
            });
        }
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(path_and_query.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(self.origin.host.as_bytes());
        out.extend_from_slice(b"\r\n");
        if has_cookies && !self.cookie_header.is_empty() {
            out.extend_from_slice(b"cookie: ");
            out.extend_from_slice(self.cookie_header.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let mut has_length = false;
        for (name, value) in headers {
            has_length |= name == http::header::CONTENT_LENGTH;
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // A length whenever there is a body, and for the methods that
        // usually carry one (a POST with none says so).
        let carries = !matches!(
            *method,
            http::Method::GET
                | http::Method::HEAD
                | http::Method::DELETE
                | http::Method::OPTIONS
                | http::Method::TRACE
        );
        if !has_length && (!body.is_empty() || carries) {
            let _ = write!(out, "content-length: {}\r\n", body.len());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        Ok(())
    }
}

/// Whether the server has closed (or reset) a kept connection, as far as
/// the reactor's readiness already says.
fn closed_by_peer(stream: &TcpStream) -> bool {
    use futures::FutureExt as _;
    match stream.ready(tokio::io::Interest::READABLE).now_or_never() {
        Some(Ok(ready)) => ready.is_read_closed() || ready.is_error(),
        Some(Err(_)) => true,
        None => false,
    }
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

pub fn content_type(value: &'static str) -> (HeaderName, HeaderValue) {
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

/// The first characters of a body, on one line, for failure samples.
pub fn snippet(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

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

    /// `GET path`, its body counted, not kept (an error's is kept all the same).
    async fn get(client: &mut Client, path: &str) -> Result<Response, TransportError> {
        client
            .send(http::Method::GET, path, &[], Bytes::new(), false)
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
        assert_eq!(get(&mut client, "/").await.unwrap().body_len, 2);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started = std::time::Instant::now();
        let error = get(&mut client, "/").await.unwrap_err();
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
        assert_eq!(get(&mut client, "/").await.unwrap().body_len, 2);
    }

    /// A loopback server answering each request by its path from
    /// `answers` (split in two writes, 20 ms apart, so the client sees a
    /// response in pieces), closing after those `close_after` lists;
    /// counts the connections it accepted and keeps the requests it read.
    async fn scripted(
        answers: &'static [(&'static str, &'static [u8])],
    ) -> (
        String,
        std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (seen, count) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buffer).into_owned();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.parse().unwrap());
                        if buffer.len() < end + 4 + length {
                            continue;
                        }
                        let request: Vec<u8> = buffer.drain(..end + 4 + length).collect();
                        let request = String::from_utf8(request).unwrap();
                        let path = request.split(' ').nth(1).unwrap().to_owned();
                        seen.lock().unwrap().push(request);
                        let answer = answers.iter().find(|(p, _)| *p == path).unwrap().1;
                        let half = answer.len() / 2;
                        let _ = stream.write_all(&answer[..half]).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let _ = stream.write_all(&answer[half..]).await;
                        if path.starts_with("/close") {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{address}/"), requests, connections)
    }

    async fn fetch(client: &mut Client, method: http::Method, path: &str) -> Response {
        let body = if method == http::Method::POST {
            form_body(&[("a", "b")])
        } else {
            Bytes::new()
        };
        client
            .send(method, path, &[], body, true)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:?}"))
    }

    #[tokio::test]
    async fn bodies_by_length_in_chunks_and_until_close_are_read_whole() {
        use std::sync::atomic::Ordering;
        static ANSWERS: [(&str, &[u8]); 6] = [
            ("/length", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nset-cookie: s=1; Path=/\r\n\r\nhello"),
            (
                "/chunked",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\ntrailer: t\r\n\r\n",
            ),
            ("/interim", b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
            ("/head", b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"),
            ("/form", b"HTTP/1.1 302 Found\r\nlocation: /length\r\ncontent-length: 0\r\n\r\n"),
            ("/close", b"HTTP/1.0 500 Oops\r\n\r\nuntil the end"),
        ];
        let (base, requests, connections) = scripted(&ANSWERS).await;
        let origin = std::sync::Arc::new(Origin::resolve(&base).await.unwrap());
        let mut client = Client::new(origin, Duration::from_secs(5));
        let length = fetch(&mut client, http::Method::GET, "/length").await;
        assert_eq!(
            (length.status.as_u16(), length.text().as_ref()),
            (200, "hello")
        );
        assert_eq!(client.cookie("s"), Some("1"));
        let chunked = fetch(&mut client, http::Method::GET, "/chunked").await;
        assert_eq!(chunked.text(), "hello world");
        assert_eq!(chunked.body_len, 11);
        let interim = fetch(&mut client, http::Method::GET, "/interim").await;
        assert_eq!(interim.status, StatusCode::NO_CONTENT);
        let head = fetch(&mut client, http::Method::HEAD, "/head").await;
        assert_eq!((head.status.as_u16(), head.body_len), (200, 0));
        let form = fetch(&mut client, http::Method::POST, "/form").await;
        assert_eq!(form.location(), Some("/length"));
        // Not kept, the body is counted; an error's is kept all the same.
        let closed = get(&mut client, "/close").await.unwrap();
        assert_eq!(
            (closed.status.as_u16(), closed.text().as_ref()),
            (500, "until the end")
        );
        assert_eq!(connections.load(Ordering::SeqCst), 1, "one kept connection");
        // Closed after a close-delimited body: the next goes on a new one.
        let again = fetch(&mut client, http::Method::GET, "/length").await;
        assert_eq!(again.text(), "hello");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        let requests = requests.lock().unwrap();
        assert!(
            requests[0].starts_with("GET /length HTTP/1.1\r\nhost: 127.0.0.1:"),
            "{}",
            requests[0]
        );
        assert!(
            requests[1].contains("\r\ncookie: s=1\r\n"),
            "{}",
            requests[1]
        );
        assert!(!requests[0].contains("content-length"), "{}", requests[0]);
        assert!(
            requests[4].starts_with("POST /form HTTP/1.1\r\n")
                && requests[4].ends_with("content-length: 3\r\n\r\na=b"),
            "{}",
            requests[4]
        );
    }

    /// A server that closes a kept connection while the user thinks: the
    /// next request goes on a new one and does not fail.
    #[tokio::test]
    async fn a_kept_connection_the_server_closed_is_replaced_not_failed() {
        static ANSWERS: [(&str, &[u8]); 1] = [(
            "/close-idle",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        )];
        let (base, _, connections) = scripted(&ANSWERS).await;
        let origin = std::sync::Arc::new(Origin::resolve(&base).await.unwrap());
        let mut client = Client::new(origin, Duration::from_secs(5));
        for _ in 0..3 {
            let response = fetch(&mut client, http::Method::POST, "/close-idle").await;
            assert_eq!(response.text(), "ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_response_cut_short_is_a_reset_and_garbage_is_invalid() {
        static ANSWERS: [(&str, &[u8]); 2] = [
            (
                "/close-short",
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            ),
            ("/garbage", b"SMTP ready\r\n\r\n"),
        ];
        let (base, _, _) = scripted(&ANSWERS).await;
        let origin = std::sync::Arc::new(Origin::resolve(&base).await.unwrap());
        let mut client = Client::new(origin, Duration::from_secs(5));
        let short = get(&mut client, "/close-short").await.unwrap_err();
        assert!(
            matches!(short.kind, FailureKind::ConnectionReset),
            "{short:?}"
        );
        let garbage = get(&mut client, "/garbage").await.unwrap_err();
        assert!(
            matches!(garbage.kind, FailureKind::Transport),
            "{garbage:?}"
        );
        assert!(
            garbage.message.starts_with("invalid response"),
            "{garbage:?}"
        );
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet("a\n  b\tc"), "a b c");
        assert_eq!(snippet(&"x".repeat(500)).len(), 160);
    }
}
