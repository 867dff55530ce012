//! The allowlist tries and the fast path in front of them: read back,
//! changed by a diff, and asked for one address. One generic function per
//! operation serves both families.

use std::{net::IpAddr, os::fd::AsFd as _};

use anyhow::Context as _;
use aya::{
    Pod,
    maps::{IterableMap as _, LpmTrie, MapData, MapError, lpm_trie::Key},
};
use filter_common::{Ipv4Key, Ipv6Key, MAX_PREFIXES, map_names};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{
    ConfigMap, FastMaps, Installed,
    trie_reads::{TrieReader, each_prefix},
    trie_writes::{Pending, Tries, WriteMode, insert_while, remove_all},
};
use crate::{
    allowlist::{Allowlist, Prefix},
    diff::Diff,
    error::Refused,
    fast_path::{self, FastPath, Path, Plan, Record, Survey, Table, Update, Write},
    sys,
};

/// The two tries, one per family (each entry's value is its prefix
/// length), and the fast path's maps in front of them.
pub struct AllowMaps {
    v4: LpmTrie<MapData, Ipv4Key, u8>,
    v6: LpmTrie<MapData, Ipv6Key, u8>,
    /// ALLOW_V4's map id, which stamps the list's record as this filter's.
    owner: u32,
    /// The bitmaps, the /48 table and the list's digest.
    pub fast: FastMaps,
    /// How the tries are written: batched where the kernel can.
    writes: WriteMode,
}
/// What the program does with one source, read from the live maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// The trie's longest match.
    pub prefix: Option<IpNet>,
    /// The source's way through the fast path.
    pub path: Path,
}

impl Lookup {
    /// Whether the program allows the source.
    pub fn allowed(&self) -> bool {
        self.path.allows(self.prefix.is_some())
    }

    /// False when the fast path decides otherwise than the trie would: only
    /// while a refresh is under way, or after one was killed (the next
    /// refresh repairs it).
    pub fn consistent(&self) -> bool {
        self.path
            .answer()
            .is_none_or(|allowed| allowed == self.prefix.is_some())
    }
}

impl AllowMaps {
    /// Opens both tries' pins.
    pub fn open(installed: &Installed) -> anyhow::Result<Self> {
        let v4 = installed.map_data(map_names::ALLOW_V4)?;
        let owner = v4.info().context("reading ALLOW_V4's info")?.id();
        Ok(Self {
            v4: Installed::typed(v4, &installed.pins().map(map_names::ALLOW_V4))?,
            owner,
            v6: installed.map(map_names::ALLOW_V6)?,
            fast: FastMaps::open(installed)?,
            writes: WriteMode::for_this_kernel(),
        })
    }

    /// How [`AllowMaps::apply`] writes the tries: batched where this
    /// kernel's LPM tries take batches, unless [`super::trie_writes::WRITE_MODE_ENV`]
    /// says otherwise or a batch was refused as unsupported.
    pub fn write_mode(&self) -> WriteMode {
        self.writes
    }

    /// The live allowlist, read back from the tries.
    pub fn read(&self) -> anyhow::Result<Allowlist> {
        self.tries().read()
    }

