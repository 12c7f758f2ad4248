//! HTTP/1 framing for the pass-through path: where a message's head ends and how long
//! its body is, read in place from the bytes as they came.
//!
//! Heads are parsed by `httparse` (the parser hyper uses, with hyper's settings); this
//! module only decides what a parsed head means for framing, and scans chunked bodies
//! the way hyper's decoder does. Nothing here copies or re-encodes a message: callers
//! forward the bytes, edited only by removing whole header lines and adding some.
//!
//! A proxy's framer is where request smuggling lives, so it refuses what dockerd's Go
//! server or hyper refuses, and a little more: both `Content-Length` and
//! `Transfer-Encoding` (hyper lets chunked win, Go drops the length; berth answers 400),
//! a `Transfer-Encoding` other than one `chunked` (Go answers 501), differing or
//! malformed lengths, obs-fold and bare CR (httparse), bad chunk framing, over-long
//! heads and trailers. The cargo-fuzz target `framing` (crates/berth-gateway/fuzz)
//! checks it against hyper's own server: what this accepts, hyper accepts with the
//! same body; what hyper accepts and this refuses is one of the refusals above.

use std::mem::MaybeUninit;
use std::ops::Range;

/// Header lines per head, as hyper's default.
pub const MAX_HEADERS: usize = 100;

/// The longest request target hyper takes.
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// Trailer bytes of a chunked body, as hyper's limit.
const MAX_TRAILERS: usize = 16 * 1024;

/// Chunk extension bytes of a body, as hyper's limit.
const MAX_EXTENSIONS: u64 = 16 * 1024;

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyLength {
    /// No body (HEAD answers, 204, 304, requests without a length).
    #[default]
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response without either: it ends when the connection does.
    UntilClose,
}

/// One header line of a parsed head, as byte ranges into the buffer it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderLine {
    /// The field name.
    pub name: Range<usize>,
    /// The field value, without surrounding whitespace.
    pub value: Range<usize>,
    /// The whole line, its line ending included.
    pub line: Range<usize>,
}

/// What a head says about framing and the connection, and where its lines are.
/// Reused from one message to the next (its header list keeps its allocation).
#[derive(Clone, Debug, Default)]
pub struct Head {
    /// Bytes of the head, up to and including the empty line.
    pub len: usize,
    /// The request or status line's end (its line ending included).
    pub first_line: usize,
    /// Request: the method's range.
    pub method: Range<usize>,
    /// Request: the target's range.
    pub target: Range<usize>,
    /// Response: the status code.
    pub status: u16,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    /// The header lines, in order.
    pub headers: Vec<HeaderLine>,
    /// The body's delimitation.
    pub body: BodyLength,
    /// The sender ends the connection after this exchange (`Connection: close`, or
    /// HTTP/1.0 without `keep-alive`).
    pub close: bool,
    /// Request: `Expect: 100-continue`.
    pub expect_continue: bool,
    /// An `Upgrade` header (or `CONNECT`).
    pub upgrade: bool,
    /// A `Connection` header (which may name more lines to drop when forwarding).
    pub connection: bool,
}

/// Why a head or body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// httparse refused it (bad token, obs-fold, bare CR, bad version…).
    #[error("malformed HTTP head: {0}")]
    Malformed(httparse::Error),
    /// More than [`MAX_HEADERS`] header lines.
    #[error("too many header lines")]
    TooManyHeaders,
    /// A request target longer than hyper takes.
    #[error("request target too long")]
    TargetTooLong,
    /// Both `Content-Length` and `Transfer-Encoding`.
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    /// A `Content-Length` that is not digits, or two that differ.
    #[error("invalid Content-Length")]
    InvalidLength,
    /// A `Transfer-Encoding` other than one `chunked`, or one on HTTP/1.0.
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// Chunked framing that hyper's decoder refuses.
    #[error("invalid chunked body: {0}")]
    Chunk(&'static str),
}

