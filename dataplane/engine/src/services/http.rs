//! HTTP/1.1 with a fixed body: keep-alive, pipelining, a correct `Content-Length`, `HEAD`,
//! `Connection: close` and HTTP/1.0 keep-alive honoured, and errors that close the connection:
//! `400` for a malformed request, `431` for a head over [`MAX_HEAD`] bytes, `501` for a
//! `Transfer-Encoding` request body, `505` for an HTTP major version other than 1, and `408` for a
//! request head that did not arrive whole within the header timeout
//! ([`HttpConfig::with_header_timeout`]): from the connection's start, or from the end of the
//! previous response. A client that connects and stays silent, or trickles a head byte by byte,
//! holds its connection that long at most.
//!
//! Responses are built once per service ([`HttpConfig::new`]) and shared by every session: serving
//! a request copies the prebuilt bytes into the connection's send buffer and allocates nothing.
//! A response larger than the send buffer is streamed as room appears; the next pipelined request is
//! read only once the previous response is fully queued (back-pressure).

use std::sync::Arc;
use std::time::Duration;

use smoltcp::time::Instant;

use super::{Progress, Stream};

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8192;

/// Bytes read from the connection per step.
const READ_CHUNK: usize = 2048;

/// The service's settings and its prebuilt responses.
#[derive(Debug)]
pub struct HttpConfig {
    body_len: usize,
    responses: [Arc<[u8]>; 6],
    errors: [Arc<[u8]>; 5],
    /// How long a request head may take to arrive whole; `None`: for ever.
    header_timeout: Option<smoltcp::time::Duration>,
}

/// How the connection continues after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persist {
    /// HTTP/1.1 default.
    KeepAlive11,
    /// HTTP/1.0 with `Connection: keep-alive`: says so in the response.
    KeepAlive10,
    Close,
}

/// A request error, answered with a status and a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    BadRequest = 0,
    HeadTooLarge = 1,
    NotImplemented = 2,
    VersionNotSupported = 3,
    RequestTimeout = 4,
}

impl HttpError {
    fn status(self) -> &'static str {
        match self {
            HttpError::BadRequest => "400 Bad Request",
            HttpError::HeadTooLarge => "431 Request Header Fields Too Large",
            HttpError::NotImplemented => "501 Not Implemented",
            HttpError::VersionNotSupported => "505 HTTP Version Not Supported",
            HttpError::RequestTimeout => "408 Request Timeout",
        }
    }
}

impl HttpConfig {
    /// A service answering every request with `body`, of type `content_type`.
    pub fn new(body: &[u8], content_type: &str) -> Self {
        let build = |head_only: bool, persist: Persist| -> Arc<[u8]> {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nServer: switchyard\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            )
            .into_bytes();
            match persist {
                Persist::KeepAlive11 => {}
                Persist::KeepAlive10 => r.extend_from_slice(b"Connection: keep-alive\r\n"),
                Persist::Close => r.extend_from_slice(b"Connection: close\r\n"),
            }
            r.extend_from_slice(b"\r\n");
            if !head_only {
                r.extend_from_slice(body);
            }
            r.into()
        };
        let error = |e: HttpError| -> Arc<[u8]> {
            let text = format!("{}\n", e.status());
            format!(
                "HTTP/1.1 {}\r\nServer: switchyard\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                e.status(),
                text.len()
            )
            .into_bytes()
            .into()
        };
        use Persist::*;
        HttpConfig {
            body_len: body.len(),
            responses: [
                build(false, KeepAlive11),
                build(false, KeepAlive10),
                build(false, Close),
                build(true, KeepAlive11),
                build(true, KeepAlive10),
                build(true, Close),
            ],
            errors: [
                error(HttpError::BadRequest),
                error(HttpError::HeadTooLarge),
                error(HttpError::NotImplemented),
                error(HttpError::VersionNotSupported),
                error(HttpError::RequestTimeout),
            ],
            header_timeout: None,
        }
    }

    /// Answers `408` and closes a connection whose next request head has not arrived whole
    /// `timeout` after the connection started or the previous response was queued.
    pub fn with_header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = Some(smoltcp::time::Duration::from_micros(timeout.as_micros() as u64));
        self
    }

    pub fn body_len(&self) -> usize {
        self.body_len
    }

    fn response(&self, head_only: bool, persist: Persist) -> &Arc<[u8]> {
        let p = match persist {
            Persist::KeepAlive11 => 0,
            Persist::KeepAlive10 => 1,
            Persist::Close => 2,
        };
        &self.responses[p + if head_only { 3 } else { 0 }]
    }
}

