//! `mxgate doctor`: which service a domain's MX records point at, the range
//! source to use for it ([`providers`]), and what would make enforcing
//! refuse real mail — no MX at a known service, or this host preferred to
//! the service.
//!
//! Data flows one way: DNS ([`lookup`]: the MX records and their
//! addresses, through the same DNS client as `spf:` sources) and this
//! host's addresses ([`local_addresses`]) → [`diagnose`] (plain data,
//! unit-tested) → [`Diagnosis::text`] or JSON, in one place.

pub mod providers;

use std::{fmt::Write as _, net::IpAddr};

use serde::Serialize;

use self::providers::Providers;
use crate::spf::{
    SpfOptions,
    dns::HickoryDns,
    flatten::{Dns as _, DnsError},
};

/// One MX record of a domain, with its exchange's addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxRecord {
    /// Its preference (lower is tried first).
    pub preference: u16,
    /// The exchange host, without the final dot (empty: a null MX).
    pub exchange: String,
    /// The exchange's addresses.
    pub addresses: Vec<IpAddr>,
    /// Why its addresses could not be looked up, if they could not.
    pub address_error: Option<String>,
}

/// What an MX host is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Role {
    /// A hosted service of the table.
    Service {
        /// The service's name.
        provider: String,
        /// The source to use, if the MX tells.
        source: Option<String>,
        /// Where the service documents it.
        docs: Vec<String>,
        /// What else to know.
        note: Option<String>,
    },
    /// This host: one of its addresses is on an interface here.
    ThisHost,
    /// Neither.
    Unknown,
    /// A null MX (`0 .`): the domain takes no mail.
    NullMx,
}

/// One MX record, judged.
#[derive(Clone, Debug, Serialize)]
pub struct MxReport {
    /// Its preference.
    pub preference: u16,
    /// The exchange host.
    pub exchange: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// What it is.
    pub role: Role,
}

/// One domain, judged.
#[derive(Clone, Debug, Serialize)]
pub struct DomainReport {
    /// The domain.
    pub domain: String,
    /// Its MX records, by preference.
    pub mx: Vec<MxReport>,
    /// What would make enforcing refuse real mail (each one exits 3).
    pub problems: Vec<String>,
    /// What to look at.
    pub warnings: Vec<String>,
    /// What is as expected, and worth knowing.
    pub notes: Vec<String>,
}

/// Every domain, and the sources they call for.
#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    /// Each domain.
    pub domains: Vec<DomainReport>,
    /// The sources to use, in the order first proposed.
    pub sources: Vec<String>,
}

impl Diagnosis {
    /// Judges each domain's records (see [`diagnose`]).
    pub fn new(domains: Vec<DomainReport>) -> Self {
        let mut sources: Vec<String> = Vec::new();
        for d in &domains {
            for mx in &d.mx {
                if let Role::Service {
                    source: Some(s), ..
                } = &mx.role
                    && !sources.contains(s)
                {
                    sources.push(s.clone());
                }
            }
        }
        Self { domains, sources }
    }

    /// True when a domain has a problem: enforcing would refuse real mail.
    pub fn has_problems(&self) -> bool {
        self.domains.iter().any(|d| !d.problems.is_empty())
    }

    /// The diagnosis for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut cited: Vec<(&str, &[String], Option<&String>)> = Vec::new();
        for d in &self.domains {
            let _ = writeln!(out, "{}:", d.domain);
            if d.mx.is_empty() {
                let _ = writeln!(out, "  no MX record");
            }
            for mx in &d.mx {
                let addresses = if mx.addresses.is_empty() {
                    String::new()
                } else {
                    let a: Vec<String> = mx.addresses.iter().map(ToString::to_string).collect();
                    format!(" ({})", a.join(", "))
                };
                let role = match &mx.role {
                    Role::Service {
                        provider,
                        source,
                        docs,
                        note,
                    } => {
                        if !cited.iter().any(|(p, _, _)| p == provider) {
                            cited.push((provider, docs, note.as_ref()));
                        }
                        match source {
                            Some(s) => format!("{provider}: {s}"),
                            None => format!("{provider}: no source to read from this MX"),
                        }
                    }
                    Role::ThisHost => "this host".to_owned(),
                    Role::Unknown => "not a service mxgate knows, not this host".to_owned(),
                    Role::NullMx => "null MX: the domain takes no mail".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "  MX {:>3} {}{addresses} → {role}",
                    mx.preference, mx.exchange
                );
            }
            for n in &d.notes {
                let _ = writeln!(out, "  note: {n}");
            }
            for w in &d.warnings {
                let _ = writeln!(out, "  warning: {w}");
            }
            for p in &d.problems {
                let _ = writeln!(out, "  PROBLEM: {p}");
            }
        }
        let _ = writeln!(out);
        if self.sources.is_empty() {
            let _ = writeln!(out, "sources: none to propose");
        } else {
            let _ = writeln!(out, "sources: {}", self.sources.join(" "));
        }
        for (provider, docs, note) in cited {
            let _ = writeln!(out, "  {provider}:");
            for doc in docs {
                let _ = writeln!(out, "    documented in: {doc}");
            }
            if let Some(note) = note {
                let _ = writeln!(out, "    note: {note}");
            }
        }
        out
    }
}

