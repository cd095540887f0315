//! The hot path: one HTTP/1.1 connection and one cookie jar per virtual
//! user, over hyper's `client::conn` directly. Measured here, a loop over
//! reqwest cost 2.0× wrk's CPU per request and this 1.15×. Redirects are not
//! followed — a login's 302 must be seen — and cookies are the engine's.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
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
#[derive(Debug)]
pub struct Client {
    origin: std::sync::Arc<Origin>,
    sender: Option<SendRequest<Full<Bytes>>>,
    cookies: cookie_store::CookieStore,
    timeout: Duration,
    /// Reused buffers: the cookie header and the request URL.
    cookie_header: String,
    url: url::Url,
}

impl Client {
    pub fn new(origin: std::sync::Arc<Origin>, timeout: Duration) -> Client {
        let url = origin.base.clone();
        Client {
            origin,
            sender: None,
            cookies: cookie_store::CookieStore::default(),
            timeout,
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
        self.sender = None;
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, TransportError> {
        if self.sender.as_ref().is_some_and(|s| !s.is_closed()) {
            return Ok(self.sender.as_mut().expect("checked"));
        }
        let stream = tokio::net::TcpStream::connect(self.origin.address)
            .await
            .map_err(|e| classify_io(&e, "connect"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| classify_hyper(&e))?;
        tokio::task::spawn_local(async move {
            // Ends when the server closes the connection or the sender is dropped.
            let _ = connection.await;
        });
        self.sender = Some(sender);
        Ok(self.sender.as_mut().expect("just set"))
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
        let timeout = self.timeout;
        match tokio::time::timeout(
            timeout,
            self.exchange(method, path_and_query, headers, body, keep_body),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => {
                // The connection may be mid-response: never reuse it.
                self.sender = None;
                Err(TransportError {
                    kind: FailureKind::Timeout,
                    message: format!(
                        "no complete response within {}",
                        humantime::format_duration(timeout)
                    ),
                })
            }
        }
    }

    async fn exchange(
        &mut self,
        method: http::Method,
        path_and_query: &str,
        headers: &[(http::HeaderName, HeaderValue)],
        body: Bytes,
        keep_body: bool,
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
        let sender = self.connect().await?;
        if let Err(error) = sender.ready().await {
            self.sender = None;
            return Err(classify_hyper(&error));
        }
        let response = match self
            .sender
            .as_mut()
            .expect("connected")
            .send_request(request)
            .await
        {
            Ok(response) => response,
            Err(error) => {
                self.sender = None;
                return Err(classify_hyper(&error));
            }
        };
        let (parts, mut incoming) = response.into_parts();
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
        let mut body_len = 0u64;
        // Error answers are kept too: their text explains the failure.
        let body = if keep_body || !parts.status.is_success() {
            let collected = incoming.collect().await.map_err(|e| {
                self.sender = None;
                classify_hyper(&e)
            })?;
            let bytes = collected.to_bytes();
            body_len = bytes.len() as u64;
            bytes
        } else {
            while let Some(frame) = incoming.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            body_len += data.len() as u64;
                        }
                    }
                    Err(error) => {
                        self.sender = None;
                        return Err(classify_hyper(&error));
                    }
                }
            }
            Bytes::new()
        };
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
            body_len,
        })
    }
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

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet("a\n  b\tc"), "a b c");
        assert_eq!(snippet(&"x".repeat(500)).len(), 160);
    }
}
