//! Query strings read and rewritten as dockerd (Go's `net/url`) reads them.

/// The first value of `key` in a query string, decoded as Go's `url.ParseQuery` does
/// (`+` is a space; pairs with bad escapes or a `;` in the key are skipped).
pub(crate) fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let raw_value = pair.split_once('=').map_or("", |(_, value)| value);
        (pair_key(pair)? == key).then(|| query_unescape(raw_value))?
    })
}

/// Go's `url.QueryUnescape`: `None` for a malformed `%` escape or invalid UTF-8.
pub(crate) fn query_unescape(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Go's `strconv.Atoi` on 64-bit: optional sign, ASCII digits only, in `i64` range.
pub(crate) fn go_atoi(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Go's `url.QueryEscape`: a space becomes `+`, everything but `A-Za-z0-9-_.~` is `%XX`.
pub(crate) fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The decoded key of one `key=value` pair (`None` where Go would skip the pair).
pub(crate) fn pair_key(pair: &str) -> Option<String> {
    let raw_key = pair.split_once('=').map_or(pair, |(key, _)| key);
    if raw_key.contains(';') {
        return None;
    }
    query_unescape(raw_key)
}
