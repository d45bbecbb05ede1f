//! HTTP/1.1 as the metrics listener speaks it (pure: bytes in, decisions out): the head of one
//! request read from a buffer, and the bytes of one answer.
//!
//! The request line and headers are parsed by `httparse` (the parser hyper uses, already linked
//! for the Vault client's responses, so it costs little in the binary, and fuzzed far more than
//! a parser of our own would be); what HTTP means on top of it is here: the request's length
//! (`Content-Length`; a `Transfer-Encoding` body is refused, since nothing here takes a body),
//! whether the connection stays open (HTTP/1.1 unless `Connection: close`; HTTP/1.0 closes),
//! the size limit, and which answer a request gets.

/// The most bytes one request (line, headers and body) may have; a longer one is answered with
/// 431 (or 413 for its body) and the connection is closed.
pub const MAX_REQUEST: usize = 8 * 1024;

/// More headers than this is answered with 431; real scrapers send fewer than ten.
const MAX_HEADERS: usize = 32;

/// What a connection's buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// Not a whole head yet (and not over the limit): read more.
    Partial,
    /// The head is whole, its body is not: the whole request has this many bytes.
    Body(usize),
    /// One whole request: its head, and its length in the buffer (body included).
    Complete(Head, usize),
    /// Not a request we can frame: answer with this status, then close.
    Invalid(Status),
}

/// A request's method, as far as the listener cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Anything else: answered with 405.
    Other,
}

/// The head of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The path of the target, without its query (`/metrics` of `/metrics?x=1`, also of
    /// `http://host/metrics`).
    pub path: String,
    /// The client may send another request on this connection after our answer.
    pub keep_alive: bool,
}

/// The statuses the listener answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    ContentTooLarge,
    HeadersTooLarge,
    ServiceUnavailable,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::ContentTooLarge => 413,
            Status::HeadersTooLarge => 431,
            Status::ServiceUnavailable => 503,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::ContentTooLarge => "Content Too Large",
            Status::HeadersTooLarge => "Request Header Fields Too Large",
            Status::ServiceUnavailable => "Service Unavailable",
        }
    }
}

/// Parses the request at the start of `buf` (bytes after it are the next request's).
pub fn parse(buf: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_REQUEST => {
            return Parse::Invalid(Status::HeadersTooLarge);
        }
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parse::Invalid(Status::HeadersTooLarge),
        Err(_) => return Parse::Invalid(Status::BadRequest),
    };
    if head_len > MAX_REQUEST {
        return Parse::Invalid(Status::HeadersTooLarge);
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Parse::Invalid(Status::BadRequest);
    };
    let mut keep_alive = version == 1;
    let mut length: Option<usize> = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            // Two different lengths (or one that is not a number) would leave the end of the
            // request to guesswork; a repeated equal one is harmless.
            let Some(value) = std::str::from_utf8(header.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
            else {
                return Parse::Invalid(Status::BadRequest);
            };
            if length.is_some_and(|l| l != value) {
                return Parse::Invalid(Status::BadRequest);
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parse::Invalid(Status::BadRequest);
        } else if header.name.eq_ignore_ascii_case("connection") && version == 1 {
            let close = header
                .value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
            if close {
                keep_alive = false;
            }
        }
    }
    let total = match head_len.checked_add(length.unwrap_or(0)) {
        Some(total) if total <= MAX_REQUEST => total,
        _ => return Parse::Invalid(Status::ContentTooLarge),
    };
    if buf.len() < total {
        return Parse::Body(total);
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    Parse::Complete(
        Head {
            method,
            path: path_of(target).to_owned(),
            keep_alive,
        },
        total,
    )
}

/// One connection's incoming bytes, and when parsing them again is worth it: a client that
/// sends a byte at a time costs a scan of that byte, not a parse of everything so far. A
/// parse is worth it when a line has ended (at most 34 times a request: a head has at most
/// [`MAX_HEADERS`] header lines), so a request is found as soon as it is whole, and a line that
/// is not HTTP is refused as soon as it ends (or at once, in the first bytes of a request).
#[derive(Debug, Default)]
pub struct Buffer {
    bytes: Vec<u8>,
    /// `bytes[..scanned]` were seen by the last parse (or scanned for a line end since).
    scanned: usize,
    /// The head is whole and the request needs this many bytes in all.
    need: Option<usize>,
}