/// Judges `domain`'s MX `records` against `table`, with `local` this
/// host's addresses.
pub fn diagnose(
    domain: &str,
    mut records: Vec<MxRecord>,
    local: &[IpAddr],
    table: &Providers,
) -> DomainReport {
    records.sort_by(|a, b| (a.preference, &a.exchange).cmp(&(b.preference, &b.exchange)));
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    let mut mx = Vec::new();
    for r in records {
        let role = if r.exchange.is_empty() {
            Role::NullMx
        } else if let Some(found) = table.find(&r.exchange) {
            Role::Service {
                provider: found.provider.name.clone(),
                source: found.source,
                docs: found.provider.docs.clone(),
                note: found.provider.note.clone(),
            }
        } else if r.addresses.iter().any(|a| local.contains(a)) {
            Role::ThisHost
        } else {
            Role::Unknown
        };
        if let Some(e) = &r.address_error
            && role != Role::NullMx
        {
            warnings.push(format!(
                "the addresses of {} could not be looked up ({e}): whether it is this host is \
                 not known",
                r.exchange
            ));
        }
        mx.push(MxReport {
            preference: r.preference,
            exchange: r.exchange,
            addresses: r.addresses,
            role,
        });
    }
    let best_service = mx
        .iter()
        .filter(|m| matches!(m.role, Role::Service { .. }))
        .map(|m| m.preference)
        .min();
    match best_service {
        None if mx.is_empty() => problems.push(format!(
            "{domain} has no MX record: senders deliver to its own address, not through a \
             service, and enforcing would refuse them all"
        )),
        None if mx.iter().all(|m| m.role == Role::NullMx) => problems.push(format!(
            "{domain} publishes a null MX: it takes no mail, so there is no service to allow"
        )),
        None => problems.push(format!(
            "no MX of {domain} points at a service mxgate knows: enforcing would refuse the \
             mail its MX hosts deliver (a service not in the table? give its ranges to \
             --ranges yourself, and audit the logs first)"
        )),
        Some(best) => {
            for m in &mx {
                match &m.role {
                    Role::ThisHost if m.preference <= best => problems.push(format!(
                        "this host is MX {} ({}), preferred to the service's MX {best} or \
                         equal to it: senders deliver here directly, and enforcing would \
                         refuse them; make it a lower priority (a higher number) or remove it",
                        m.preference, m.exchange
                    )),
                    Role::ThisHost => notes.push(format!(
                        "this host is MX {} ({}), after the service: the path spammers take \
                         around the service, which mxgate closes; expected, and no sender \
                         that follows the MX records uses it while the service answers",
                        m.preference, m.exchange
                    )),
                    Role::Unknown => warnings.push(format!(
                        "MX {} {} is neither a known service nor this host: if it relays mail \
                         here (a backup MX), enforcing refuses it unless its addresses are \
                         given with --allow",
                        m.preference, m.exchange
                    )),
                    Role::Service {
                        provider,
                        source: None,
                        note,
                        ..
                    } => problems.push(format!(
                        "{} is {provider}, whose source this MX does not tell{}",
                        m.exchange,
                        note.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
                    )),
                    _ => {}
                }
            }
        }
    }
    DomainReport {
        domain: domain.trim_end_matches('.').to_ascii_lowercase(),
        mx,
        problems,
        warnings,
        notes,
    }
}

/// Why a domain's MX records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The domain does not exist: a typing error, most likely.
    #[error("{0} does not exist (NXDOMAIN)")]
    NoSuchDomain(String),
    /// DNS did not answer.
    #[error("MX {domain}: {reason}")]
    Failed {
        /// The domain.
        domain: String,
        /// What DNS said.
        reason: String,
    },
}

/// The MX records of `domain` and their exchanges' addresses, from the
/// DNS servers `options` names (or the system's).
pub fn lookup(domain: &str, options: &SpfOptions) -> Result<Vec<MxRecord>, LookupError> {
    let failed = |reason: String| LookupError::Failed {
        domain: domain.to_owned(),
        reason,
    };
    let mut dns = HickoryDns::new(options).map_err(failed)?;
    let records = match dns.mx_records(domain) {
        Ok(r) => r,
        Err(DnsError::NxDomain) => return Err(LookupError::NoSuchDomain(domain.to_owned())),
        Err(DnsError::Failed(why)) => return Err(failed(why)),
    };
    Ok(records
        .into_iter()
        .map(|(preference, exchange)| {
            let mut addresses = Vec::new();
            let mut address_error = None;
            if !exchange.is_empty() {
                let mut errors = Vec::new();
                match dns.a(&exchange) {
                    Ok(a) => addresses.extend(a.into_iter().map(IpAddr::V4)),
                    Err(e) => errors.push(format!("A: {}", dns_error(&e))),
                }
                match dns.aaaa(&exchange) {
                    Ok(a) => addresses.extend(a.into_iter().map(IpAddr::V6)),
                    Err(e) => errors.push(format!("AAAA: {}", dns_error(&e))),
                }
                if addresses.is_empty() && !errors.is_empty() {
                    address_error = Some(errors.join(", "));
                }
            }
            MxRecord {
                preference,
                exchange,
                addresses,
                address_error,
            }
        })
        .collect())
}

