//! Range lists: parses the service's published IP ranges and merges them into
//! an [`Allowlist`].
//!
//! One entry a line; `#` starts a comment; blank lines are skipped. An entry
//! is a CIDR, a bare address, an inclusive range `A-B` of one family, an SPF
//! mechanism `ip4:…`/`ip6:…`, or a pasted SPF record `v=spf1 …` whose
//! `ip4:`/`ip6:` terms are taken in term order (see [`crate::spf`], whose
//! parser reads both). Any error names the source, the line and
//! the text; parsing stops at the first one and nothing is returned, so a bad
//! list never reaches the kernel.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use filter_common::Family;
use ipnet::{IpNet, Ipv4Net, Ipv4Subnets, Ipv6Net, Ipv6Subnets};

use crate::{
    allowlist::Allowlist,
    ip_text,
    spf::{
        self,
        record::{Qualifier, is_spf_record, split_qualifier},
    },
    warning::{Location, Warning},
};

/// Longest line accepted: the longest record DNS carries (a TXT record's
/// data is at most 65,535 bytes), so that a pasted `v=spf1` record of any
/// size a domain can publish fits on one line. Address lists stay far
/// below it.
pub const MAX_LINE_LEN: usize = 65_535;

/// Most prefixes per family a list may have after merging: half of what
/// each trie holds, so that a refresh can always insert every new prefix
/// before it deletes an old one (the never-a-gap rule) however much the
/// list changes.
pub const MAX_LIST_PREFIXES: usize = (filter_common::MAX_PREFIXES / 2) as usize;

/// Name used for entries given with `--allow`.
pub const ALLOW_OPTION: &str = "--allow";

/// Why a list was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// A line that is not a valid entry.
    #[error("{at}: {reason}: {text:?}")]
    Syntax {
        /// Source and line.
        at: Location,
        /// The offending text (shortened if very long).
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The source could not be read at all.
    #[error("reading {source_name}: {error}")]
    Read {
        /// File path or `-`.
        source_name: String,
        /// The I/O error (in the message, so not also a source: `{:#}`
        /// would print it twice).
        error: std::io::Error,
    },
    /// The merged entries cover a whole address family.
    #[error(
        "the entries together cover every {family} address; that would let everyone in (use `mxgate open` for that)"
    )]
    CoversEverything {
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// Standard input named more than once.
    #[error("standard input (`-`) can be given only once")]
    StdinTwice,
    /// More prefixes than the filter takes.
    #[error(
        "the list has {count} {family} prefixes after merging; mxgate takes at most {MAX_LIST_PREFIXES} per family (nothing changed)"
    )]
    TooLarge {
        /// "IPv4" or "IPv6".
        family: &'static str,
        /// Prefixes after merging.
        count: usize,
    },
}

/// A parsed list: the merged allowlist, what was read to make it, and warnings.
#[derive(Clone, Debug, Default)]
pub struct ParsedList {
    /// The merged result.
    pub allowlist: Allowlist,
    /// IPv4 entries read, before merging.
    pub entries_v4: usize,
    /// IPv6 entries read, before merging.
    pub entries_v6: usize,
    /// Accepted oddities, each naming its line.
    pub warnings: Vec<Warning>,
    /// The texts remote sources delivered for this list, to be kept as
    /// their last good copies once the list is accepted.
    pub fetched: Fetched,
}

/// What remote sources delivered for a list, not yet kept anywhere: a text
/// becomes its source's last good copy only once the list it is part of
/// is live ([`crate::sources::keep_last_good`]), so a list a guard refused
/// never does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Where copies are kept; `None` keeps none.
    pub cache_dir: Option<PathBuf>,
    /// Each source's name and the text it delivered.
    pub texts: Vec<(String, String)>,
}

/// Collects entries from several sources, then merges them.
#[derive(Default)]
pub struct ListBuilder {
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
    entries_v4: usize,
    entries_v6: usize,
    warnings: Vec<Warning>,
    strict: bool,
}

