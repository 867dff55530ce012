//! Writing the allowlist tries: in batches (BPF_MAP_UPDATE_BATCH and
//! BPF_MAP_DELETE_BATCH, a few thousand prefixes per bpf(2) call) on
//! kernels whose LPM tries take them (5.13+), one call per prefix where
//! they do not (5.10) or where the admin asks for it (DESIGN §6).
//!
//! Writes are queued, then flushed in the order they were queued: every
//! pending insert before a delete that follows it, and every pending trie
//! write before a fast-path word that follows it, so the order the caller
//! proved gap-free ([`crate::fast_path`]) is the order the kernel sees. A
//! batch is only a shorter way to make the same calls: the kernel applies
//! its elements one by one, in order.

use anyhow::Context as _;
use aya::{
    Pod,
    maps::{IterableMap as _, LpmTrie, MapData, lpm_trie::Key},
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;
use std::os::fd::AsFd as _;

use super::ignore_missing;
use crate::{
    allowlist::Prefix,
    sys::{self, BatchOp},
};

/// The environment variable that, set to `single`, makes every trie write
/// its own bpf(2) call even where batches work: to exercise that path on
/// a kernel with batches, or to rule batches out when chasing a problem.
pub const WRITE_MODE_ENV: &str = "MXGATE_TRIE_WRITES";

/// Most prefixes one batch call carries: a bound on the buffers (a few
/// hundred KiB of keys at most) and on how long one call holds the CPU.
pub const BATCH_LEN: usize = 4096;

/// How the tries are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH.
    Batched,
    /// One BPF_MAP_UPDATE_ELEM / BPF_MAP_DELETE_ELEM per prefix.
    Single,
}

impl WriteMode {
    /// Batched when the kernel's LPM tries take batches (probed once per
    /// process) and [`WRITE_MODE_ENV`] does not say `single`.
    pub fn for_this_kernel() -> Self {
        let forced = std::env::var_os(WRITE_MODE_ENV).is_some_and(|v| v == "single");
        if !forced && sys::lpm_batch_supported() {
            Self::Batched
        } else {
            Self::Single
        }
    }

    /// "batched" or "single", as messages and JSON name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Batched => "batched",
            Self::Single => "single",
        }
    }
}

/// Trie writes queued and not yet made, per family and kind.
#[derive(Default)]
pub struct Pending {
    inserts_v4: Vec<Ipv4Net>,
    inserts_v6: Vec<Ipv6Net>,
    removes_v4: Vec<Ipv4Net>,
    removes_v6: Vec<Ipv6Net>,
}

/// The two tries, their names and how to write them.
pub struct Tries<'a> {
    /// ALLOW_V4.
    pub v4: &'a mut LpmTrie<MapData, [u8; 4], u8>,
    /// ALLOW_V6.
    pub v6: &'a mut LpmTrie<MapData, [u8; 16], u8>,
    /// How; [`WriteMode::Single`] from the first batch the kernel refuses
    /// as unsupported on.
    pub mode: WriteMode,
}

impl Pending {
    /// Queues the insert of `net`, after making the deletes queued before it.
    pub fn insert(&mut self, tries: &mut Tries<'_>, net: IpNet) -> anyhow::Result<()> {
        self.flush_removes(tries)?;
        match net {
            IpNet::V4(n) => self.inserts_v4.push(n),
            IpNet::V6(n) => self.inserts_v6.push(n),
        }
        if self.inserts_v4.len() >= BATCH_LEN || self.inserts_v6.len() >= BATCH_LEN {
            self.flush_inserts(tries)?;
        }
        Ok(())
    }

    /// Queues the delete of `net` (a prefix not in its trie is no error),
    /// after making the inserts queued before it.
    pub fn remove(&mut self, tries: &mut Tries<'_>, net: IpNet) -> anyhow::Result<()> {
        self.flush_inserts(tries)?;
        match net {
            IpNet::V4(n) => self.removes_v4.push(n),
            IpNet::V6(n) => self.removes_v6.push(n),
        }
        if self.removes_v4.len() >= BATCH_LEN || self.removes_v6.len() >= BATCH_LEN {
            self.flush_removes(tries)?;
        }
        Ok(())
    }

    /// Makes every queued write, inserts before deletes (only one kind is
    /// ever queued at a time).
    pub fn flush(&mut self, tries: &mut Tries<'_>) -> anyhow::Result<()> {
        self.flush_inserts(tries)?;
        self.flush_removes(tries)
    }

    fn flush_inserts(&mut self, tries: &mut Tries<'_>) -> anyhow::Result<()> {
        insert_all(tries.v4, &self.inserts_v4, &mut tries.mode)?;
        self.inserts_v4.clear();
        insert_all(tries.v6, &self.inserts_v6, &mut tries.mode)?;
        self.inserts_v6.clear();
        Ok(())
    }