/// Parses a request head at the start of `buf` into `head`: `Ok(false)` when the head
/// is not complete yet.
pub fn parse_request(buf: &[u8], head: &mut Head) -> Result<bool, FramingError> {
    // Uninitialised: zeroing 100 header slots cost more than parsing a `/_ping` head.
    let mut lines = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut lines)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(false),
        Err(httparse::Error::TooManyHeaders) => return Err(FramingError::TooManyHeaders),
        Err(e) => return Err(FramingError::Malformed(e)),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(FramingError::Malformed(httparse::Error::Token));
    };
    if target.len() > MAX_TARGET {
        return Err(FramingError::TargetTooLong);
    }
    head.len = len;
    head.method = range_in(buf, method.as_bytes());
    head.target = range_in(buf, target.as_bytes());
    head.status = 0;
    head.http11 = version == 1;
    head.upgrade = method == "CONNECT";
    head.expect_continue = false;
    record_lines(buf, req.headers, head);
    let mut framing = Framing::default();
    for line in &head.headers {
        let name = &buf[line.name.clone()];
        let value = &buf[line.value.clone()];
        framing.read(name, value)?;
        if name.len() == 6 && name.eq_ignore_ascii_case(b"expect") {
            head.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    head.upgrade |= framing.upgrade;
    head.body = match framing.finish(head.http11)? {
        Some(body) => body,
        None => BodyLength::Empty,
    };
    Ok(true)
}

/// Parses a response head at the start of `buf` into `head`, for a request made with
/// `head_request` (`HEAD`): `Ok(false)` when it is not complete yet. An informational
/// answer (1xx but 101) is parsed like any other: its body is [`BodyLength::Empty`].
pub fn parse_response(
    buf: &[u8],
    head_request: bool,
    head: &mut Head,
) -> Result<bool, FramingError> {
    let mut lines = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut lines)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(false),
        Err(httparse::Error::TooManyHeaders) => return Err(FramingError::TooManyHeaders),
        Err(e) => return Err(FramingError::Malformed(e)),
    };
    let (Some(code @ 100..), Some(version)) = (res.code, res.version) else {
        // Below 100 is no status `http` (so hyper's client) takes.
        return Err(FramingError::Malformed(httparse::Error::Status));
    };
    head.len = len;
    head.method = 0..0;
    head.target = 0..0;
    head.status = code;
    head.http11 = version == 1;
    head.expect_continue = false;
    head.upgrade = code == 101;
    record_lines(buf, res.headers, head);
    let mut framing = Framing::default();
    for line in &head.headers {
        framing.read(&buf[line.name.clone()], &buf[line.value.clone()])?;
    }
    head.upgrade |= framing.upgrade;
    let body = framing.finish(head.http11)?;
    head.body = match code {
        100..=199 | 204 | 304 => BodyLength::Empty,
        _ if head_request => BodyLength::Empty,
        _ => body.unwrap_or(BodyLength::UntilClose),
    };
    Ok(true)
}

/// What the framing headers of one head said so far.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    transfer_encodings: u32,
    chunked: bool,
    upgrade: bool,
}

impl Framing {
    fn read(&mut self, name: &[u8], value: &[u8]) -> Result<(), FramingError> {
        // By length first: this runs on every line of every framed head.
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = digits(value).ok_or(FramingError::InvalidLength)?;
                if self.length.is_some_and(|m| m != n) {
                    return Err(FramingError::InvalidLength);
                }
                self.length = Some(n);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.transfer_encodings += 1;
                self.chunked = value.eq_ignore_ascii_case(b"chunked");
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => self.upgrade = true,
            _ => {}
        }
        Ok(())
    }

    /// The body's framing from the headers alone (`None`: neither header).
    fn finish(self, http11: bool) -> Result<Option<BodyLength>, FramingError> {
        match (self.length, self.transfer_encodings) {
            (Some(_), 1..) => Err(FramingError::LengthAndChunked),
            (None, 1) if self.chunked && http11 => Ok(Some(BodyLength::Chunked)),
            (None, 1..) => Err(FramingError::UnsupportedTransferEncoding),
            (Some(0), 0) => Ok(Some(BodyLength::Empty)),
            (Some(n), 0) if n < u64::MAX - 1 => Ok(Some(BodyLength::Length(n))),
            (Some(_), 0) => Err(FramingError::InvalidLength),
            (None, 0) => Ok(None),
        }
    }
}