impl ListBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder for lists fetched from elsewhere, which must be
    /// exact: an entry with host bits set is an error, not a warning (a
    /// list cut off as `192.0.2.0/2` must not become `192.0.0.0/2`).
    pub fn strict() -> Self {
        Self {
            strict: true,
            ..Self::default()
        }
    }

    /// Adds everything `other` collected.
    pub fn extend(&mut self, other: ListBuilder) {
        self.v4.extend(other.v4);
        self.v6.extend(other.v6);
        self.entries_v4 += other.entries_v4;
        self.entries_v6 += other.entries_v6;
        self.warnings.extend(other.warnings);
    }

    /// Adds the lines of `bytes`, read from `source`.
    pub fn add_text(&mut self, source: &str, bytes: &[u8]) -> Result<(), ListError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            let start = bytes[..e.valid_up_to()]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1);
            let end = bytes[start..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |p| start + p);
            ListError::Syntax {
                at: Location {
                    source: source.to_owned(),
                    line,
                },
                text: shorten(&String::from_utf8_lossy(&bytes[start..end])),
                reason: "not UTF-8 text".into(),
            }
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, line) in text.split('\n').enumerate() {
            let at = Place {
                source,
                line: i + 1,
            };
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.len() > MAX_LINE_LEN {
                return Err(syntax(
                    at.location(),
                    line,
                    format!("line longer than {MAX_LINE_LEN} bytes"),
                ));
            }
            let content = line.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            if is_spf_record(content) {
                self.add_spf_record(at, content)?;
            } else {
                self.add_entry(at, content)?;
            }
        }
        Ok(())
    }

    /// Adds `--allow` entries; each is named by its position.
    pub fn add_allow_options(&mut self, entries: &[String]) -> Result<(), ListError> {
        for (i, entry) in entries.iter().enumerate() {
            let at = Place {
                source: ALLOW_OPTION,
                line: i + 1,
            };
            self.add_entry(at, entry.trim())?;
        }
        Ok(())
    }

    /// Merges everything added into the final list.
    pub fn finish(self) -> Result<ParsedList, ListError> {
        let allowlist = Allowlist::from_prefixes(self.v4, self.v6);
        check_merged(&allowlist)?;
        Ok(ParsedList {
            allowlist,
            entries_v4: self.entries_v4,
            entries_v6: self.entries_v6,
            warnings: self.warnings,
            fetched: Fetched::default(),
        })
    }

    /// Why the entries added so far make no list the filter could use on
    /// their own: none at all (everyone would be denied), a whole family
    /// (everyone let in), more prefixes than a trie takes. `None` when they
    /// do. A remote source must deliver a usable list by itself: anything
    /// else is a source that failed, not input to merge.
    pub fn unusable(&self) -> Option<String> {
        let merged = Allowlist::from_prefixes(self.v4.clone(), self.v6.clone());
        if merged.is_empty() {
            return Some(
                "it delivered no addresses (an empty allowlist would deny every sender)".into(),
            );
        }
        check_merged(&merged).err().map(|e| e.to_string())
    }

    fn add_entry(&mut self, at: Place<'_>, text: &str) -> Result<(), ListError> {
        let parsed = parse_entry(text).map_err(|reason| syntax(at.location(), text, reason))?;
        if parsed.host_bits && self.strict {
            return Err(syntax(
                at.location(),
                text,
                "host bits set in a fetched list (cut off, or not the list it should be)",
            ));
        }
        if let Some(message) = parsed.warning {
            self.warnings.push(Warning {
                at: at.location(),
                text: text.to_owned(),
                message,
            });
        }
        match parsed.nets {
            Nets::One(IpNet::V4(net)) => {
                self.entries_v4 += 1;
                self.v4.push(net);
            }
            Nets::One(IpNet::V6(net)) => {
                self.entries_v6 += 1;
                self.v6.push(net);
            }
            Nets::V4(nets) => {
                self.entries_v4 += 1;
                self.v4.extend(nets);
            }
            Nets::V6(nets) => {
                self.entries_v6 += 1;
                self.v6.extend(nets);
            }
        }
        Ok(())
    }

    /// Takes what a pasted `v=spf1` record passes without DNS: its
    /// `ip4:`/`ip6:` terms in term order (a term that does not pass takes
    /// its addresses out of later ones). A term that needs DNS is skipped
    /// with a warning, and refused when it could fail senders a later term
    /// passes. The record must parse as SPF checkers parse it.
    fn add_spf_record(&mut self, at: Place<'_>, record: &str) -> Result<(), ListError> {
        let flattened = spf::flatten::flatten_offline(record, spf::flatten::Limits::default())
            .map_err(|e| syntax(at.location(), record, e.to_string()))?;
        self.entries_v4 += flattened.pass.v4().len();
        self.entries_v6 += flattened.pass.v6().len();
        self.v4.extend_from_slice(flattened.pass.v4());
        self.v6.extend_from_slice(flattened.pass.v6());
        for note in flattened.warnings {
            self.warnings.push(Warning::new(
                at.source,
                at.line,
                &note.term,
                format!("SPF term {}", note.what),
            ));
        }
        Ok(())
    }

    /// Adds a warning a remote source delivered about its text.
    pub fn add_warning(&mut self, warning: Warning) {
        self.warnings.push(warning);
    }
}

