//! What fetching one remote source gives ([`Delivered`]) or why it did not
//! ([`FetchError`]), and how long it may take: the terms [`crate::spf`] and
//! [`crate::https`] deliver in and [`crate::sources`] takes them in, so
//! that sources → spf/https → ranges stays one way.

use std::time::Duration;

use crate::warning::Warning;

/// How long fetching one source may take unless `--fetch-timeout` says.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// What a remote source delivered: range-list text, warnings about it, and
/// where it came from (for `--verbose`).
#[derive(Clone, Debug)]
pub struct Delivered {
    /// Range-list text.
    pub text: String,
    /// Warnings, each naming the line of `text` concerned.
    pub warnings: Vec<Warning>,
    /// Where it came from, as the rest of a sentence after the source's
    /// name ("redirected to …, 1234 bytes").
    pub provenance: String,
}

/// Why fetching a remote source failed.
#[derive(Debug)]
pub enum FetchError {
    /// The fetch cannot work as configured (an unreadable `--https-ca`):
    /// invalid input, exit 2, and no fallback to a cached copy.
    Invalid(String),
    /// The source did not deliver (DNS, HTTP, TLS, size, a cut-off body).
    Failed(String),
}

impl From<String> for FetchError {
    fn from(reason: String) -> Self {
        FetchError::Failed(reason)
    }
}