/// Records `headers` (slices of `buf`) as ranges, and whether the sender closes.
fn record_lines(buf: &[u8], headers: &[httparse::Header<'_>], head: &mut Head) {
    head.headers.clear();
    head.connection = false;
    let mut close = false;
    let mut keep_alive = false;
    for h in headers {
        let name = range_in(buf, h.name.as_bytes());
        let value = range_in(buf, h.value);
        // Lines follow each other (httparse refuses obs-fold): one ends where the next
        // begins; the last one's end is found below.
        if let Some(previous) = head.headers.last_mut() {
            previous.line.end = name.start;
        }
        if h.name.len() == 10 && h.name.eq_ignore_ascii_case("connection") {
            head.connection = true;
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        head.headers.push(HeaderLine {
            line: name.start..value.end,
            name,
            value,
        });
    }
    if let Some(last) = head.headers.last_mut() {
        // The value holds no CR or LF (httparse refuses bare CR): the line ends at
        // the next LF.
        let end = last.value.end;
        last.line.end = buf[end..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| end + i + 1);
    }
    head.first_line = head.headers.first().map_or_else(
        || {
            // No header lines: the first line ends at the first LF.
            buf.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)
        },
        |h| h.line.start,
    );
    head.close = close || (!head.http11 && !keep_alive);
}

/// The range of `part` (a slice of `buf`) in `buf`.
fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// A decimal `Content-Length` (digits only, as hyper and Go read it).
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// Finds the end of a chunked body in the bytes as they arrive, by hyper's decoder's
/// rules; the bytes themselves are forwarded unchanged.
#[derive(Clone, Debug, Default)]
pub struct ChunkedScanner {
    state: ChunkState,
    /// Bytes of chunk data still to come (in `Data`), or the size being read.
    size: u64,
    extensions: u64,
    trailer_lines: usize,
    /// The trailer section, kept to be checked by httparse once it ends.
    trailers: Vec<u8>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Start,
    Size,
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
    Done,
}

impl ChunkedScanner {
    /// Scans `input`, the next bytes of the body: returns how many belong to it (all of
    /// them, or fewer when the body ends inside `input`) and whether it ended.
    /// `on_data` sees the chunk data (the decoded body), in order.
    pub fn scan(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), FramingError> {
        use ChunkState as S;
        let mut i = 0;
        while i < input.len() && self.state != S::Done {
            if self.state == S::Data {
                let n = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                on_data(&input[i..i + n]);
                i += n;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = S::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (S::Start | S::Size, b) if b.is_ascii_hexdigit() => {
                    let digit = (b as char).to_digit(16).unwrap_or(0);
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(digit)))
                        .ok_or(FramingError::Chunk("chunk size overflows"))?;
                    S::Size
                }
                (S::Start, _) => return Err(FramingError::Chunk("missing chunk size")),
                (S::Size | S::SizeSpace, b'\t' | b' ') => S::SizeSpace,
                (S::Size | S::SizeSpace, b';') => S::Extension,
                (S::Size | S::SizeSpace | S::Extension, b'\r') => S::SizeLf,
                (S::Size | S::SizeSpace, _) => {
                    return Err(FramingError::Chunk("invalid chunk size line"))
                }
                (S::Extension, b'\n') => {
                    return Err(FramingError::Chunk("chunk extension contains a newline"))
                }
                (S::Extension, _) => {
                    self.extensions += 1;
                    if self.extensions >= MAX_EXTENSIONS {
                        return Err(FramingError::Chunk("chunk extensions over limit"));
                    }
                    S::Extension
                }
                (S::SizeLf, b'\n') if self.size == 0 => S::EndCr,
                (S::SizeLf, b'\n') => S::Data,
                (S::SizeLf, _) => return Err(FramingError::Chunk("invalid chunk size line")),
                (S::DataCr, b'\r') => S::DataLf,
                (S::DataCr, _) => return Err(FramingError::Chunk("no CR after chunk data")),
                (S::DataLf, b'\n') => S::Start,
                (S::DataLf, _) => return Err(FramingError::Chunk("no LF after chunk data")),
                (S::EndCr, b'\r') => {
                    if !self.trailers.is_empty() {
                        self.trailer_byte(b'\r')?;
                    }
                    S::EndLf
                }
                (S::EndCr | S::Trailer, b) => {
                    self.trailer_byte(b)?;
                    if b == b'\r' {
                        S::TrailerLf
                    } else {
                        S::Trailer
                    }
                }
                (S::TrailerLf, b'\n') => {
                    if self.trailer_lines >= MAX_HEADERS {
                        return Err(FramingError::Chunk("too many trailers"));
                    }
                    self.trailer_lines += 1;
                    self.trailer_byte(b'\n')?;
                    S::EndCr
                }
                (S::TrailerLf, _) => return Err(FramingError::Chunk("no LF after a trailer")),
                (S::EndLf, b'\n') => {
                    if !self.trailers.is_empty() {
                        self.trailer_byte(b'\n')?;
                    }
                    self.check_trailers()?;
                    S::Done
                }
                (S::EndLf, _) => return Err(FramingError::Chunk("no LF at the end")),
                (S::Data | S::Done, _) => unreachable!("handled above"),
            };
        }
        Ok((i, self.state == S::Done))
    }

    /// Whether the body's end has been seen.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Chunk data bytes still to come in the current chunk (0 outside chunk data): a
    /// relay may move that many without scanning them.
    pub fn data_left(&self) -> u64 {
        if self.state == ChunkState::Data {
            self.size
        } else {
            0
        }
    }

    /// Tells the scanner that `n` bytes of chunk data (at most [`Self::data_left`])
    /// went past without being scanned.
    pub fn skip_data(&mut self, n: u64) {
        debug_assert!(n <= self.data_left());
        self.size -= n;
        if self.size == 0 && self.state == ChunkState::Data {
            self.state = ChunkState::DataCr;
        }
    }

    /// Keeps one trailer byte; like hyper, refuses the section once it reaches the limit.
    fn trailer_byte(&mut self, b: u8) -> Result<(), FramingError> {
        self.trailers.push(b);
        if self.trailers.len() >= MAX_TRAILERS {
            return Err(FramingError::Chunk("trailers too large"));
        }
        Ok(())
    }

    /// Trailers must be header lines httparse reads, as hyper decodes them.
    fn check_trailers(&mut self) -> Result<(), FramingError> {
        if self.trailers.is_empty() {
            return Ok(());
        }
        let mut lines = vec![httparse::EMPTY_HEADER; self.trailer_lines];
        let result = match httparse::parse_headers(&self.trailers, &mut lines) {
            Ok(httparse::Status::Complete(_)) => Ok(()),
            _ => Err(FramingError::Chunk("invalid trailers")),
        };
        self.trailers = Vec::new();
        result
    }
}

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;