/// Where an entry was read. Made a [`Location`] only when something is
/// said about the entry: a list of 100,000 lines copies its source's name
/// for none of them.
#[derive(Clone, Copy)]
struct Place<'a> {
    source: &'a str,
    line: usize,
}

impl Place<'_> {
    fn location(self) -> Location {
        Location {
            source: self.source.to_owned(),
            line: self.line,
        }
    }
}

/// Refuses a merged list that covers a whole family or that a trie cannot
/// hold with room to spare.
fn check_merged(allowlist: &Allowlist) -> Result<(), ListError> {
    if allowlist.v4.iter().any(|n| n.prefix_len() == 0) {
        return Err(ListError::CoversEverything { family: "IPv4" });
    }
    if allowlist.v6.iter().any(|n| n.prefix_len() == 0) {
        return Err(ListError::CoversEverything { family: "IPv6" });
    }
    for (family, count) in [("IPv4", allowlist.v4.len()), ("IPv6", allowlist.v6.len())] {
        if count > MAX_LIST_PREFIXES {
            return Err(ListError::TooLarge { family, count });
        }
    }
    Ok(())
}

fn syntax(at: Location, text: &str, reason: impl Into<String>) -> ListError {
    ListError::Syntax {
        at,
        text: shorten(text),
        reason: reason.into(),
    }
}

