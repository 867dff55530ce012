//! Turns an SPF policy into the set of addresses for which every RFC 7208
//! checker returns `pass`, or refuses.
//!
//! Terms are evaluated in order and the first match wins: a term that does
//! not pass takes its addresses out of every later term; `include:` matches
//! on the included record's pass set only; `redirect=` applies to the
//! addresses no mechanism matched and gives them the target's result. The
//! flattener evaluates every term a sender could reach, so any permerror or
//! temperror that some sender could hit fails the whole walk: a partial list
//! never reaches the kernel.
//!
//! The void-lookup limit is the one limit that depends on the sender's
//! family (an `a` without AAAA records is void for IPv6 senders only): a
//! chain over it for one family is a permerror for every sender of that
//! family, so none of them is allowlisted (with a warning), and the other
//! family's senders get what a checker gives them.
//!
//! Some terms name no addresses: `ptr`, and `exists`/`a`/`mx`/`include`/
//! `redirect` whose domain-spec uses a sender macro (`%{i}`, `%{s}`, …; `%{d}`
//! is known and expands). Such a term passing senders is reported (the list
//! cannot hold them); such a term that could fail senders a later term
//! passes is refused, unless the caller allows it, because the list would
//! then let in senders every checker fails.

use std::{
    collections::BTreeSet,
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{
    macros::{DomainSpec, query_name},
    prefix_set::PrefixSet,
    record::{Directive, DualCidr, Mechanism, Qualifier, is_spf_record, parse_record},
};

/// Most MX names one `mx` may return (RFC 7208 4.6.4).
pub const MX_LIMIT: usize = 10;

/// Most DNS-querying terms unless `--spf-lookup-limit` says: RFC 7208
/// 4.6.4's 10.
pub const DEFAULT_LOOKUP_LIMIT: u32 = 10;

/// Most void lookups in one evaluation (RFC 7208 4.6.4).
pub const VOID_LIMIT: usize = 2;

/// Why a DNS query gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// The name does not exist (RCODE 3).
    NxDomain,
    /// Anything else: SERVFAIL, a timeout, a refused query (a temperror).
    Failed(String),
}

/// The DNS queries a flattener makes. An empty answer (`Ok(vec![])`) is
/// NOERROR without records of the type.
pub trait Dns {
    /// The TXT records of `name`, each one's strings joined.
    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError>;
    /// The A records of `name`.
    fn a(&mut self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError>;
    /// The AAAA records of `name`.
    fn aaaa(&mut self, name: &str) -> Result<Vec<Ipv6Addr>, DnsError>;
    /// The exchanges of `name`'s MX records, without the trailing dot
    /// (empty for a null MX), one per record.
    fn mx(&mut self, name: &str) -> Result<Vec<String>, DnsError>;
}

/// No DNS at all: a record pasted into a range file. Every term that would
/// query DNS is treated as one that names no addresses.
pub struct Offline;

impl Dns for Offline {
    fn txt(&mut self, _: &str) -> Result<Vec<String>, DnsError> {
        Err(DnsError::Failed("no DNS for a range file".into()))
    }
    fn a(&mut self, _: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        Err(DnsError::Failed("no DNS for a range file".into()))
    }
    fn aaaa(&mut self, _: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        Err(DnsError::Failed("no DNS for a range file".into()))
    }
    fn mx(&mut self, _: &str) -> Result<Vec<String>, DnsError> {
        Err(DnsError::Failed("no DNS for a range file".into()))
    }
}

/// How a walk may go.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most DNS-querying terms (RFC 7208 4.6.4: 10).
    pub lookups: u32,
    /// Flatten past a term that cannot be enumerated and could fail senders
    /// that a later term passes (instead of refusing).
    pub allow_unenumerable: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            lookups: DEFAULT_LOOKUP_LIMIT,
            allow_unenumerable: false,
        }
    }
}

/// What kind of failure a walk ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The domain has no SPF record (RFC 7208 result `none`).
    NoRecord,
    /// A checker would return permerror: a syntax error, a limit, a loop.
    PermError,
    /// A checker would return temperror: DNS failed or timed out.
    TempError,
    /// Refused by design: a passing `all` or `/0` would allow everyone.
    Everything,
    /// Refused: a term that names no addresses could fail senders that a
    /// later term passes.
    Unenumerable,
}

/// Why a walk failed; nothing of it may be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", .message, .kind.suffix())]
pub struct SpfError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// What happened, naming the term and the record.
    pub message: String,
}

impl SpfError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl ErrorKind {
    /// What the class adds to a message: the result a checker returns.
    fn suffix(self) -> &'static str {
        match self {
            ErrorKind::NoRecord => "",
            ErrorKind::PermError => " (an SPF permerror)",
            ErrorKind::TempError => " (an SPF temperror)",
            ErrorKind::Everything | ErrorKind::Unenumerable => " (refused)",
        }
    }
}

