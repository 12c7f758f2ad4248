//! JSON as Go's `encoding/json` decodes it into dockerd's structs: one level of an
//! object at a time, every key kept (duplicates included, in order), every value kept
//! as the exact text sent until berth decodes it, and Go's key matching.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON value as sent, not decoded yet.
pub(crate) type Raw<'a> = &'a RawValue;

/// An object's members in the order sent; keys decoded (escapes resolved).
pub(crate) type Members<'a> = Vec<(String, Raw<'a>)>;

/// One level of a JSON value; what is below stays raw.
#[derive(Debug)]
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    Number,
    String(String),
    Array(Vec<Raw<'a>>),
    Object(Members<'a>),
}

impl Value<'_> {
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

/// Checks one whole JSON document. Trailing data, invalid UTF-8, lone surrogates in
/// what berth decodes and nesting deeper than serde_json allows are errors (Go accepts
/// some of them: refusing is the safe side).
pub(crate) fn document(bytes: &[u8]) -> Result<Raw<'_>, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Decodes the top level of `raw`.
pub(crate) fn value(raw: Raw<'_>) -> Result<Value<'_>, String> {
    serde_json::from_str(raw.get()).map_err(|e| e.to_string())
}

/// Whether the JSON key `key` selects the Go struct field named `field` (ASCII).
///
/// Go folds case, and not only ASCII case: `ſ` (U+017F) matches `s` and the Kelvin
/// sign matches `k`; since Go 1.21 `İ` and `ı` match `i` too (`foldName` maps each rune
/// to `ToUpper(ToLower(r))`). Each is a way to spell `HostConfig` that a byte compare
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

/// The field of `fields` that `key` selects, by its canonical name.
///
/// A key that selects a field only through `İ` or `ı` is an error: dockerd built with Go
/// before 1.21 (20.10 to 24) ignores it, later ones read it, so no one body means the
/// same to every engine.
pub(crate) fn field_of(key: &str, fields: &[&'static str]) -> Result<Option<&'static str>, String> {
    let Some(name) = fields.iter().copied().find(|f| key_is(key, f)) else {
        return Ok(None);
    };
    if key.contains(['\u{130}', '\u{131}']) {
        return Err(format!(
            "the key {key:?} means {name} to some dockerd versions and nothing to others"
        ));
    }
    Ok(Some(name))
}

// === Go decoding, one function per Go type; `None` is Go's zero value or nil ===

fn wrong(field: &str, want: &str, got: &Value<'_>) -> String {
    format!("{field} must be {want}, not {}", got.kind())
}

/// `bool`: replaced; `null` leaves it.
pub(crate) fn boolean(raw: Raw<'_>, slot: &mut Option<bool>, field: &str) -> Result<(), String> {
    match value(raw)? {
        Value::Bool(b) => *slot = Some(b),
        Value::Null => {}
        other => return Err(wrong(field, "a boolean", &other)),
    }
    Ok(())
}

/// `int64`: replaced; `null` leaves it. Go takes a number literal without fraction or
/// exponent that fits (`1e9`, `1.0` and `"1"` are errors, as they are to dockerd).
pub(crate) fn int64(raw: Raw<'_>, slot: &mut Option<i64>, field: &str) -> Result<(), String> {
    match value(raw)? {
        Value::Number => {
            let text = raw.get().trim();
            *slot = Some(
                text.parse::<i64>()
                    .map_err(|_| format!("{field} must be an int64, not {text}"))?,
            );
        }
        Value::Null => {}
        other => return Err(wrong(field, "a number", &other)),
    }
    Ok(())
}

/// `string`: replaced; `null` leaves it.
pub(crate) fn string(raw: Raw<'_>, slot: &mut Option<String>, field: &str) -> Result<(), String> {
    match value(raw)? {
        Value::String(s) => *slot = Some(s),
        Value::Null => {}
        other => return Err(wrong(field, "a string", &other)),
    }
    Ok(())
}

/// `[]string`: replaced; `null` makes it nil. A `null` element is refused: Go keeps
/// whatever an earlier array left at that index.
pub(crate) fn strings(
    raw: Raw<'_>,
    slot: &mut Option<Vec<String>>,
    field: &str,
) -> Result<(), String> {
    match value(raw)? {
        Value::Array(items) => {
            let mut fresh = Vec::with_capacity(items.len());
            for item in items {
                match value(item)? {
                    Value::String(s) => fresh.push(s),
                    other => return Err(wrong(&format!("{field}[]"), "a string", &other)),
                }
            }
            *slot = Some(fresh);
        }
        Value::Null => *slot = None,
        other => return Err(wrong(field, "an array of strings", &other)),
    }
    Ok(())
}

/// `strslice.StrSlice` (`CapAdd`): a string or an array of strings, decoded afresh by
/// its own `UnmarshalJSON` (so `null` elements are empty strings).
pub(crate) fn str_slice(
    raw: Raw<'_>,
    slot: &mut Option<Vec<String>>,
    field: &str,
) -> Result<(), String> {
    match value(raw)? {
        Value::String(s) => *slot = Some(vec![s]),
        Value::Array(items) => {
            let mut fresh = Vec::with_capacity(items.len());
            for item in items {
                match value(item)? {
                    Value::String(s) => fresh.push(s),
                    Value::Null => fresh.push(String::new()),
                    other => return Err(wrong(&format!("{field}[]"), "a string", &other)),
                }
            }
            *slot = Some(fresh);
        }
        Value::Null => *slot = None,
        other => return Err(wrong(field, "a string or an array of strings", &other)),
    }
    Ok(())
}

/// `map[string]string`: entries added or replaced (keys exact); `null` makes it nil; a
/// `null` value is the empty string.
pub(crate) fn string_map(
    raw: Raw<'_>,
    slot: &mut Option<Vec<(String, String)>>,
    field: &str,
) -> Result<(), String> {
    match value(raw)? {
        Value::Object(members) => {
            let map = slot.get_or_insert_with(Vec::new);
            for (k, v) in members {
                let v = match value(v)? {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => return Err(wrong(&format!("{field}.{k}"), "a string", &other)),
                };
                match map.iter_mut().find(|(have, _)| *have == k) {
                    Some(entry) => entry.1 = v,
                    None => map.push((k, v)),
                }
            }
        }
        Value::Null => *slot = None,
        other => return Err(wrong(field, "an object", &other)),
    }
    Ok(())
}

/// A Go struct berth reads some fields of; the others are kept as sent.
pub(crate) trait GoStruct<'a>: Default {
    /// Decodes one member; `false` when the key selects no field berth reads.
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String>;
    /// Members of fields berth does not read, in the order sent.
    fn rest(&mut self) -> &mut Members<'a>;
}

/// Decodes an object's members into `t`, in order, as Go does.
pub(crate) fn members_into<'a, T: GoStruct<'a>>(
    t: &mut T,
    members: Members<'a>,
) -> Result<(), String> {
    for (k, v) in members {
        if !t.field(&k, v)? {
            t.rest().push((k, v));
        }
    }
    Ok(())
}

/// `*T` for a struct `T`: an object is decoded into the value already there (fields
/// merge); `null` makes it nil.
pub(crate) fn pointer<'a, T: GoStruct<'a>>(
    raw: Raw<'a>,
    slot: &mut Option<T>,
    field: &str,
) -> Result<(), String> {
    match value(raw)? {
        Value::Object(members) => members_into(slot.get_or_insert_with(T::default), members),
        Value::Null => {
            *slot = None;
            Ok(())
        }
        other => Err(wrong(field, "an object", &other)),
    }
}

/// `[]T` for a struct `T`. Go decodes a second array into the first one's elements, so
/// the two mix; berth refuses that, and `null` elements (Go keeps the old element).
pub(crate) fn struct_slice<'a, T: GoStruct<'a>>(
    raw: Raw<'a>,
    slot: &mut Option<Vec<T>>,
    field: &str,
) -> Result<(), String> {
    struct_slice_with(raw, slot, field, |members| {
        let mut t = T::default();
        members_into(&mut t, members)?;
        Ok(t)
    })
}

/// `[]T` for a struct `T` berth does not read: each element kept as sent.
pub(crate) fn raw_struct_slice<'a>(
    raw: Raw<'a>,
    slot: &mut Option<Vec<Raw<'a>>>,
    field: &str,
) -> Result<(), String> {
    let mut items = Vec::new();
    match value(raw)? {
        Value::Array(elements) => {
            for element in elements {
                match value(element)? {
                    Value::Object(_) => items.push(element),
                    other => return Err(wrong(&format!("{field}[]"), "an object", &other)),
                }
            }
        }
        Value::Null => {
            *slot = None;
            return Ok(());
        }
        other => return Err(wrong(field, "an array of objects", &other)),
    }
    if slot.as_ref().is_some_and(|old| !old.is_empty()) {
        return Err(format!("{field} is sent twice"));
    }
    *slot = Some(items);
    Ok(())
}

fn struct_slice_with<'a, T>(
    raw: Raw<'a>,
    slot: &mut Option<Vec<T>>,
    field: &str,
    mut decode: impl FnMut(Members<'a>) -> Result<T, String>,
) -> Result<(), String> {
    match value(raw)? {
        Value::Array(elements) => {
            if slot.as_ref().is_some_and(|old| !old.is_empty()) {
                return Err(format!("{field} is sent twice"));
            }
            let mut fresh = Vec::with_capacity(elements.len());
            for element in elements {
                match value(element)? {
                    Value::Object(members) => fresh.push(decode(members)?),
                    other => return Err(wrong(&format!("{field}[]"), "an object", &other)),
                }
            }
            *slot = Some(fresh);
        }
        Value::Null => *slot = None,
        other => return Err(wrong(field, "an array of objects", &other)),
    }
    Ok(())
}

// === Encoding: one key per field, canonical names, unknown members as sent ===

/// Writes one JSON object.
pub(crate) struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    pub(crate) fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Starts a member; its value is written next into the returned buffer.
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        put_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    pub(crate) fn bool(&mut self, key: &str, v: Option<bool>) {
        if let Some(v) = v {
            let b: &[u8] = if v { b"true" } else { b"false" };
            self.key(key).extend_from_slice(b);
        }
    }

    pub(crate) fn int(&mut self, key: &str, v: Option<i64>) {
        if let Some(v) = v {
            self.key(key).extend_from_slice(v.to_string().as_bytes());
        }
    }

    pub(crate) fn str(&mut self, key: &str, v: Option<&String>) {
        if let Some(v) = v {
            put_str(self.key(key), v);
        }
    }

    pub(crate) fn strings(&mut self, key: &str, v: Option<&Vec<String>>) {
        if let Some(v) = v {
            let out = self.key(key);
            put_array(out, v, |out, s| put_str(out, s));
        }
    }

    pub(crate) fn string_map(&mut self, key: &str, v: Option<&Vec<(String, String)>>) {
        if let Some(v) = v {
            let mut map = ObjectWriter::new(self.key(key));
            for (k, v) in v {
                put_str(map.key(k), v);
            }
            map.end();
        }
    }

    /// Members kept as sent.
    pub(crate) fn rest(&mut self, members: &Members<'_>) {
        for (k, v) in members {
            self.key(k).extend_from_slice(v.get().as_bytes());
        }
    }

    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

pub(crate) fn put_array<T>(out: &mut Vec<u8>, items: &[T], mut put: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put(out, item);
    }
    out.push(b']');
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LevelVisitor)
    }
}

