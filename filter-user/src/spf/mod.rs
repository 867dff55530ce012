//! `spf:DOMAIN` sources: the addresses for which an RFC 7208 checker returns
//! `pass` for the domain's SPF policy, as range-list lines.
//!
//! - [`record`]: the one parser of SPF records and terms (also used for
//!   `v=spf1` records pasted into range files);
//! - [`macros`]: macro-strings and domain-specs;
//! - [`flatten`]: evaluation in term order over a [`flatten::Dns`];
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
use crate::{
    delivery::{DEFAULT_FETCH_TIMEOUT, Delivered},
    warning::Warning,
};

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

impl Default for SpfOptions {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            deadline: DEFAULT_FETCH_TIMEOUT,
            lookup_limit: flatten::DEFAULT_LOOKUP_LIMIT,
            allow_unenumerable: false,
        }
    }
}

/// Why an `spf:` source delivered nothing.
#[derive(Debug, thiserror::Error)]
pub enum FetchSpfError {
    /// No DNS client to ask (resolv.conf unreadable, no runtime).
    #[error("{0}")]
    Resolver(String),
    /// The walk failed or was refused.
    #[error(transparent)]
    Walk(#[from] flatten::SpfError),
}

/// Longest comment line of the text: a record (up to 65,535 bytes, as DNS
/// carries it) is written over as many lines as it takes.
const COMMENT_WIDTH: usize = 1000;

/// Flattens the SPF policy of `domain` over real DNS, as the range-list text
/// of the source `spf:DOMAIN`: one CIDR a line, after comments naming the
/// records evaluated; each warning names the comment line that repeats it.
pub fn fetch(domain: &str, options: &SpfOptions) -> Result<Delivered, FetchSpfError> {
    let mut dns = dns::HickoryDns::new(options).map_err(FetchSpfError::Resolver)?;
    let limits = Limits {
        lookups: options.lookup_limit,
        allow_unenumerable: options.allow_unenumerable,
    };
    let flattened = flatten::flatten(&mut dns, domain, limits)?;
    Ok(render(domain, &flattened))
}

/// The range-list text of a flattened policy, as the source `spf:DOMAIN`
/// delivers it.
pub fn render(domain: &str, flattened: &Flattened) -> Delivered {
    let source = format!("spf:{domain}");
    let mut lines = vec![format!(
        "# spf:{domain}: {} records, {} DNS-querying terms, evaluated in term order",
        flattened.records.len(),
        flattened.lookups
    )];
    for (name, record) in &flattened.records {
        let escaped = record.escape_debug().to_string();
        let mut rest = escaped.as_str();
        let mut first = true;
        while first || !rest.is_empty() {
            let mut cut = rest.len().min(COMMENT_WIDTH);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, tail) = rest.split_at(cut);
            lines.push(if first {
                format!("# {name}: {piece}")
            } else {
                format!("#   {piece}")
            });
            rest = tail;
            first = false;
        }
    }
    let mut warnings = Vec::new();
    for warning in &flattened.warnings {
        lines.push(format!("# warning: {warning}"));
        warnings.push(Warning::new(
            &source,
            lines.len(),
            &warning.term,
            format!("SPF term in {} {}", warning.domain, warning.what),
        ));
    }
    lines.extend(flattened.pass.v4().iter().map(ToString::to_string));
    lines.extend(flattened.pass.v6().iter().map(ToString::to_string));
    let mut text = lines.join("\n");
    text.push('\n');
    let provenance = format!(
        "{} records, {} DNS-querying terms, {} IPv4 and {} IPv6 prefixes",
        flattened.records.len(),
        flattened.lookups,
        flattened.pass.v4().len(),
        flattened.pass.v6().len()
    );
    Delivered {
        text,
        warnings,
        provenance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranges::{ListBuilder, MAX_LINE_LEN};

    #[test]
    fn a_record_as_long_as_dns_carries_makes_a_text_the_list_parser_reads() {
        let mut record = "v=spf1".to_owned();
        let mut i = 0u32;
        while record.len() < 65_000 {
            record.push_str(&format!(" ip4:10.{}.{}.0/24", i / 128, (i % 128) * 2));
            i += 1;
        }
        record.push_str(" -all");
        let mut dns = dns::MemoryDns::new();
        dns.add("big.test", dns::Entry::Txt(record.clone()));
        let flattened = flatten::flatten(&mut dns, "big.test", Limits::default()).unwrap();
        let fetched = render("big.test", &flattened);
        assert!(fetched.text.lines().all(|l| l.len() <= COMMENT_WIDTH + 20));
        assert!(fetched.text.lines().all(|l| l.len() < MAX_LINE_LEN));
        let comments: String = fetched
            .text
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with('#'))
            .map(|l| {
                l.trim_start_matches("# big.test: ")
                    .trim_start_matches("#   ")
            })
            .collect();
        assert_eq!(
            comments, record,
            "the record is kept whole, over several lines"
        );
        let mut list = ListBuilder::strict();
        list.add_text("spf:big.test", fetched.text.as_bytes())
            .unwrap();
        assert_eq!(list.finish().unwrap().allowlist.v4.len(), i as usize);
    }
}
