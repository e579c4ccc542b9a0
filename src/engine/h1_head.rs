//! Reading HTTP/1.1 response heads: parsed by httparse into `http`'s
//! parts, and what they say of the body's framing (RFC 9112, section 6)
//! and of the connection's persistence (section 9.3).

use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};

use super::h1::Head;

/// The most header fields a response head may have (hyper allows 100).
const MAX_HEADERS: usize = 128;

/// A response head parsed from the start of `buf`: its length and parts;
/// `None` while it is incomplete.
///
/// # Errors
/// The parse error, for bytes that are not an HTTP/1.x response head.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Most heads have a few fields: try a small array before a large one.
    let mut few = [httparse::EMPTY_HEADER; 24];
    match head_from(buf, &mut few) {
        Err(httparse::Error::TooManyHeaders) => {
            let mut many = [httparse::EMPTY_HEADER; MAX_HEADERS];
            head_from(buf, &mut many)
        }
        other => other,
    }
    .map_err(|e| format!("invalid HTTP response: {e}"))?
}

/// [`parse_head`] with room for `fields.len()` header fields.
fn head_from<'b>(
    buf: &'b [u8],
    fields: &mut [httparse::Header<'b>],
) -> Result<Result<Option<(usize, Head)>, String>, httparse::Error> {
    let mut parsed = httparse::Response::new(fields);
    let len = match parsed.parse(buf)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(Ok(None)),
    };
    Ok(build_head(&parsed).map(|head| Some((len, head))))
}

/// The parts of a parsed response head.
///
/// # Errors
/// For a status code, header name or header value that `http` refuses.
fn build_head(parsed: &httparse::Response<'_, '_>) -> Result<Head, String> {
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("invalid HTTP response: invalid status code")?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| {
            format!(
                "invalid HTTP response: invalid header name {:?}",
                field.name
            )
        })?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| format!("invalid HTTP response: invalid value of header {name}"))?;
        headers.append(name, value);
    }
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.version_mut() = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    *resp.headers_mut() = headers;
    Ok(resp.into_parts().0)
}

/// How a response's body is delimited (RFC 9112, section 6.3).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The framing of the response to `method` with `head`.
///
/// # Errors
/// For a `Content-Length` that is not one number.
pub(super) fn framing(method: &Method, head: &Head) -> Result<Framing, String> {
    let status = head.status;
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if let Some(last) = tokens(&head.headers, &TRANSFER_ENCODING).last() {
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for value in tokens(&head.headers, &CONTENT_LENGTH) {
        let n: u64 = value
            .parse()
            .map_err(|_| format!("invalid HTTP response: invalid Content-Length {value:?}"))?;
        if length.is_some_and(|l| l != n) {
            return Err("invalid HTTP response: conflicting Content-Length values".to_owned());
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Whether the connection stays open after `head` (RFC 9112, section 9.3):
/// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
/// `Connection: keep-alive`; never after 101.
pub(super) fn keeps_alive(head: &Head) -> bool {
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        return false;
    }
    let mut options = tokens(&head.headers, &CONNECTION);
    if head.version == Version::HTTP_10 {
        options.any(|t| t.eq_ignore_ascii_case("keep-alive"))
    } else {
        !options.any(|t| t.eq_ignore_ascii_case("close"))
    }
}

/// The comma-separated list elements of every `name` field.
fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
