//! `--format` for `berth status` and `berth machine ls`: a table, JSON, or one line per
//! record from a template. All three read the same JSON records (the control socket's
//! report), so a field added to a report shows in JSON and templates at once, and in
//! the table once its column is listed. A table column's header is its field's name in
//! upper case; a template names fields in braces: `{name} {state}`.

use std::fmt::Write as _;
use std::str::FromStr;

use serde_json::Value;

/// How records are printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    /// Aligned columns with a header line.
    Table,
    /// The records as one JSON document.
    Json,
    /// One line per record: `{field}` is replaced by the field's value, `\t` and `\n`
    /// by a tab and a newline (as the docker CLI's `--format` does).
    Template(String),
}

impl OutputFormat {
    /// The format when no `--format` is given (`json`: the hidden `--json` flag).
    pub(crate) fn table(json: bool) -> Self {
        if json {
            Self::Json
        } else {
            Self::Table
        }
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            t if t.contains('{') => {
                parse_template(t)?;
                Ok(Self::Template(t.to_owned()))
            }
            other => Err(format!(
                "{other:?}: expected table, json, or a template with fields in braces such as '{{name}} {{state}}'"
            )),
        }
    }
}

/// A template piece: literal text or a field name.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(String),
    Field(&'a str),
}

fn parse_template(t: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        pieces.push(Piece::Text(unescape(&rest[..open])));
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("template {t:?}: a '{{' is not closed"))?;
        let field = after[..close].trim();
        if field.is_empty()
            || !field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("template {t:?}: {field:?} is not a field name"));
        }
        pieces.push(Piece::Field(field));
        rest = &after[close + 1..];
    }
    pieces.push(Piece::Text(unescape(rest)));
    Ok(pieces)
}

fn unescape(text: &str) -> String {
    text.replace("\\t", "\t").replace("\\n", "\n")
}

/// A field's value as printed in tables and templates: strings bare, absent or null
/// as `-`, anything else as JSON.
fn cell(record: &Value, field: &str) -> String {
    match record.get(field) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// One line per record from a template; an unknown field is an error naming the fields
/// there are.
pub(crate) fn template(template: &str, records: &[Value]) -> Result<String, String> {
    let pieces = parse_template(template)?;
    let mut out = String::new();
    for record in records {
        for piece in &pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => {
                    if record.get(f).is_none() {
                        let known: Vec<&str> = record
                            .as_object()
                            .map(|o| o.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        return Err(format!(
                            "--format: no field {f:?} (fields: {})",
                            known.join(", ")
                        ));
                    }
                    out.push_str(&cell(record, f));
                }
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// Aligned columns: a header line of the field names in upper case, then one line per
/// record. The last column is not padded.
pub(crate) fn table(columns: &[&str], records: &[Value]) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(
        columns
            .iter()
            .map(|c| c.to_ascii_uppercase())
            .collect::<Vec<_>>(),
    )
    .chain(
        records
            .iter()
            .map(|r| columns.iter().map(|c| cell(r, c)).collect()),
    )
    .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, value) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(value);
            } else {
                let _ = write!(line, "{value:<w$}   ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_parse_and_templates_name_fields() {
        assert_eq!("json".parse(), Ok(OutputFormat::Json));
        assert_eq!("table".parse(), Ok(OutputFormat::Table));
        assert!("yaml".parse::<OutputFormat>().is_err());
        assert!("{name".parse::<OutputFormat>().is_err());
        assert!("{na me}".parse::<OutputFormat>().is_err());
        let records = [
            json!({"name": "a", "pid": 7, "engine_version": null}),
            json!({"name": "b", "pid": null, "engine_version": "27.5.1"}),
        ];
        assert_eq!(
            template("{name}\\t{pid} {engine_version}", &records).unwrap(),
            "a\t7 -\nb\t- 27.5.1\n"
        );
        let e = template("{nope}", &records).unwrap_err();
        assert!(e.contains("nope") && e.contains("engine_version"), "{e}");
    }

    #[test]
    fn table_headers_are_the_field_names() {
        let records = [
            json!({"name": "default", "state": "running", "pid": 42}),
            json!({"name": "x", "state": "stopped"}),
        ];
        assert_eq!(
            table(&["name", "state", "pid"], &records),
            "NAME      STATE     PID\ndefault   running   42\nx         stopped   -\n"
        );
    }
}
