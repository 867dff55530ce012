//! `spf:DOMAIN` sources: the addresses for which an RFC 7208 checker returns
//! `pass` for the domain's SPF policy, as range-list lines.
//!
//! - [`record`]: the one parser of SPF records and terms (also used for
//!   `v=spf1` records pasted into range files);
//! - [`macros`]: macro-strings and domain-specs;
//! - [`flatten`]: evaluation in term order over a [`flatten::Lookup`];
//! - [`prefix_set`]: the set arithmetic it needs;
//! - [`dns`]: real DNS (hickory-resolver) and an in-memory zone.
//!
//! A permerror or temperror anywhere a sender could reach, a passing `all`
//! or `/0`, or a term that names no addresses and could fail senders a later
//! term passes (unless [`SpfOptions::allow_unenumerable`]) fails the whole
//! source: a partial or too-wide list never reaches the kernel.

pub mod dns;
pub mod flatten;
pub mod macros;
pub mod prefix_set;
pub mod record;

use std::{net::SocketAddr, time::Duration};

use self::flatten::{Flattened, Limits};

/// How to reach DNS, and the limits of one walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpfOptions {
    /// Servers to ask; empty means those of /etc/resolv.conf.
    pub servers: Vec<SocketAddr>,
    /// Timeout of each query.
    pub query_timeout: Duration,
    /// Timeout of the whole walk.
    pub deadline: Duration,
    /// Most DNS-querying terms (include, a, mx, ptr, exists, redirect).
    pub lookup_limit: u32,
    /// Flatten past terms that name no addresses and could fail senders a
    /// later term passes, instead of refusing the source.
    pub allow_unenumerable: bool,
}

/// Time each DNS query may take unless `--dns-timeout` says otherwise.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// RFC 7208 4.6.4: at most 10 DNS-querying terms.
pub const DEFAULT_LOOKUP_LIMIT: u32 = 10;

impl Default for SpfOptions {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            deadline: crate::sources::DEFAULT_FETCH_TIMEOUT,
            lookup_limit: DEFAULT_LOOKUP_LIMIT,
            allow_unenumerable: false,
        }
    }
}

/// A fetched `spf:` source: range-list text and what it cannot express.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// One CIDR a line, after comments naming the records evaluated.
    pub text: String,
    /// Warnings: the line of `text` that repeats it as a comment, the term,
    /// and what about it.
    pub warnings: Vec<(usize, String, String)>,
}

/// Flattens the SPF policy of `domain` over real DNS.
pub fn fetch(domain: &str, options: &SpfOptions) -> Result<Fetched, String> {
    let mut dns = dns::HickoryDns::new(options)?;
    let limits = Limits {
        lookups: options.lookup_limit,
        allow_unenumerable: options.allow_unenumerable,
    };
    let flattened = flatten::flatten(&mut dns, domain, limits).map_err(|e| e.to_string())?;
    Ok(render(domain, &flattened))
}

/// The range-list text of a flattened policy.
pub fn render(domain: &str, flattened: &Flattened) -> Fetched {
    let mut lines = vec![format!(
        "# spf:{domain}: {} records, {} DNS-querying terms, evaluated in term order",
        flattened.records.len(),
        flattened.lookups
    )];
    for (name, record) in &flattened.records {
        lines.push(format!("# {name}: {}", record.escape_debug()));
    }
    let mut warnings = Vec::new();
    for warning in &flattened.warnings {
        lines.push(format!("# warning: {warning}"));
        warnings.push((
            lines.len(),
            warning.term.clone(),
            format!("SPF term in {} {}", warning.domain, warning.what),
        ));
    }
    lines.extend(flattened.pass.v4().iter().map(ToString::to_string));
    lines.extend(flattened.pass.v6().iter().map(ToString::to_string));
    let mut text = lines.join("\n");
    text.push('\n');
    Fetched { text, warnings }
}
