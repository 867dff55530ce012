//! The allowlist tries: read back, changed by a diff, and asked for one
//! address. One generic function per operation serves both families.

use std::net::IpAddr;

use anyhow::Context as _;
use aya::{
    Pod,
    maps::{LpmTrie, MapData, MapError, lpm_trie::Key},
};
use filter_common::{Ipv4Key, Ipv6Key, map_names};
use ipnet::IpNet;

use super::{ConfigMap, ignore_missing, open_map};
use crate::{
    allowlist::{Allowlist, Prefix},
    diff::Diff,
    pins::PinDir,
};

/// The two tries, one per family; each entry's value is its prefix length.
pub struct AllowMaps {
    v4: LpmTrie<MapData, Ipv4Key, u8>,
    v6: LpmTrie<MapData, Ipv6Key, u8>,
}

impl AllowMaps {
    /// Opens both tries' pins.
    pub fn open(pins: &PinDir) -> anyhow::Result<Self> {
        Ok(Self {
            v4: open_map(pins, map_names::ALLOW_V4)?,
            v6: open_map(pins, map_names::ALLOW_V6)?,
        })
    }

    /// The live allowlist, read back from the tries.
    pub fn read(&self) -> anyhow::Result<Allowlist> {
        Ok(Allowlist {
            v4: read_trie(&self.v4, map_names::ALLOW_V4)?,
            v6: read_trie(&self.v6, map_names::ALLOW_V6)?,
        })
    }

    /// Applies `diff` to the tries: every insert before any delete, so an
    /// address allowed both before and after is never denied in between.
    /// Bumps the list generation in `config` when something changed.
    pub fn apply(&mut self, diff: &Diff, config: &mut ConfigMap) -> anyhow::Result<()> {
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