/// Keeps error messages readable when a line is huge.
fn shorten(text: &str) -> String {
    const KEEP: usize = 80;
    match text.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

enum Nets {
    /// A CIDR or an address: one prefix, kept out of a `Vec` (one
    /// allocation less for each line of a list).
    One(IpNet),
    V4(Vec<Ipv4Net>),
    V6(Vec<Ipv6Net>),
}

impl Nets {
    fn family(&self) -> Family {
        match self {
            Nets::One(IpNet::V4(_)) | Nets::V4(_) => Family::V4,
            Nets::One(IpNet::V6(_)) | Nets::V6(_) => Family::V6,
        }
    }
}

struct ParsedEntry {
    nets: Nets,
    warning: Option<String>,
    /// The prefix had host bits set (the warning says so).
    host_bits: bool,
}

/// Parses one entry: CIDR, bare address, range `A-B`, or `ip4:`/`ip6:` term.
fn parse_entry(text: &str) -> Result<ParsedEntry, String> {
    if text.trim().contains(char::is_whitespace) {
        return Err("more than one entry on a line".into());
    }
    let (qualifier, term) = split_qualifier(text);
    let prefix = |name: &str| term.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(name));
    let (family, body) = if prefix("ip4:") {
        (Some(Family::V4), &term[4..])
    } else if prefix("ip6:") {
        (Some(Family::V6), &term[4..])
    } else {
        (None, text)
    };
    if family.is_some() && qualifier != Qualifier::Pass {
        return Err(format!(
            "an SPF term with qualifier {:?} does not allow anyone",
            qualifier.symbol()
        ));
    }
    // A prefix length makes it a CIDR ("192.0.2.0/-1" is a bad length, not
    // a range); otherwise a '-' (never part of an address) makes a range.
    let entry = match body.split_once('-') {
        Some((low, high)) if !body.contains('/') => parse_range(low, high)?,
        _ => parse_cidr(body)?,
    };
    match (family, entry.nets.family()) {
        (Some(Family::V4), Family::V6) => Err("ip4: term holds an IPv6 address".into()),
        (Some(Family::V6), Family::V4) => Err("ip6: term holds an IPv4 address".into()),
        // An SPF term also follows SPF's syntax: no ranges, no leading zeros.
        (Some(_), _) => spf::record::parse_directive(text).map(|_| entry),
        (None, _) => Ok(entry),
    }
}

fn parse_addr(text: &str) -> Result<IpAddr, String> {
    if text.is_empty() {
        return Err("empty address".into());
    }
    if text.contains('%') {
        return Err("an address with a zone (%) cannot be allowed".into());
    }
    ip_text::parse_ip(text).ok_or_else(|| "not an IPv4 or IPv6 address".to_owned())
}

fn parse_cidr(text: &str) -> Result<ParsedEntry, String> {
    let (addr_text, len_text) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr = parse_addr(addr_text)?;
    let max = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let len = match len_text {
        None => max,
        Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => {
            let len: u8 = l.parse().map_err(|_| format!("bad prefix length {l:?}"))?;
            if len > max {
                return Err(format!("prefix length {len} is longer than {max}"));
            }
            len
        }
        Some(l) => return Err(format!("bad prefix length {l:?}")),
    };
    if len == 0 {
        return Err("a /0 prefix would let everyone in (use `mxgate open` for that)".into());
    }
    let net = IpNet::new(addr, len).map_err(|e| e.to_string())?;
    let trunc = net.trunc();
    let warning = if trunc != net {
        Some(format!("host bits set, using {trunc}"))
    } else if is_ipv4_mapped(&trunc) {
        Some("an IPv4-mapped IPv6 address never matches an IPv4 sender; write the IPv4 form".into())
    } else {
        None
    };
    Ok(ParsedEntry {
        nets: Nets::One(trunc),
        warning,
        host_bits: trunc != net,
    })
}

/// Inside ::ffff:0:0/96, which IPv4 senders never use on the wire.
fn is_ipv4_mapped(net: &IpNet) -> bool {
    match net {
        IpNet::V6(n) => n.prefix_len() >= 96 && n.network().to_ipv4_mapped().is_some(),
        IpNet::V4(_) => false,
    }
}

fn parse_range(low: &str, high: &str) -> Result<ParsedEntry, String> {
    let (low, high) = (low.trim(), high.trim());
    let low = parse_addr(low).map_err(|e| format!("range start {low:?}: {e}"))?;
    let high = parse_addr(high).map_err(|e| format!("range end {high:?}: {e}"))?;
    let nets = match (low, high) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            check_order(a, b)?;
            if a == Ipv4Addr::UNSPECIFIED && b == Ipv4Addr::BROADCAST {
                return Err("this range would let everyone in (use `mxgate open` for that)".into());
            }
            Nets::V4(Ipv4Subnets::new(a, b, 0).collect())
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            check_order(a, b)?;
            if a == Ipv6Addr::UNSPECIFIED && b == Ipv6Addr::from(u128::MAX) {
                return Err("this range would let everyone in (use `mxgate open` for that)".into());
            }
            Nets::V6(Ipv6Subnets::new(a, b, 0).collect())
        }
        _ => return Err("a range must have both ends in the same family".into()),
    };
    Ok(ParsedEntry {
        nets,
        warning: None,
        host_bits: false,
    })
}

