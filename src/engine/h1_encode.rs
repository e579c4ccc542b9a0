//! Writing HTTP/1.1 requests: the request line and header section (RFC
//! 9112, sections 3 and 5) and the body's framing, which is the engine's.
//!
//! A request to an origin known to speak HTTP/1.1 is written straight from
//! its spec ([`HeadWriter`], used by `request.rs`); one that may still go
//! on HTTP/2 is built as an `http::Request` first and written from it
//! ([`Encoded::of`]). Both give the same bytes.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Request};

/// Bodies up to this size are sent in the same write as the head.
const INLINE_BODY_BYTES: usize = 16 * 1024;

/// A request ready to write on an HTTP/1.1 connection.
pub(crate) struct Encoded {
    pub method: Method,
    /// The request line and header section, followed by the body when it
    /// is at most [`INLINE_BODY_BYTES`].
    pub head: Vec<u8>,
    /// The body, when it is larger: written after the head, uncopied.
    pub body_apart: Option<Bytes>,
}

impl Encoded {
    /// `req` (origin-form URI, with its `Host` header), encoded. Its
    /// `Content-Length` and `Transfer-Encoding` headers are dropped for
    /// the engine's own framing (see [`HeadWriter::finish`]).
    pub fn of(req: Request<Bytes>) -> Self {
        let (parts, body) = req.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let fields: usize = parts
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        let mut head = HeadWriter::new(&parts.method, target, fields, body.len());
        for (name, value) in &parts.headers {
            if name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
                head.field(name.as_str().as_bytes(), value.as_bytes());
            }
        }
        head.finish(parts.method, body)
    }
}

/// Writes one request head into a buffer sized for it up front.
pub(crate) struct HeadWriter {
    out: Vec<u8>,
}

impl HeadWriter {
    /// Starts a request: its line (`method target HTTP/1.1`). `fields_bytes`
    /// is the caller's estimate of the header fields' length and
    /// `body_bytes` the body's, for the buffer's capacity.
    pub fn new(method: &Method, target: &str, fields_bytes: usize, body_bytes: usize) -> Self {
        let inline = if body_bytes <= INLINE_BODY_BYTES {
            body_bytes
        } else {
            0
        };
        let mut out = Vec::with_capacity(128 + target.len() + fields_bytes + inline);
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        Self { out }
    }

    /// Adds a header field; the caller has checked `name` and `value`
    /// (`http::HeaderName` and `HeaderValue` rules).
    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        self.field_parts(name, &[value]);
    }

    /// Adds a header field whose value is `parts` joined.
    pub fn field_parts(&mut self, name: &[u8], parts: &[&[u8]]) {
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b": ");
        for part in parts {
            self.out.extend_from_slice(part);
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// Ends the head: `content-length` when the request says its body's
    /// length (see [`needs_content_length`]), the blank line, and the body
    /// itself when it is small.
    pub fn finish(mut self, method: Method, body: Bytes) -> Encoded {
        if needs_content_length(&method, &body) {
            let mut digits = itoa::Buffer::new();
            self.field(b"content-length", digits.format(body.len()).as_bytes());
        }
        self.out.extend_from_slice(b"\r\n");
        let body_apart = if body.len() <= INLINE_BODY_BYTES {
            self.out.extend_from_slice(&body);
            None
        } else {
            Some(body)
        };
        Encoded {
            method,
            head: self.out,
            body_apart,
        }
    }
}

/// Whether a request says its body's length: when it has one, and for the
/// methods that define a body even when it is empty (an empty POST says
/// `Content-Length: 0`; RFC 9110 section 8.6). HTTP/1.1 and HTTP/2
/// requests alike.
pub(crate) fn needs_content_length(method: &Method, body: &[u8]) -> bool {
    !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_written_with_the_engines_framing() {
        let req = Request::post("/items?x=1")
            .header("host", "example.test:8080")
            .header("content-length", "999")
            .header("x-a", "1")
            .body(Bytes::from_static(b"hello"))
            .unwrap();
        let encoded = Encoded::of(req);
        assert_eq!(
            encoded.head,
            b"POST /items?x=1 HTTP/1.1\r\nhost: example.test:8080\r\nx-a: 1\r\n\
              content-length: 5\r\n\r\nhello"
        );
        assert!(encoded.body_apart.is_none());
    }

    #[test]
    fn a_large_body_goes_apart_and_an_empty_get_says_no_length() {
        let big = Bytes::from(vec![b'x'; INLINE_BODY_BYTES + 1]);
        let mut head = HeadWriter::new(&Method::PUT, "/", 0, big.len());
        head.field_parts(b"host", &[b"h", b":", b"1"]);
        let encoded = head.finish(Method::PUT, big.clone());
        assert_eq!(
            encoded.head,
            format!(
                "PUT / HTTP/1.1\r\nhost: h:1\r\ncontent-length: {}\r\n\r\n",
                big.len()
            )
            .as_bytes()
        );
        assert_eq!(encoded.body_apart, Some(big));
        let get = HeadWriter::new(&Method::GET, "/", 0, 0).finish(Method::GET, Bytes::new());
        assert_eq!(get.head, b"GET / HTTP/1.1\r\n\r\n");
    }
}