/// Something a flat list cannot say about one term: a warning, or why the
/// term's matches cannot be listed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Note {
    /// The term as written.
    pub term: String,
    /// The domain of its record.
    pub domain: String,
    /// What about it, as the rest of a sentence.
    pub what: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` in {} {}", self.term, self.domain, self.what)
    }
}

/// The result of a walk.
#[derive(Clone, Debug, Default)]
pub struct Flattened {
    /// The addresses every checker passes.
    pub pass: PrefixSet,
    /// Things the list cannot say, one per term and record.
    pub warnings: Vec<Note>,
    /// Every record evaluated, as `(domain, record)`, in order.
    pub records: Vec<(String, String)>,
    /// DNS-querying terms evaluated.
    pub lookups: u32,
}

/// Flattens the SPF policy of `domain`.
pub fn flatten<D: Dns>(dns: &mut D, domain: &str, limits: Limits) -> Result<Flattened, SpfError> {
    let domain = query_name(domain).map_err(|e| SpfError::new(ErrorKind::NoRecord, e))?;
    let mut walk = Walk::new(dns, limits, true);
    let outcome = walk.check_host(&domain, &[])?;
    let flattened = walk.finish(outcome);
    refuse_everything(&flattened.pass, &domain)?;
    Ok(flattened)
}

/// Refuses a pass set that is a whole family, however it was put together.
fn refuse_everything(pass: &PrefixSet, domain: &str) -> Result<(), SpfError> {
    match pass.whole_family().first() {
        Some(family) => Err(SpfError::new(
            ErrorKind::Everything,
            format!(
                "{domain} passes every {family} address; an allowlist of everyone is what \
                 `mxgate open` is for"
            ),
        )),
        None => Ok(()),
    }
}

/// Flattens a record pasted into a range file, without DNS: terms that
/// would query it are treated as terms naming no addresses.
pub fn flatten_offline(record: &str, limits: Limits) -> Result<Flattened, SpfError> {
    let mut dns = Offline;
    let mut walk = Walk::new(&mut dns, limits, false);
    let outcome = walk.evaluate("the record", record, &[])?;
    let flattened = walk.finish(outcome);
    refuse_everything(&flattened.pass, "the record")?;
    Ok(flattened)
}

/// What one record (with its includes and redirect) passes.
#[derive(Default)]
struct RecordPass {
    pass: PrefixSet,
    /// Terms that could pass senders outside `pass`.
    unlisted: Vec<Note>,
}

/// What one mechanism matches.
#[derive(Default)]
struct Matches {
    known: PrefixSet,
    /// Set when it could match senders outside `known`.
    unlisted: Vec<Note>,
}

struct Walk<'d, D: Dns> {
    dns: &'d mut D,
    limits: Limits,
    online: bool,
    lookups: u32,
    /// Void lookups an IPv4 and an IPv6 sender would make, by term.
    voids: [Vec<String>; 2],
    /// The permerror a family's senders get (over the void limit), as the
    /// warning that says so.
    family_failed: [Option<Note>; 2],
    warnings: BTreeSet<Note>,
    warning_order: Vec<Note>,
    records: Vec<(String, String)>,
}

const V4: usize = 0;
const V6: usize = 1;

impl<'d, D: Dns> Walk<'d, D> {
    fn new(dns: &'d mut D, limits: Limits, online: bool) -> Self {
        Self {
            dns,
            limits,
            online,
            lookups: 0,
            voids: [Vec::new(), Vec::new()],
            family_failed: [None, None],
            warnings: BTreeSet::new(),
            warning_order: Vec::new(),
            records: Vec::new(),
        }
    }

    fn warn(&mut self, note: Note) {
        if self.warnings.insert(note.clone()) {
            self.warning_order.push(note);
        }
    }

    fn finish(mut self, outcome: RecordPass) -> Flattened {
        let mut pass = outcome.pass;
        let failed = std::mem::take(&mut self.family_failed);
        if failed[V4].is_some() {
            pass = PrefixSet::new(Vec::new(), pass.v6().to_vec());
        }
        if failed[V6].is_some() {
            pass = PrefixSet::new(pass.v4().to_vec(), Vec::new());
        }
        for note in failed.into_iter().flatten() {
            self.warn(note);
        }
        for u in outcome.unlisted {
            self.warn(Note {
                term: u.term,
                domain: u.domain,
                what: format!("{}; senders it passes are not allowlisted", u.what),
            });
        }
        Flattened {
            pass,
            warnings: self.warning_order,
            records: self.records,
            lookups: self.lookups,
        }
    }

    /// RFC 7208 `check_host()` for every sender at once. `path` holds the
    /// domains of the includes and redirects that led here.
    fn check_host(&mut self, domain: &str, path: &[String]) -> Result<RecordPass, SpfError> {
        if path.iter().any(|d| d == domain) {
            let chain: Vec<&str> = path.iter().map(String::as_str).chain([domain]).collect();
            return Err(SpfError::new(
                ErrorKind::PermError,
                format!("loop: {}", chain.join(" → ")),
            ));
        }
        let record = match self.dns.txt(domain) {
            Ok(texts) => {
                let records: Vec<String> = texts.into_iter().filter(|t| is_spf_record(t)).collect();
                match <[String; 1]>::try_from(records) {
                    Ok([one]) => one,
                    Err(records) if records.is_empty() => {
                        return Err(SpfError::new(
                            ErrorKind::NoRecord,
                            format!("{domain} has no SPF record"),
                        ));
                    }
                    Err(records) => {
                        return Err(SpfError::new(
                            ErrorKind::PermError,
                            format!("{domain} has {} SPF records (RFC 7208 4.5)", records.len()),
                        ));
                    }
                }
            }
            Err(DnsError::NxDomain) => {
                return Err(SpfError::new(
                    ErrorKind::NoRecord,
                    format!("TXT {domain}: no such domain (NXDOMAIN)"),
                ));
            }
            Err(DnsError::Failed(why)) => {
                return Err(SpfError::new(
                    ErrorKind::TempError,
                    format!("TXT {domain}: {why}"),
                ));
            }
        };
        self.evaluate(domain, &record, path)
    }

    /// Evaluates `record`, the policy of `domain`.
    fn evaluate(
        &mut self,
        domain: &str,
        text: &str,
        path: &[String],
    ) -> Result<RecordPass, SpfError> {
        self.records.push((domain.to_owned(), text.to_owned()));
        let record = parse_record(text)
            .map_err(|e| SpfError::new(ErrorKind::PermError, format!("{domain}: {e}")))?;
        let mut inner = path.to_vec();
        inner.push(domain.to_owned());

        let mut matched = PrefixSet::default();
        let mut outcome = RecordPass::default();
        // A term not passing that could match senders no list holds: a later
        // passing term must not hand out its senders.
        let mut hidden_deny: Option<(String, Note)> = None;
        for directive in &record.directives {
            if matched.is_everything() {
                break; // every sender has its result: the rest is never reached
            }
            let matches = self.matches(directive, domain, &inner)?;
            if directive.qualifier == Qualifier::Pass {
                if let Some(family) = matches.known.whole_family().first() {
                    return Err(SpfError::new(
                        ErrorKind::Everything,
                        format!(
                            "`{directive}` in {domain} passes every {family} address; an \
                             allowlist of everyone is what `mxgate open` is for"
                        ),
                    ));
                }
                let added = matches.known.difference(&matched);
                self.check_hidden_deny(&hidden_deny, &added, directive.text.as_str(), domain)?;
                outcome.pass = outcome.pass.union(&added);
                outcome.unlisted.extend(matches.unlisted);
            } else if let Some(first) = matches.unlisted.into_iter().next()
                && hidden_deny.is_none()
            {
                hidden_deny = Some((directive.text.clone(), first));
            }
            matched = matched.union(&matches.known);
        }
        if let Some(target) = &record.redirect
            && !matched.is_everything()
        {
            let term = format!("redirect={target}");
            self.count_lookup(&term, domain)?;
            match self.target(target, domain, &term)? {
                None => outcome.unlisted.push(Note {
                    term,
                    domain: domain.to_owned(),
                    what: self.unlisted_why(target),
                }),
                Some(name) => {
                    let result = self.check_host(&name, &inner).map_err(|e| match e.kind {
                        ErrorKind::NoRecord => SpfError::new(
                            ErrorKind::PermError,
                            format!("{term} in {domain}: {}", e.message),
                        ),
                        _ => e,
                    })?;
                    let added = result.pass.difference(&matched);
                    self.check_hidden_deny(&hidden_deny, &added, &term, domain)?;
                    outcome.pass = outcome.pass.union(&added);
                    outcome.unlisted.extend(result.unlisted);
                }
            }
        }
        Ok(outcome)
    }

    /// Refuses (or, when allowed, warns) when `added` senders come after a
    /// term that could fail some of them.
    fn check_hidden_deny(
        &mut self,
        hidden_deny: &Option<(String, Note)>,
        added: &PrefixSet,
        later: &str,
        domain: &str,
    ) -> Result<(), SpfError> {
        let Some((term, unlisted)) = hidden_deny else {
            return Ok(());
        };
        if added.is_empty() {
            return Ok(());
        }
        let why = if unlisted.term == *term {
            unlisted.what.clone()
        } else {
            format!("matches through {}", unlisted)
        };
        if !self.limits.allow_unenumerable {
            return Err(SpfError::new(
                ErrorKind::Unenumerable,
                format!(
                    "`{term}` in {domain} {why}, and could fail senders that the later \
                     `{later}` passes; a flat list would let those senders in \
                     (--spf-allow-unenumerable flattens it anyway)"
                ),
            ));
        }
        self.warn(Note {
            term: term.clone(),
            domain: domain.to_owned(),
            what: format!(
                "{why}; flattened past it (--spf-allow-unenumerable): senders it fails are \
                 allowlisted when a later term passes them"
            ),
        });
        Ok(())
    }

    fn count_lookup(&mut self, term: &str, domain: &str) -> Result<(), SpfError> {
        self.lookups += 1;
        if self.lookups > self.limits.lookups {
            return Err(SpfError::new(
                ErrorKind::PermError,
                format!(
                    "more than {} DNS-querying terms (RFC 7208 4.6.4), at `{term}` in {domain}",
                    self.limits.lookups
                ),
            ));
        }
        Ok(())
    }

    /// Counts a void lookup of `term` (in `domain`'s record) for the
    /// families in `families`. Over the limit, that family's senders get a
    /// permerror; when both families' do, the walk fails.
    fn void(
        &mut self,
        families: &[usize],
        term: &str,
        domain: &str,
        what: String,
    ) -> Result<(), SpfError> {
        for &family in families {
            if self.family_failed[family].is_some() {
                continue;
            }
            self.voids[family].push(what.clone());
            if self.voids[family].len() > VOID_LIMIT {
                let senders = if family == V4 { "IPv4" } else { "IPv6" };
                self.family_failed[family] = Some(Note {
                    term: term.to_owned(),
                    domain: domain.to_owned(),
                    what: format!(
                        "makes more than {VOID_LIMIT} void lookups for {senders} senders \
                         ({}): a checker returns permerror for every {senders} sender (RFC 7208 \
                         4.6.4), so none is allowlisted",
                        self.voids[family].join(", ")
                    ),
                });
            }
        }
        if let [Some(_), Some(_)] = &self.family_failed {
            return Err(SpfError::new(
                ErrorKind::PermError,
                format!(
                    "more than {VOID_LIMIT} void lookups (RFC 7208 4.6.4), for IPv4 senders: {}; \
                     for IPv6 senders: {}",
                    self.voids[V4].join(", "),
                    self.voids[V6].join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The name `spec` queries from `domain`'s record, or `None` when it
    /// cannot be known (a sender macro, or no DNS).
    fn target(
        &self,
        spec: &DomainSpec,
        domain: &str,
        term: &str,
    ) -> Result<Option<String>, SpfError> {
        if !self.online {
            return Ok(None);
        }
        match spec.expand(domain) {
            None => Ok(None),
            Some(expanded) => query_name(&expanded).map(Some).map_err(|e| {
                SpfError::new(ErrorKind::PermError, format!("`{term}` in {domain}: {e}"))
            }),
        }
    }

    fn unlisted_why(&self, spec: &DomainSpec) -> String {
        if !self.online {
            return "needs DNS, which a range file cannot follow (use an spf:DOMAIN source)".into();
        }
        let letter = spec.sender_letter().unwrap_or('?');
        format!("depends on the sender (macro %{{{letter}}}), which no list can hold")
    }

    /// The addresses `directive` matches.
    fn matches(
        &mut self,
        directive: &Directive,
        domain: &str,
        path: &[String],
    ) -> Result<Matches, SpfError> {
        let term = directive.text.as_str();
        if directive.mechanism.queries_dns() {
            self.count_lookup(term, domain)?;
        }
        let unlisted = |why: String| Matches {
            known: PrefixSet::default(),
            unlisted: vec![Note {
                term: term.to_owned(),
                domain: domain.to_owned(),
                what: why,
            }],
        };
        let same = DomainSpec::parse("%{d}").map_err(|e| SpfError::new(ErrorKind::PermError, e))?;
        match &directive.mechanism {
            Mechanism::All => Ok(Matches {
                known: PrefixSet::everything(),
                unlisted: Vec::new(),
            }),
            Mechanism::Ip4(net) => Ok(known(PrefixSet::of(IpNet::V4(*net)))),
            Mechanism::Ip6(net) => Ok(known(PrefixSet::of(IpNet::V6(*net)))),
            Mechanism::Ptr(_) if !self.online => Ok(unlisted(self.unlisted_why(&same))),
            Mechanism::Ptr(_) => Ok(unlisted(
                "matches senders by their reverse DNS, which no list can hold".into(),
            )),
            Mechanism::A(spec, cidr) | Mechanism::Mx(spec, cidr) => {
                let spec = spec.as_ref().unwrap_or(&same);
                let Some(name) = self.target(spec, domain, term)? else {
                    return Ok(unlisted(self.unlisted_why(spec)));
                };
                let is_mx = matches!(directive.mechanism, Mechanism::Mx(..));
                self.addresses_of(term, domain, &name, *cidr, is_mx)
                    .map(known)
            }
            Mechanism::Exists(spec) => {
                let Some(name) = self.target(spec, domain, term)? else {
                    return Ok(unlisted(self.unlisted_why(spec)));
                };
                // Without a sender macro the name is fixed: it matches every
                // sender, or none.
                match self.dns.a(&name) {
                    Ok(found) if !found.is_empty() => Ok(known(PrefixSet::everything())),
                    Ok(_) | Err(DnsError::NxDomain) => {
                        self.void(&[V4, V6], term, domain, format!("{term} (no A)"))?;
                        Ok(Matches::default())
                    }
                    Err(DnsError::Failed(why)) => {
                        Err(temp(term, domain, format!("A {name}: {why}")))
                    }
                }
            }
            Mechanism::Include(spec) => {
                let Some(name) = self.target(spec, domain, term)? else {
                    return Ok(unlisted(self.unlisted_why(spec)));
                };
                let result = self.check_host(&name, path).map_err(|e| match e.kind {
                    // RFC 7208 5.2: an include of a domain without a record is a permerror.
                    ErrorKind::NoRecord => SpfError::new(
                        ErrorKind::PermError,
                        format!("`{term}` in {domain}: {}", e.message),
                    ),
                    _ => e,
                })?;
                Ok(Matches {
                    known: result.pass,
                    unlisted: result.unlisted,
                })
            }
        }
    }

    /// The prefixes of `a` (the addresses of `name`) or `mx` (of its MX
    /// hosts), for `term` in `domain`'s record.
    fn addresses_of(
        &mut self,
        term: &str,
        domain: &str,
        name: &str,
        cidr: DualCidr,
        mx: bool,
    ) -> Result<PrefixSet, SpfError> {
        let hosts = if mx {
            let hosts = match self.dns.mx(name) {
                Ok(hosts) => hosts,
                Err(DnsError::NxDomain) => Vec::new(),
                Err(DnsError::Failed(why)) => {
                    return Err(temp(term, name, format!("MX {name}: {why}")));
                }
            };
            if hosts.is_empty() {
                self.void(&[V4, V6], term, domain, format!("{term} (no MX)"))?;
            }
            if hosts.len() > MX_LIMIT {
                return Err(SpfError::new(
                    ErrorKind::PermError,
                    format!(
                        "`{term}`: {name} has {} MX records, more than {MX_LIMIT} (RFC 7208 4.6.4)",
                        hosts.len()
                    ),
                ));
            }
            hosts
        } else {
            vec![name.to_owned()]
        };
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for host in hosts.iter().filter(|h| !h.is_empty() && *h != ".") {
            let host = host.trim_end_matches('.');
            let a = match self.dns.a(host) {
                Ok(found) => found,
                Err(DnsError::NxDomain) => Vec::new(),
                Err(DnsError::Failed(why)) => {
                    return Err(temp(term, name, format!("A {host}: {why}")));
                }
            };
            let aaaa = match self.dns.aaaa(host) {
                Ok(found) => found,
                Err(DnsError::NxDomain) => Vec::new(),
                Err(DnsError::Failed(why)) => {
                    return Err(temp(term, name, format!("AAAA {host}: {why}")));
                }
            };
            if !mx && a.is_empty() {
                self.void(&[V4], term, domain, format!("{term} (no A)"))?;
            }
            if !mx && aaaa.is_empty() {
                self.void(&[V6], term, domain, format!("{term} (no AAAA)"))?;
            }
            v4.extend(
                a.into_iter()
                    .filter_map(|addr| Ipv4Net::new(addr, cidr.v4).ok()),
            );
            v6.extend(
                aaaa.into_iter()
                    .filter_map(|addr| Ipv6Net::new(addr, cidr.v6).ok()),
            );
        }
        let v4 = v4.into_iter().map(|n| n.trunc()).collect();
        let v6 = v6.into_iter().map(|n| n.trunc()).collect();
        Ok(PrefixSet::new(v4, v6))
    }
}

fn known(set: PrefixSet) -> Matches {
    Matches {
        known: set,
        unlisted: Vec::new(),
    }
}

fn temp(term: &str, domain: &str, what: String) -> SpfError {
    SpfError::new(
        ErrorKind::TempError,
        format!("`{term}` for {domain}: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spf::dns::{Entry, MemoryDns};

    /// A zone from `(name, "TYPE data")` lines.
    fn zone(lines: &[(&str, &str)]) -> MemoryDns {
        let mut z = MemoryDns::new();
        for (name, line) in lines {
            let (kind, data) = line.split_once(' ').unwrap_or((line, ""));
            let entry = match kind {
                "TXT" => Entry::Txt(data.to_owned()),
                "A" => Entry::A(data.parse().unwrap()),
                "AAAA" => Entry::Aaaa(data.parse().unwrap()),
                "MX" => Entry::Mx(data.to_owned()),
                "CNAME" => Entry::Cname(data.to_owned()),
                "TIMEOUT" => Entry::Timeout,
                _ => panic!("{line}"),
            };
            z.add(name, entry);
        }
        z
    }

    fn run(lines: &[(&str, &str)], domain: &str) -> Result<Flattened, SpfError> {
        flatten(&mut zone(lines), domain, Limits::default())
    }

    fn record(text: &str) -> Result<Flattened, SpfError> {
        run(&[("ex.test", &format!("TXT {text}"))], "ex.test")
    }

    fn pass(f: &Flattened) -> Vec<String> {
        f.pass
            .v4()
            .iter()
            .map(ToString::to_string)
            .chain(f.pass.v6().iter().map(ToString::to_string))
            .collect()
    }

    fn failure(result: Result<Flattened, SpfError>) -> SpfError {
        match result {
            Ok(f) => panic!("flattened to {:?}", pass(&f)),
            Err(e) => e,
        }
    }

    fn permerror(text: &str) -> String {
        let e = failure(record(text));
        assert_eq!(e.kind, ErrorKind::PermError, "{text}: {e}");
        e.message
    }

    #[test]
    fn terms_separated_by_anything_but_spaces_are_a_permerror() {
        // Point 1: the `a:` address must not be allowed.
        let lines = [
            ("ctrl.test", "TXT v=spf1 a:ctrl.test\rptr -all"),
            ("ctrl.test", "A 192.0.2.3"),
        ];
        let e = failure(run(&lines, "ctrl.test"));
        assert_eq!(e.kind, ErrorKind::PermError, "{e}");
        assert!(e.message.contains("'\\r' is not allowed"), "{e}");
        assert_eq!(
            pass(&record("v=spf1 ip4:192.0.2.5  -all ").unwrap()),
            ["192.0.2.5/32"]
        );
    }

    #[test]
    fn a_leading_zero_in_a_prefix_length_is_a_permerror() {
        // Point 2.
        assert!(permerror("v=spf1 ip4:1.2.3.4/032 -all").contains("leading zeros"));
        assert!(permerror("v=spf1 a:mail.ex.test/024").contains("leading zeros"));
    }

    #[test]
    fn unknown_modifiers_are_ignored() {
        // Point 3.
        let f = record("v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 default=pass -all").unwrap();
        assert_eq!(pass(&f), ["1.2.3.4/32"]);
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
        assert!(permerror("v=spf1 ip4:1.2.3.4 foo=%abc").contains("must be followed"));
    }

    #[test]
    fn domain_specs_may_hold_colons_and_slashes() {
        // Point 4: the prefix length is the last `/…`.
        let lines = [
            (
                "ex.test",
                "TXT v=spf1 a:foo:bar/baz.ex.test mx:foo:bar/baz.ex.test/24 -all",
            ),
            ("foo:bar/baz.ex.test", "A 192.0.2.4"),
            ("foo:bar/baz.ex.test", "MX mx.ex.test"),
            ("mx.ex.test", "A 198.51.100.9"),
        ];
        assert_eq!(
            pass(&run(&lines, "ex.test").unwrap()),
            ["192.0.2.4/32", "198.51.100.0/24"]
        );
        assert!(permerror("v=spf1 a:ex.test:8080").contains("top-level label"));
    }

    #[test]
    fn records_checkers_reject_are_a_permerror() {
        // Point 5.
        for (text, why) in [
            ("v=spf1 a: -all", "empty"),
            ("v=spf1 mx: -all", "empty"),
            ("v=spf1 exists: -all", "empty"),
            ("v=spf1 include: -all", "empty"),
            ("v=spf1 -all.", "unknown mechanism"),
            ("v=spf1 ptr/0 -all", "needs `:`"),
            ("v=spf1 exp=a.ex.test -all exp=b.ex.test", "more than once"),
            (
                "v=spf1 redirect=a.ex.test redirect=a.ex.test",
                "more than once",
            ),
            ("v=spf1 exists:%(ir).bl.ex.test -all", "must be followed"),
            ("v=spf1 a:%{x}.ex.test -all", "not a macro letter"),
            ("v=spf1 -all exp=%{r}.ex.test", "explanation"),
            ("v=spf1 a:111.222.33.44 -all", "all digits"),
            ("v=spf1 a:ex.123", "all digits"),
            ("v=spf1 a:museum", "does not end"),
            ("v=spf1 ip4:192.0.2.1 redirect:other.test", "is a modifier"),
            ("v=spf1 ip4:192.0.2.1 ip6", "needs `:`"),
        ] {
            let e = permerror(text);
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn more_than_ten_mx_names_is_a_permerror() {
        let mut lines = vec![
            ("ex.test", "TXT v=spf1 mx -all"),
            ("mx.ex.test", "A 192.0.2.1"),
        ];
        lines.extend([("ex.test", "MX mx.ex.test"); 11]);
        let e = failure(run(&lines, "ex.test"));
        assert_eq!(e.kind, ErrorKind::PermError);
        assert!(e.message.contains("11 MX records, more than 10"), "{e}");
        lines.pop();
        assert_eq!(pass(&run(&lines, "ex.test").unwrap()), ["192.0.2.1/32"]);
    }

    #[test]
    fn more_than_two_void_lookups_is_a_permerror() {
        let two = [(
            "ex.test",
            "TXT v=spf1 a:no1.ex.test mx:no2.ex.test ip4:192.0.2.1 ?all",
        )];
        assert_eq!(pass(&run(&two, "ex.test").unwrap()), ["192.0.2.1/32"]);
        let three = [(
            "ex.test",
            "TXT v=spf1 a:no1.ex.test mx:no2.ex.test exists:no3.ex.test ip4:192.0.2.1 ?all",
        )];
        let e = failure(run(&three, "ex.test"));
        assert_eq!(e.kind, ErrorKind::PermError);
        assert!(e.message.contains("more than 2 void lookups"), "{e}");
        // Per family: three hosts without AAAA are three voids for IPv6
        // senders, none for IPv4 senders (the RFC 7208 suite's
        // mech-at-limit): IPv6 senders get a permerror, so none of them is
        // allowlisted; IPv4 senders pass as a checker passes them.
        let v4_only = [
            (
                "ex.test",
                "TXT v=spf1 ip6:2001:db8::/32 a:h1.ex.test a:h2.ex.test a:h3.ex.test -all",
            ),
            ("h1.ex.test", "A 192.0.2.1"),
            ("h2.ex.test", "A 192.0.2.2"),
            ("h3.ex.test", "A 192.0.2.3"),
        ];
        let f = run(&v4_only, "ex.test").unwrap();
        assert_eq!(pass(&f), ["192.0.2.1/32", "192.0.2.2/31"]);
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        let w = f.warnings[0].to_string();
        assert!(
            w.starts_with(
                "`a:h3.ex.test` in ex.test makes more than 2 void lookups for IPv6 senders"
            ) && w.contains("none is allowlisted"),
            "{w}"
        );
        // Over the limit for both families: the walk fails.
        let both = [
            (
                "ex.test",
                "TXT v=spf1 a:h1.ex.test a:h2.ex.test a:h3.ex.test a:h4.ex.test ip4:192.0.2.9",
            ),
            ("h1.ex.test", "A 192.0.2.1"),
            ("h2.ex.test", "A 192.0.2.2"),
            ("h3.ex.test", "A 192.0.2.3"),
            ("h4.ex.test", "AAAA 2001:db8::4"),
        ];
        let f = run(&both, "ex.test").unwrap();
        assert!(f.pass.v6().is_empty(), "{:?}", pass(&f));
        let both = [
            (
                "ex.test",
                "TXT v=spf1 a:h1.ex.test a:h2.ex.test a:h3.ex.test mx:h1.ex.test mx:h1.ex.test mx:h1.ex.test",
            ),
            ("h1.ex.test", "A 192.0.2.1"),
            ("h2.ex.test", "A 192.0.2.2"),
            ("h3.ex.test", "A 192.0.2.3"),
        ];
        let e = failure(run(&both, "ex.test"));
        assert_eq!(e.kind, ErrorKind::PermError);
        assert!(e.message.contains("for IPv4 senders"), "{e}");
    }

    #[test]
    fn a_failing_term_takes_its_addresses_out_of_later_terms() {
        // Point 6.
        let f = record("v=spf1 -ip4:192.0.2.66 ip4:192.0.2.0/24 -all").unwrap();
        assert!(!f.pass.contains("192.0.2.66".parse().unwrap()));
        assert!(f.pass.contains("192.0.2.65".parse().unwrap()));
        assert!(f.pass.contains("192.0.2.67".parse().unwrap()));
        // ~ and ? too; a pass before them stays.
        let f = record("v=spf1 ip4:192.0.2.1 ~ip4:192.0.2.0/30 ?ip6:2001:db8::/64 ip4:192.0.2.0/29 ip6:2001:db8::/48").unwrap();
        assert_eq!(
            pass(&f),
            [
                "192.0.2.1/32",
                "192.0.2.4/30",
                "2001:db8:0:1::/64",
                "2001:db8:0:2::/63",
                "2001:db8:0:4::/62",
                "2001:db8:0:8::/61",
                "2001:db8:0:10::/60",
                "2001:db8:0:20::/59",
                "2001:db8:0:40::/58",
                "2001:db8:0:80::/57",
                "2001:db8:0:100::/56",
                "2001:db8:0:200::/55",
                "2001:db8:0:400::/54",
                "2001:db8:0:800::/53",
                "2001:db8:0:1000::/52",
                "2001:db8:0:2000::/51",
                "2001:db8:0:4000::/50",
                "2001:db8:0:8000::/49"
            ]
        );
        // Nothing after `all` is reached.
        assert_eq!(
            pass(&record("v=spf1 ip4:192.0.2.1 ~all ip4:198.51.100.0/24").unwrap()),
            ["192.0.2.1/32"]
        );
    }

    #[test]
    fn an_include_matches_only_on_its_pass_set() {
        let lines = [
            (
                "ex.test",
                "TXT v=spf1 include:inc.ex.test ip4:192.0.2.0/24 -all",
            ),
            // The include fails .66 (no match in ex.test: .66 passes there) and
            // passes .1 and 198.51.100.0/24 minus .7.
            (
                "inc.ex.test",
                "TXT v=spf1 -ip4:192.0.2.66 -ip4:198.51.100.7 ip4:198.51.100.0/24 ip4:192.0.2.1 ?all",
            ),
        ];
        let f = run(&lines, "ex.test").unwrap();
        for (host, passes) in [
            ("192.0.2.66", true),
            ("192.0.2.1", true),
            ("198.51.100.7", false),
            ("198.51.100.8", true),
            ("203.0.113.1", false),
        ] {
            assert_eq!(f.pass.contains(host.parse().unwrap()), passes, "{host}");
        }
        // A failing include takes the included pass set out of later terms.
        let lines = [
            (
                "ex.test",
                "TXT v=spf1 -include:inc.ex.test ip4:192.0.2.0/24",
            ),
            ("inc.ex.test", "TXT v=spf1 ip4:192.0.2.128/25 -all"),
        ];
        assert_eq!(pass(&run(&lines, "ex.test").unwrap()), ["192.0.2.0/25"]);
    }

    #[test]
    fn a_redirect_applies_only_where_no_mechanism_matched() {
        let lines = [
            (
                "ex.test",
                "TXT v=spf1 -ip4:192.0.2.66 ip4:198.51.100.0/24 redirect=red.ex.test",
            ),
            (
                "red.ex.test",
                "TXT v=spf1 -ip4:192.0.2.1 ip4:192.0.2.0/24 ip4:198.51.100.0/23 -all",
            ),
        ];
        let f = run(&lines, "ex.test").unwrap();
        for (host, passes) in [
            ("192.0.2.66", false), // failed before the redirect
            ("192.0.2.1", false),  // failed by the target
            ("192.0.2.2", true),
            ("198.51.100.1", true),
            ("198.51.101.1", true),
        ] {
            assert_eq!(f.pass.contains(host.parse().unwrap()), passes, "{host}");
        }
        // After `all`, a redirect is never used, not even looked up.
        let f = run(
            &[("ex.test", "TXT v=spf1 redirect=ex.test ip4:192.0.2.1 ~all")],
            "ex.test",
        )
        .unwrap();
        assert_eq!((pass(&f), f.lookups), (vec!["192.0.2.1/32".to_owned()], 0));
        // A redirect to a domain without a record is a permerror.
        let e = failure(run(
            &[("ex.test", "TXT v=spf1 redirect=none.ex.test")],
            "ex.test",
        ));
        assert_eq!(e.kind, ErrorKind::PermError, "{e}");
    }

    #[test]
    fn all_and_slash_zero_that_pass_are_refused() {
        for text in [
            "v=spf1 +all",
            "v=spf1 ip4:192.0.2.1 all",
            "v=spf1 -ip4:192.0.2.1 ip4:0.0.0.0/0",
            "v=spf1 ip6:::/0 -all",
            "v=spf1 ip4:0.0.0.0/1 ip4:128.0.0.0/1",
        ] {
            let e = failure(record(text));
            assert_eq!(e.kind, ErrorKind::Everything, "{text}: {e}");
        }
        // `a/0` passes every IPv4 sender once the host has an address.
        let lines = [
            ("ex.test", "TXT v=spf1 a/0 -all"),
            ("ex.test", "A 192.0.2.1"),
        ];
        assert_eq!(failure(run(&lines, "ex.test")).kind, ErrorKind::Everything);
        // Failing everything is fine.
        assert!(
            record("v=spf1 -ip4:0.0.0.0/0 ip6:2001:db8::/32")
                .unwrap()
                .pass
                .v4()
                .is_empty()
        );
    }

    #[test]
    fn an_unlisted_term_that_passes_is_reported_once() {
        // Point 7, allow direction.
        let lines = [
            (
                "ex.test",
                "TXT v=spf1 ptr:ex.test include:inc.ex.test include:inc.ex.test ip4:192.0.2.0/24 -all",
            ),
            (
                "inc.ex.test",
                "TXT v=spf1 exists:%{i}.allow.ex.test a:%{l}.ex.test",
            ),
        ];
        let f = run(&lines, "ex.test").unwrap();
        assert_eq!(pass(&f), ["192.0.2.0/24"]);
        let w: Vec<String> = f.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(w[0].starts_with("`ptr:ex.test` in ex.test matches senders by their reverse DNS"));
        assert!(w[1].starts_with(
            "`exists:%{i}.allow.ex.test` in inc.ex.test depends on the sender (macro %{i})"
        ));
        assert!(w[2].contains("`a:%{l}.ex.test` in inc.ex.test"));
        assert!(
            w.iter()
                .all(|w| w.ends_with("senders it passes are not allowlisted"))
        );
    }

    #[test]
    fn an_unlisted_term_that_could_deny_a_later_pass_is_refused() {
        // Point 7, deny direction.
        let text = "TXT v=spf1 -exists:%{i}.bl.ex.test ip4:192.0.2.0/24 -all";
        let lines = [("ex.test", text)];
        let e = failure(run(&lines, "ex.test"));
        assert_eq!(e.kind, ErrorKind::Unenumerable);
        assert!(
            e.message
                .starts_with("`-exists:%{i}.bl.ex.test` in ex.test depends on the sender"),
            "{e}"
        );
        assert!(
            e.message.contains("the later `ip4:192.0.2.0/24` passes"),
            "{e}"
        );
        // Asked to, it flattens anyway and says so.
        let allow = Limits {
            allow_unenumerable: true,
            ..Limits::default()
        };
        let f = flatten(&mut zone(&lines), "ex.test", allow).unwrap();
        assert_eq!(pass(&f), ["192.0.2.0/24"]);
        assert!(
            f.warnings[0]
                .what
                .contains("flattened past it (--spf-allow-unenumerable)"),
            "{:?}",
            f.warnings
        );
        // Nothing passing after it: nothing to refuse.
        let f = record("v=spf1 ip4:192.0.2.1 -ptr ~exists:%{i}.bl.ex.test ?all").unwrap();
        assert_eq!(pass(&f), ["192.0.2.1/32"]);
        assert!(f.warnings.is_empty());
        // Through an include (its unlisted pass is a deny here) and a redirect.
        let lines = [
            (
                "ex.test",
                "TXT v=spf1 ~include:inc.ex.test redirect=red.ex.test",
            ),
            ("inc.ex.test", "TXT v=spf1 ptr"),
            ("red.ex.test", "TXT v=spf1 ip4:192.0.2.0/24 -all"),
        ];
        let e = failure(run(&lines, "ex.test"));
        assert_eq!(e.kind, ErrorKind::Unenumerable, "{e}");
        assert!(
            e.message
                .contains("`~include:inc.ex.test` in ex.test matches through `ptr` in inc.ex.test"),
            "{e}"
        );
        assert!(e.message.contains("later `redirect=red.ex.test`"), "{e}");
    }

    #[test]
    fn the_domain_macro_expands() {
        let lines = [
            (
                "ex.test",
                "TXT v=spf1 include:_spf.%{d} redirect=%{d1}.%{d}",
            ),
            ("_spf.ex.test", "TXT v=spf1 ip4:192.0.2.1"),
            (
                "test.ex.test",
                "TXT v=spf1 exists:%{d2}.ok ip6:2001:db8::/32",
            ),
        ];
        // exists:ex.test.ok does not exist: it matches nobody.
        let f = run(&lines, "ex.test").unwrap();
        assert_eq!(pass(&f), ["192.0.2.1/32", "2001:db8::/32"]);
    }

    #[test]
    fn a_fixed_exists_matches_everyone_or_nobody() {
        let lines = [
            ("ex.test", "TXT v=spf1 -exists:on.ex.test ip4:192.0.2.1"),
            ("on.ex.test", "A 127.0.0.2"),
        ];
        assert!(run(&lines, "ex.test").unwrap().pass.is_empty());
        let lines = [
            ("ex.test", "TXT v=spf1 exists:on.ex.test"),
            ("on.ex.test", "A 127.0.0.2"),
        ];
        assert_eq!(failure(run(&lines, "ex.test")).kind, ErrorKind::Everything);
    }

    #[test]
    fn loops_limits_and_dns_failures_fail_the_walk() {
        let loop_ = [
            ("a.test", "TXT v=spf1 ip4:192.0.2.1 include:b.test"),
            ("b.test", "TXT v=spf1 redirect=a.test"),
        ];
        let e = failure(run(&loop_, "a.test"));
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::PermError, "loop: a.test → b.test → a.test")
        );
        // Reached twice without a cycle is fine.
        let diamond = [
            ("a.test", "TXT v=spf1 include:b.test include:c.test"),
            ("b.test", "TXT v=spf1 include:c.test"),
            ("c.test", "TXT v=spf1 ip4:192.0.2.1"),
        ];
        assert_eq!(pass(&run(&diamond, "a.test").unwrap()), ["192.0.2.1/32"]);
        // Eleven DNS-querying terms.
        let many = format!("TXT v=spf1 {}ip4:192.0.2.1", "a:h.ex.test ".repeat(11));
        let lines = [
            ("ex.test", many.as_str()),
            ("h.ex.test", "A 192.0.2.9"),
            ("h.ex.test", "AAAA 2001:db8::9"),
        ];
        let e = failure(run(&lines, "ex.test"));
        assert!(e.message.contains("more than 10 DNS-querying terms"), "{e}");
        // Unlisted terms count too.
        let e = failure(record(&format!("v=spf1 {}-all", "ptr ".repeat(11))));
        assert!(e.message.contains("more than 10 DNS-querying terms"), "{e}");
        // A time-out anywhere, even behind a passing term.
        let lines = [
            ("ex.test", "TXT v=spf1 ip4:192.0.2.1 a:slow.ex.test -all"),
            ("slow.ex.test", "TIMEOUT"),
        ];
        let e = failure(run(&lines, "ex.test"));
        assert_eq!(e.kind, ErrorKind::TempError, "{e}");
        let lines = [
            ("ex.test", "TXT v=spf1 include:slow.ex.test"),
            ("slow.ex.test", "TIMEOUT"),
        ];
        assert_eq!(failure(run(&lines, "ex.test")).kind, ErrorKind::TempError);
        // No record: none at the top, a permerror through include.
        assert_eq!(failure(run(&[], "ex.test")).kind, ErrorKind::NoRecord);
        let lines = [
            ("ex.test", "TXT v=spf1 include:no.ex.test"),
            ("no.ex.test", "TXT hello"),
        ];
        let e = failure(run(&lines, "ex.test"));
        assert_eq!(e.kind, ErrorKind::PermError, "{e}");
        assert!(e.message.contains("no.ex.test has no SPF record"), "{e}");
        // Two SPF records.
        let lines = [
            ("ex.test", "TXT v=spf1 -all"),
            ("ex.test", "TXT V=SPF1 +all"),
        ];
        assert_eq!(failure(run(&lines, "ex.test")).kind, ErrorKind::PermError);
    }

    #[test]
    fn a_and_mx_use_their_prefix_lengths_and_follow_cnames() {
        let lines = [
            ("ex.test", "TXT v=spf1 a/24//64 mx:alias.ex.test -all"),
            ("ex.test", "A 192.0.2.77"),
            ("ex.test", "AAAA 2001:db8:1:2::3"),
            ("alias.ex.test", "CNAME real.ex.test"),
            ("real.ex.test", "MX mx1.ex.test"),
            ("real.ex.test", "MX mx2.ex.test"),
            ("mx1.ex.test", "A 198.51.100.1"),
            ("mx2.ex.test", "AAAA 2001:db8:ff::1"),
        ];
        assert_eq!(
            pass(&run(&lines, "ex.test").unwrap()),
            [
                "192.0.2.0/24",
                "198.51.100.1/32",
                "2001:db8:1:2::/64",
                "2001:db8:ff::1/128"
            ]
        );
    }

    #[test]
    fn a_pasted_record_takes_what_it_can_in_order() {
        let f = flatten_offline(
            "v=spf1 -ip4:192.0.2.66 ip4:192.0.2.0/24 include:_spf.ex.test a mx ~all",
            Limits::default(),
        )
        .unwrap();
        assert!(!f.pass.contains("192.0.2.66".parse().unwrap()));
        assert_eq!(f.warnings.len(), 3, "{:?}", f.warnings);
        assert!(
            f.warnings[0].what.contains("a range file cannot follow"),
            "{:?}",
            f.warnings
        );
        let e = flatten_offline(
            "v=spf1 -include:_spf.ex.test ip4:192.0.2.0/24",
            Limits::default(),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unenumerable);
        assert_eq!(
            flatten_offline("v=spf1 +all", Limits::default())
                .unwrap_err()
                .kind,
            ErrorKind::Everything
        );
        assert_eq!(
            flatten_offline("v=spf1 ip4:1.2.3.4/032", Limits::default())
                .unwrap_err()
                .kind,
            ErrorKind::PermError
        );
    }
}
