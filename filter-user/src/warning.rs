//! The one warning type: something accepted in a list, worth telling the
//! administrator about, named by its source and line. The list parser
//! ([`crate::ranges`]) and the remote sources ([`crate::spf`],
//! [`crate::https`]) all report with it.

use std::fmt;

use serde::Serialize;

/// Where a problem was found: source name (file path, `-`, `--allow`) and line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// File path as given, `-` for standard input, `--allow`, or a remote
    /// source's name (`spf:example.com`).
    pub source: String,
    /// 1-based line number (the position for `--allow`).
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// Something accepted but worth telling the user about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Source and line.
    #[serde(flatten)]
    pub at: Location,
    /// The entry's text.
    pub text: String,
    /// What was done about it.
    pub message: String,
}

impl Warning {
    /// A warning about `text` on line `line` of `source`.
    pub fn new(source: &str, line: usize, text: &str, message: impl Into<String>) -> Self {
        Self {
            at: Location {
                source: source.to_owned(),
                line,
            },
            text: text.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {:?}", self.at, self.message, self.text)
    }
}
