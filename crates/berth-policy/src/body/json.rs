//! A JSON tree that keeps every key, duplicates included, in order, and the key matching
//! of Go's `encoding/json`.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value; objects keep duplicate keys in the order sent.
#[derive(Debug, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number,
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// A word for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Number => "a number",
            Self::String(_) => "a string",
            Self::Array(_) => "an array",
            Self::Object(_) => "an object",
        }
    }
}

/// Parses one JSON document; trailing data, invalid UTF-8, lone surrogates and nesting
/// deeper than 128 are errors (Go would accept some of them: refusing is the safe side).
pub(crate) fn parse(bytes: &[u8]) -> Result<Json, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Whether the JSON key `key` selects the Go struct field named `field` (ASCII).
///
/// Go folds case, and not only ASCII case: `ſ` (U+017F) matches `s`, the Kelvin sign
/// matches `k`, and since Go 1.21 `İ` and `ı` match `i` (`foldName` maps each rune to
/// `ToUpper(ToLower(r))`). Each is a way to spell `HostConfig` that a byte compare
/// misses (gateway notes 11.2).
pub(crate) fn key_is(key: &str, field: &str) -> bool {
    let mut chars = key.chars();
    for want in field.bytes() {
        let Some(c) = chars.next() else {
            return false;
        };
        let same = match c {
            c if c.is_ascii() => (c as u8).eq_ignore_ascii_case(&want),
            '\u{17F}' => want.eq_ignore_ascii_case(&b's'),
            '\u{212A}' => want.eq_ignore_ascii_case(&b'k'),
            '\u{130}' | '\u{131}' => want.eq_ignore_ascii_case(&b'i'),
            _ => false,
        };
        if !same {
            return false;
        }
    }
    chars.next().is_none()
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
        Ok(Json::Number)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
        Ok(Json::Number)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Number)
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut pairs = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            pairs.push((k, v));
        }
        Ok(Json::Object(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_all_kept_in_order() {
        let j = parse(br#"{"a":1,"A":true,"a":{"b":null}}"#).unwrap();
        let Json::Object(pairs) = j else { panic!() };
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "A", "a"]);
    }

    #[test]
    fn keys_fold_like_go() {
        let rows = [
            ("HostConfig", "HostConfig", true),
            ("hostconfig", "HostConfig", true),
            ("HOSTCONFIG", "HostConfig", true),
            ("Ho\u{17F}tConfig", "HostConfig", true),
            ("NetworkMode", "NetworkMode", true),
            ("Networ\u{212A}Mode", "NetworkMode", true),
            ("Pr\u{130}vileged", "Privileged", true),
            ("Pr\u{131}v\u{131}leged", "Privileged", true),
            ("HostConfig ", "HostConfig", false),
            ("Host_Config", "HostConfig", false),
            ("HostConfi", "HostConfig", false),
            ("Hostconfig\u{0}", "HostConfig", false),
        ];
        for (key, field, want) in rows {
            assert_eq!(key_is(key, field), want, "{key:?}");
        }
    }

    #[test]
    fn trailing_data_and_deep_nesting_are_errors() {
        assert!(parse(b"{} {}").is_err());
        assert!(parse(b"").is_err());
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
