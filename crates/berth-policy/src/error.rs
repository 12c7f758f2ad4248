//! `PolicyError`: why a policy file was not accepted.
//!
//! Errors name the line, the column and the key, and quote the offending line, so the
//! binary can log one line and keep the policy it had (SIGHUP reload).

use std::fmt;

/// A policy file that cannot be used, or a request body that cannot be read as
/// dockerd reads it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file is not valid TOML, or a key or value is wrong.
    #[error("invalid policy{}: {message}{}", Position(*line, *column), Quote(source_line))]
    Invalid {
        /// 1-based line of the fault, when known.
        line: Option<usize>,
        /// 1-based column of the fault, when known.
        column: Option<usize>,
        /// What is wrong, naming the key.
        message: String,
        /// The text of that line, trimmed.
        source_line: Option<String>,
    },
    /// A request body that is not JSON, has a field berth reads with the wrong type, or
    /// could be read in more than one way ([`DockerBody::parse`](crate::DockerBody::parse)).
    #[error("{message}")]
    Body {
        /// What is wrong, naming the field.
        message: String,
    },
}

impl PolicyError {
    /// An error at a byte range of `text` (a span from the TOML parser).
    pub(crate) fn at(text: &str, span: Option<std::ops::Range<usize>>, message: String) -> Self {
        let Some(span) = span else {
            return Self::Invalid {
                line: None,
                column: None,
                message,
                source_line: None,
            };
        };
        let start = span.start.min(text.len());
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..start].chars().count() + 1;
        let line_end = text[line_start..]
            .find('\n')
            .map_or(text.len(), |i| line_start + i);
        let source_line = text[line_start..line_end].trim();
        Self::Invalid {
            line: Some(line),
            column: Some(column),
            message,
            source_line: (!source_line.is_empty()).then(|| source_line.to_owned()),
        }
    }
}

struct Position(Option<usize>, Option<usize>);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self(Some(line), Some(col)) => write!(f, " at line {line}, column {col}"),
            Self(Some(line), None) => write!(f, " at line {line}"),
            _ => Ok(()),
        }
    }
}

struct Quote<'a>(&'a Option<String>);

impl fmt::Display for Quote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, " (in `{line}`)"),
            None => Ok(()),
        }
    }
}
