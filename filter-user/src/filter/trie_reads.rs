//! Reading the allowlist tries back: every prefix, in batches where the
//! kernel takes them (DESIGN §6), and during a refresh on two threads once
//! the second is free.
//!
//! A refresh reads the live list back on one thread while it parses the
//! new list on the other. When the parse is done first, that thread joins
//! the read ([`TrieReader::help`]): it picks a prefix of the new list
//! halfway between where the reader is and the end, checks the trie holds
//! it, and reads on from after it while the reader stops at it.
//!
//! The two parts always make up every key, whatever the trie holds: the
//! reader stops only on meeting that very prefix, after which the kernel's
//! walk from it gives every key that follows; if the trie lacks it after
//! all (a value another tool wrote), the reader never meets it and reads
//! to the end. A stretch read twice (a reader already past the prefix)
//! only repeats keys, which the merge drops ([`Helped::complete`]). Choosing the prefix well only
//! decides how evenly the work is shared: the kernel walks an LPM trie in
//! post-order, which for a merged list (no prefix inside another) is the
//! order of addresses.

use std::{
    ops::ControlFlow,
    os::fd::AsFd as _,
    sync::{Mutex, MutexGuard},
};

use anyhow::Context as _;
use aya::{
    Pod,
    maps::{IterableMap as _, LpmTrie, MapData, lpm_trie::Key},
};
use filter_common::{Ipv4Key, Ipv6Key, map_names};
use ipnet::{Ipv4Net, Ipv6Net};

use super::trie_writes::{BATCH_LEN, WriteMode, trie_key};
use crate::{
    allowlist::{Allowlist, Prefix},
    sys,
};

/// Keys per BPF_MAP_LOOKUP_BATCH call when reading a trie back.
const READ_BATCH: usize = BATCH_LEN;

/// The two tries, borrowed to be read back ([`super::AllowMaps::tries`]).
#[derive(Clone, Copy)]
pub struct TrieReader<'a> {
    pub(super) v4: &'a LpmTrie<MapData, Ipv4Key, u8>,
    pub(super) v6: &'a LpmTrie<MapData, Ipv6Key, u8>,
}

/// A read of the tries back that a second thread may join: where the
/// reader is in the family it reads, and where it is to stop.
#[derive(Default)]
pub struct SharedRead {
    v4: Mutex<Progress<Ipv4Net>>,
    v6: Mutex<Progress<Ipv6Net>>,
}

/// One family's read, as the reader and the helper see it.
struct Progress<N> {
    /// The reader is walking this family's trie (in batches) now.
    reading: bool,
    /// The last prefix it has read.
    last: Option<N>,
    /// The prefix it stops after: the helper reads on from there.
    stop_after: Option<N>,
}

impl<N> Default for Progress<N> {
    fn default() -> Self {
        Self {
            reading: false,
            last: None,
            stop_after: None,
        }
    }
}

/// What the helper read: the rest of one family's trie, after the prefix
/// the reader stopped at.
#[derive(Debug, Default)]
pub enum Helped {
    /// It did not join (the read was over or had less than two calls
    /// left, no prefix to start after was found, or the tries are read
    /// one prefix at a time).
    #[default]
    Nothing,
    /// The rest of the IPv4 trie.
    V4(Vec<Ipv4Net>),
    /// The rest of the IPv6 trie.
    V6(Vec<Ipv6Net>),
}

impl TrieReader<'_> {
    /// The live allowlist, read back from the tries.
    pub fn read(&self) -> anyhow::Result<Allowlist> {
        Ok(Allowlist {
            v4: read_trie(self.v4, map_names::ALLOW_V4)?,
            v6: read_trie(self.v6, map_names::ALLOW_V6)?,
        })
    }

    /// As [`Self::read`], letting another thread read part of it
    /// ([`Self::help`]): what this returns then lacks that part, which
    /// [`Helped::complete`] adds.
    pub fn read_shared(&self, shared: &SharedRead) -> anyhow::Result<Allowlist> {
        Ok(Allowlist {
            v4: read_shared(self.v4, map_names::ALLOW_V4, &shared.v4)?,
            v6: read_shared(self.v6, map_names::ALLOW_V6, &shared.v6)?,
        })
    }

    /// Joins the read [`Self::read_shared`] makes on another thread, in
    /// the family it reads now: reads the second half of what it has left,
    /// by `new` (the list about to replace the live one, whose prefixes
    /// the trie mostly holds), after a prefix of `new` the trie holds.
    pub fn help(&self, shared: &SharedRead, new: &Allowlist) -> anyhow::Result<Helped> {
        if let Some(nets) = help(self.v4, map_names::ALLOW_V4, &shared.v4, &new.v4)? {
            return Ok(Helped::V4(nets));
        }
        if let Some(nets) = help(self.v6, map_names::ALLOW_V6, &shared.v6, &new.v6)? {
            return Ok(Helped::V6(nets));
        }
        Ok(Helped::Nothing)
    }
}

impl Helped {
    /// `read`, the reader's part, with the helper's added: every prefix of
    /// the tries, sorted, each once.
    pub fn complete(self, mut read: Allowlist) -> Allowlist {
        match self {
            Helped::Nothing => {}
            Helped::V4(nets) => merge(&mut read.v4, nets),
            Helped::V6(nets) => merge(&mut read.v6, nets),
        }
        read
    }
}

/// `part` added to `nets`, sorted, each prefix once (a stretch both
/// threads read is in both).
fn merge<N: Prefix>(nets: &mut Vec<N>, part: Vec<N>) {
    nets.extend(part);
    nets.sort_unstable();
    nets.dedup();
}

