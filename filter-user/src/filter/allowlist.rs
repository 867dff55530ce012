//! The allowlist tries: read back, changed by a diff, and asked for one
//! address. One generic function per operation serves both families.

use std::net::IpAddr;

use anyhow::Context as _;
use aya::{
    Pod,
    maps::{LpmTrie, MapData, MapError, lpm_trie::Key},
};
use filter_common::{Ipv4Key, Ipv6Key, MAX_PREFIXES, map_names};
use ipnet::IpNet;

use super::{ConfigMap, Installed, ignore_missing};
use crate::{
    allowlist::{Allowlist, Prefix},
    diff::Diff,
    error::Refused,
};

/// The two tries, one per family; each entry's value is its prefix length.
pub struct AllowMaps {
    v4: LpmTrie<MapData, Ipv4Key, u8>,
    v6: LpmTrie<MapData, Ipv6Key, u8>,
}

impl AllowMaps {
    /// Opens both tries' pins.
    pub fn open(installed: &Installed) -> anyhow::Result<Self> {
        Ok(Self {
            v4: installed.map(map_names::ALLOW_V4)?,
            v6: installed.map(map_names::ALLOW_V6)?,
        })
    }

    /// The live allowlist, read back from the tries.
    pub fn read(&self) -> anyhow::Result<Allowlist> {
        Ok(Allowlist {
            v4: read_trie(&self.v4, map_names::ALLOW_V4)?,
            v6: read_trie(&self.v6, map_names::ALLOW_V6)?,
        })
    }

    /// Applies `diff` (from the live list `live` to `new`) to the tries:
    /// every insert before any delete, so an address allowed both before
    /// and after is never denied in between. Bumps the list generation in
    /// `config` when something changed.
    ///
    /// A list never holds more than half a trie ([`MAX_LIST_PREFIXES`]), so
    /// the inserts fit; only a trie filled past that (by an older mxgate)
    /// may not take them all at once. Then the prefixes that lose access
    /// anyway, holding no address the new list allows, go first: that opens
    /// no gap. If it still does not fit, nothing is written.
    pub fn apply(
        &mut self,
        live: &Allowlist,
        diff: &Diff,
        config: &mut ConfigMap,
    ) -> anyhow::Result<()> {
        let new_v4 = live_after(&live.v4, &diff.v4.added, &diff.v4.removed);
        let new_v6 = live_after(&live.v6, &diff.v6.added, &diff.v6.removed);
        let early_v4 = make_room(live.v4.len(), &diff.v4.added, &diff.v4.removed, &new_v4)?;
        let early_v6 = make_room(live.v6.len(), &diff.v6.added, &diff.v6.removed, &new_v6)?;
        remove_all(&mut self.v4, &early_v4, map_names::ALLOW_V4)?;
        remove_all(&mut self.v6, &early_v6, map_names::ALLOW_V6)?;
        insert_all(&mut self.v4, &diff.v4.added, map_names::ALLOW_V4)?;
        insert_all(&mut self.v6, &diff.v6.added, map_names::ALLOW_V6)?;
        remove_all(&mut self.v4, &diff.v4.removed, map_names::ALLOW_V4)?;
        remove_all(&mut self.v6, &diff.v6.removed, map_names::ALLOW_V6)?;
        if !diff.is_empty() {
            config.bump_list_generation()?;
        }
        Ok(())
    }

    /// The live prefix that allows `addr`, by the kernel's own longest-prefix
    /// match.
    pub fn lookup(&self, addr: IpAddr) -> anyhow::Result<Option<IpNet>> {
        let found = match addr {
            IpAddr::V4(a) => self.v4.get(&Key::new(32, a.octets()), 0),
            IpAddr::V6(a) => self.v6.get(&Key::new(128, a.octets()), 0),
        };
        match found {
            Ok(len) => Ok(Some(IpNet::new(addr, len)?.trunc())),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("looking the address up in the allowlist"),
        }
    }
}

/// The prefixes live after a change: `live` with `added`, without `removed`.
fn live_after<N: Prefix>(live: &[N], added: &[N], removed: &[N]) -> Vec<N> {
    let removed: std::collections::BTreeSet<&N> = removed.iter().collect();
    let mut after: Vec<N> = live
        .iter()
        .filter(|n| !removed.contains(n))
        .chain(added)
        .copied()
        .collect();
    after.sort_unstable();
    after
}

/// The removed prefixes to delete before inserting, when `live_len` plus
/// the inserts would not fit in a trie: those sharing no address with the
/// list after the change (`after`). Errors when even that is not enough.
fn make_room<N: Prefix>(
    live_len: usize,
    added: &[N],
    removed: &[N],
    after: &[N],
) -> anyhow::Result<Vec<N>> {
    let capacity = MAX_PREFIXES as usize;
    if live_len + added.len() <= capacity {
        return Ok(Vec::new());
    }
    let early: Vec<N> = removed
        .iter()
        .filter(|r| !crate::allowlist::overlaps(after, r))
        .copied()
        .collect();
    if live_len - early.len() + added.len() > capacity {
        return Err(Refused(format!(
            "the {} trie holds {live_len} prefixes; adding {} before removing the old ones would \
             exceed its {capacity} without opening a gap for senders both lists allow; nothing \
             changed (refresh in two steps, or `mxgate detach` and attach again)",
            N::FAMILY,
            added.len()
        ))
        .into());
    }
    Ok(early)
}

/// Every prefix in `trie`, sorted.
fn read_trie<N>(trie: &LpmTrie<MapData, N::Octets, u8>, name: &str) -> anyhow::Result<Vec<N>>
where
    N: Prefix,
    N::Octets: Pod,
{
    let mut nets = Vec::new();
    for key in trie.keys() {
        let key = key.with_context(|| format!("reading {name}"))?;
        let len = u8::try_from(key.prefix_len()).ok();
        let net = len
            .and_then(|len| N::from_octets(key.data(), len))
            .with_context(|| format!("{name} holds an entry of length {}", key.prefix_len()))?;
        nets.push(net);
    }
    nets.sort_unstable();
    Ok(nets)
}

fn insert_all<N>(
    trie: &mut LpmTrie<MapData, N::Octets, u8>,
    nets: &[N],
    name: &str,
) -> anyhow::Result<()>
where
    N: Prefix,
    N::Octets: Pod,
{
    for net in nets {
        trie.insert(&trie_key(net), &net.length(), 0)
            .with_context(|| format!("adding {net} to {name}"))?;
    }
    Ok(())
}

fn remove_all<N>(
    trie: &mut LpmTrie<MapData, N::Octets, u8>,
    nets: &[N],
    name: &str,
) -> anyhow::Result<()>
where
    N: Prefix,
    N::Octets: Pod,
{
    for net in nets {
        ignore_missing(trie.remove(&trie_key(net)))
            .with_context(|| format!("removing {net} from {name}"))?;
    }
    Ok(())
}

fn trie_key<N: Prefix>(net: &N) -> Key<N::Octets>
where
    N::Octets: Pod,
{
    Key::new(u32::from(net.length()), net.octets())
}