    /// The tries, to read back on another thread (a refresh reads the live
    /// list while it parses the new one).
    pub fn tries(&self) -> TrieReader<'_> {
        TrieReader {
            v4: &self.v4,
            v6: &self.v6,
        }
    }

    /// Makes the tries hold `new` (by `diff`, their change from the live
    /// list `live`) and the fast path `new`'s states, in the order
    /// [`fast_path`]'s documentation proves never denies an address allowed
    /// before and by `new`. The digest is cleared first and set last, so a
    /// refresh killed halfway leaves none. Bumps the list generation in
    /// `config` when something changed. Returns the number of fast-path
    /// writes. The caller holds the pin directory's lock.
    ///
    /// A list never holds more than half a trie ([`crate::ranges::MAX_LIST_PREFIXES`]), so
    /// the inserts fit; only a trie filled past that (by an older mxgate)
    /// may not take them all at once. Then the prefixes that lose access
    /// anyway, holding no address the new list allows, go first: that opens
    /// no gap. If it still does not fit, nothing is written.
    ///
    /// `plan` is `new`'s [`Plan`] from the live fast path, when the caller
    /// computed it already (a refresh does while the tries are read back);
    /// otherwise it is computed here while the kernel makes the inserts.
    pub fn apply(
        &mut self,
        live: &Allowlist,
        diff: &Diff,
        new: &Allowlist,
        plan: Option<Plan>,
        config: &mut ConfigMap,
    ) -> anyhow::Result<usize> {
        let (d4, d6) = (&diff.v4, &diff.v6);
        let early_v4 = make_room(live.v4.len(), &d4.added, &d4.removed, || {
            live_after(&live.v4, &d4.added, &d4.removed)
        })?;
        let early_v6 = make_room(live.v6.len(), &d6.added, &d6.removed, || {
            live_after(&live.v6, &d6.added, &d6.removed)
        })?;
        if self.fast.record()?.is_some() {
            self.fast.set_record(None, self.owner)?;
        }
        remove_all(&mut self.v4, &early_v4, &mut self.writes)?;
        remove_all(&mut self.v6, &early_v6, &mut self.writes)?;
        // The trie inserts come first in the proven order and need nothing
        // of the fast path: the kernel makes them while this thread
        // computes the fast path's words, unless the caller did (a refresh
        // that loads a list waits for the longer of the two, not for both).
        let mut tries = Tries {
            v4: &mut self.v4,
            v6: &mut self.v6,
            mode: self.writes,
        };
        let fast = &self.fast;
        let (inserted, plan) = insert_while(&mut tries, &diff.v4.added, &diff.v6.added, || {
            // SAFETY: the fast path's maps are written only by the mxgate
            // that holds the pin directory's lock (the caller), and only
            // below, once the plan is made; meanwhile the tries alone are
            // written.
            plan.unwrap_or_else(|| Plan::new(new, unsafe { fast.live_maps() }))
        });
        inserted?;
        let update = Update {
            diff: diff.clone(),
            words: plan.words,
        };
        // Trie writes are queued and made in batches; a fast-path word
        // first makes every trie write before it (see `trie_writes`).
        let mut pending = Pending::default();
        let mut fast_writes = 0;
        // The inserts, which lead the writes, are made.
        let after_inserts = update
            .writes()
            .skip_while(|write| matches!(write, Write::Insert(_)));
        for write in after_inserts {
            match write {
                Write::Insert(net) => pending.insert(&mut tries, net)?,
                // The early ones are gone already: removing them again is
                // a no-op.
                Write::Remove(net) => pending.remove(&mut tries, net)?,
                Write::Word(table, index, value) => {
                    pending.flush(&mut tries)?;
                    self.fast.store(table, index, value)?;
                    fast_writes += 1;
                }
            }
        }
        pending.flush(&mut tries)?;
        self.writes = tries.mode;
        self.fast.set_record(Some(plan.record), self.owner)?;
        if !update.is_empty() {
            config.bump_list_generation()?;
        }
        Ok(fast_writes)
    }

    /// The digest of the list the maps hold, when known (see
    /// [`fast_path::digest`]).
    pub fn digest(&self) -> anyhow::Result<Option<[u8; 32]>> {
        self.fast.digest()
    }

    /// What LIST_DIGEST records of the list the maps hold, when known.
    pub fn record(&self) -> anyhow::Result<Option<Record>> {
        self.fast.record()
    }

    /// Records `record` as the maps' (see [`FastMaps::set_record`]): for
    /// tests that play another tool writing the maps.
    pub fn set_record(&mut self, record: Option<Record>) -> anyhow::Result<()> {
        self.fast.set_record(record, self.owner)
    }

    /// The maps as they are, in the terms of their [`Record`]: what a
    /// refresh with the recorded list checks before it trusts the record.
    /// Walks the tries' keys and reads the fast path once; allocates
    /// nothing.
    pub fn survey(&self) -> anyhow::Result<Survey> {
        let (v4, v4_sum) = survey_trie::<Ipv4Net>(&self.v4, map_names::ALLOW_V4)?;
        let (v6, v6_sum) = survey_trie::<Ipv6Net>(&self.v6, map_names::ALLOW_V6)?;
        Ok(Survey {
            entries: [v4, v6],
            trie_sums: Some([v4_sum, v6_sum]),
            fast_sum: self.fast.live_sum(),
        })
    }

    /// The maps as a refresh of unchanged sources checks them: the tries'
    /// entry counts as the kernel keeps them, and one read of the fast
    /// path. Linux 6.4+ charges an LPM trie's memory per entry, so the
    /// count costs no walk of the keys (which takes the kernel about 38 ms
    /// for 100,000 prefixes); a trie whose keys were swapped for as many
    /// others passes it, which [`Self::survey`] would catch (`status`,
    /// `refresh --force`, `attach` and a refresh that parses read every
    /// key). Where the kernel does not count, this is [`Self::survey`].
    pub fn counted_survey(&self) -> anyhow::Result<Survey> {
        match (kernel_count(&self.v4), kernel_count(&self.v6)) {
            (Some(v4), Some(v6)) => Ok(Survey {
                entries: [v4, v6],
                trie_sums: None,
                fast_sum: self.fast.live_sum(),
            }),
            _ => self.survey(),
        }
    }

    /// `new`'s [`Plan`] from the live fast path.
    ///
    /// # Safety
    ///
    /// The caller holds the pin directory's lock (nothing writes the fast
    /// path meanwhile) and writes the fast path only once the plan is made.
    pub unsafe fn plan(&self, new: &Allowlist) -> Plan {
        // SAFETY: the caller's guarantee.
        Plan::new(new, unsafe { self.fast.live_maps() })
    }

    /// Every way the maps are out of step: with their record (the tries
    /// or the fast path changed since the list was applied, or no record
    /// at all), and the fast path with the tries. Empty when in step.
    pub fn consistency(&self) -> anyhow::Result<Consistency> {
        let tries = self.read()?;
        let record = self.record()?;
        let mut found = Vec::new();
        match &record {
            None => found.push(
                "no list is recorded as applied (LIST_DIGEST is clear): a refresh is under way \
                 or was interrupted"
                    .to_owned(),
            ),
            Some(record) => {
                found.extend(record.drift(&self.survey()?));
                if found.is_empty() && record.digest != fast_path::digest(&tries) {
                    found.push(
                        "the tries hold other prefixes than the list applied last".to_owned(),
                    );
                }
            }
        }
        let wanted = FastPath::from_list(&tries);
        let live = self.fast.snapshot();
        let mut fast = fast_path::differences(&live, &wanted);
        let shown: Vec<String> = fast.by_ref().take(MAX_DIFFERENCES_SHOWN).collect();
        let more = fast.count();
        found.extend(shown.into_iter().map(|d| format!("fast path: {d}")));
        if more > 0 {
            found.push(format!("fast path: {more} more differences"));
        }
        Ok(Consistency { differences: found })
    }

    /// What the program does with `addr`: its way through the fast path,
    /// and the trie's longest match.
    pub fn lookup(&self, addr: IpAddr) -> anyhow::Result<Lookup> {
        let found = match addr {
            IpAddr::V4(a) => self.v4.get(&Key::new(32, a.octets()), 0),
            IpAddr::V6(a) => self.v6.get(&Key::new(128, a.octets()), 0),
        };
        let prefix = match found {
            Ok(len) => Some(IpNet::new(addr, len)?.trunc()),
            Err(MapError::KeyNotFound) => None,
            Err(e) => return Err(e).context("looking the address up in the allowlist"),
        };
        Ok(Lookup {
            prefix,
            path: self.path(addr),
        })
    }

    /// `addr`'s way through the live fast path.
    fn path(&self, addr: IpAddr) -> Path {
        Path::read(addr, |table, index| match table {
            Table::V4 => self.fast.v4.word(index),
            Table::V6 => self.fast.v6.word(index),
            Table::Mids => self.fast.mids.word(index),
            Table::Slots => self.fast.slots.word(index),
        })
    }

    /// The first way the fast path differs from what the live tries give,
    /// or `None` when it is in step with them.
    pub fn check_fast_path(&self) -> anyhow::Result<Option<String>> {
        let live = self.fast.snapshot();
        Ok(fast_path::first_difference(
            &live,
            &FastPath::from_list(&self.read()?),
        ))
    }
}