impl Buffer {
    pub fn extend(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// What the buffer holds: [`parse`] of it when that could give something new (the first
    /// bytes of a request, so that garbage is answered at once; a line end; its whole body;
    /// more than the limit), else `Partial` (or `Body`) as last time. Empty lines before a
    /// request are dropped (RFC 9112, 2.2).
    pub fn parse(&mut self) -> Parse {
        let blank = self
            .bytes
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if blank > 0 {
            self.bytes.drain(..blank);
            self.scanned = 0;
        }
        if self.bytes.is_empty() {
            return Parse::Partial;
        }
        let worth = if self.bytes.len() > MAX_REQUEST {
            true
        } else if let Some(need) = self.need {
            self.bytes.len() >= need
        } else {
            let first = self.scanned == 0;
            let from = self.scanned.min(self.bytes.len());
            self.scanned = self.bytes.len();
            first || memchr::memchr(b'\n', &self.bytes[from..]).is_some()
        };
        if !worth {
            return self.need.map_or(Parse::Partial, Parse::Body);
        }
        let parsed = parse(&self.bytes);
        if let Parse::Body(total) = parsed {
            self.need = Some(total);
        }
        parsed
    }

    /// What is buffered and not consumed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Drops the first `length` bytes (a request answered); what follows is the next one.
    pub fn consume(&mut self, length: usize) {
        self.bytes.drain(..length.min(self.bytes.len()));
        self.scanned = 0;
        self.need = None;
    }

    /// Drops everything, memory included.
    pub fn clear(&mut self) {
        *self = Buffer::default();
    }
}

/// The path of a request target: origin form (`/metrics?x`) or absolute form
/// (`http://host:port/metrics`), without the query.
fn path_of(target: &str) -> &str {
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |slash| &rest[slash..]),
        None => target,
    };
    target.split(['?', '#']).next().unwrap_or(target)
}

