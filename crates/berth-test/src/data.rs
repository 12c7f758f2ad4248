//! Test data and comparisons: large payloads, digests, output normalization.

use sha2::{Digest, Sha256};

/// `len` bytes that do not compress (xorshift; the same `seed` gives the same bytes).
/// Much faster than /dev/urandom for hundreds of megabytes.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Replaces what legitimately differs between two runs of the same command so that
/// outputs can be compared: hex IDs of 12 or more digits (with or without `sha256:`)
/// become `<id>`, RFC 3339 timestamps `<time>`, and sizes like `1.2MB` / `512B`
/// `<size>`. Everything else, including whitespace, is kept.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            out.push_str(&normalize_word(word));
            word.clear();
        }
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '-' | '+') {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn normalize_word(word: &str) -> String {
    let bare = word.strip_prefix("sha256:").unwrap_or(word);
    if bare.len() >= 12
        && bare.bytes().all(|b| b.is_ascii_hexdigit())
        && bare.bytes().any(|b| b.is_ascii_digit())
    {
        return "<id>".to_owned();
    }
    // 2026-11-28T20:24:14.614862118Z or …+00:00
    let b = word.as_bytes();
    if b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' {
        return "<time>".to_owned();
    }
    let digits = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &word[digits.len()..];
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && matches!(
            unit,
            "B" | "kB" | "KB" | "MB" | "GB" | "KiB" | "MiB" | "GiB"
        )
    {
        return "<size>".to_owned();
    }
    word.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_hides_ids_times_and_sizes_only() {
        assert_eq!(
            normalize("deleted: sha256:0123456789abcdef0123 at 2026-11-28T20:24:14.614862118Z, 1.5MB\nrun -d cafe"),
            "deleted: <id> at <time>, <size>\nrun -d cafe"
        );
        assert_eq!(
            normalize("Error: No such container: x"),
            "Error: No such container: x"
        );
    }

    #[test]
    fn pseudo_random_bytes_are_reproducible_and_sized() {
        assert_eq!(pseudo_random_bytes(1001, 7), pseudo_random_bytes(1001, 7));
        assert_ne!(pseudo_random_bytes(64, 7), pseudo_random_bytes(64, 8));
        assert_eq!(pseudo_random_bytes(1001, 7).len(), 1001);
    }
}
