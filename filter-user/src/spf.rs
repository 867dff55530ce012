//! `spf:DOMAIN` sources: the addresses a domain's SPF record authorises,
//! following `include:` and `redirect=` and resolving `a` and `mx`
//! (RFC 7208), turned into range-list lines.
//!
//! Only terms that pass (qualifier `+`, the default) contribute. `ptr` and
//! `exists` name no addresses: they count as DNS lookups and are reported.
//! A loop, more DNS-querying terms than the limit (RFC 7208 4.6.4: 10), a
//! failed query or the overall deadline fail the whole source: a partial
//! list must never reach the kernel.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hickory_resolver::{
    Resolver, TokioResolver,
    config::{NameServerConfig, ResolverConfig},
    name_server::TokioConnectionProvider,
    proto::xfer::Protocol,
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
        }
    }
}

/// Walks the SPF record of `domain` and returns range-list text: one
/// `ip4:`/`ip6:` line per authorised prefix, each commented with the record
/// it came from, and a comment per skipped term.
pub fn fetch(domain: &str, options: &SpfOptions) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a DNS client: {e}"))?;
    runtime.block_on(async {
        let resolver = resolver(options)?;
        tokio::time::timeout(
            options.deadline,
            walk(&resolver, domain, options.lookup_limit),
        )
        .await
        .map_err(|_| {
            format!(
                "no answer within the {} s deadline",
                options.deadline.as_secs()
            )
        })?
    })
}

fn resolver(options: &SpfOptions) -> Result<TokioResolver, String> {
    let mut builder = if options.servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| format!("reading /etc/resolv.conf: {e}"))?
    } else {
        let mut config = ResolverConfig::new();
        for server in &options.servers {
            config.add_name_server(NameServerConfig::new(*server, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(*server, Protocol::Tcp));
        }
        Resolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    let opts = builder.options_mut();
    opts.timeout = options.query_timeout;
    opts.attempts = 1;
    Ok(builder.build())
}

/// One record to evaluate, with the chain of records that led to it.
struct Pending {
    domain: String,
    path: Vec<String>,
}

async fn walk(resolver: &TokioResolver, top: &str, limit: u32) -> Result<String, String> {
    let mut out = String::new();
    let mut lookups = 0u32;
    let mut queue = vec![Pending {
        domain: normalise(top)?,
        path: Vec::new(),
    }];
    while let Some(Pending { domain, path }) = queue.pop() {
        if path.contains(&domain) {
            return Err(format!("loop: {} → {domain}", path.join(" → ")));
        }
        let record = spf_record(resolver, &domain).await?;
        let mut chain = path.clone();
        chain.push(domain.clone());
        let origin = chain.join(" → ");
        let mut redirect = None;
        let mut has_all = false;
        for term in record.split_whitespace().skip(1) {
            let (qualifier, mechanism) = match term.chars().next() {
                Some(q @ ('+' | '-' | '~' | '?')) => (q, &term[1..]),
                _ => ('+', term),
            };
            let lower = mechanism.to_ascii_lowercase();
            let (name, arg) = match lower.split_once([':', '=']) {
                Some((n, _)) => (n.to_owned(), Some(&mechanism[n.len() + 1..])),
                None => (lower.split('/').next().unwrap_or_default().to_owned(), None),
            };
            let queries = matches!(
                name.as_str(),
                "include" | "a" | "mx" | "ptr" | "exists" | "redirect"
            );
            if queries {
                lookups += 1;
                if lookups > limit {
                    return Err(format!(
                        "more than {limit} DNS-querying terms (RFC 7208 4.6.4), at {term:?} in {domain}"
                    ));
                }
            }
            if qualifier != '+' && name != "all" && name != "redirect" {
                out.push_str(&format!("# skipped {term} in {origin}: it does not pass\n"));
                continue;
            }
            match (name.as_str(), arg) {
                ("ip4" | "ip6", Some(_)) => out.push_str(&format!("{mechanism} # {origin}\n")),
                ("include", Some(target)) => queue.push(Pending {
                    domain: normalise(target)?,
                    path: chain.clone(),
                }),
                ("redirect", Some(target)) => redirect = Some(normalise(target)?),
                ("a" | "mx", _) => {
                    let (target, v4_len, v6_len) = a_or_mx_target(mechanism, &domain)?;
                    let hosts = if name == "mx" {
                        mx_hosts(resolver, &target).await?
                    } else {
                        vec![target.clone()]
                    };
                    for host in hosts {
                        for addr in addresses(resolver, &host).await? {
                            let len = if addr.is_ipv4() { v4_len } else { v6_len };
                            let family = if addr.is_ipv4() { "ip4" } else { "ip6" };
                            out.push_str(&format!(
                                "{family}:{addr}/{len} # {term} ({host}) in {origin}\n"
                            ));
                        }
                    }
                }
                ("all", None) => has_all = true,
                ("ptr" | "exists", _) => {
                    out.push_str(&format!(
                        "# skipped {term} in {origin}: it names no addresses\n"
                    ));
                }
                ("exp", Some(_)) => {}
                _ => return Err(format!("{domain}: cannot read SPF term {term:?}")),
            }
        }
        // RFC 7208 6.1: redirect applies only when no "all" matched.
        if let (Some(target), false) = (redirect, has_all) {
            queue.push(Pending {
                domain: target,
                path: chain,
            });
        }
    }
    Ok(out)
}

/// The one `v=spf1` TXT record of `domain`.
async fn spf_record(resolver: &TokioResolver, domain: &str) -> Result<String, String> {
    let answer = resolver
        .txt_lookup(format!("{domain}."))
        .await
        .map_err(|e| format!("TXT {domain}: {}", describe(&e)))?;
    let records: Vec<String> = answer
        .iter()
        .map(|txt| {
            // A long record comes as several strings, joined without spaces.
            txt.txt_data()
                .iter()
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<String>()
        })
        .filter(|r| {
            r.split_whitespace()
                .next()
                .is_some_and(|v| v.eq_ignore_ascii_case("v=spf1"))
        })
        .collect();
    match records.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("{domain} has no SPF record")),
        _ => Err(format!(
            "{domain} has {} SPF records (RFC 7208 4.5: permerror)",
            records.len()
        )),
    }
}

