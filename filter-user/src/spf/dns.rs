//! The DNS behind a flattener: the system's (or given) resolvers through
//! hickory-resolver, and an in-memory zone for tests and conformance runs.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
    time::{Duration, Instant},
};

use hickory_resolver::{
    Resolver, TokioResolver,
    config::{NameServerConfig, ResolverConfig},
    name_server::TokioConnectionProvider,
    proto::{
        ProtoErrorKind,
        op::ResponseCode,
        rr::{Name, RData, RecordType},
        xfer::Protocol,
    },
    system_conf::parse_resolv_conf,
};

use super::{
    SpfOptions,
    flatten::{Dns, DnsError},
};
use crate::files::{self, Links};

/// Where the system's resolvers are named.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Largest resolv.conf read: 64 KiB, far beyond what one holds (a handful
/// of lines).
pub const MAX_RESOLV_CONF: u64 = 64 << 10;

/// Real DNS: each query bounded by the query timeout and by what is left of
/// the walk's deadline.
pub struct HickoryDns {
    runtime: tokio::runtime::Runtime,
    resolver: TokioResolver,
    deadline: Instant,
    total: Duration,
}

impl HickoryDns {
    /// A client for `options`; the deadline starts now.
    pub fn new(options: &SpfOptions) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a DNS client: {e}"))?;
        let mut builder = if options.servers.is_empty() {
            // Read as every file mxgate reads (a regular file, bounded),
            // not by hickory, which would wait on a FIFO there forever.
            let (text, _) = files::read_regular(
                Path::new(RESOLV_CONF),
                MAX_RESOLV_CONF,
                "the most a resolv.conf may hold",
                Links::Follow,
            )
            .map_err(|e| format!("reading {RESOLV_CONF}: {e}"))?;
            let (config, system) =
                parse_resolv_conf(text).map_err(|e| format!("reading {RESOLV_CONF}: {e}"))?;
            Resolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(system)
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
        let resolver = {
            let _guard = runtime.enter();
            builder.build()
        };
        Ok(Self {
            runtime,
            resolver,
            deadline: Instant::now() + options.deadline,
            total: options.deadline,
        })
    }

    fn query(&mut self, name: &str, kind: RecordType) -> Result<Vec<RData>, DnsError> {
        // Labels as raw bytes: SPF names may hold characters hostnames do not.
        let fqdn = Name::from_labels(name.split('.').map(str::as_bytes))
            .map_err(|e| DnsError::Failed(format!("cannot query {name:?}: {e}")))?;
        let late = || {
            DnsError::Failed(format!(
                "no answer within the {} s deadline",
                self.total.as_secs()
            ))
        };
        let left = self
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(late)?;
        let resolver = &self.resolver;
        let answer = self
            .runtime
            .block_on(async { tokio::time::timeout(left, resolver.lookup(fqdn, kind)).await })
            .map_err(|_| late())?;
        match answer {
            Ok(lookup) => Ok(lookup
                .record_iter()
                .filter(|r| r.record_type() == kind)
                .map(|r| r.data().clone())
                .collect()),
            Err(e) => match e.proto().map(|p| p.kind()) {
                Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => {
                    match *response_code {
                        ResponseCode::NXDomain => Err(DnsError::NxDomain),
                        ResponseCode::NoError => Ok(Vec::new()),
                        code => Err(DnsError::Failed(format!("the server answered {code}"))),
                    }
                }
                _ => Err(DnsError::Failed(e.to_string())),
            },
        }
    }
}

impl HickoryDns {
    /// The MX records of `name`: each one's preference and exchange (as
    /// [`Dns::mx`] gives it; empty for a null MX), for `mxgate doctor`.
    pub fn mx_records(&mut self, name: &str) -> Result<Vec<(u16, String)>, DnsError> {
        self.query(name, RecordType::MX)?
            .iter()
            .filter_map(RData::as_mx)
            .map(|mx| Ok((mx.preference(), exchange_name(mx.exchange())?)))
            .collect()
    }
}

impl Dns for HickoryDns {
    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
        Ok(self
            .query(name, RecordType::TXT)?
            .iter()
            .filter_map(RData::as_txt)
            .map(|txt| {
                // A long record comes as several strings, joined without spaces.
                txt.txt_data()
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect()
            })
            .collect())
    }

    fn a(&mut self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        Ok(self
            .query(name, RecordType::A)?
            .iter()
            .filter_map(RData::as_a)
            .map(|a| a.0)
            .collect())
    }

    fn aaaa(&mut self, name: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        Ok(self
            .query(name, RecordType::AAAA)?
            .iter()
            .filter_map(RData::as_aaaa)
            .map(|a| a.0)
            .collect())
    }

    fn mx(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
        self.query(name, RecordType::MX)?
            .iter()
            .filter_map(RData::as_mx)
            .map(|mx| exchange_name(mx.exchange()))
            .collect()
    }
}