/// Every prefix in `trie`, sorted.
fn read_trie<N>(trie: &LpmTrie<MapData, N::Octets, u8>, name: &str) -> anyhow::Result<Vec<N>>
where
    N: Prefix,
    N::Octets: Pod,
{
    let mut nets = Vec::new();
    each_prefix::<N>(trie, name, |net| nets.push(net))?;
    nets.sort_unstable();
    Ok(nets)
}

/// The prefix `key` stands for, or an error naming `name` when no prefix
/// has its length.
fn prefix_of<N>(key: &Key<N::Octets>, name: &str) -> anyhow::Result<N>
where
    N: Prefix,
    N::Octets: Pod,
{
    u8::try_from(key.prefix_len())
        .ok()
        .and_then(|len| N::from_octets(key.data(), len))
        .with_context(|| format!("{name} holds an entry of length {}", key.prefix_len()))
}

/// Calls `each` with every prefix in `trie`. Where the tries are written
/// in batches ([`WriteMode::for_this_kernel`]), they are read back in
/// batches too: the kernel walks the trie, [`READ_BATCH`] keys a call (a
/// refresh reads 100,000 prefixes back in 25 calls, not 100,000);
/// elsewhere one call per key, as aya's iterator makes them.
pub(super) fn each_prefix<N>(
    trie: &LpmTrie<MapData, N::Octets, u8>,
    name: &str,
    mut each: impl FnMut(N),
) -> anyhow::Result<()>
where
    N: Prefix,
    N::Octets: Pod,
{
    if WriteMode::for_this_kernel() == WriteMode::Batched {
        return read_batches(trie, name, None, |nets| {
            nets.into_iter().for_each(&mut each);
            ControlFlow::Continue(())
        });
    }
    for key in trie.keys() {
        each(prefix_of(
            &key.with_context(|| format!("reading {name}"))?,
            name,
        )?);
    }
    Ok(())
}

/// The prefixes in `trie` after `after` (from the first, when `None`),
/// read [`READ_BATCH`] keys a call, each call's to `each` until it breaks.
fn read_batches<N>(
    trie: &LpmTrie<MapData, N::Octets, u8>,
    name: &str,
    after: Option<&N>,
    mut each: impl FnMut(Vec<N>) -> ControlFlow<()>,
) -> anyhow::Result<()>
where
    N: Prefix,
    N::Octets: Pod,
{
    let fd = trie.map().fd().as_fd();
    let after = after.map(trie_key);
    sys::map_keys_batched::<Key<N::Octets>, u8>(fd, READ_BATCH, after.as_ref(), |keys| {
        let nets = keys.iter().map(|key| prefix_of::<N>(key, name));
        Ok(each(nets.collect::<anyhow::Result<_>>()?))
    })
    .with_context(|| format!("reading {name}"))
}

/// `progress`, locked. A poisoned lock only means the other thread
/// panicked, which the refresh resumes; the progress itself is always
/// whole.
fn lock<N>(progress: &Mutex<Progress<N>>) -> MutexGuard<'_, Progress<N>> {
    progress.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every prefix in `trie` up to the one a helper posts in `progress`, or
/// to the end; sorted.
fn read_shared<N>(
    trie: &LpmTrie<MapData, N::Octets, u8>,
    name: &str,
    progress: &Mutex<Progress<N>>,
) -> anyhow::Result<Vec<N>>
where
    N: Prefix,
    N::Octets: Pod,
{
    if WriteMode::for_this_kernel() != WriteMode::Batched {
        return read_trie(trie, name);
    }
    lock(progress).reading = true;
    let mut nets = Vec::new();
    let read = read_batches(trie, name, None, |batch: Vec<N>| {
        let start = nets.len();
        nets.extend(batch);
        let mut p = lock(progress);
        let mut flow = ControlFlow::Continue(());
        if let Some(stop) = p.stop_after
            && let Some(at) = nets[start..].iter().position(|n| *n == stop)
        {
            nets.truncate(start + at + 1);
            flow = ControlFlow::Break(());
        }
        p.last = nets.last().copied();
        flow
    });
    lock(progress).reading = false;
    read?;
    nets.sort_unstable();
    Ok(nets)
}

/// Joins the read of `trie` if the reader is on it with more than two
/// calls' worth left (by `new`): the prefixes after the one it is told to
/// stop at. `None` when it did not join.
fn help<N>(
    trie: &LpmTrie<MapData, N::Octets, u8>,
    name: &str,
    progress: &Mutex<Progress<N>>,
    new: &[N],
) -> anyhow::Result<Option<Vec<N>>>
where
    N: Prefix,
    N::Octets: Pod,
{
    let (reading, last) = {
        let p = lock(progress);
        (p.reading, p.last)
    };
    if !reading {
        return Ok(None);
    }
    let from = last.map_or(0, |last| new.partition_point(|n| *n <= last));
    let left = new.len().saturating_sub(from);
    if left < 2 * READ_BATCH {
        return Ok(None);
    }
    // A prefix of `new` that the trie holds: its own length is the value
    // the trie's longest match for it gives back.
    let Some(stop) = new[from + left / 2..]
        .iter()
        .take(16)
        .copied()
        .find(|net| trie.get(&trie_key(net), 0).ok() == Some(net.length()))
    else {
        return Ok(None);
    };
    {
        let mut p = lock(progress);
        if !p.reading || p.last.is_some_and(|last| last >= stop) {
            return Ok(None);
        }
        p.stop_after = Some(stop);
    }
    let mut nets = Vec::new();
    read_batches(trie, name, Some(&stop), |batch| {
        nets.extend(batch);
        ControlFlow::Continue(())
    })?;
    Ok(Some(nets))
}
