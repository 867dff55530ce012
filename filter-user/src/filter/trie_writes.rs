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
use std::{
    os::fd::{AsFd as _, BorrowedFd},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use super::ignore_missing;
use crate::{
    allowlist::Prefix,
    parallel,
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
            match insert_batch(trie.map().fd().as_fd(), chunk) {
                Ok(()) => continue,
                Err(BatchFailure::Unsupported(e)) => {
                    log::debug!("{name}: batched updates refused ({e}): one at a time");
                    *mode = WriteMode::Single;
                }
                Err(BatchFailure::Failed(e)) => return Err(e),
            }
        }
        for net in chunk {
            trie.insert(&trie_key(net), &net.length(), 0)
                .with_context(|| format!("adding {net} to {name}"))?;
        }
    }
    Ok(())
}

/// Inserts `v4` and `v6` into their tries while this thread runs
/// `meanwhile`, and returns what it returned.
///
/// Batched, the inserts are shared out a batch at a time: a thread of its
/// own starts on them at once, and this thread takes the batches left when
/// `meanwhile` is done. On two cores the kernel's inserts, most of a
/// refresh that loads a list, run on both: an LPM trie's lock covers only
/// part of an insert (the key's copy from user space, and on recent
/// kernels the node's allocation, are outside it). Inserts
/// need no order among themselves: they only ever add access, and all of
/// them are made before this returns, so before any write that follows
/// them. One at a time ([`WriteMode::Single`]), the other thread makes
/// them all, in order. A batch refused as unsupported makes every insert
/// again one call at a time (one already in is written again unchanged).
pub fn insert_while<R>(
    tries: &mut Tries<'_>,
    v4: &[Ipv4Net],
    v6: &[Ipv6Net],
    meanwhile: impl FnOnce() -> R,
) -> (anyhow::Result<()>, R) {
    if tries.mode == WriteMode::Single {
        let (v4_trie, v6_trie, mut mode) = (&mut *tries.v4, &mut *tries.v6, tries.mode);
        let (inserted, result) = parallel::both(
            move || -> anyhow::Result<()> {
                insert_all(v4_trie, v4, &mut mode)?;
                insert_all(v6_trie, v6, &mut mode)
            },
            meanwhile,
        );
        return (inserted, result);
    }
    let (v4_trie, v6_trie) = (tries.v4.map().fd().as_fd(), tries.v6.map().fd().as_fd());
    let make = |batch: Batch<'_>| match batch {
        Batch::V4(nets) => insert_batch(v4_trie, nets),
        Batch::V6(nets) => insert_batch(v6_trie, nets),
    };
    let shared = SharedBatches::new(v4, v6);
    let (theirs, (mine, result)) = parallel::both(
        || shared.work(make),
        || {
            let result = meanwhile();
            (shared.work(make), result)
        },
    );
    let inserted = match (theirs, mine) {
        (Err(BatchFailure::Failed(e)), _) | (_, Err(BatchFailure::Failed(e))) => Err(e),
        (Err(BatchFailure::Unsupported(e)), _) | (_, Err(BatchFailure::Unsupported(e))) => {
            log::debug!("batched updates refused ({e}): one at a time");
            tries.mode = WriteMode::Single;
            insert_all(tries.v4, v4, &mut tries.mode)
                .and_then(|()| insert_all(tries.v6, v6, &mut tries.mode))
        }
        (Ok(()), Ok(())) => Ok(()),
    };
    (inserted, result)
}

/// One batch of inserts: at most [`BATCH_LEN`] prefixes of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Batch<'a> {
    V4(&'a [Ipv4Net]),
    V6(&'a [Ipv6Net]),
}

/// The batches of inserts that [`insert_while`]'s two threads share: each
/// takes the next one no thread has taken, IPv4's first.
struct SharedBatches<'a> {
    v4: &'a [Ipv4Net],
    v6: &'a [Ipv6Net],
    /// The next batch to take, counted over IPv4's then IPv6's.
    next: AtomicUsize,
    /// Set by a thread whose batch failed: the other takes no more.
    stop: AtomicBool,
}