/// One answer, before it is put into bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The content type of plain-text answers other than the metrics.
pub const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    pub fn text(status: Status, body: &str) -> Response {
        Response {
            status,
            content_type: TEXT,
            body: body.as_bytes().to_vec(),
        }
    }

    /// The bytes on the wire: status line, headers, then the body unless `head` (the answer
    /// to a `HEAD` keeps the `Content-Length` the `GET` would have). `close` adds
    /// `Connection: close`; a 405 names the methods allowed.
    pub fn encode(&self, head: bool, close: bool) -> Vec<u8> {
        let mut out = self.head(close);
        if !head {
            out.extend_from_slice(&self.body);
        }
        out
    }

    /// The status line and headers (the server writes the body after them as it is, without
    /// copying a large exposition behind them).
    pub fn head(&self, close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(192);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(self.status.code()).as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.reason().as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
        out.extend_from_slice(b"\r\nCache-Control: no-store\r\n");
        if self.status == Status::MethodNotAllowed {
            out.extend_from_slice(b"Allow: GET, HEAD\r\n");
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: Method, path: &str, keep_alive: bool) -> Head {
        Head {
            method,
            path: path.into(),
            keep_alive,
        }
    }

    #[test]
    fn a_get_is_complete_once_its_blank_line_came() {
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        for end in 0..request.len() {
            assert_eq!(parse(&request[..end]), Parse::Partial, "{end}");
        }
        assert_eq!(
            parse(request),
            Parse::Complete(head(Method::Get, "/metrics", true), request.len())
        );
    }

    #[test]
    fn the_next_request_is_left_in_the_buffer() {
        let two = b"HEAD /livez HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\n";
        assert_eq!(
            parse(two),
            Parse::Complete(head(Method::Head, "/livez", true), 24)
        );
        assert_eq!(
            parse(&two[24..]),
            Parse::Complete(head(Method::Get, "/readyz", true), 24)
        );
    }

    #[test]
    fn http_1_0_and_connection_close_end_the_connection() {
        let cases: [(&[u8], bool); 6] = [
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nconnection: Upgrade, CLOSE\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nX-Connection: close\r\n\r\n", true),
        ];
        for (request, keep_alive) in cases {
            let Parse::Complete(head, _) = parse(request) else {
                panic!("{}", String::from_utf8_lossy(request));
            };
            assert_eq!(
                head.keep_alive,
                keep_alive,
                "{}",
                String::from_utf8_lossy(request)
            );
        }
    }

    #[test]
    fn targets_lose_their_query_and_their_scheme_and_host() {
        for (target, path) in [
            ("/metrics?name[]=up", "/metrics"),
            ("/readyz#x", "/readyz"),
            ("http://10.0.0.1:9100/metrics", "/metrics"),
            ("http://10.0.0.1:9100", "/"),
            ("*", "*"),
        ] {
            let request = format!("OPTIONS {target} HTTP/1.1\r\n\r\n");
            assert_eq!(
                parse(request.as_bytes()),
                Parse::Complete(head(Method::Other, path, true), request.len()),
                "{target}"
            );
        }
    }

    #[test]
    fn a_body_is_part_of_the_request_and_must_fit() {
        let request = b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            parse(&request[..request.len() - 1]),
            Parse::Body(request.len())
        );
        assert_eq!(
            parse(request),
            Parse::Complete(head(Method::Other, "/metrics", true), request.len())
        );
        let big = format!("POST / HTTP/1.1\r\nContent-Length: {MAX_REQUEST}\r\n\r\n");
        assert_eq!(
            parse(big.as_bytes()),
            Parse::Invalid(Status::ContentTooLarge)
        );
        let huge = "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(parse(huge.as_bytes()), Parse::Invalid(Status::BadRequest));
    }

    #[test]
    fn requests_that_cannot_be_framed_are_refused() {
        for request in [
            &b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET\x00/ HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse(request),
                Parse::Invalid(Status::BadRequest),
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        let same_twice = b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(parse(same_twice), Parse::Complete(..)));
    }

    #[test]
    fn too_long_or_too_many_headers_are_431() {
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_REQUEST + 1, b'a');
        assert_eq!(parse(&long), Parse::Invalid(Status::HeadersTooLarge));
        long.truncate(MAX_REQUEST);
        assert_eq!(parse(&long), Parse::Partial);
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            parse(many.as_bytes()),
            Parse::Invalid(Status::HeadersTooLarge)
        );
    }

    /// Fed in pieces, the buffer finds what one parse of the whole finds, parsing only when
    /// it may be new.
    #[test]
    fn a_buffer_fed_a_byte_at_a_time_finds_every_request() {
        let stream =
            b"\r\n\nGET /metrics HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\nGET /livez HTTP/1.0\r\n\r\n";
        let mut buffer = Buffer::default();
        let mut found = Vec::new();
        for byte in stream {
            buffer.extend(&[*byte]);
            if let Parse::Complete(head, length) = buffer.parse() {
                found.push(head.path);
                buffer.consume(length);
            }
        }
        assert_eq!(found, ["/metrics", "/livez"]);
        assert!(buffer.is_empty());

        let mut buffer = Buffer::default();
        buffer.extend(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\na");
        assert_eq!(buffer.parse(), Parse::Body(41));
        buffer.extend(b"b");
        assert_eq!(buffer.parse(), Parse::Body(41));
        buffer.extend(b"c");
        assert!(matches!(buffer.parse(), Parse::Complete(_, 41)));

        let mut buffer = Buffer::default();
        buffer.extend(b"\x16\x03");
        assert_eq!(buffer.parse(), Parse::Invalid(Status::BadRequest));

        // A bad byte after the first piece is found when its line ends.
        let mut buffer = Buffer::default();
        buffer.extend(b"GET / HTTP/1.1\r\nHo");
        assert_eq!(buffer.parse(), Parse::Partial);
        buffer.extend(b"st\x01: x");
        assert_eq!(buffer.parse(), Parse::Partial);
        buffer.extend(b"\r\n");
        assert_eq!(buffer.parse(), Parse::Invalid(Status::BadRequest));
    }

    #[test]
    fn answers_have_a_length_and_head_answers_no_body() {
        let response = Response::text(Status::Ok, "ready");
        assert_eq!(
            response.encode(false, false),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nCache-Control: no-store\r\n\r\nready"
        );
        assert_eq!(
            response.encode(true, true),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        );
        let refused = Response::text(Status::MethodNotAllowed, "").encode(false, false);
        let refused = String::from_utf8(refused).unwrap();
        assert!(refused.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(refused.contains("\r\nAllow: GET, HEAD\r\n"), "{refused}");
    }
}
