//! Raw HTTP/1.1 over a Unix socket: exactly the bytes a test writes, and everything
//! the server answers, for wire-level checks (notes §1, §4, §6, §14).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A parsed response: head fields, the body as sent (`raw_body`) and, when chunked,
/// decoded (`body`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The status line, without CRLF.
    pub status_line: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Bytes after the head, as received.
    pub raw_body: Vec<u8>,
    /// The body with chunked framing removed (same as `raw_body` when not chunked or
    /// when the chunking is incomplete).
    pub body: Vec<u8>,
}

impl Response {
    /// Parses a response head and what follows it; `None` if there is no complete head.
    pub fn parse(raw: &[u8]) -> Option<Response> {
        let end = find(raw, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?.to_owned();
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let raw_body = raw[end + 4..].to_vec();
        let chunked = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let body = if chunked {
            dechunk(&raw_body).unwrap_or_else(|| raw_body.clone())
        } else {
            raw_body.clone()
        };
        Some(Response {
            status,
            status_line,
            headers,
            raw_body,
            body,
        })
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The (decoded) body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.status_line)?;
        for (k, v) in &self.headers {
            writeln!(f, "{k}: {v}")?;
        }
        let text = String::from_utf8_lossy(&self.raw_body);
        let cut: String = text.chars().take(2000).collect();
        write!(f, "\n{cut}")
    }
}

/// Connects, writes `request` as is, and reads until the server closes or `read_for`
/// passes (whatever arrived by then is returned; a timeout is not an error).
pub fn exchange(socket: &Path, request: &[u8], read_for: Duration) -> io::Result<Vec<u8>> {
    let mut s = UnixStream::connect(socket)?;
    s.write_all(request)?;
    Ok(read_for_a_while(&mut s, read_for))
}

/// Reads until EOF, an error, or `read_for` passes.
pub fn read_for_a_while(s: &mut UnixStream, read_for: Duration) -> Vec<u8> {
    let deadline = Instant::now() + read_for;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Reads until the peer ends its side (EOF): `Ok` with everything read, or `Err` with
/// what arrived if `within` passed first or the connection failed.
pub fn read_to_eof(s: &mut UnixStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return Err(out);
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(out),
        }
    }
}

/// Sends one request with `Host`, `Connection: close` and, when there is a body,
/// `Content-Length`, then reads the whole response (60 s at most).
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: berth-test\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut s = UnixStream::connect(socket)?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let raw = read_for_a_while(&mut s, Duration::from_secs(60));
    Response::parse(&raw).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{method} {path}: no complete response head in {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(500)])
            ),
        )
    })
}

/// Reads from `s` until a complete response head arrived; returns the head (with its
/// blank line) and whatever bytes came after it in the same reads.
pub fn read_head(s: &mut UnixStream, timeout: Duration) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = find(&got, b"\r\n\r\n") {
            let rest = got.split_off(end + 4);
            return Ok((got, rest));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no response head within {timeout:?}; got {:?}",
                    String::from_utf8_lossy(&got)
                ),
            ));
        }
        s.set_read_timeout(Some(left))?;
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "closed before a complete head; got {:?}",
                    String::from_utf8_lossy(&got)
                ),
            ));
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// Removes chunked framing; `None` if the framing is broken or incomplete.
pub fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(raw, b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if raw.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// The first position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode_query(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits a multiplexed (non-TTY) attach/exec/logs stream into stdout and stderr
/// (notes §4.2); `None` if the framing is broken or a frame is incomplete.
pub fn demux(mut raw: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while !raw.is_empty() {
        if raw.len() < 8 || raw[1..4] != [0, 0, 0] {
            return None;
        }
        let len = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
        let payload = raw.get(8..8 + len)?;
        match raw[0] {
            0 | 1 => out.extend_from_slice(payload),
            2 | 3 => err.extend_from_slice(payload),
            _ => return None,
        }
        raw = &raw[8 + len..];
    }
    Some((out, err))
}