fn dns_error(e: &DnsError) -> String {
    match e {
        DnsError::NxDomain => "no such name".to_owned(),
        DnsError::Failed(why) => why.clone(),
    }
}

/// This host's addresses: those of its interfaces (in its network
/// namespace). An address behind NAT is not among them.
pub fn local_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut addresses = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*entry };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr of the family it says.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                addresses.push(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                addresses.push(IpAddr::from(sin6.sin6_addr.s6_addr));
            }
        }
        entry = ifa.ifa_next;
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(addresses)
}

/// Checks that `text` is a domain name (letters, digits, hyphens; labels
/// of 1 to 63 characters; at least two labels).
pub fn check_domain(text: &str) -> Result<String, String> {
    let name = text.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    let valid = name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(name)
    } else {
        Err(format!("{text:?} is not a domain name (example.com)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(preference: u16, exchange: &str, addresses: &[&str]) -> MxRecord {
        MxRecord {
            preference,
            exchange: exchange.into(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            address_error: None,
        }
    }

    fn table() -> Providers {
        Providers::shipped().unwrap()
    }

    const HERE: &str = "198.51.100.25";

    fn local() -> Vec<IpAddr> {
        vec![HERE.parse().unwrap(), "127.0.0.1".parse().unwrap()]
    }

    #[test]
    fn a_service_first_and_this_host_after_it_is_the_expected_setup() {
        let d = diagnose(
            "Example.COM.",
            vec![
                record(20, "mail.example.com", &[HERE]),
                record(
                    10,
                    "example-com.mail.protection.outlook.com",
                    &["192.0.2.1"],
                ),
            ],
            &local(),
            &table(),
        );
        assert_eq!(d.domain, "example.com");
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.mx[0].preference, 10);
        assert!(
            matches!(&d.mx[0].role, Role::Service { source: Some(s), .. } if s == "m365:worldwide")
        );
        assert_eq!(d.mx[1].role, Role::ThisHost);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        assert!(
            d.notes[0].contains("the path spammers take"),
            "{:?}",
            d.notes
        );
        let all = Diagnosis::new(vec![d]);
        assert_eq!(all.sources, ["m365:worldwide"]);
        assert!(!all.has_problems());
        let text = all.text();
        assert!(text.contains("sources: m365:worldwide"), "{text}");
        assert!(
            text.contains("documented in: Microsoft 365 URLs and IP address ranges"),
            "{text}"
        );
    }

    #[test]
    fn what_would_refuse_real_mail_is_a_problem() {
        let t = table();
        for (records, problem) in [
            (vec![], "has no MX record"),
            (vec![record(0, "", &[])], "null MX"),
            (
                vec![record(10, "mx.isp.example", &["203.0.113.5"])],
                "no MX of example.com points at a service mxgate knows",
            ),
            (
                vec![
                    record(10, "aspmx.l.google.com", &["192.0.2.1"]),
                    record(10, "mail.example.com", &[HERE]),
                ],
                "this host is MX 10 (mail.example.com), preferred to the service's MX 10",
            ),
            (
                vec![record(10, "mx1-us1.ppe-hosted.com", &["192.0.2.1"])],
                "is Proofpoint, whose source this MX does not tell",
            ),
        ] {
            let d = diagnose("example.com", records.clone(), &local(), &t);
            assert!(
                d.problems.iter().any(|p| p.contains(problem)),
                "{records:?}: {:?}",
                d.problems
            );
            assert!(Diagnosis::new(vec![d]).has_problems());
        }
    }

    #[test]
    fn an_unknown_backup_mx_is_a_warning() {
        let d = diagnose(
            "example.com",
            vec![
                record(5, "smtp.google.com", &["192.0.2.1"]),
                record(50, "backup.isp.example", &["203.0.113.5"]),
            ],
            &local(),
            &table(),
        );
        assert!(d.problems.is_empty());
        assert!(
            d.warnings[0].contains("backup.isp.example is neither"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn domains_are_checked() {
        assert_eq!(check_domain("Example.COM."), Ok("example.com".into()));
        for bad in ["", "com", "a..b", "-a.b", "a b.c", "_spf.example.com"] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn this_host_has_loopback() {
        let here = local_addresses().unwrap();
        assert!(here.iter().any(IpAddr::is_loopback), "{here:?}");
    }
}