/// An MX exchange as the name [`Dns`] queries: its labels as they are,
/// joined by dots, without the root. Not hickory's display form, which
/// escapes what hostnames do not hold (`foo\:bar\/baz`) and turns `xn--`
/// labels into Unicode: the domain-spec `mx:foo:bar/baz.example.com` names
/// a host of exactly that name. A label holding a dot itself cannot be
/// written so: the walk fails rather than ask for another name.
fn exchange_name(name: &Name) -> Result<String, DnsError> {
    let labels: Vec<String> = name
        .iter()
        .map(|label| String::from_utf8_lossy(label).into_owned())
        .collect();
    if labels.iter().any(|l| l.contains('.')) {
        return Err(DnsError::Failed(format!(
            "the MX exchange {name} has a label with a dot in it"
        )));
    }
    Ok(labels.join("."))
}

/// One record of a [`MemoryDns`] zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A TXT record (its strings already joined).
    Txt(String),
    /// An A record.
    A(Ipv4Addr),
    /// An AAAA record.
    Aaaa(Ipv6Addr),
    /// An MX record's exchange (empty: a null MX).
    Mx(String),
    /// A CNAME to another name of the zone.
    Cname(String),
    /// Queries for a type with no record before this entry time out.
    Timeout,
}

/// An in-memory zone. A name without entries does not exist (NXDOMAIN); a
/// type without records gets an empty answer; a CNAME is followed.
#[derive(Clone, Debug, Default)]
pub struct MemoryDns {
    names: HashMap<String, Vec<Entry>>,
}

impl MemoryDns {
    /// An empty zone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `entry` to `name` (any case, with or without the final dot).
    pub fn add(&mut self, name: &str, entry: Entry) -> &mut Self {
        self.names.entry(key(name)).or_default().push(entry);
        self
    }

    fn find<T>(&self, name: &str, pick: impl Fn(&Entry) -> Option<T>) -> Result<Vec<T>, DnsError> {
        let mut name = key(name);
        for _ in 0..8 {
            let entries = self.names.get(&name).ok_or(DnsError::NxDomain)?;
            let mut found = Vec::new();
            let mut cname = None;
            for entry in entries {
                if *entry == Entry::Timeout {
                    if found.is_empty() {
                        return Err(DnsError::Failed("timed out".into()));
                    }
                    break;
                }
                if let Entry::Cname(target) = entry {
                    cname = Some(key(target));
                }
                found.extend(pick(entry));
            }
            match cname {
                Some(target) if found.is_empty() => name = target,
                _ => return Ok(found),
            }
        }
        Err(DnsError::Failed(format!("CNAME loop at {name}")))
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Dns for MemoryDns {
    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
        self.find(name, |e| match e {
            Entry::Txt(t) => Some(t.clone()),
            _ => None,
        })
    }
    fn a(&mut self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        self.find(name, |e| match e {
            Entry::A(a) => Some(*a),
            _ => None,
        })
    }
    fn aaaa(&mut self, name: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        self.find(name, |e| match e {
            Entry::Aaaa(a) => Some(*a),
            _ => None,
        })
    }
    fn mx(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
        self.find(name, |e| match e {
            Entry::Mx(m) => Some(key(m)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges_keep_their_labels_as_they_are() {
        let name = |labels: &[&[u8]]| Name::from_labels(labels.iter().copied()).unwrap();
        let colon = name(&[b"foo:bar/baz", b"example", b"com"]);
        assert_eq!(exchange_name(&colon).unwrap(), "foo:bar/baz.example.com");
        let mut fqdn = name(&[b"mx", b"example", b"com"]);
        fqdn.set_fqdn(true);
        assert_eq!(exchange_name(&fqdn).unwrap(), "mx.example.com");
        let idn = name(&[b"xn--bcher-kva", b"example"]);
        assert_eq!(exchange_name(&idn).unwrap(), "xn--bcher-kva.example");
        assert!(exchange_name(&name(&[b"a.b", b"example"])).is_err());
    }
}