fn check_order<A: Ord + fmt::Display>(low: A, high: A) -> Result<(), String> {
    if low > high {
        return Err(format!("range start {low} is after its end {high}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ParsedList, ListError> {
        let mut b = ListBuilder::new();
        b.add_text("list.txt", text.as_bytes())?;
        b.finish()
    }

    fn v4(list: &ParsedList) -> Vec<String> {
        list.allowlist.v4.iter().map(ToString::to_string).collect()
    }

    fn v6(list: &ParsedList) -> Vec<String> {
        list.allowlist.v6.iter().map(ToString::to_string).collect()
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(list) => panic!("{text:?} parsed as {:?}", list.allowlist),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn cidrs_addresses_and_comments() {
        let list = parse(
            "# service ranges\n\n192.0.2.0/24\n198.51.100.7 # relay\n2001:db8::/32\n2001:db8:ffff::1\n",
        )
        .unwrap();
        assert_eq!(v4(&list), ["192.0.2.0/24", "198.51.100.7/32"]);
        assert_eq!(v6(&list), ["2001:db8::/32"]);
        assert_eq!((list.entries_v4, list.entries_v6), (2, 2));
        assert!(list.warnings.is_empty());
    }

    #[test]
    fn overlaps_duplicates_and_neighbours_merge() {
        let list =
            parse("10.0.0.0/25\n10.0.0.128/25\n10.0.0.5\n10.0.0.0/24\n10.0.0.0/24\n").unwrap();
        assert_eq!(v4(&list), ["10.0.0.0/24"]);
        assert_eq!(list.entries_v4, 5);
    }

    #[test]
    fn host_bits_are_cleared_with_a_warning_naming_the_line() {
        let list = parse("\n192.0.2.77/24\n").unwrap();
        assert_eq!(v4(&list), ["192.0.2.0/24"]);
        assert_eq!(list.warnings.len(), 1);
        let w = list.warnings[0].to_string();
        assert!(
            w.starts_with("list.txt:2: host bits set, using 192.0.2.0/24"),
            "{w}"
        );
    }

    #[test]
    fn fetched_lists_refuse_host_bits() {
        let mut b = ListBuilder::strict();
        let e = b
            .add_text("https://x.test/l", b"192.0.2.0/24\n192.0.2.0/2\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("https://x.test/l:2: host bits set in a fetched list"),
            "{e}"
        );
    }

    #[test]
    fn ranges_become_the_fewest_cidrs() {
        let list = parse("192.0.2.0-192.0.2.255\n10.0.0.1-10.0.0.6\n").unwrap();
        assert_eq!(
            v4(&list),
            [
                "10.0.0.1/32",
                "10.0.0.2/31",
                "10.0.0.4/31",
                "10.0.0.6/32",
                "192.0.2.0/24"
            ]
        );
        let list = parse("2001:db8::-2001:db8::ff\n").unwrap();
        assert_eq!(v6(&list), ["2001:db8::/120"]);
    }

    #[test]
    fn spf_terms_and_records() {
        let list = parse(
            "ip4:192.0.2.0/24\nip6:2001:db8::/48\n\
             v=spf1 ip4:198.51.100.0/24 +ip4:203.0.113.9 -ip4:203.0.113.10 include:_spf.example.com ~all\n",
        )
        .unwrap();
        assert_eq!(
            v4(&list),
            ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.9/32"]
        );
        assert_eq!(v6(&list), ["2001:db8::/48"]);
        let warnings: Vec<_> = list.warnings.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(warnings, ["include:_spf.example.com"]);
        assert!(
            list.warnings[0]
                .to_string()
                .starts_with("list.txt:3: SPF term needs DNS, which a range file cannot follow"),
            "{}",
            list.warnings[0]
        );
    }

    #[test]
    fn pasted_records_use_term_order_and_the_spf_parser() {
        let list = parse("v=spf1 -ip4:192.0.2.66 ip4:192.0.2.0/24 mx -all\n").unwrap();
        assert!(
            list.allowlist
                .lookup("192.0.2.66".parse().unwrap())
                .is_none()
        );
        assert!(
            list.allowlist
                .lookup("192.0.2.67".parse().unwrap())
                .is_some()
        );
        assert_eq!(list.warnings.len(), 1, "{:?}", list.warnings);
        // Unknown modifiers are ignored, as checkers do.
        let list = parse("v=spf1 ip4:192.0.2.0/24 moo=cow default=pass ~all\n").unwrap();
        assert_eq!(
            (v4(&list), list.warnings.len()),
            (vec!["192.0.2.0/24".to_owned()], 0)
        );
        // What checkers reject is an error naming the line.
        assert!(error("v=spf1 ip4:192.0.2.0/024").starts_with("list.txt:1: the record: SPF term"));
        assert!(error("v=spf1 ip4:192.0.2.0/24\tmx").contains("not allowed"));
        // A record is `v=spf1` and a space (RFC 7208 4.5, as spf/record.rs
        // reads it): after a tab the line is no record, and no one entry.
        assert_eq!(
            error("v=spf1\tip4:192.0.2.0/24"),
            "list.txt:1: more than one entry on a line: \"v=spf1\\tip4:192.0.2.0/24\""
        );
        assert!(error("V=SPF1 ip4:192.0.2.0/24 ip4:x").contains("the record: SPF term"));
        assert!(
            error("v=spf1 ip4:192.0.2.0/24 exp=a.example exp=b.example").contains("more than once")
        );
        assert!(error("v=spf1 +all").contains("passes every IPv4 address"));
        // A term the file cannot follow must not fail senders a later term passes.
        assert!(error("v=spf1 -a ip4:192.0.2.0/24").contains("could fail senders"));
        // A single `ip4:` line follows SPF's syntax too.
        assert!(error("ip4:192.0.2.0/024").contains("without leading zeros"));
        assert!(error("ip4:192.0.2.1-192.0.2.9").contains("is not an IPv4 address"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_kept_with_a_warning() {
        let list = parse("::ffff:192.0.2.1\n").unwrap();
        assert_eq!(v6(&list), ["::ffff:192.0.2.1/128"]);
        assert!(
            list.warnings[0].message.contains("IPv4-mapped"),
            "{:?}",
            list.warnings
        );
    }

    #[test]
    fn crlf_and_bom_are_accepted() {
        let list = parse("\u{feff}192.0.2.0/24\r\n198.51.100.0/24\r\n").unwrap();
        assert_eq!(v4(&list), ["192.0.2.0/24", "198.51.100.0/24"]);
    }

    #[test]
    fn errors_name_source_line_and_text() {
        assert_eq!(
            error("192.0.2.0/24\n192.0.2.300\n"),
            "list.txt:2: not an IPv4 or IPv6 address: \"192.0.2.300\""
        );
        assert!(error("10.0.0.0/33").contains("prefix length 33 is longer than 32"));
        assert!(error("2001:db8::/129").contains("prefix length 129 is longer than 128"));
        assert!(error("10.0.0.9-10.0.0.1").contains("range start 10.0.0.9 is after its end"));
        assert!(error("10.0.0.1-2001:db8::1").contains("same family"));
        assert!(error("ip4:2001:db8::1").contains("ip4: term holds an IPv6 address"));
        assert!(error("ip6:192.0.2.1").contains("ip6: term holds an IPv4 address"));
        assert!(error("192.0.2.1 192.0.2.2").contains("more than one entry"));
        assert!(error("010.0.0.1").contains("not an IPv4 or IPv6 address"));
        assert!(error("10.0.0.0/").contains("bad prefix length"));
        assert!(error("10.0.0.0/+8").contains("bad prefix length"));
        assert!(error("fe80::1%eth0").contains("zone"));
        assert!(error("-ip4:192.0.2.1").contains("does not allow"));
    }

    #[test]
    fn lists_larger_than_the_filter_takes_are_refused() {
        let mut text = String::new();
        for i in 0..=MAX_LIST_PREFIXES {
            // Every other /32, so nothing merges.
            text.push_str(&format!(
                "{}\n",
                std::net::Ipv4Addr::from(0x0a00_0000 + 2 * i as u32)
            ));
        }
        let e = error(&text);
        assert!(
            e.contains(&format!(
                "{} IPv4 prefixes after merging",
                MAX_LIST_PREFIXES + 1
            )),
            "{e}"
        );
        text.truncate(text.trim_end().rfind('\n').unwrap() + 1);
        assert_eq!(parse(&text).unwrap().allowlist.v4.len(), MAX_LIST_PREFIXES);
    }

    #[test]
    fn everything_is_refused() {
        assert!(error("0.0.0.0/0").contains("/0 prefix would let everyone in"));
        assert!(error("::/0").contains("/0 prefix would let everyone in"));
        assert!(error("0.0.0.0-255.255.255.255").contains("everyone"));
        assert!(error("0.0.0.0/1\n128.0.0.0/1").contains("cover every IPv4 address"));
    }

    #[test]
    fn non_utf8_names_the_line() {
        let mut b = ListBuilder::new();
        let e = b
            .add_text("bin.txt", b"192.0.2.1\n19\xff2.0.2.2\n")
            .unwrap_err();
        assert!(
            e.to_string().starts_with("bin.txt:2: not UTF-8 text"),
            "{e}"
        );
    }

    #[test]
    fn absurdly_long_lines_are_refused() {
        let e = error(&"1".repeat(MAX_LINE_LEN + 1));
        assert!(
            e.starts_with("list.txt:1: line longer than 65535 bytes"),
            "{e}"
        );
        assert!(e.len() < 200, "the error quotes a shortened line: {e}");
        // A pasted record as long as DNS can carry one is read.
        let mut record = "v=spf1".to_owned();
        let mut i = 0u32;
        while record.len() < MAX_LINE_LEN - 40 {
            record.push_str(&format!(" ip4:10.{}.{}.0/24", i / 128, (i % 128) * 2));
            i += 1;
        }
        assert!(record.len() > 60_000);
        let list = parse(&format!("{record} -all\n")).unwrap();
        assert_eq!(list.allowlist.v4.len(), i as usize);
    }

    #[test]
    fn a_list_on_its_own_is_usable_when_it_allows_some_but_not_all() {
        let usable = |text: &str| {
            let mut b = ListBuilder::strict();
            b.add_text("https://x.test/l", text.as_bytes()).unwrap();
            b.unusable()
        };
        assert_eq!(usable("192.0.2.0/24\n"), None);
        assert!(
            usable("# nothing today\n")
                .unwrap()
                .contains("no addresses")
        );
        assert!(usable("v=spf1 -all\n").unwrap().contains("no addresses"));
        assert!(
            usable("0.0.0.0/1\n128.0.0.0/1\n")
                .unwrap()
                .contains("cover every IPv4 address")
        );
    }

    #[test]
    fn allow_options_are_named() {
        let mut b = ListBuilder::new();
        b.add_allow_options(&["192.0.2.1".into(), "bogus".into()])
            .map(drop)
            .unwrap_err()
            .to_string()
            .starts_with("--allow:2:")
            .then_some(())
            .expect("error names --allow and its position");
    }
}