impl<'a> SharedBatches<'a> {
    fn new(v4: &'a [Ipv4Net], v6: &'a [Ipv6Net]) -> Self {
        Self {
            v4,
            v6,
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Batch `i`, counted over IPv4's then IPv6's; `None` past the last.
    fn batch(&self, i: usize) -> Option<Batch<'a>> {
        let v4_batches = self.v4.len().div_ceil(BATCH_LEN);
        match i.checked_sub(v4_batches) {
            None => Some(Batch::V4(nth_batch(self.v4, i))),
            Some(i) if i < self.v6.len().div_ceil(BATCH_LEN) => {
                Some(Batch::V6(nth_batch(self.v6, i)))
            }
            Some(_) => None,
        }
    }

    /// Makes batches with `make` until none is left, one fails, or one of
    /// the other thread's failed.
    fn work(
        &self,
        mut make: impl FnMut(Batch<'a>) -> Result<(), BatchFailure>,
    ) -> Result<(), BatchFailure> {
        while !self.stop.load(Ordering::Relaxed) {
            let Some(batch) = self.batch(self.next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            if let Err(e) = make(batch) {
                self.stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Batch `i` of `nets`: [`BATCH_LEN`] prefixes long, but for the last.
fn nth_batch<N>(nets: &[N], i: usize) -> &[N] {
    let start = i.saturating_mul(BATCH_LEN).min(nets.len());
    &nets[start..start.saturating_add(BATCH_LEN).min(nets.len())]
}

/// Why a batch of inserts did not go in whole.
enum BatchFailure {
    /// The kernel refused it as unsupported, before its first prefix.
    Unsupported(std::io::Error),
    /// It stopped part-way; the error says how far it got.
    Failed(anyhow::Error),
}

/// Inserts `chunk` (at most [`BATCH_LEN`] prefixes) into the trie `trie`
/// with one BPF_MAP_UPDATE_BATCH.
fn insert_batch<N>(trie: BorrowedFd<'_>, chunk: &[N]) -> Result<(), BatchFailure>
where
    N: Prefix,
    N::Octets: Pod,
{
    let keys: Vec<Key<N::Octets>> = chunk.iter().map(trie_key).collect();
    let values: Vec<u8> = chunk.iter().map(Prefix::length).collect();
    match sys::map_batch(trie, BatchOp::Update, &keys, &values) {
        Ok(()) => Ok(()),
        Err(e) if e.done == 0 && sys::batch_unsupported(&e.error) => {
            Err(BatchFailure::Unsupported(e.error))
        }
        Err(e) => {
            let failed = chunk
                .get(e.done)
                .map_or_else(String::new, |n| n.to_string());
            Err(BatchFailure::Failed(anyhow::Error::new(e.error).context(
                format!(
                    "adding prefixes to {} in a batch: {} of its {} went in, then {failed} \
                     failed (the next refresh finishes the job)",
                    trie_name::<N>(),
                    e.done,
                    chunk.len()
                ),
            )))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn v4s(count: u32) -> Vec<Ipv4Net> {
        (0..count)
            .map(|i| Ipv4Net::new((i << 8).into(), 24).expect("a /24"))
            .collect()
    }

    fn v6s(count: u128) -> Vec<Ipv6Net> {
        (0..count)
            .map(|i| Ipv6Net::new((i << 80).into(), 48).expect("a /48"))
            .collect()
    }

    #[test]
    fn two_threads_sharing_the_batches_insert_every_prefix_once_in_batches_of_one_family() {
        for (n4, n6) in [
            (0, 0),
            (1, 0),
            (0, 1),
            (BATCH_LEN, BATCH_LEN + 1),
            (3 * BATCH_LEN - 1, 2),
            (2, 5 * BATCH_LEN),
        ] {
            let (v4, v6) = (v4s(n4 as u32), v6s(n6 as u128));
            let shared = SharedBatches::new(&v4, &v6);
            let made = Mutex::new(Vec::new());
            let make = |batch| {
                made.lock().expect("not poisoned").push(batch);
                Ok(())
            };
            let (first, second) = parallel::both(|| shared.work(make), || shared.work(make));
            assert!(first.is_ok() && second.is_ok(), "{n4}, {n6}");
            let (mut got4, mut got6) = (Vec::new(), Vec::new());
            for batch in made.into_inner().expect("not poisoned") {
                match batch {
                    Batch::V4(nets) => {
                        assert!((1..=BATCH_LEN).contains(&nets.len()));
                        got4.extend_from_slice(nets);
                    }
                    Batch::V6(nets) => {
                        assert!((1..=BATCH_LEN).contains(&nets.len()));
                        got6.extend_from_slice(nets);
                    }
                }
            }
            got4.sort();
            got6.sort();
            assert_eq!((got4, got6), (v4, v6), "{n4} IPv4, {n6} IPv6");
        }
    }

    #[test]
    fn a_failed_batch_stops_the_other_thread_taking_more() {
        let (v4, v6) = (v4s(3 * BATCH_LEN as u32), v6s(2));
        let shared = SharedBatches::new(&v4, &v6);
        let failed = shared.work(|_| Err(BatchFailure::Failed(anyhow::anyhow!("no room"))));
        assert!(matches!(failed, Err(BatchFailure::Failed(_))));
        let mut taken = 0;
        let after = shared.work(|_| {
            taken += 1;
            Ok(())
        });
        assert!(after.is_ok());
        assert_eq!(taken, 0, "batches taken after another failed");
    }
}