/// Target host and CIDR lengths of `a[:host][/len4][//len6]` or `mx…`.
fn a_or_mx_target(mechanism: &str, current: &str) -> Result<(String, u8, u8), String> {
    let rest = mechanism
        .split_once(':')
        .map(|(_, r)| r)
        .or_else(|| mechanism.find('/').map(|i| &mechanism[i..]))
        .unwrap_or("");
    let (host, lengths) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = if host.is_empty() {
        current.to_owned()
    } else {
        normalise(host)?
    };
    let (v4, v6) = match lengths.split_once("//") {
        Some((v4, v6)) => (v4, v6),
        None => (lengths, ""),
    };
    let parse = |text: &str, default: u8, max: u8| -> Result<u8, String> {
        let text = text.trim_start_matches('/');
        if text.is_empty() {
            return Ok(default);
        }
        text.parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("bad CIDR length in {mechanism:?}"))
    };
    Ok((host, parse(v4, 32, 32)?, parse(v6, 128, 128)?))
}

/// The exchanges of `domain`'s MX records (at most 10, RFC 7208 4.6.4).
async fn mx_hosts(resolver: &TokioResolver, domain: &str) -> Result<Vec<String>, String> {
    match resolver.mx_lookup(format!("{domain}.")).await {
        Ok(answer) => Ok(answer
            .iter()
            .take(10)
            .map(|mx| mx.exchange().to_utf8().trim_end_matches('.').to_owned())
            .collect()),
        Err(e) if e.is_no_records_found() && !e.is_nx_domain() => Ok(Vec::new()),
        Err(e) => Err(format!("MX {domain}: {}", describe(&e))),
    }
}

/// A and AAAA addresses of `host`; none is fine (a void lookup).
async fn addresses(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, String> {
    let name = format!("{host}.");
    let mut found = Vec::new();
    match resolver.ipv4_lookup(name.clone()).await {
        Ok(answer) => found.extend(answer.iter().map(|a| IpAddr::V4(a.0))),
        Err(e) if e.is_no_records_found() => {}
        Err(e) => return Err(format!("A {host}: {}", describe(&e))),
    }
    match resolver.ipv6_lookup(name).await {
        Ok(answer) => found.extend(answer.iter().map(|a| IpAddr::V6(a.0))),
        Err(e) if e.is_no_records_found() => {}
        Err(e) => return Err(format!("AAAA {host}: {}", describe(&e))),
    }
    Ok(found)
}

fn describe(e: &hickory_resolver::ResolveError) -> String {
    if e.is_nx_domain() {
        "no such domain (NXDOMAIN)".into()
    } else if e.is_no_records_found() {
        "no such record".into()
    } else {
        e.to_string()
    }
}

/// A domain as written in a record, checked and without a trailing dot.
fn normalise(domain: &str) -> Result<String, String> {
    let domain = domain.trim_end_matches('.');
    if domain.contains('%') {
        return Err(format!(
            "{domain:?} uses SPF macros, which need a sender to expand"
        ));
    }
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(format!("{domain:?} is not a domain name"));
    }
    Ok(domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_and_mx_arguments() {
        assert_eq!(
            a_or_mx_target("a", "ex.test").unwrap(),
            ("ex.test".into(), 32, 128)
        );
        assert_eq!(
            a_or_mx_target("a/24", "ex.test").unwrap(),
            ("ex.test".into(), 24, 128)
        );
        assert_eq!(
            a_or_mx_target("a:relay.ex.test/28//64", "ex.test").unwrap(),
            ("relay.ex.test".into(), 28, 64)
        );
        assert_eq!(
            a_or_mx_target("mx//48", "ex.test").unwrap(),
            ("ex.test".into(), 32, 48)
        );
        assert!(a_or_mx_target("a/33", "ex.test").is_err());
    }

    #[test]
    fn domains_are_checked() {
        assert_eq!(normalise("_SPF.Google.com.").unwrap(), "_spf.google.com");
        assert!(
            normalise("%{i}._spf.example.com")
                .unwrap_err()
                .contains("macros")
        );
        assert!(normalise("bad..name").is_err());
        assert!(normalise("").is_err());
    }
}
