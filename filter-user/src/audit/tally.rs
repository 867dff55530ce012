//! Events counted against the list: totals for the senders it allows,
//! for loopback (which never crosses the filter), and per /24 (IPv4) or
//! /48 (IPv6) for the senders it would refuse — the blocks a list is
//! written in. Memory grows with the number of refused blocks, never with
//! the log: each block keeps at most [`MAX_ADDRESSES`] addresses and
//! [`MAX_NAMES`] host names.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

use super::{Event, EventKind};
use crate::allowlist::Allowlist;

/// Addresses a block lists (a /24 has 256; a /48 more than any log).
pub const MAX_ADDRESSES: usize = 256;
/// Host names a block lists.
pub const MAX_NAMES: usize = 8;
/// IPv4 senders are grouped by this prefix length.
pub const GROUP_V4: u8 = 24;
/// IPv6 senders are grouped by this prefix length.
pub const GROUP_V6: u8 = 48;

/// What a set of senders did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// SMTP connections.
    pub connections: u64,
    /// Messages the MTA accepted.
    pub accepted: u64,
    /// Rejections (of a recipient, a command, a message, a connection).
    pub rejected: u64,
    /// Messages begun but not seen to end (Postfix: the client quit before
    /// the end of DATA, or the log ends first).
    pub incomplete: u64,
}

impl Counts {
    fn add(&mut self, kind: EventKind) {
        match kind {
            EventKind::Connection => self.connections += 1,
            EventKind::Accepted => self.accepted += 1,
            EventKind::Rejected => self.rejected += 1,
            EventKind::Incomplete => self.incomplete += 1,
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.connections += other.connections;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.incomplete += other.incomplete;
    }
}

/// One /24 or /48 of senders the list would refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The /24 or /48.
    pub prefix: IpNet,
    /// What its senders did.
    pub counts: Counts,
    /// First event, in seconds since the epoch.
    pub first_seen: i64,
    /// Last event.
    pub last_seen: i64,
    /// Its senders' addresses (at most [`MAX_ADDRESSES`]).
    pub addresses: BTreeSet<IpAddr>,
    /// True when it had more addresses than listed.
    pub more_addresses: bool,
    /// The MTA's names for its hosts (at most [`MAX_NAMES`]; Postfix's
    /// `unknown` left out).
    pub names: BTreeSet<String>,
    /// True when it had more names than listed.
    pub more_names: bool,
}

/// The counting itself.
#[derive(Debug)]
pub struct Tally<'a> {
    allowlist: &'a Allowlist,
    /// Senders the list allows.
    pub allowed: Counts,
    /// Loopback senders (local programs; no packet of theirs meets the
    /// filter).
    pub loopback: Counts,
    blocks: HashMap<IpNet, Block>,
    /// First event.
    pub first: Option<i64>,
    /// Last event.
    pub last: Option<i64>,
    /// Events counted.
    pub events: u64,
}

impl<'a> Tally<'a> {
    /// Counts against `allowlist`.
    pub fn new(allowlist: &'a Allowlist) -> Self {
        Self {
            allowlist,
            allowed: Counts::default(),
            loopback: Counts::default(),
            blocks: HashMap::new(),
            first: None,
            last: None,
            events: 0,
        }
    }

    /// Counts one event.
    pub fn add(&mut self, event: Event) {
        self.events += 1;
        self.first = Some(self.first.map_or(event.time, |f| f.min(event.time)));
        self.last = Some(self.last.map_or(event.time, |l| l.max(event.time)));
        let addr = event.addr;
        if addr.is_loopback() {
            self.loopback.add(event.kind);
            return;
        }
        if self.allowlist.lookup(addr).is_some() {
            self.allowed.add(event.kind);
            return;
        }
        let prefix = block_of(addr);
        let block = self.blocks.entry(prefix).or_insert_with(|| Block {
            prefix,
            counts: Counts::default(),
            first_seen: event.time,
            last_seen: event.time,
            addresses: BTreeSet::new(),
            more_addresses: false,
            names: BTreeSet::new(),
            more_names: false,
        });
        block.counts.add(event.kind);
        block.first_seen = block.first_seen.min(event.time);
        block.last_seen = block.last_seen.max(event.time);
        if !block.addresses.contains(&addr) {
            if block.addresses.len() < MAX_ADDRESSES {
                block.addresses.insert(addr);
            } else {
                block.more_addresses = true;
            }
        }
        if let Some(name) = event.name.filter(|n| n != "unknown" && !n.is_empty())
            && !block.names.contains(&name)
        {
            if block.names.len() < MAX_NAMES {
                block.names.insert(name);
            } else {
                block.more_names = true;
            }
        }
    }

