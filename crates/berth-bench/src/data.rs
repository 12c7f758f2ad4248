//! Bytes to send: a random pattern with an odd period (so misplaced or dropped blocks do
//! not line up with it), tar streams made from it, and a body that hands out prepared
//! chunks without copying.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The pattern repeats every `PERIOD` bytes (a prime near 1 MiB).
const PERIOD: usize = 1_048_573;
/// The longest slice [`Pattern::slice`] hands out.
pub(crate) const MAX_CHUNK: usize = 1 << 20;

/// Pseudo-random bytes; byte `i` of the stream is `pattern[i % PERIOD]`.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    buf: Bytes,
}

impl Pattern {
    pub(crate) fn new() -> Self {
        let mut buf = vec![0u8; PERIOD + MAX_CHUNK];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in &mut buf[..PERIOD] {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            *b = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
        buf.copy_within(..MAX_CHUNK, PERIOD);
        Self { buf: buf.into() }
    }

    /// Stream bytes `pos..pos + len` (`len <= MAX_CHUNK`), sharing the buffer.
    pub(crate) fn slice(&self, pos: u64, len: usize) -> Bytes {
        let o = (pos % PERIOD as u64) as usize;
        self.buf.slice(o..o + len)
    }

    /// Stream bytes `pos..pos + len` (`len <= MAX_CHUNK`), borrowed.
    pub(crate) fn bytes(&self, pos: u64, len: usize) -> &[u8] {
        let o = (pos % PERIOD as u64) as usize;
        &self.buf[o..o + len]
    }

    /// Stream bytes `0..total` in chunks of at most `chunk` bytes.
    pub(crate) fn chunks(&self, total: u64, chunk: usize) -> Vec<Bytes> {
        let chunk = chunk.min(MAX_CHUNK);
        let mut out = Vec::with_capacity((total / chunk as u64 + 1) as usize);
        let mut pos = 0;
        while pos < total {
            let n = (total - pos).min(chunk as u64) as usize;
            out.push(self.slice(pos, n));
            pos += n as u64;
        }
        out
    }
}

/// A tar archive holding one regular file `name` of `size` pattern bytes, as chunks.
pub(crate) fn tar_one_file(pattern: &Pattern, name: &str, size: u64) -> Vec<Bytes> {
    let mut out = vec![Bytes::copy_from_slice(&file_header(name, size))];
    out.extend(pattern.chunks(size, MAX_CHUNK));
    let pad = (512 - (size % 512) as usize) % 512;
    // Padding of the last block, then two zero blocks.
    out.push(Bytes::from(vec![0u8; pad + 1024]));
    out
}

/// A ustar header for one regular file (name at most 100 bytes, size below 8 GiB).
fn file_header(name: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    put_octal(&mut h[100..108], 0o644);
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    put_octal(&mut h[124..136], size);
    put_octal(&mut h[136..148], 1_700_000_000);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn put_octal(field: &mut [u8], value: u64) {
    let w = field.len() - 1;
    field[..w].copy_from_slice(format!("{value:0w$o}").as_bytes());
    field[w] = 0;
}

/// A request body that yields prepared chunks, with an exact length.
#[derive(Debug)]
pub(crate) struct ChunkBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl ChunkBody {
    pub(crate) fn new(chunks: Vec<Bytes>) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Self {
            chunks: chunks.into(),
            remaining,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.remaining
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.chunks.pop_front().map(|c| {
            this.remaining -= c.len() as u64;
            Ok(Frame::data(c))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_wraps_seamlessly() {
        let p = Pattern::new();
        let whole: Vec<u8> = p.chunks(3 * PERIOD as u64, 4096).concat();
        for (i, b) in whole.iter().enumerate() {
            assert_eq!(*b, p.bytes(i as u64 % PERIOD as u64, 1)[0]);
        }
        assert_eq!(
            p.bytes(PERIOD as u64 - 10, 100),
            &whole[PERIOD - 10..PERIOD + 90]
        );
    }

    #[test]
    fn tar_is_read_by_tar() {
        let p = Pattern::new();
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("t.tar");
        std::fs::write(&tar, tar_one_file(&p, "big.bin", 5000).concat()).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&tar)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            listing.contains(" 5000 ") && listing.contains("big.bin"),
            "{listing}"
        );
        let len = std::fs::metadata(&tar).unwrap().len();
        assert_eq!(len % 512, 0);
    }
}