struct LevelVisitor;

impl<'de> Visitor<'de> for LevelVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value<'de>, E> {
        Ok(Value::Number)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value<'de>, E> {
        Ok(Value::Number)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value<'de>, E> {
        Ok(Value::Number)
    }

    fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value<'de>, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Raw<'de>>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        let mut members = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Raw<'de>>()? {
            members.push((k, v));
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_duplicates_in_order_and_values_as_sent() {
        let doc = document(br#"{"a":1.50,"A":true,"a":{"b" : null}}"#).unwrap();
        let Value::Object(members) = value(doc).unwrap() else {
            panic!()
        };
        let got: Vec<(&str, &str)> = members.iter().map(|(k, v)| (k.as_str(), v.get())).collect();
        assert_eq!(got, [("a", "1.50"), ("A", "true"), ("a", "{\"b\" : null}")]);
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
        assert_eq!(
            field_of("pRIVILEGED", &["Binds", "Privileged"]),
            Ok(Some("Privileged"))
        );
        assert_eq!(field_of("Memory", &["Binds", "Privileged"]), Ok(None));
        assert!(field_of("Pr\u{131}vileged", &["Privileged"]).is_err());
    }

    #[test]
    fn trailing_data_and_deep_nesting_are_errors() {
        assert!(document(b"{} {}").is_err());
        assert!(document(b"").is_err());
        let deep = "[".repeat(10_000);
        assert!(document(deep.as_bytes()).is_err());
    }
}