/// A parsed request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Request {
    /// Bytes of the head, through the empty line.
    head_len: usize,
    head_only: bool,
    persist: Persist,
    content_length: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Parse {
    Incomplete,
    Done(Request),
    Error(HttpError),
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| is_tchar(c))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses one request head at the start of `buf`. Lines end in CRLF (a bare LF is tolerated);
/// empty lines before the request line are skipped (RFC 9112 §2.2).
fn parse(buf: &[u8]) -> Parse {
    let mut pos = 0;
    let mut lines = 0usize;
    let mut head_only = false;
    let mut version_minor = 1u8;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut content_length: Option<u64> = None;
    loop {
        let Some(nl) = buf[pos..].iter().position(|&c| c == b'\n') else {
            return Parse::Incomplete;
        };
        let raw = &buf[pos..pos + nl];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        pos += nl + 1;
        if lines == 0 {
            if line.is_empty() {
                continue; // leading empty line
            }
            // request-line = method SP request-target SP HTTP-version
            let mut parts = line.split(|&c| c == b' ');
            let (Some(method), Some(target), Some(version), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Parse::Error(HttpError::BadRequest);
            };
            if !is_token(method) || target.is_empty() || target.iter().any(|c| c.is_ascii_control()) {
                return Parse::Error(HttpError::BadRequest);
            }
            match version {
                [b'H', b'T', b'T', b'P', b'/', b'1', b'.', m] if m.is_ascii_digit() => version_minor = m - b'0',
                [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit() => {
                    return Parse::Error(HttpError::VersionNotSupported)
                }
                _ => return Parse::Error(HttpError::BadRequest),
            }
            head_only = method == b"HEAD";
            lines += 1;
            continue;
        }
        if line.is_empty() {
            let persist = if conn_close {
                Persist::Close
            } else if version_minor >= 1 {
                Persist::KeepAlive11
            } else if conn_keep_alive {
                Persist::KeepAlive10
            } else {
                Persist::Close
            };
            return Parse::Done(Request {
                head_len: pos,
                head_only,
                persist,
                content_length: content_length.unwrap_or(0),
            });
        }
        lines += 1;
        // field-line = field-name ":" OWS field-value OWS; no obs-fold
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Parse::Error(HttpError::BadRequest);
        };
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if !is_token(name) || value.iter().any(|&c| c.is_ascii_control() && c != b'\t') {
            return Parse::Error(HttpError::BadRequest);
        }
        if name.eq_ignore_ascii_case(b"connection") {
            for opt in value.split(|&c| c == b',') {
                let opt = trim_ows(opt);
                conn_close |= opt.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= opt.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = parse_decimal(value) else {
                return Parse::Error(HttpError::BadRequest);
            };
            if content_length.is_some_and(|old| old != n) {
                return Parse::Error(HttpError::BadRequest);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Parse::Error(HttpError::NotImplemented);
        }
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// One HTTP connection.
#[derive(Debug)]
pub struct Http {
    cfg: Arc<HttpConfig>,
    /// Received bytes not parsed yet (a head, or several pipelined ones). Grows only as far as
    /// the requests need (an idle connection holds no head buffer).
    input: Vec<u8>,
    /// The response being queued, and how much of it is queued.
    out: Option<(Arc<[u8]>, usize)>,
    /// Request body bytes still to discard.
    skip: u64,
    /// Close once `out` is queued.
    closing: bool,
    /// Requests answered (errors included).
    pub requests: u64,
    /// Since when it waits for a request head (with a header timeout): the connection's start, or
    /// the end of the previous response.
    waiting_since: Option<Instant>,
}

impl Http {
    pub fn new(cfg: Arc<HttpConfig>) -> Self {
        Http { cfg, input: Vec::new(), out: None, skip: 0, closing: false, requests: 0, waiting_since: None }
    }

    /// When the head it waits for times out, if it waits for one with a timeout.
    pub fn deadline(&self) -> Option<Instant> {
        Some(self.waiting_since? + self.cfg.header_timeout?)
    }

    fn consume_input(&mut self, n: usize) {
        self.input.drain(..n);
        if self.input.is_empty() && self.input.capacity() > 2 * READ_CHUNK {
            self.input = Vec::new();
        }
    }

    /// Reads what the stream has, up to [`MAX_HEAD`] buffered bytes.
    fn fill(&mut self, s: &mut dyn Stream) {
        let mut chunk = [0u8; READ_CHUNK];
        while self.input.len() < MAX_HEAD {
            let want = (MAX_HEAD - self.input.len()).min(READ_CHUNK);
            let n = s.recv_into(&mut chunk[..want]);
            if n == 0 {
                break;
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn drive(&mut self, now: Instant, s: &mut dyn Stream) -> Progress {
        if self.deadline().is_some_and(|t| now >= t) && self.out.is_none() && !self.closing {
            self.fail(HttpError::RequestTimeout);
        }
        loop {
            if let Some((resp, off)) = &mut self.out {
                *off += s.send_from(&resp[*off..]);
                if *off < resp.len() {
                    return Progress::Open; // wait for room
                }
                self.out = None;
            }
            if self.closing {
                return Progress::Close;
            }
            // Discard request body bytes, first from what is buffered, then from the stream.
            while self.skip > 0 {
                if !self.input.is_empty() {
                    let n = self.input.len().min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                    self.consume_input(n);
                    self.skip -= n as u64;
                    continue;
                }
                let mut scratch = [0u8; READ_CHUNK];
                let want = usize::try_from(self.skip).unwrap_or(usize::MAX).min(READ_CHUNK);
                let n = s.recv_into(&mut scratch[..want]);
                if n == 0 {
                    return if s.peer_finished() { Progress::Close } else { Progress::Open };
                }
                self.skip -= n as u64;
            }
            self.fill(s);
            match parse(&self.input) {
                Parse::Incomplete if self.input.len() >= MAX_HEAD => self.fail(HttpError::HeadTooLarge),
                Parse::Incomplete => {
                    // An unfinished request at the peer's FIN is abandoned.
                    if s.peer_finished() {
                        return Progress::Close;
                    }
                    if self.cfg.header_timeout.is_some() && self.waiting_since.is_none() {
                        self.waiting_since = Some(now);
                    }
                    return Progress::Open;
                }
                Parse::Error(e) => self.fail(e),
                Parse::Done(req) => {
                    self.waiting_since = None;
                    self.consume_input(req.head_len);
                    self.skip = req.content_length;
                    self.closing = req.persist == Persist::Close;
                    self.out = Some((self.cfg.response(req.head_only, req.persist).clone(), 0));
                    self.requests += 1;
                }
            }
        }
    }

    fn fail(&mut self, e: HttpError) {
        self.requests += 1;
        self.waiting_since = None;
        self.input = Vec::new();
        self.closing = true;
        self.out = Some((self.cfg.errors[e as usize].clone(), 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::test_stream::VecStream;

    fn cfg() -> Arc<HttpConfig> {
        Arc::new(HttpConfig::new(b"hello\n", "text/plain"))
    }

    fn run(input: &[u8], peer_fin: bool, send_cap: usize) -> (Vec<u8>, Progress, Http) {
        let mut s = VecStream::new(input, send_cap);
        s.peer_fin = peer_fin;
        let mut h = Http::new(cfg());
        let mut out = Vec::new();
        let mut p = Progress::Open;
        for _ in 0..10_000 {
            p = h.drive(Instant::ZERO, &mut s);
            out.extend(s.take_output());
            if p == Progress::Close || (s.read == s.input.len() && h.out.is_none()) {
                break;
            }
        }
        (out, p, h)
    }

    fn count(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }

    #[test]
    fn one_get_keep_alive_has_content_length() {
        let (out, p, _) = run(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, 1 << 16);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 6\r\n"));
        assert!(!text.contains("Connection: close"));
        assert!(text.ends_with("\r\n\r\nhello\n"));
        assert_eq!(p, Progress::Open);
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let input: Vec<u8> = req.iter().copied().cycle().take(req.len() * 100).collect();
        let (out, p, h) = run(&input, false, 1 << 20);
        assert_eq!(h.requests, 100);
        assert_eq!(count(&out, b"HTTP/1.1 200 OK"), 100);
        assert_eq!(p, Progress::Open);
    }

    #[test]
    fn pipelining_survives_a_tiny_send_buffer() {
        let req = b"GET / HTTP/1.1\r\n\r\n";
        let input: Vec<u8> = req.iter().copied().cycle().take(req.len() * 50).collect();
        let (out, _, h) = run(&input, false, 7);
        assert_eq!(h.requests, 50);
        assert_eq!(count(&out, b"hello\n"), 50);
    }

    #[test]
    fn connection_close_is_honoured() {
        let (out, p, _) = run(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n", false, 1 << 16);
        assert_eq!(count(&out, b"HTTP/1.1 200 OK"), 1, "nothing after the close");
        assert_eq!(count(&out, b"Connection: close\r\n"), 1);
        assert_eq!(p, Progress::Close);
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        let (out, p, _) = run(b"GET / HTTP/1.0\r\n\r\n", false, 1 << 16);
        assert!(String::from_utf8_lossy(&out).contains("Connection: close"));
        assert_eq!(p, Progress::Close);
        let (out, p, _) = run(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", false, 1 << 16);
        assert!(String::from_utf8_lossy(&out).contains("Connection: keep-alive"));
        assert_eq!(p, Progress::Open);
    }

    #[test]
    fn head_has_length_but_no_body() {
        let (out, _, _) = run(b"HEAD / HTTP/1.1\r\n\r\n", false, 1 << 16);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 6\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn malformed_request_lines_get_400_and_close() {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColonHere\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            let (out, p, _) = run(bad, false, 1 << 16);
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{:?} -> {text}", String::from_utf8_lossy(bad));
            assert!(text.contains("Connection: close"));
            assert_eq!(p, Progress::Close);
        }
    }

    #[test]
    fn other_errors_have_their_status() {
        let (out, ..) = run(b"GET / HTTP/2.0\r\n\r\n", false, 1 << 16);
        assert!(out.starts_with(b"HTTP/1.1 505 "));
        let (out, ..) = run(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", false, 1 << 16);
        assert!(out.starts_with(b"HTTP/1.1 501 "));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        let (out, p, _) = run(&big, false, 1 << 16);
        assert!(out.starts_with(b"HTTP/1.1 431 "));
        assert_eq!(p, Progress::Close);
    }

    #[test]
    fn request_bodies_are_skipped() {
        let mut input = b"POST / HTTP/1.1\r\nContent-Length: 20000\r\n\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'z', 20000));
        input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let (out, _, h) = run(&input, false, 1 << 16);
        assert_eq!(h.requests, 2);
        assert_eq!(count(&out, b"HTTP/1.1 200 OK"), 2);
    }

    #[test]
    fn leading_empty_lines_and_bare_lf_are_tolerated() {
        let (out, ..) = run(b"\r\n\nGET / HTTP/1.1\nHost: x\n\n", false, 1 << 16);
        assert!(out.starts_with(b"HTTP/1.1 200 OK"));
    }

    #[test]
    fn incomplete_request_at_fin_closes_without_answer() {
        let (out, p, _) = run(b"GET / HTTP/1.1\r\nHost:", true, 1 << 16);
        assert!(out.is_empty());
        assert_eq!(p, Progress::Close);
    }

    /// Random and mutated requests never panic the parser or the session; every answer it gives
    /// is a whole HTTP/1.1 response, and an error status always comes with a close.
    #[test]
    fn random_and_mutated_requests_are_answered_or_closed() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds: [&[u8]; 4] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        ];
        for i in 0..5000 {
            let mut input = seeds[i % seeds.len()].repeat(1 + (rand() % 3) as usize);
            for _ in 0..(rand() % 6) {
                let at = (rand() as usize) % input.len();
                input[at] = rand() as u8;
            }
            if i % 7 == 0 {
                input.truncate((rand() as usize) % (input.len() + 1));
            }
            let (out, p, _) = run(&input, i % 2 == 0, 1 << 16);
            let text = String::from_utf8_lossy(&out);
            if !out.is_empty() {
                assert!(text.starts_with("HTTP/1.1 "), "{:?} -> {text:?}", String::from_utf8_lossy(&input));
            }
            for status in ["400 ", "431 ", "501 ", "505 "] {
                if text.contains(&format!("HTTP/1.1 {status}")) {
                    assert_eq!(p, Progress::Close, "an error closes: {:?}", String::from_utf8_lossy(&input));
                }
            }
        }
    }

    #[test]
    fn a_body_larger_than_the_send_buffer_is_streamed() {
        let body = vec![b'x'; 100_000];
        let cfg = Arc::new(HttpConfig::new(&body, "application/octet-stream"));
        let mut s = VecStream::new(b"GET / HTTP/1.1\r\n\r\n", 1000);
        let mut h = Http::new(cfg);
        let mut out = Vec::new();
        for _ in 0..200 {
            h.drive(Instant::ZERO, &mut s);
            out.extend(s.take_output());
        }
        assert!(out.ends_with(&body));
        assert!(String::from_utf8_lossy(&out[..200]).contains("Content-Length: 100000\r\n"));
    }
}