    fn flush_removes(&mut self, tries: &mut Tries<'_>) -> anyhow::Result<()> {
        remove_all(tries.v4, &self.removes_v4, &mut tries.mode)?;
        self.removes_v4.clear();
        remove_all(tries.v6, &self.removes_v6, &mut tries.mode)?;
        self.removes_v6.clear();
        Ok(())
    }
}

/// Inserts every prefix of `nets` into `trie`, as `mode` says; a batch the
/// kernel refuses as unsupported is made one call at a time, and so is
/// everything after it.
pub fn insert_all<N>(
    trie: &mut LpmTrie<MapData, N::Octets, u8>,
    nets: &[N],
    mode: &mut WriteMode,
) -> anyhow::Result<()>
where
    N: Prefix,
    N::Octets: Pod,
{
    let name = trie_name::<N>();
    for chunk in nets.chunks(BATCH_LEN) {
        if *mode == WriteMode::Batched {
            let keys: Vec<Key<N::Octets>> = chunk.iter().map(trie_key).collect();
            let values: Vec<u8> = chunk.iter().map(Prefix::length).collect();
            match sys::map_batch(trie.map().fd().as_fd(), BatchOp::Update, &keys, &values) {
                Ok(()) => continue,
                Err(e) if e.done == 0 && sys::batch_unsupported(&e.error) => {
                    log::debug!(
                        "{name}: batched updates refused ({}): one at a time",
                        e.error
                    );
                    *mode = WriteMode::Single;
                }
                Err(e) => {
                    let failed = chunk
                        .get(e.done)
                        .map_or_else(String::new, |n| n.to_string());
                    return Err(e.error).with_context(|| {
                        format!(
                            "adding prefixes to {name} in a batch: {} of its {} went in, then \
                             {failed} failed (the next refresh finishes the job)",
                            e.done,
                            chunk.len()
                        )
                    });
                }
            }
        }
        for net in chunk {
            trie.insert(&trie_key(net), &net.length(), 0)
                .with_context(|| format!("adding {net} to {name}"))?;
        }
    }
    Ok(())
}

/// Deletes every prefix of `nets` from `trie`, as `mode` says; one not in
/// the trie is passed over.
pub fn remove_all<N>(
    trie: &mut LpmTrie<MapData, N::Octets, u8>,
    nets: &[N],
    mode: &mut WriteMode,
) -> anyhow::Result<()>
where
    N: Prefix,
    N::Octets: Pod,
{
    let name = trie_name::<N>();
    for chunk in nets.chunks(BATCH_LEN) {
        if *mode == WriteMode::Batched {
            let keys: Vec<Key<N::Octets>> = chunk.iter().map(trie_key).collect();
            // The kernel stops a batch at the first key it cannot delete,
            // a missing one too: pass over it and go on with the rest.
            let mut from = 0;
            let unsupported = loop {
                let rest = &keys[from..];
                match sys::map_batch::<_, u8>(trie.map().fd().as_fd(), BatchOp::Delete, rest, &[]) {
                    Ok(()) => break false,
                    Err(e) if e.error.raw_os_error() == Some(libc::ENOENT) => {
                        from += e.done + 1;
                        if from >= keys.len() {
                            break false;
                        }
                    }
                    Err(e) if from == 0 && e.done == 0 && sys::batch_unsupported(&e.error) => {
                        log::debug!(
                            "{name}: batched deletes refused ({}): one at a time",
                            e.error
                        );
                        break true;
                    }
                    Err(e) => {
                        let failed = chunk
                            .get(from + e.done)
                            .map_or_else(String::new, |n| n.to_string());
                        return Err(e.error).with_context(|| {
                            format!(
                                "removing prefixes from {name} in a batch: {} of its {} are \
                                 gone, then {failed} failed (the next refresh finishes the job)",
                                from + e.done,
                                chunk.len()
                            )
                        });
                    }
                }
            };
            if !unsupported {
                continue;
            }
            *mode = WriteMode::Single;
        }
        for net in chunk {
            ignore_missing(trie.remove(&trie_key(net)))
                .with_context(|| format!("removing {net} from {name}"))?;
        }
    }
    Ok(())
}

/// The trie of `N`'s family, by its map's name.
fn trie_name<N: Prefix>() -> &'static str {
    if N::FAMILY == "IPv4" {
        filter_common::map_names::ALLOW_V4
    } else {
        filter_common::map_names::ALLOW_V6
    }
}

/// `net` as its trie keys it.
pub fn trie_key<N: Prefix>(net: &N) -> Key<N::Octets>
where
    N::Octets: Pod,
{
    Key::new(u32::from(net.length()), net.octets())
}