    /// The refused blocks, those that delivered accepted mail first, then
    /// by their connections and rejections.
    pub fn refused_blocks(self) -> Vec<Block> {
        let mut blocks: Vec<Block> = self.blocks.into_values().collect();
        blocks.sort_by(|a, b| {
            (
                b.counts.accepted,
                b.counts.connections,
                b.counts.rejected,
                a.prefix,
            )
                .cmp(&(
                    a.counts.accepted,
                    a.counts.connections,
                    a.counts.rejected,
                    b.prefix,
                ))
        });
        blocks
    }

    /// What the refused senders did, together.
    pub fn refused(&self) -> Counts {
        let mut total = Counts::default();
        for block in self.blocks.values() {
            total.merge(&block.counts);
        }
        total
    }
}

/// The /24 or /48 of `addr`.
pub fn block_of(addr: IpAddr) -> IpNet {
    match addr {
        IpAddr::V4(a) => IpNet::V4(
            Ipv4Net::new(a, GROUP_V4)
                .map(|n| n.trunc())
                .unwrap_or_else(|_| Ipv4Net::from(a)),
        ),
        IpAddr::V6(a) => IpNet::V6(
            Ipv6Net::new(a, GROUP_V6)
                .map(|n| n.trunc())
                .unwrap_or_else(|_| Ipv6Net::from(a)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(addr: &str, name: Option<&str>, kind: EventKind, time: i64) -> Event {
        Event::new(time, addr.parse().unwrap(), name.map(Into::into), kind)
    }

    #[test]
    fn refused_senders_group_by_24_and_48_allowed_and_loopback_apart() {
        let list = Allowlist::of(&["192.0.2.0/24", "2001:db8:5e::/48"]);
        let mut tally = Tally::new(&list);
        for e in [
            event("192.0.2.10", Some("relay"), EventKind::Accepted, 5),
            event("127.0.0.1", Some("localhost"), EventKind::Accepted, 6),
            event("::1", None, EventKind::Connection, 6),
            event("203.0.113.66", Some("unknown"), EventKind::Connection, 10),
            event("203.0.113.66", Some("unknown"), EventKind::Rejected, 11),
            event(
                "203.0.113.7",
                Some("partner.example"),
                EventKind::Accepted,
                3,
            ),
            event("2001:db8:bad:1::66", None, EventKind::Connection, 20),
            event(
                "2001:db8:bad:2::66",
                Some("(helo)"),
                EventKind::Rejected,
                21,
            ),
        ] {
            tally.add(e);
        }
        assert_eq!(tally.allowed.accepted, 1);
        assert_eq!(
            (tally.loopback.accepted, tally.loopback.connections),
            (1, 1)
        );
        assert_eq!(
            (tally.first, tally.last, tally.events),
            (Some(3), Some(21), 8)
        );
        let refused = tally.refused();
        assert_eq!(
            (refused.connections, refused.accepted, refused.rejected),
            (2, 1, 2)
        );
        let blocks = tally.refused_blocks();
        assert_eq!(blocks.len(), 2);
        let v4 = &blocks[0];
        assert_eq!(v4.prefix.to_string(), "203.0.113.0/24");
        assert_eq!(
            (
                v4.counts.connections,
                v4.counts.accepted,
                v4.counts.rejected
            ),
            (1, 1, 1)
        );
        assert_eq!((v4.first_seen, v4.last_seen), (3, 11));
        assert_eq!(v4.addresses.len(), 2);
        assert_eq!(v4.names.iter().collect::<Vec<_>>(), ["partner.example"]);
        let v6 = &blocks[1];
        assert_eq!(v6.prefix.to_string(), "2001:db8:bad::/48");
        assert_eq!(v6.addresses.len(), 2);
        assert_eq!(v6.names.iter().collect::<Vec<_>>(), ["(helo)"]);
    }

    #[test]
    fn a_block_keeps_a_bounded_number_of_addresses_and_names() {
        let list = Allowlist::of(&["192.0.2.0/24"]);
        let mut tally = Tally::new(&list);
        for i in 0..1000u32 {
            let addr = format!("2001:db8:bad::{i:x}");
            let name = format!("h{i}.example");
            tally.add(event(&addr, Some(&name), EventKind::Connection, 0));
        }
        let blocks = tally.refused_blocks();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].addresses.len(), MAX_ADDRESSES);
        assert!(blocks[0].more_addresses);
        assert_eq!(blocks[0].names.len(), MAX_NAMES);
        assert!(blocks[0].more_names);
        assert_eq!(blocks[0].counts.connections, 1000);
    }
}