/// Most fast-path differences [`AllowMaps::consistency`] names one by one.
const MAX_DIFFERENCES_SHOWN: usize = 10;

/// How the maps stand against their record and each other.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consistency {
    /// Each difference, in words; empty when everything is in step.
    pub differences: Vec<String>,
}

impl Consistency {
    /// True when the maps hold what their record says and the fast path
    /// is the tries'.
    pub fn in_step(&self) -> bool {
        self.differences.is_empty()
    }
}

/// The number of prefixes in `trie` as the kernel counts them, when it
/// does ([`sys::lpm_entry_bytes`]).
fn kernel_count<K: Pod>(trie: &LpmTrie<MapData, K, u8>) -> Option<u32> {
    let per_entry = sys::lpm_entry_bytes(size_of::<Key<K>>() as u32, 1)?;
    let charged = sys::map_memlock(trie.map().fd().as_fd()).ok()?;
    if charged % per_entry != 0 {
        return None;
    }
    u32::try_from(charged / per_entry).ok()
}

/// The number of prefixes in `trie` and their [`fast_path::prefix_sum`].
fn survey_trie<N>(trie: &LpmTrie<MapData, N::Octets, u8>, name: &str) -> anyhow::Result<(u32, u64)>
where
    N: Prefix,
    N::Octets: Pod,
{
    let (mut count, mut sum) = (0u32, 0u64);
    each_prefix::<N>(trie, name, |net| {
        count = count.saturating_add(1);
        sum = sum.wrapping_add(fast_path::prefix_term(net.network_key(), net.length()));
    })?;
    Ok((count, sum))
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
/// list after the change (`after` makes it, only then). Errors when even
/// that is not enough.
fn make_room<N: Prefix>(
    live_len: usize,
    added: &[N],
    removed: &[N],
    after: impl FnOnce() -> Vec<N>,
) -> anyhow::Result<Vec<N>> {
    let capacity = MAX_PREFIXES as usize;
    if live_len + added.len() <= capacity {
        return Ok(Vec::new());
    }
    let after = after();
    let early: Vec<N> = removed
        .iter()
        .filter(|r| !crate::allowlist::overlaps(&after, r))
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

#[cfg(test)]
mod tests {
    use ipnet::{Ipv4Net, Ipv6Net};

    use super::*;

    fn v4(i: u32, len: u8) -> Ipv4Net {
        Ipv4Net::new((i << 8).into(), len).expect("a prefix")
    }

    const CAPACITY: usize = MAX_PREFIXES as usize;

    #[test]
    fn inserts_that_fit_remove_nothing_first() {
        let added = [v4(1, 24)];
        let early = make_room(CAPACITY - 1, &added, &[v4(2, 24)], || added.to_vec()).expect("fits");
        assert!(early.is_empty());
    }

    #[test]
    fn a_full_trie_first_removes_only_prefixes_that_lose_access_anyway() {
        // 192.0.2.0/24 leaves, and 10.0.1.0/24 goes too but 10.0.1.0/25
        // stays allowed by the new list: removing it early would open a gap.
        let leaving = Ipv4Net::new([192, 0, 2, 0].into(), 24).expect("a /24");
        let narrowed = Ipv4Net::new([10, 0, 1, 0].into(), 24).expect("a /24");
        let kept_half = Ipv4Net::new([10, 0, 1, 0].into(), 25).expect("a /25");
        let added = [kept_half, v4(7, 24)];
        // Sorted, as `live_after` gives it.
        let after = [v4(7, 24), kept_half];
        let early = make_room(CAPACITY - 1, &added, &[leaving, narrowed], || {
            after.to_vec()
        })
        .expect("fits");
        assert_eq!(early, vec![leaving]);
    }

    #[test]
    fn a_trie_too_full_even_after_the_early_removals_is_refused_and_says_how_to_proceed() {
        let added: Vec<Ipv6Net> = (0..3u128)
            .map(|i| Ipv6Net::new((0x2001_0db8u128 << 96 | i << 64).into(), 64).expect("a /64"))
            .collect();
        let err = make_room(CAPACITY, &added, &[], || added.to_vec()).expect_err("no room");
        let text = format!("{err:#}");
        assert!(err.downcast_ref::<Refused>().is_some(), "{text}");
        assert!(
            text.contains("IPv6") && text.contains("nothing changed"),
            "{text}"
        );
    }
}
