//! The fast path in front of the tries, as plain data: the block states an
//! allowlist gives (see `filter_common::fast_path` for what they mean to
//! the program), the changes that turn the live maps into those of a new
//! list, and the order of every write of a refresh.
//!
//! # The order of a refresh's writes
//!
//! The program denies a source only where a bitmap says `None`, or where
//! the IPv6 bitmap says `Next` and the source's /32 slot holds neither it
//! nor the shared mark, or where that slot says `Next` and the source's
//! /48 slot holds neither it nor the shared mark. A refresh writes, in
//! this order ([`Update::writes`]):
//!
//! 1. every trie insert;
//! 2. every /48 slot that changes, "widened": to its new value if it was
//!    empty or held the same /48, else (two /48s) to the shared mark; a
//!    slot that empties keeps its value for now;
//! 3. every /32 slot that changes, widened the same way;
//! 4. every bitmap word that changes: the /24s, then the summaries;
//! 5. every trie delete;
//! 6. every /32 slot whose widened value is not its new one, to its new
//!    value;
//! 7. the same for the /48 slots.
//!
//! Every map write is one 64-bit store, so the program reads each block
//! and slot as it was before the store or after it. Take an address
//! allowed before the refresh and by the new list. Until step 5 the trie
//! holds all the prefixes of both, so wherever it is asked it allows the
//! address. A slot the old maps used still answers for its key once
//! widened (with its new state, which allows the address too or sends it
//! on to a level that does, or the shared mark, which asks the trie). The
//! /48 slots are widened before the /32 slots, so a /32 that turns `Next`
//! finds the /48s of the new list already in place; the /32 slots before
//! the bitmap words, so a /24 that turns `Next` finds its /32s. During
//! step 4 each block is old or new. (A summary only says what the /24s
//! under it say, and they are complete whatever it says, so it is safe
//! whenever it changes; it changes last.) From step 5 on, the bitmaps are
//! the new ones, every slot answers for the keys of the new list, and the
//! trie still holds all of it. Steps 6 and 7 narrow slots to exactly the
//! new list's, top level first, so a /32 slot never points into a /48
//! table that lacks the new list's /48s. So no such address is denied at
//! any point, including when the refresh is killed between two writes;
//! and since the next refresh compares the wanted maps with the live ones
//! (not with the old list's), it finishes whatever a killed one left half
//! done. The module's tests run every prefix of the writes against a model
//! of the program.

use std::{
    cmp::Reverse,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use filter_common::fast_path::{
    BLOCK_BITS, BLOCK_LEN, BLOCK_MASK, BLOCKS_PER_WORD, BlockState, Bucket, MAX_MIDS,
    MAX_SUBBLOCKS, MAX_SUBBLOCKS_PER_MID, MID_BUCKETS, MID_LEN, MID_SLOTS, Mid, SLOT_SHARED,
    SLOTS_PER_BUCKET, SUBBLOCK_BUCKETS, SUBBLOCK_LEN, SUBBLOCK_SLOTS, SUMMARY_LENS, SUMMARY_LEVELS,
    SUMMARY_WORDS, Subblock, bucket_state, mid_bucket, shift_of, slot_key, slot_state, slot_value,
    state_in, subblock_bucket, summary_base, summary_word_of, unit_of, v4_block, v6_block, v6_mid,
    v6_subblock, word_of,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::{
    allowlist::{Allowlist, Prefix},
    diff::Diff,
    parallel,
};

/// The fast-path maps' contents for one allowlist: the words of each map
/// that are not zero. The maps hold 24.6 MiB, of which a list sets little
/// (100,000 IPv6 prefixes: about 2 MiB), so a refresh builds and compares
/// only what the list sets, and reads the live maps once.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FastPath {
    /// IPv4 summaries and /24 states (FAST_V4, [`WORDS`](filter_common::fast_path::WORDS) words).
    pub v4: Words,
    /// IPv6 summaries and /24 states (FAST_V6, [`WORDS`](filter_common::fast_path::WORDS) words).
    pub v6: Words,
    /// The IPv6 /32 table: its buckets of [`SLOTS_PER_BUCKET`] slots, one
    /// after the other (MIDS_V6, [`MID_SLOTS`] words).
    pub mids: Words,
    /// The IPv6 /48 table: its buckets of [`SLOTS_PER_BUCKET`] slots, one
    /// after the other (BLOCKS_V6, [`SUBBLOCK_SLOTS`] words).
    pub slots: Words,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("v4_nonzero_words", &self.v4.len())
            .field("v6_nonzero_words", &self.v6.len())
            .field("used_mid_slots", &self.mids.len())
            .field("used_slots", &self.slots.len())
            .finish()
    }
}

/// The words of one fast-path map that are not zero, each with its index,
/// in order of index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Words(Vec<(u32, u64)>);

impl Words {
    /// The words of `words` (a whole map, from index 0) that are not zero.
    pub fn of(words: &[u64]) -> Self {
        Self(nonzero(words).collect())
    }

    /// The words of `words` (a whole map, one at a time from index 0)
    /// that are not zero.
    pub fn collect(words: impl IntoIterator<Item = u64>) -> Self {
        Self((0u32..).zip(words).filter(|(_, w)| *w != 0).collect())
    }

    /// Word `index`: 0 where none is set.
    pub fn get(&self, index: u32) -> u64 {
        self.0
            .binary_search_by_key(&index, |(i, _)| *i)
            .map_or(0, |at| self.0[at].1)
    }

    /// The words set, with their indexes, in order of index.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.0.iter().copied()
    }

    /// How many words are set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no word is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The words `parts` make (block states, each part a word's blocks in
    /// any order and an index any number of times): each index once, its
    /// blocks [`join`]ed.
    fn joined(mut parts: Vec<(u32, u64)>) -> Self {
        if !parts.is_sorted_by_key(|(i, _)| *i) {
            // Stable, so the runs of a sorted list's parts merge in
            // linear time.
            parts.sort_by_key(|(i, _)| *i);
        }
        parts.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = join(kept.1, later.1);
            }
            same
        });
        Self(parts)
    }
}

/// The fast-path maps whole, as the program reads them, borrowed: the live
/// ones (or, in tests, a model of them).
#[derive(Clone, Copy)]
pub struct BlockMaps<'a> {
    /// IPv4 /24 states.
    pub v4: &'a [u64],
    /// IPv6 /24 states.
    pub v6: &'a [u64],
    /// The IPv6 /32 table.
    pub mids: &'a [u64],
    /// The IPv6 /48 table.
    pub slots: &'a [u64],
}

/// One of the fast path's arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// The IPv4 /24 bitmap (FAST_V4).
    V4,
    /// The IPv6 /24 bitmap (FAST_V6).
    V6,
    /// The IPv6 /32 table (MIDS_V6).
    Mids,
    /// The IPv6 /48 table (BLOCKS_V6).
    Slots,
}

impl FastPath {
    /// The states `list` gives. Blocks a prefix covers in full are `Full`;
    /// a /24 an IPv4 prefix covers in part asks the trie; an IPv6 /24
    /// covered in part asks the /32 table, unless the /32s of all such
    /// /24s are more than [`MAX_MIDS`] (then the /24s needing most ask the
    /// trie); a /32 covered in part asks the /48 table, unless it alone
    /// would need more than [`MAX_SUBBLOCKS_PER_MID`] /48s or all of them
    /// more than [`MAX_SUBBLOCKS`] (then the /32s needing most ask the
    /// trie).
    pub fn from_list(list: &Allowlist) -> Self {
        let (v6, mids, subblocks) = v6_states(&list.v6);
        Self {
            v4: with_summaries(v4_states(&list.v4)),
            v6: with_summaries(v6),
            mids: hashed(&mids, mid_bucket, MID_BUCKETS),
            slots: hashed(&subblocks, subblock_bucket, SUBBLOCK_BUCKETS),
        }
    }

    /// What `maps` hold.
    pub fn of(maps: BlockMaps<'_>) -> Self {
        Self {
            v4: Words::of(maps.v4),
            v6: Words::of(maps.v6),
            mids: Words::of(maps.mids),
            slots: Words::of(maps.slots),
        }
    }

    /// The [`fast_sum`] of its words.
    pub fn sum(&self) -> u64 {
        [
            (Table::V4, &self.v4),
            (Table::V6, &self.v6),
            (Table::Mids, &self.mids),
            (Table::Slots, &self.slots),
        ]
        .into_iter()
        .fold(0u64, |sum, (table, words)| {
            words.iter().fold(sum, |sum, (i, word)| {
                sum.wrapping_add(word_term(table, u64::from(i), word))
            })
        })
    }

    /// The words of `table`.
    pub fn table(&self, table: Table) -> &Words {
        match table {
            Table::V4 => &self.v4,
            Table::V6 => &self.v6,
            Table::Mids => &self.mids,
            Table::Slots => &self.slots,
        }
    }

    /// The path `addr` takes through these maps.
    pub fn path(&self, addr: IpAddr) -> Path {
        Path::read(addr, |table, index| self.table(table).get(index))
    }
}

/// The words of `words` that are not zero, with their indexes: most of a
/// map is zeroes, skipped a cache line at a time.
fn nonzero(words: &[u64]) -> impl Iterator<Item = (u32, u64)> + '_ {
    words
        .chunks(8)
        .enumerate()
        .filter(|(_, line)| line.iter().fold(0, |any, w| any | w) != 0)
        .flat_map(|(n, line)| {
            line.iter()
                .enumerate()
                .filter(|(_, w)| **w != 0)
                .map(move |(i, w)| ((n * 8 + i) as u32, *w))
        })
}

/// Words of the level after a summary under one word of it: each of the
/// word's units has 16 children, one half of a word of that level.
const CHILD_WORDS: usize = BLOCKS_PER_WORD as usize / 2;

/// A bitmap's words: the summaries of `blocks` (its /24 words), widest
/// first, then `blocks`. A unit is `None` when all its 16 children are,
/// `Full` when all are, else `Next`; a summary word whose units are all
/// `None` is not set.
fn with_summaries(blocks: Words) -> Words {
    let mut levels = vec![blocks.0];
    for level in (0..SUMMARY_LEVELS).rev() {
        let children = levels.last().map_or(&[][..], Vec::as_slice);
        levels.push(summaries(level, children));
    }
    Words(levels.into_iter().rev().flatten().collect())
}

/// The words of summary `level` over `children`, the words set of the
/// level after it: each summary word over its [`CHILD_WORDS`] children.
fn summaries(level: usize, children: &[(u32, u64)]) -> Vec<(u32, u64)> {
    let first = summary_base(level + 1);
    let parent = |index: u32| (index - first) / CHILD_WORDS as u32;
    children
        .chunk_by(|a, b| parent(a.0) == parent(b.0))
        .filter_map(|group| {
            let (head, _) = group.first()?;
            let mut words = [0u64; CHILD_WORDS];
            for (i, word) in group {
                words[(i - first) as usize % CHILD_WORDS] = *word;
            }
            let word = summary_word(&words);
            (word != 0).then(|| (summary_base(level) + parent(*head), word))
        })
        .collect()
}

/// The summary word of the units whose children are `children`
/// (two units' children each, low half first).
fn summary_word(children: &[u64; CHILD_WORDS]) -> u64 {
    // Most of a sparse list's space: every unit `None`, found without
    // looking at the halves.
    if children.iter().fold(0, |any, child| any | child) == 0 {
        return 0;
    }
    children.iter().enumerate().fold(0, |word, (i, child)| {
        let pair = unit_state(*child as u32) | unit_state((child >> 32) as u32) << BLOCK_BITS;
        word | pair << (2 * BLOCK_BITS * i as u32)
    })
}

/// The state's bits of a unit whose 16 children are `half`.
fn unit_state(half: u32) -> u64 {
    const FULL_HALF: u32 = BlockState::Full as u32 * 0x5555_5555;
    let state = match half {
        0 => BlockState::None,
        FULL_HALF => BlockState::Full,
        _ => BlockState::Next,
    };
    state as u64
}

/// A hashed table's words for `entries` (in order of key, each key once):
/// each key in a slot of the bucket `bucket` gives, a bucket's keys in
/// their order from its first slot on, with no empty slot between them
/// (the program's lookup stops at the first empty one); a bucket more
/// keys hash to than it has slots holds the shared mark alone (the trie
/// decides for all of them).
fn hashed(entries: &[(u64, BlockState)], bucket: fn(u64) -> u32, buckets: u32) -> Words {
    let of: Vec<u32> = entries.iter().map(|(key, _)| bucket(*key)).collect();
    // The entries in order of bucket, a bucket's in order of key: a
    // counting sort (`ends[b]`, where bucket b's entries end in `order`,
    // counts down to where they start), faster than sorting by
    // comparisons at every size a list reaches.
    let mut ends = vec![0u32; buckets as usize];
    for b in &of {
        ends[*b as usize] += 1;
    }
    let mut total = 0;
    for end in &mut ends {
        total += *end;
        *end = total;
    }
    let mut order = vec![0u32; entries.len()];
    for (at, b) in of.iter().enumerate().rev() {
        let end = &mut ends[*b as usize];
        *end -= 1;
        order[*end as usize] = at as u32;
    }
    let mut words = Vec::with_capacity(order.len());
    for run in order.chunk_by(|a, b| of[*a as usize] == of[*b as usize]) {
        let Some(head) = run.first() else { continue };
        let first = of[*head as usize] * SLOTS_PER_BUCKET as u32;
        if run.len() > SLOTS_PER_BUCKET {
            words.push((first, SLOT_SHARED));
            continue;
        }
        for (slot, at) in (first..).zip(run) {
            // No key's value is 0 (no entry is `None`).
            let (key, state) = entries[*at as usize];
            words.push((slot, slot_value(key, state)));
        }
    }
    Words(words)
}

/// The IPv4 /24 words of `list`.
fn v4_states(list: &[Ipv4Net]) -> Words {
    let mut parts = Parts::default();
    for net in list {
        let first = v4_block(&net.network().octets());
        match blocks_covered(net.prefix_len()) {
            Some(count) => parts.fill(first, count),
            None => parts.set(first, BlockState::Trie),
        }
    }
    parts.words()
}

/// The /48 table entries of an IPv6 list, in order of key, each key once.
type V6Subblocks = Vec<(Subblock, BlockState)>;

/// The /32 and /48 table entries of an IPv6 list, each in order of key
/// and each key once.
type V6Entries = (Vec<(Mid, BlockState)>, V6Subblocks);

/// The IPv6 /24 words of `list`, the /32s the /24s in state `Next` need
/// and the /48s the /32s in state `Next` need, with their states.
fn v6_states(list: &[Ipv6Net]) -> (Words, Vec<(Mid, BlockState)>, V6Subblocks) {
    let mut parts = Parts::default();
    for net in list {
        if let Some(count) = blocks_covered(net.prefix_len()) {
            parts.fill(v6_block(&net.network().octets()), count);
        }
    }
    let full = parts.words();
    // Prefixes longer than a block, in blocks no shorter prefix covers
    // whole, sorted: then the prefixes of a /24, and the longer ones of a
    // /32, are runs. The list is sorted already, so this is one pass.
    let mut partial: Vec<Ipv6Net> = list
        .iter()
        .filter(|net| {
            let block = v6_block(&net.network().octets());
            net.prefix_len() > BLOCK_LEN
                && state_in(full.get(word_of(block)), block) != BlockState::Full
        })
        .copied()
        .collect();
    partial.sort_unstable();
    let blocks = runs(&partial, |net| v6_block(&net.network().octets()));
    let mut parts = Parts {
        full: Vec::new(),
        words: full.0,
    };
    let (mut mids, within) = mid_entries(&blocks, &mut parts);
    let (partial_mids, subblocks) = subblock_entries(&within, &mids);
    // Two sorted runs of different /32s: the stable sort merges runs.
    mids.extend(partial_mids);
    mids.sort();
    (parts.words(), mids, subblocks)
}

/// The runs of the sorted `nets` that share `key`, each with it.
fn runs<K: PartialEq>(nets: &[Ipv6Net], key: fn(&Ipv6Net) -> K) -> Vec<(K, &[Ipv6Net])> {
    nets.chunk_by(|a, b| key(a) == key(b))
        .filter_map(|run| Some((key(run.first()?), run)))
        .collect()
}

/// The /32 level: sets each of `blocks` (a /24 with its prefixes, in
/// order of /24) to `Next` in `parts`, or to `Trie` for those needing
/// most when all need more than [`MAX_MIDS`] /32s. Returns the /32s the
/// `Next` ones' prefixes cover whole (in order, each once, all `Full`)
/// and their prefixes longer than a /32 (in order).
fn mid_entries(
    blocks: &[(u32, &[Ipv6Net])],
    parts: &mut Parts,
) -> (Vec<(Mid, BlockState)>, Vec<Ipv6Net>) {
    let mut full = Vec::new();
    let mut within = Vec::new();
    let fits = budget(blocks, mids_needed, u64::MAX, MAX_MIDS);
    for (&(block, nets), fits) in blocks.iter().zip(fits) {
        if !fits {
            parts.set(block, BlockState::Trie);
            continue;
        }
        parts.set(block, BlockState::Next);
        for net in nets {
            let first = v6_mid(&net.network().octets());
            if net.prefix_len() <= MID_LEN {
                let count = 1u64 << (MID_LEN - net.prefix_len());
                full.extend((first..first + count).map(|mid| (mid, BlockState::Full)));
            } else {
                within.push(*net);
            }
        }
    }
    // An unmerged list may cover a /32 twice, or nest its prefixes.
    full.sort_unstable();
    full.dedup();
    (full, within)
}

/// The /48 level, for the /32s of `within` (the sorted prefixes longer
/// than a /32 in /24s in state `Next`) that no shorter prefix covers whole
/// (`full`, in order): each is `Next`, or `Trie` if it alone needs more
/// than [`MAX_SUBBLOCKS_PER_MID`] /48s or, needing most, when all need
/// more than [`MAX_SUBBLOCKS`]. Returns those /32s with their states and
/// the /48s of the `Next` ones, each in order of key.
fn subblock_entries(within: &[Ipv6Net], full: &[(Mid, BlockState)]) -> V6Entries {
    let partial: Vec<(Mid, &[Ipv6Net])> = runs(within, |net| v6_mid(&net.network().octets()))
        .into_iter()
        .filter(|(mid, _)| full.binary_search_by_key(mid, |(m, _)| *m).is_err())
        .collect();
    let limit = u64::from(MAX_SUBBLOCKS_PER_MID);
    let fits = budget(&partial, subblocks_needed, limit, MAX_SUBBLOCKS);
    let mut mids = Vec::with_capacity(partial.len());
    let mut subblocks = Vec::new();
    for (&(mid, nets), fits) in partial.iter().zip(fits) {
        if !fits {
            mids.push((mid, BlockState::Trie));
            continue;
        }
        mids.push((mid, BlockState::Next));
        for net in nets {
            add_subblocks(&mut subblocks, net);
        }
    }
    // A /48 one prefix covers whole and others in part (an unmerged list)
    // is `Full`: `Full` sorts before `Trie`, and the first of a key stays.
    subblocks.sort_unstable();
    subblocks.dedup_by_key(|(subblock, _)| *subblock);
    (mids, subblocks)
}

/// Which of `groups` (keys with their prefixes, in order of key) get
/// entries in a table of `total` entries, each needing `need` of its
/// prefixes and at most `limit`: those needing most give way first (of
/// equal needs, the first key first), so the fewest ask the trie. Whether
/// each group fits, in the order of `groups`.
fn budget<K>(
    groups: &[(K, &[Ipv6Net])],
    need: fn(&[Ipv6Net]) -> u64,
    limit: u64,
    total: u32,
) -> Vec<bool> {
    let needs: Vec<u64> = groups.iter().map(|(_, nets)| need(nets)).collect();
    let mut sum: u64 = needs.iter().sum();
    if sum <= u64::from(total) {
        // All fit but those over the limit, whose leaving only lowers the
        // sum: no need to rank them.
        return needs.iter().map(|n| *n <= limit).collect();
    }
    // Neediest first, of equal needs the first key (the groups are in
    // order of key) first.
    let mut ranked: Vec<(Reverse<u64>, usize)> = needs
        .iter()
        .enumerate()
        .map(|(i, n)| (Reverse(*n), i))
        .collect();
    ranked.sort_unstable();
    let mut fits = vec![false; needs.len()];
    for (Reverse(n), i) in ranked {
        fits[i] = n <= limit && sum <= u64::from(total);
        if !fits[i] {
            sum -= n;
        }
    }
    fits
}

/// /32s the prefixes of one /24 need: every /32 of a prefix up to /32
/// long, and each /32 holding longer ones once.
fn mids_needed(nets: &[Ipv6Net]) -> u64 {
    units_needed(nets, MID_LEN, v6_mid)
}

/// How many blocks a prefix of length `len` covers in full, or `None` if
/// it is longer than a block.
fn blocks_covered(len: u8) -> Option<u32> {
    (len <= BLOCK_LEN).then(|| 1u32 << (BLOCK_LEN - len))
}

/// /48s the prefixes of one /32 need: every /48 of a prefix up to /48
/// long, and each /48 holding longer ones once.
fn subblocks_needed(nets: &[Ipv6Net]) -> u64 {
    units_needed(nets, SUBBLOCK_LEN, v6_subblock)
}

/// Units of `unit_len` bits (`unit_of` an address's) the sorted prefixes
/// `nets` need: every unit of a prefix up to `unit_len` long, and each
/// unit holding longer ones once.
fn units_needed(nets: &[Ipv6Net], unit_len: u8, unit_of: fn(&[u8; 16]) -> u64) -> u64 {
    let mut need = 0u64;
    let mut last_partial = None;
    for net in nets {
        if net.prefix_len() <= unit_len {
            need += 1u64 << (unit_len - net.prefix_len());
        } else {
            let unit = unit_of(&net.network().octets());
            if last_partial != Some(unit) {
                need += 1;
                last_partial = Some(unit);
            }
        }
    }
    need
}

/// Adds the /48s `net` needs to `entries`: `Full` for each it covers
/// whole, else `Trie` for the one it is in. A /48 may come twice (an
/// unmerged list); the caller keeps the `Full` one.
fn add_subblocks(entries: &mut Vec<(Subblock, BlockState)>, net: &Ipv6Net) {
    let first = v6_subblock(&net.network().octets());
    if net.prefix_len() <= SUBBLOCK_LEN {
        let count = 1u64 << (SUBBLOCK_LEN - net.prefix_len());
        entries.extend((first..first + count).map(|subblock| (subblock, BlockState::Full)));
    } else {
        entries.push((first, BlockState::Trie));
    }
}

/// What a list sets of a bitmap, before it is made words: runs of whole
/// words covered in full (a short prefix covers thousands of words, and
/// prefixes inside it cover them again), and the words of other parts.
#[derive(Default)]
struct Parts {
    /// Runs of words all of whose blocks are `Full`: first and last index.
    full: Vec<(u32, u32)>,
    /// Words of single parts (the blocks they set, the others `None`), an
    /// index any number of times.
    words: Vec<(u32, u64)>,
}

impl Parts {
    /// Sets `count` blocks from `first` to `Full`.
    fn fill(&mut self, first: u32, count: u32) {
        let end = first + count;
        let head_end = first.next_multiple_of(BLOCKS_PER_WORD).min(end);
        let whole_end = (end / BLOCKS_PER_WORD * BLOCKS_PER_WORD).max(head_end);
        if first < head_end {
            self.words.push(full_blocks(first, head_end - first));
        }
        if head_end < whole_end {
            self.full.push((word_of(head_end), word_of(whole_end - 1)));
        }
        if whole_end < end {
            self.words.push(full_blocks(whole_end, end - whole_end));
        }
    }

    /// Sets `block` to at least `state`.
    fn set(&mut self, block: u32, state: BlockState) {
        self.words
            .push((word_of(block), (state as u64) << shift_of(block)));
    }

    /// The words of all parts, each index once, in order: a word of a run
    /// is `Full` whatever else covers it, the others the [`join`] of their
    /// parts. At most one word per word of the bitmap, plus one per part.
    fn words(mut self) -> Words {
        self.full.sort_unstable();
        let mut runs: Vec<(u32, u32)> = Vec::with_capacity(self.full.len());
        for (first, last) in self.full {
            match runs.last_mut() {
                Some(run) if first <= run.1 + 1 => run.1 = run.1.max(last),
                _ => runs.push((first, last)),
            }
        }
        let parts = Words::joined(self.words);
        if runs.is_empty() {
            return parts;
        }
        let parts = parts.0;
        let covered: usize = runs.iter().map(|(a, b)| (b - a + 1) as usize).sum();
        let mut words = Vec::with_capacity(parts.len() + covered);
        let mut parts = parts.into_iter().peekable();
        for (first, last) in runs {
            while let Some(part) = parts.next_if(|(i, _)| *i < first) {
                words.push(part);
            }
            words.extend((first..=last).map(|i| (i, FULL_WORD)));
            while parts.next_if(|(i, _)| *i <= last).is_some() {}
        }
        words.extend(parts);
        Words(words)
    }
}

/// A word whose blocks are all `Full`.
const FULL_WORD: u64 = (BlockState::Full as u64) * 0x5555_5555_5555_5555;

/// The word that sets `count` blocks from `first` (all in one word) to
/// `Full`, the others `None`.
fn full_blocks(first: u32, count: u32) -> (u32, u64) {
    let mask = u64::MAX >> (64 - count * BLOCK_BITS) << shift_of(first);
    (word_of(first), FULL_WORD & mask)
}

/// Each block of two words at least as permissive as in either: `Full`
/// beats the rest, which all beat `None`, and two kinds of "in part" make
/// "ask the trie" (`Next` | `Trie` is `Trie`'s bits).
fn join(a: u64, b: u64) -> u64 {
    const LOW: u64 = 0x5555_5555_5555_5555;
    let full = (a & !(a >> 1) | b & !(b >> 1)) & LOW;
    (a | b) & !(full | full << 1) | full
}

/// The digest of `list` as the LIST_DIGEST map keeps it: SHA-256 of the
/// map layout and the fast path's limits (so a new mxgate never trusts an
/// old one's maps) and of every prefix in order.
pub fn digest(list: &Allowlist) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"mxgate allowlist\0");
    for n in [
        filter_common::LAYOUT_VERSION,
        u32::from(BLOCK_LEN),
        u32::from(SUBBLOCK_LEN),
        u32::from(MID_LEN),
        MID_SLOTS,
        MAX_MIDS,
        SUBBLOCK_SLOTS,
        MAX_SUBBLOCKS,
        MAX_SUBBLOCKS_PER_MID,
    ] {
        ctx.update(&n.to_le_bytes());
    }
    ctx.update(&(list.v4.len() as u64).to_le_bytes());
    ctx.update(&prefix_bytes(&list.v4));
    ctx.update(&(list.v6.len() as u64).to_le_bytes());
    ctx.update(&prefix_bytes(&list.v6));
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The bytes [`digest`] hashes of `nets`: each network, then its length,
/// in order. Hashed in one piece, since a call per prefix cost more than
/// the hashing.
fn prefix_bytes<N: Prefix>(nets: &[N]) -> Vec<u8>
where
    N::Octets: AsRef<[u8]>,
{
    let mut bytes = Vec::with_capacity(nets.len() * (size_of::<N::Octets>() + 1));
    for net in nets {
        bytes.extend_from_slice(net.octets().as_ref());
        bytes.push(net.length());
    }
    bytes
}

/// One write of a refresh, in the order [`Update::writes`] gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Insert a prefix into its family's trie.
    Insert(IpNet),
    /// Store a word of a fast-path array.
    Word(Table, u32, u64),
    /// Delete a prefix from its family's trie.
    Remove(IpNet),
}

/// Everything a refresh writes: the tries' diff and the fast path's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// The tries' change.
    pub diff: Diff,
    /// The fast path's.
    pub words: WordChanges,
}

/// The fast-path words a refresh writes, in the steps of the proven order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WordChanges {
    /// /48 slots that change, widened (step 2).
    pub slots_widened: Vec<(u32, u64)>,
    /// /32 slots that change, widened (step 3).
    pub mids_widened: Vec<(u32, u64)>,
    /// Bitmap words of /24s that change, with their new value (step 4).
    pub block_words: Vec<(Table, u32, u64)>,
    /// Summary words that change, with their new value (step 4, after the
    /// /24s they summarise).
    pub summary_words: Vec<(Table, u32, u64)>,
    /// /32 slots whose widened value is not yet the new one (step 6).
    pub mids_final: Vec<(u32, u64)>,
    /// /48 slots whose widened value is not yet the new one (step 7).
    pub slots_final: Vec<(u32, u64)>,
}

impl WordChanges {
    /// What turns the fast-path maps `live` into `wanted`.
    pub fn new(live: BlockMaps<'_>, wanted: &FastPath) -> Self {
        // On this thread: a plan runs beside the kernel's read-back or
        // inserts, which keep the other core busy.
        let (slots_widened, slots_final) = slot_changes(changes(live.slots, &wanted.slots));
        let (mids_widened, mids_final) = slot_changes(changes(live.mids, &wanted.mids));
        let (block_words, summary_words) = bitmap_changes(live, wanted);
        Self {
            slots_widened,
            mids_widened,
            block_words,
            summary_words,
            mids_final,
            slots_final,
        }
    }

    /// True when no word changes.
    pub fn is_empty(&self) -> bool {
        self.slots_widened.is_empty()
            && self.mids_widened.is_empty()
            && self.block_words.is_empty()
            && self.summary_words.is_empty()
            && self.mids_final.is_empty()
            && self.slots_final.is_empty()
    }
}

/// The bitmap words that change from `live` to `wanted`: the /24s', then
/// the summaries'.
type BitmapChanges = (Vec<(Table, u32, u64)>, Vec<(Table, u32, u64)>);

fn bitmap_changes(live: BlockMaps<'_>, wanted: &FastPath) -> BitmapChanges {
    let mut block_words = Vec::new();
    let mut summary_words = Vec::new();
    for (table, live, wanted) in [
        (Table::V4, live.v4, &wanted.v4),
        (Table::V6, live.v6, &wanted.v6),
    ] {
        for (i, _, word) in changes(live, wanted) {
            if i < SUMMARY_WORDS {
                summary_words.push((table, i, word));
            } else {
                block_words.push((table, i, word));
            }
        }
    }
    (block_words, summary_words)
}

/// What a list makes of the fast path, computed before anything is
/// written: its words, how they differ from the live maps', and the record
/// the maps hold once it is applied. Needs the new list and the live fast
/// path, not the tries: a refresh computes it while the kernel reads the
/// tries back.
pub struct Plan {
    /// From the live maps to the list's fast path.
    pub words: WordChanges,
    /// [`Record::of`] the list and its fast path.
    pub record: Record,
}

impl Plan {
    /// The plan for `new` from the live fast-path maps `live`.
    pub fn new(new: &Allowlist, live: BlockMaps<'_>) -> Self {
        // The record's parts need the list alone (its digest, the tries'
        // checksums) or the wanted fast path alone (its checksum): each is
        // taken on another thread meanwhile.
        let ((digest, trie_sums), wanted) =
            parallel::both(|| (digest(new), sums_of(new)), || FastPath::from_list(new));
        Self {
            words: WordChanges::new(live, &wanted),
            record: Record {
                digest,
                entries: entries_of(new),
                trie_sums,
                fast_sum: wanted.sum(),
            },
        }
    }
}

impl Update {
    /// What turns the live tries (`diff`) and fast-path maps (`live`) into
    /// `wanted`'s.
    pub fn new(diff: Diff, live: BlockMaps<'_>, wanted: &FastPath) -> Self {
        Self {
            diff,
            words: WordChanges::new(live, wanted),
        }
    }

    /// True when nothing is written.
    pub fn is_empty(&self) -> bool {
        self.diff.is_empty() && self.words.is_empty()
    }

    /// Every write, in the order the module's documentation proves safe.
    pub fn writes(&self) -> impl Iterator<Item = Write> + '_ {
        let w = &self.words;
        let inserts = (self.diff.v4.added.iter().map(|n| IpNet::V4(*n)))
            .chain(self.diff.v6.added.iter().map(|n| IpNet::V6(*n)))
            .map(Write::Insert);
        let slot = |table: Table| move |(i, v): &(u32, u64)| Write::Word(table, *i, *v);
        let widened = (w.slots_widened.iter().map(slot(Table::Slots)))
            .chain(w.mids_widened.iter().map(slot(Table::Mids)));
        let words =
            (w.block_words.iter().chain(&w.summary_words)).map(|(t, i, w)| Write::Word(*t, *i, *w));
        let removes = (self.diff.v4.removed.iter().map(|n| IpNet::V4(*n)))
            .chain(self.diff.v6.removed.iter().map(|n| IpNet::V6(*n)))
            .map(Write::Remove);
        let narrowed = (w.mids_final.iter().map(slot(Table::Mids)))
            .chain(w.slots_final.iter().map(slot(Table::Slots)));
        inserts
            .chain(widened)
            .chain(words)
            .chain(removes)
            .chain(narrowed)
    }
}

/// The slots of a hashed table that change (`changes`, as [`changes`]
/// gives them): widened (steps 2 and 3), and those whose widened value is
/// not the new one, with it (steps 6 and 7).
type SlotChanges = (Vec<(u32, u64)>, Vec<(u32, u64)>);

fn slot_changes(changes: impl Iterator<Item = (u32, u64, u64)>) -> SlotChanges {
    let mut widened_slots = Vec::new();
    let mut final_slots = Vec::new();
    for (i, old, new) in changes {
        let widened = widen(old, new);
        if widened != old {
            widened_slots.push((i, widened));
        }
        if widened != new {
            final_slots.push((i, new));
        }
    }
    (widened_slots, final_slots)
}

/// A slot value that answers for every key either `old` or `new` answers
/// for: `new` if `old` is empty or holds the same key, `old` if `new` is
/// empty, else the shared mark (the trie decides). It is filled wherever
/// either is: a lookup stops at a bucket's first empty slot.
fn widen(old: u64, new: u64) -> u64 {
    match (slot_key(old), slot_key(new)) {
        _ if old == 0 => new,
        _ if new == 0 => old,
        (Some(a), Some(b)) if a == b => new,
        _ => SLOT_SHARED,
    }
}

/// The words where the map `live` and `wanted` differ, as (index, live
/// word, wanted word), in order of index; `live` is read once, whole.
fn changes<'a>(live: &'a [u64], wanted: &'a Words) -> impl Iterator<Item = (u32, u64, u64)> + 'a {
    word_changes(nonzero(live), wanted.iter())
}

/// The words where `live` and `wanted` (each the words set of a map, in
/// order of index) differ, as (index, live word, wanted word).
fn word_changes(
    live: impl Iterator<Item = (u32, u64)>,
    wanted: impl Iterator<Item = (u32, u64)>,
) -> impl Iterator<Item = (u32, u64, u64)> {
    let (mut live, mut wanted) = (live.peekable(), wanted.peekable());
    std::iter::from_fn(move || {
        loop {
            let next = match (live.peek().copied(), wanted.peek().copied()) {
                (None, None) => return None,
                (Some((i, l)), Some((j, w))) if i == j => {
                    live.next();
                    wanted.next();
                    (i, l, w)
                }
                (Some((i, l)), Some((j, _))) if i < j => {
                    live.next();
                    (i, l, 0)
                }
                (Some((i, l)), None) => {
                    live.next();
                    (i, l, 0)
                }
                (_, Some((j, w))) => {
                    wanted.next();
                    (j, 0, w)
                }
            };
            if next.1 != next.2 {
                return Some(next);
            }
        }
    })
}

/// How the program reaches its answer for one address, step by step as it
/// reads the maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path {
    /// The /16's state in the first summary.
    pub region: BlockState,
    /// For a /16 in state `Next`: the /20's state in the second.
    pub area: Option<BlockState>,
    /// For a /20 in state `Next`: the /24's state.
    pub block: Option<BlockState>,
    /// For an IPv6 /24 in state `Next`: what the /32's bucket says of it.
    pub mid: Option<BlockState>,
    /// For an IPv6 /32 in state `Next`: what the /48's bucket says of it.
    pub subblock: Option<BlockState>,
}

impl Path {
    /// The path `addr` takes through `maps`.
    pub fn of(addr: IpAddr, maps: BlockMaps<'_>) -> Self {
        Self::read(addr, |table, index| {
            let words = match table {
                Table::V4 => maps.v4,
                Table::V6 => maps.v6,
                Table::Mids => maps.mids,
                Table::Slots => maps.slots,
            };
            words.get(index as usize).copied().unwrap_or(0)
        })
    }

    /// The path `addr` takes through the maps `word` reads, as the program
    /// reads them.
    pub fn read(addr: IpAddr, word: impl Fn(Table, u32) -> u64) -> Self {
        let (table, block) = match addr {
            IpAddr::V4(a) => (Table::V4, v4_block(&a.octets())),
            IpAddr::V6(a) => (Table::V6, v6_block(&a.octets())),
        };
        let (region, area) = (unit_of(0, block), unit_of(1, block));
        let region_state = state_in(word(table, summary_word_of(0, region)), region);
        let area_state = (region_state == BlockState::Next)
            .then(|| state_in(word(table, summary_word_of(1, area)), area));
        let block_state = (area_state == Some(BlockState::Next))
            .then(|| state_in(word(table, word_of(block)), block));
        let lookup = |table: Table, bucket: u32, key: u64| {
            let first = bucket * SLOTS_PER_BUCKET as u32;
            let slots: Bucket = std::array::from_fn(|i| word(table, first + i as u32));
            bucket_state(&slots, key)
        };
        let (mid, subblock) = match (addr, block_state) {
            (IpAddr::V6(a), Some(BlockState::Next)) => {
                let mid = v6_mid(&a.octets());
                let mid_state = lookup(Table::Mids, mid_bucket(mid), mid);
                let subblock = (mid_state == BlockState::Next).then(|| {
                    let subblock = v6_subblock(&a.octets());
                    lookup(Table::Slots, subblock_bucket(subblock), subblock)
                });
                (Some(mid_state), subblock)
            }
            _ => (None, None),
        };
        Self {
            region: region_state,
            area: area_state,
            block: block_state,
            mid,
            subblock,
        }
    }

    /// The fast path's answer: `Some(allowed)` when it decides without the
    /// trie, `None` when the trie decides.
    pub fn answer(&self) -> Option<bool> {
        let last = (self.subblock.or(self.mid).or(self.block).or(self.area)).unwrap_or(self.region);
        match last {
            BlockState::None => Some(false),
            BlockState::Full => Some(true),
            // IPv4 asks the trie for a /24 in part either way.
            BlockState::Next | BlockState::Trie => None,
        }
    }

    /// Whether the program allows the address, given what the trie says.
    pub fn allows(&self, trie_allows: bool) -> bool {
        self.answer().unwrap_or(trie_allows)
    }
}

/// The unit of summary `level` holding an address, as a prefix, for
/// messages.
pub fn summary_net(level: usize, addr: IpAddr) -> IpNet {
    IpNet::new(addr, SUMMARY_LENS[level]).map_or_else(|_| addr.into(), |n| n.trunc())
}

/// The block (/24) of an address, as a prefix, for messages.
pub fn block_of(addr: IpAddr) -> IpNet {
    IpNet::new(addr, BLOCK_LEN).map_or_else(|_| addr.into(), |n| n.trunc())
}

/// The /32 of an IPv6 address, as a prefix, for messages.
pub fn mid_of(addr: Ipv6Addr) -> Ipv6Net {
    Ipv6Net::new(addr, MID_LEN).map_or_else(|_| addr.into(), |n| n.trunc())
}

/// The /48 of an IPv6 address, as a prefix, for messages.
pub fn subblock_of(addr: Ipv6Addr) -> Ipv6Net {
    Ipv6Net::new(addr, SUBBLOCK_LEN).map_or_else(|_| addr.into(), |n| n.trunc())
}

/// A /48 as a prefix, for messages.
pub fn subblock_net(subblock: Subblock) -> Ipv6Net {
    subblock_of(Ipv6Addr::from(u128::from(subblock) << 80))
}

/// What a slot value of the /32 table (`mid`) or the /48 table says, for
/// messages.
fn describe_slot(mid: bool, slot: u64) -> String {
    match slot_key(slot) {
        Some(key) => format!(
            "{} {}",
            if mid {
                mid_of(Ipv6Addr::from(u128::from(key) << 96))
            } else {
                subblock_net(key)
            },
            slot_state(slot, key).map_or("?", BlockState::label)
        ),
        None if slot == SLOT_SHARED => "shared (the trie decides)".to_owned(),
        None if slot == 0 => "empty".to_owned(),
        None => format!("{slot:#x}, a value mxgate never writes (it holds no key)"),
    }
}

/// The first way the maps `live` hold differ from `wanted`, in words, or
/// `None` when they are equal.
pub fn first_difference(live: &FastPath, wanted: &FastPath) -> Option<String> {
    differences(live, wanted).next()
}

/// Every way the maps `live` hold differ from `wanted`, in words: each
/// /16, /20 or /24 whose state differs, then each slot of the /32 and /48
/// tables.
pub fn differences<'a>(
    live: &'a FastPath,
    wanted: &'a FastPath,
) -> impl Iterator<Item = String> + 'a {
    let bitmaps = [(false, &live.v4, &wanted.v4), (true, &live.v6, &wanted.v6)]
        .into_iter()
        .flat_map(|(v6, live, wanted)| {
            word_changes(live.iter(), wanted.iter()).flat_map(move |(i, l, w)| {
                (0..BLOCKS_PER_WORD)
                    .filter(move |b| ((l ^ w) >> (b * BLOCK_BITS)) & BLOCK_MASK != 0)
                    .map(move |b| describe_unit(v6, i, b, l, w))
            })
        });
    let slots = [
        (true, &live.mids, &wanted.mids),
        (false, &live.slots, &wanted.slots),
    ]
    .into_iter()
    .flat_map(|(mid, live, wanted)| {
        word_changes(live.iter(), wanted.iter()).map(move |(i, l, w)| {
            format!(
                "slot {} of bucket {} of the {} table is {}, {} by the list",
                i as usize % SLOTS_PER_BUCKET,
                i as usize / SLOTS_PER_BUCKET,
                if mid { "/32" } else { "/48" },
                describe_slot(mid, l),
                describe_slot(mid, w)
            )
        })
    });
    bitmaps.chain(slots)
}

/// Unit `at` of word `i` of a bitmap, which is `live` in the map and
/// `wanted` by the list, in words.
fn describe_unit(v6: bool, i: u32, at: u32, live: u64, wanted: u64) -> String {
    // Which level the word is of, its first unit, and that unit's length.
    let (level, first, len) = match (0..SUMMARY_LEVELS).find(|l| i < summary_base(l + 1)) {
        Some(l) => (
            Some(l),
            (i - summary_base(l)) * BLOCKS_PER_WORD,
            SUMMARY_LENS[l],
        ),
        None => (None, (i - SUMMARY_WORDS) * BLOCKS_PER_WORD, BLOCK_LEN),
    };
    // The first address of the unit.
    let top = u128::from(first + at) << (128 - u32::from(len));
    let addr = if v6 {
        IpAddr::V6(Ipv6Addr::from(top))
    } else {
        IpAddr::V4(Ipv4Addr::from((top >> 96) as u32))
    };
    let net = IpNet::new(addr, len).map_or_else(|_| addr.into(), |n| n.trunc());
    format!(
        "{net} is {} in the {}, {} by the list",
        state_in(live, first + at).label(),
        if level.is_some() { "summary" } else { "bitmap" },
        state_in(wanted, first + at).label()
    )
}

/// What LIST_DIGEST records of the maps a list was applied to: the list's
/// digest, and counts and checksums of what the maps then held, which a
/// refresh compares with a [`Survey`] of the maps to tell cheaply whether
/// anything changed them since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// [`digest`] of the list.
    pub digest: [u8; 32],
    /// Prefixes in the IPv4 and IPv6 tries.
    pub entries: [u32; 2],
    /// [`prefix_sum`] of the IPv4 and IPv6 tries.
    pub trie_sums: [u64; 2],
    /// [`fast_sum`] of the fast path's maps.
    pub fast_sum: u64,
}

/// The maps as they are, in the terms of a [`Record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Survey {
    /// Prefixes in the IPv4 and IPv6 tries.
    pub entries: [u32; 2],
    /// [`prefix_sum`] of the IPv4 and IPv6 tries; `None` when the kernel
    /// counted their entries and no key was read.
    pub trie_sums: Option<[u64; 2]>,
    /// [`fast_sum`] of the fast path's maps.
    pub fast_sum: u64,
}

impl Survey {
    /// The survey of tries holding `list` and a fast path whose
    /// [`fast_sum`] is `fast_sum`: counted and summed from the list, the
    /// tries not walked again.
    pub fn of(list: &Allowlist, fast_sum: u64) -> Self {
        Self {
            entries: entries_of(list),
            trie_sums: Some(sums_of(list)),
            fast_sum,
        }
    }
}

impl Record {
    /// The record of `list` once applied: the tries hold it, and the fast
    /// path `fast` (its [`FastPath::from_list`]).
    pub fn of(list: &Allowlist, fast: &FastPath) -> Self {
        Self {
            digest: digest(list),
            entries: entries_of(list),
            trie_sums: sums_of(list),
            fast_sum: fast.sum(),
        }
    }

    /// How the maps surveyed differ from what this record says they held,
    /// in words; empty when they match. Keys swapped for as many others
    /// show only where `seen` has the tries' checksums.
    pub fn drift(&self, seen: &Survey) -> Vec<String> {
        let mut found = Vec::new();
        for (i, family) in ["IPv4", "IPv6"].into_iter().enumerate() {
            if seen.entries[i] != self.entries[i] {
                found.push(format!(
                    "the {family} trie holds {} prefixes, the list applied last {}",
                    seen.entries[i], self.entries[i]
                ));
            } else if seen
                .trie_sums
                .is_some_and(|sums| sums[i] != self.trie_sums[i])
            {
                found.push(format!(
                    "the {family} trie holds other prefixes than the list applied last (as \
                     many, {}, but not the same)",
                    seen.entries[i]
                ));
            }
        }
        if seen.fast_sum != self.fast_sum {
            found.push(
                "the fast path's maps (FAST_V4, FAST_V6, MIDS_V6, BLOCKS_V6) are not those of \
                 the list applied last"
                    .to_owned(),
            );
        }
        found
    }
}

/// Prefixes in tries holding `list`, per family.
fn entries_of(list: &Allowlist) -> [u32; 2] {
    [saturating_u32(list.v4.len()), saturating_u32(list.v6.len())]
}

/// [`prefix_sum`] of tries holding `list`, per family.
fn sums_of(list: &Allowlist) -> [u64; 2] {
    [prefix_sum(&list.v4), prefix_sum(&list.v6)]
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// SplitMix64's finaliser: every bit of the input moves every bit of the
/// output, so sums of it tell sets apart.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One prefix's share of a [`prefix_sum`].
pub fn prefix_term(network_key: u128, len: u8) -> u64 {
    let low = network_key as u64;
    let high = (network_key >> 64) as u64;
    mix(mix(low ^ u64::from(len))
        .wrapping_add(high)
        .wrapping_add(u64::from(len) << 56))
}

/// An order-independent checksum of a set of prefixes: the sum of a hash
/// of each, so the tries can be summed in whatever order the kernel lists
/// them. A checksum against accidents and other tools, not against an
/// adversary: one who can write the maps can write the record too.
pub fn prefix_sum<N: Prefix>(nets: &[N]) -> u64 {
    nets.iter().fold(0u64, |sum, n| {
        sum.wrapping_add(prefix_term(n.network_key(), n.length()))
    })
}

/// A checksum of the fast path's words: the sum of a hash of each
/// non-zero word and its place.
pub fn fast_sum(
    v4: impl IntoIterator<Item = u64>,
    v6: impl IntoIterator<Item = u64>,
    mids: impl IntoIterator<Item = u64>,
    slots: impl IntoIterator<Item = u64>,
) -> u64 {
    table_sum(Table::V4, 0, v4)
        .wrapping_add(table_sum(Table::V6, 0, v6))
        .wrapping_add(table_sum(Table::Slots, 0, slots))
        .wrapping_add(table_sum(Table::Mids, 0, mids))
}

/// The share in [`fast_sum`] of `words`, the words of `table` from index
/// `first` on: a table can be summed in parts, in any order.
pub fn table_sum(table: Table, first: usize, words: impl IntoIterator<Item = u64>) -> u64 {
    words
        .into_iter()
        .enumerate()
        .filter(|(_, w)| *w != 0)
        .fold(0u64, |sum, (i, w)| {
            sum.wrapping_add(word_term(table, (first + i) as u64, w))
        })
}

/// The share in [`fast_sum`] of `word`, word `index` of `table`, when it
/// is not zero.
fn word_term(table: Table, index: u64, word: u64) -> u64 {
    let t = match table {
        Table::V4 => 0u64,
        Table::V6 => 1,
        Table::Slots => 2,
        Table::Mids => 3,
    };
    mix(word ^ mix((t << 40) | index))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// SplitMix64, for seeded lists and addresses.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::of(entries)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn ip6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    /// A /48 in another of [`random_list`]'s /24s in the same bucket.
    fn colliding(own: Subblock, rng: &mut Rng) -> Subblock {
        let slot = subblock_bucket(own);
        let block = own >> 24;
        let other = 0x0020_0100 + (block + 1 + rng.below(7) - 0x0020_0100) % 8;
        let start = rng.below(1 << 24);
        (0..1u64 << 24)
            .map(|i| (other << 24) | ((start + i) % (1 << 24)))
            .find(|s| subblock_bucket(*s) == slot)
            .expect("every bucket is reached within a /24's /48s")
    }

    /// The /48s a list's IPv6 /32s in state `Next` need.
    fn entries(l: &Allowlist) -> Vec<(Subblock, BlockState)> {
        v6_states(&l.v6).2
    }

    /// The program's verdict for `addr`, modelled: the fast path, then the
    /// trie (a list lookup) where it asks.
    fn allows(path: Path, trie: &BTreeSet<IpNet>, addr: IpAddr) -> bool {
        path.answer()
            .unwrap_or_else(|| trie.iter().any(|n| n.contains(&addr)))
    }

    #[test]
    fn states_of_a_small_list() {
        let l = list(&[
            "10.0.0.0/16",
            "192.0.2.0/25",
            "198.51.100.7/32",
            "2001:db8::/48",
            "2001:db8:1::/64",
            "2001:db9::/32",
            "3000::/20",
        ]);
        let f = FastPath::from_list(&l);
        let path = |a: &str| f.path(ip(a));
        // A /16 covered whole, or not at all: the summary decides.
        assert_eq!(path("10.0.255.1").region, BlockState::Full);
        assert_eq!(path("10.0.255.1").block, None);
        assert_eq!(path("10.1.0.1").region, BlockState::None);
        assert_eq!(path("10.1.0.1").answer(), Some(false));
        assert_eq!(path("192.0.2.200").region, BlockState::Next);
        assert_eq!(path("192.0.2.200").block, Some(BlockState::Trie));
        assert_eq!(path("198.51.100.8").answer(), None);
        assert_eq!(path("203.0.113.1").answer(), Some(false));
        // 2001:db8::/48 and 2001:db8:1::/64 share a /24 with 2001:db9::/32:
        // the /32 table says the one is covered whole, the other in part,
        // and the rest of the /24 not at all, without the trie.
        assert_eq!(path("2001:db8::1").block, Some(BlockState::Next));
        assert_eq!(path("2001:db8::1").mid, Some(BlockState::Next));
        assert_eq!(path("2001:db8::1").subblock, Some(BlockState::Full));
        assert_eq!(path("2001:db8:1::1").subblock, Some(BlockState::Trie));
        assert_eq!(path("2001:db8:2::1").answer(), Some(false));
        assert_eq!(path("2001:db9:ffff::1").mid, Some(BlockState::Full));
        assert_eq!(path("2001:db9:ffff::1").subblock, None);
        assert_eq!(path("2001:dba::1").mid, Some(BlockState::None));
        assert_eq!(path("2001:dba::1").answer(), Some(false));
        // A /20 covered whole: the second summary decides.
        assert_eq!(path("3000:0fff::1").area, Some(BlockState::Full));
        assert_eq!(path("3000:0fff::1").block, None);
        assert_eq!(path("3000:1000::1").answer(), Some(false));
        assert_eq!(f.slots.len(), 2);
        assert_eq!(f.mids.len(), 2);

        let l = list(&["2001:db8::/48", "2001:db8:1::/64", "2001:db8:100::/40"]);
        let f = FastPath::from_list(&l);
        let path = |a: &str| f.path(ip(a));
        assert_eq!(path("2001:db8::1").block, Some(BlockState::Next));
        assert_eq!(path("2001:db8::1").subblock, Some(BlockState::Full));
        assert_eq!(path("2001:db8::1").answer(), Some(true));
        assert_eq!(path("2001:db8:1::1").answer(), None);
        assert_eq!(path("2001:db8:2::1").answer(), Some(false));
        assert_eq!(path("2001:db8:1ff::1").answer(), Some(true));
        assert_eq!(entries(&l).len(), 1 + 1 + 256);
    }

    /// Joining two words joins each block's two states, in every lane:
    /// `Full` beats all, `None` loses to all, two kinds of "in part" ask
    /// the trie.
    #[test]
    fn join_is_the_most_permissive_state_block_by_block() {
        use BlockState::{Full, Next, None as Not, Trie};
        for a in BlockState::ALL {
            for b in BlockState::ALL {
                let wanted = match (a, b) {
                    (Full, _) | (_, Full) => Full,
                    (Not, s) | (s, Not) => s,
                    (Next, Next) => Next,
                    _ => Trie,
                };
                for lane in [0, 1, 17, BLOCKS_PER_WORD - 1] {
                    // The other lanes hold other states, which must stay.
                    let other = |s: BlockState| {
                        ((s as u64) * 0x5555_5555_5555_5555) & !(3 << shift_of(lane))
                    };
                    let word = |s: BlockState, fill: BlockState| {
                        other(fill) | (s as u64) << shift_of(lane)
                    };
                    let joined = join(word(a, Next), word(b, Not));
                    assert_eq!(state_in(joined, lane), wanted, "{a:?} {b:?} lane {lane}");
                    assert_eq!(joined & !(3 << shift_of(lane)), other(Next), "{a:?} {b:?}");
                }
            }
        }
    }

    /// A bucket of the /48 table holds as many /48s as it has slots, in
    /// order of key; one more, and it holds the shared mark alone.
    #[test]
    fn a_bucket_holds_its_slots_in_order_then_the_shared_mark() {
        let first = v6_subblock(&ip6("2001:db8::").octets());
        let bucket = subblock_bucket(first);
        let keys: Vec<Subblock> = (first..)
            .filter(|s| subblock_bucket(*s) == bucket)
            .take(SLOTS_PER_BUCKET + 1)
            .collect();
        let nets: Vec<Ipv6Net> = keys.iter().map(|k| subblock_net(*k)).collect();
        let at = bucket * SLOTS_PER_BUCKET as u32;
        // Listed backwards: the slots' order is the keys', not the list's.
        let full = Allowlist {
            v4: vec![],
            v6: nets[..SLOTS_PER_BUCKET].iter().rev().copied().collect(),
        };
        let f = FastPath::from_list(&full);
        let held: Vec<Option<u64>> = (at..at + SLOTS_PER_BUCKET as u32)
            .map(|i| slot_key(f.slots.get(i)))
            .collect();
        let wanted: Vec<Option<u64>> = keys[..SLOTS_PER_BUCKET].iter().map(|k| Some(*k)).collect();
        assert_eq!(held, wanted);
        for net in &nets[..SLOTS_PER_BUCKET] {
            assert_eq!(
                f.path(IpAddr::V6(net.network())).answer(),
                Some(true),
                "{net}"
            );
        }
        let over = Allowlist::from_prefixes(vec![], nets.clone());
        let f = FastPath::from_list(&over);
        assert_eq!(f.slots.get(at), SLOT_SHARED);
        assert!((at + 1..at + SLOTS_PER_BUCKET as u32).all(|i| f.slots.get(i) == 0));
        for net in &nets {
            assert_eq!(f.path(IpAddr::V6(net.network())).answer(), None, "{net}");
        }
    }

    /// A lookup stops at a bucket's first empty slot, and while a refresh
    /// rewrites a bucket it may read each slot's old or new value, in any
    /// order (another CPU's stores need not reach it in the order they
    /// were made): every mixture of a bucket's old and widened slots, and
    /// of its widened and new ones, still answers for each key both the
    /// old and the new bucket answer for.
    #[test]
    fn any_mixture_of_a_rewritten_buckets_slots_answers_the_keys_both_hold() {
        let mut rng = Rng(21);
        let first = v6_subblock(&ip6("2001:db8::").octets());
        let bucket = subblock_bucket(first);
        let keys: Vec<Subblock> = (first..)
            .filter(|s| subblock_bucket(*s) == bucket)
            .take(SLOTS_PER_BUCKET + 4)
            .collect();
        let at = bucket * SLOTS_PER_BUCKET as u32;
        // As a list makes them: some of the keys, in any states; all of
        // them now and then, more than the bucket holds (shared).
        let made = |rng: &mut Rng| -> Bucket {
            let one_in = 1 + rng.below(4);
            let mut entries: Vec<(Subblock, BlockState)> = Vec::new();
            for key in &keys {
                if rng.below(one_in) == 0 {
                    entries.push((*key, BlockState::ALL[1 + rng.below(3) as usize]));
                }
            }
            let words = hashed(&entries, subblock_bucket, SUBBLOCK_BUCKETS);
            std::array::from_fn(|i| words.get(at + i as u32))
        };
        let mut checked = 0;
        for round in 0..500 {
            let (old, new) = (made(&mut rng), made(&mut rng));
            let widened: Bucket = std::array::from_fn(|i| widen(old[i], new[i]));
            let both: Vec<Subblock> = keys
                .iter()
                .copied()
                .filter(|k| {
                    bucket_state(&old, *k) != BlockState::None
                        && bucket_state(&new, *k) != BlockState::None
                })
                .collect();
            for mask in 0..1u32 << SLOTS_PER_BUCKET {
                let mix = |from: &Bucket, to: &Bucket| -> Bucket {
                    std::array::from_fn(|i| if mask >> i & 1 == 1 { to[i] } else { from[i] })
                };
                for mixed in [mix(&old, &widened), mix(&widened, &new)] {
                    for key in &both {
                        checked += 1;
                        assert_ne!(
                            bucket_state(&mixed, *key),
                            BlockState::None,
                            "round {round}: {old:x?} to {new:x?}, read as {mixed:x?}, \
                             denies {key:#x}"
                        );
                    }
                }
            }
        }
        assert!(checked > 100_000, "only {checked} reads checked");
    }

    /// The tries read back may hold prefixes inside others (another tool
    /// planted them, or a refresh was killed between its inserts and its
    /// deletes): a block covered in full stays so whatever covers it in
    /// part too, so such a list within the tables' budgets gives the
    /// states of the same list merged. (A nested prefix counts again
    /// toward its /32's or /24's budget, which can only send that unit to
    /// the trie.)
    #[test]
    fn nested_prefixes_within_the_budgets_give_the_states_of_the_merged_list() {
        let mut rng = Rng(11);
        for round in 0..20 {
            let base = random_list(&mut rng, 40);
            let mut v4 = base.v4.clone();
            let mut v6 = base.v6.clone();
            for n in &base.v4 {
                if n.prefix_len() < 32 && rng.below(2) == 0 {
                    let len = n.prefix_len() + 1 + rng.below(u64::from(32 - n.prefix_len())) as u8;
                    v4.push(Ipv4Net::new(n.network(), len).unwrap().trunc());
                }
            }
            for n in &base.v6 {
                if n.prefix_len() < 128 && rng.below(2) == 0 {
                    let len = n.prefix_len() + 1 + rng.below(u64::from(128 - n.prefix_len())) as u8;
                    v6.push(Ipv6Net::new(n.network(), len).unwrap().trunc());
                }
            }
            v4.sort_unstable();
            v6.sort_unstable();
            let nested = Allowlist { v4, v6 };
            let merged = Allowlist::from_prefixes(nested.v4.clone(), nested.v6.clone());
            assert_eq!(
                FastPath::from_list(&nested),
                FastPath::from_list(&merged),
                "round {round}"
            );
        }
    }

    #[test]
    fn fill_crosses_words_exactly() {
        const END: u32 = filter_common::fast_path::BLOCKS;
        for (first, count) in [
            (0, 1),
            (5, 40),
            (31, 2),
            (32, 32),
            (30, 100),
            (64, 64 * 3),
            (0, END),
            (END - 1, 1),
            (END - 64, 64),
        ] {
            let mut parts = Parts::default();
            parts.fill(first, count);
            let words = parts.words();
            let edges = (0..16 * BLOCKS_PER_WORD).chain(END - 16 * BLOCKS_PER_WORD..END);
            for block in edges {
                let want = if (first..first + count).contains(&block) {
                    BlockState::Full
                } else {
                    BlockState::None
                };
                assert_eq!(
                    state_in(words.get(word_of(block)), block),
                    want,
                    "{first}+{count}: {block}"
                );
            }
        }
    }

    #[test]
    fn the_per_mid_and_total_limits_send_the_biggest_32s_to_the_trie() {
        // A /36 is exactly the per-/32 limit; a /35 is over it. Only that
        // /32 asks the trie: the rest of its /24 is denied in the tables.
        let l = list(&["2001:db8::/36", "2001:db9:8000::/35"]);
        let f = FastPath::from_list(&l);
        let path = |a: &str| f.path(ip(a));
        assert_eq!(path("2001:db8::1").block, Some(BlockState::Next));
        assert_eq!(path("2001:db8::1").mid, Some(BlockState::Next));
        assert_eq!(path("2001:db8::1").answer(), Some(true));
        assert_eq!(path("2001:db9:8000::1").mid, Some(BlockState::Trie));
        assert_eq!(path("2001:db9:8000::1").answer(), None);
        assert_eq!(path("2001:dba::1").answer(), Some(false));
        assert_eq!(entries(&l).len(), MAX_SUBBLOCKS_PER_MID as usize);
        // 80 /36s in 80 /32s need 327,680 /48s, more than the table takes:
        // it takes as many /32s' as fit, the rest ask the trie.
        let nets: Vec<String> = (0..80)
            .map(|i| format!("2001:{:x}::/36", 0x100 + i))
            .collect();
        let refs: Vec<&str> = nets.iter().map(String::as_str).collect();
        let f = FastPath::from_list(&list(&refs));
        let n = entries(&list(&refs)).len();
        let fit = (MAX_SUBBLOCKS / MAX_SUBBLOCKS_PER_MID) as usize;
        assert_eq!(n, fit * MAX_SUBBLOCKS_PER_MID as usize);
        let next = nets
            .iter()
            .filter(|net| {
                let addr = net.split('/').next().unwrap();
                f.path(ip(addr)).mid == Some(BlockState::Next)
            })
            .count();
        assert_eq!(next, fit);
        // More /32s than the /32 table takes (the /25s of 2,049 /24s need
        // 128 each): the /24s needing most ask the trie, the rest fit.
        let v6: Vec<Ipv6Net> = (0..(MAX_MIDS / 128 + 1) as u128)
            .map(|i| Ipv6Net::new(Ipv6Addr::from((0x2400_0000 + i) << 104), 25).unwrap())
            .collect();
        let l = Allowlist::from_prefixes(vec![], v6.clone());
        let g = FastPath::from_list(&l);
        let trie = v6
            .iter()
            .filter(|n| g.path(IpAddr::V6(n.network())).block == Some(BlockState::Trie))
            .count();
        assert_eq!(trie, 1);
        // A bucket more /48s hash to than it has slots sends them all to
        // the trie; at two /48s a bucket on average, that is rare.
        let shared = f.slots.iter().filter(|(_, s)| *s == SLOT_SHARED).count();
        let held = f
            .slots
            .iter()
            .filter(|(_, s)| slot_key(*s).is_some())
            .count();
        assert!(held + (SLOTS_PER_BUCKET + 1) * shared <= n);
        assert!(held > n * 95 / 100, "{held} of {n}");
    }

    /// A real list's mix of IPv6 lengths (/32 20 %, /48 40 %, /56 10 %,
    /// /64 20 %, /128 10 %) over 2000::/3, `n` prefixes before merging.
    fn realistic_v6(rng: &mut Rng, n: usize) -> Vec<Ipv6Net> {
        (0..n)
            .map(|_| {
                let len = [32, 32, 48, 48, 48, 48, 56, 64, 64, 128][rng.below(10) as usize];
                let top = 0x2000_0000_0000_0000 | (rng.next() >> 3);
                let addr = u128::from(top) << 64 | u128::from(rng.next());
                Ipv6Net::new(Ipv6Addr::from(addr), len).unwrap().trunc()
            })
            .collect()
    }

    /// With a real list's mix, up to as many prefixes as a trie takes, a
    /// source in a /24 the list covers in part is decided without the trie
    /// when its /32 or its /48 holds nothing of the list: only a shared
    /// bucket (rare) sends it to the trie.
    #[test]
    fn a_realistic_list_of_any_size_keeps_uncovered_blocks_off_the_trie() {
        let mut rng = Rng(21);
        for n in [100_000, filter_common::MAX_PREFIXES as usize] {
            let l = Allowlist::from_prefixes(vec![], realistic_v6(&mut rng, n));
            let f = FastPath::from_list(&l);
            let (mut probed, mut trie) = (0, 0);
            for net in l.v6.iter().step_by(n / 5_000) {
                let a = u128::from(net.network());
                let r = u128::from(rng.next()) << 64 | u128::from(rng.next());
                // Another /32 of its /24, another /48 of its /32.
                for x in [a ^ (r >> 24 & !(!0 >> 32)), a ^ (r >> 32 & !(!0 >> 48))] {
                    let addr = IpAddr::V6(Ipv6Addr::from(x));
                    if l.lookup(addr).is_some() {
                        continue;
                    }
                    let path = f.path(addr);
                    assert_eq!(path.block, Some(BlockState::Next), "{n}: {addr}");
                    probed += 1;
                    match path.answer() {
                        Some(allowed) => assert!(!allowed, "{n}: {addr} {path:?}"),
                        None => trie += 1,
                    }
                }
            }
            println!("{n} prefixes: {trie} of {probed} uncovered sources asked the trie");
            assert!(probed > 5_000, "{n}: {probed}");
            assert!(
                trie * 200 < probed,
                "{n}: {trie} of {probed} asked the trie"
            );
        }
    }

    /// A random list with every kind of block: covered in full by short
    /// prefixes, in part with holes (/25–/32, /49–/128), and not at all,
    /// all inside a few regions so that blocks share words and /24s.
    fn random_list(rng: &mut Rng, n: usize) -> Allowlist {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let base4 = 0x0a00_0000u32 | (rng.below(1 << 12) as u32) << 8;
            let len4 = [8, 16, 20, 23, 24, 25, 26, 28, 30, 31, 32][rng.below(11) as usize];
            let len4 = if len4 == 8 { 22 } else { len4 };
            let addr4 = base4 | rng.below(256) as u32;
            v4.push(Ipv4Net::new(Ipv4Addr::from(addr4), len4).unwrap().trunc());
            // 8 /24s, 64 /48s in each; now and then a /24 or a /33 (a /24
            // with too many /48s for the map).
            let base6 =
                (0x0020_0100 + u128::from(rng.below(8))) << 104 | u128::from(rng.below(64)) << 80;
            let len6 = [24, 33, 40, 44, 47, 48, 49, 56, 64, 100, 128][rng.below(11) as usize];
            let addr6 = base6 | u128::from(rng.next()) << 16 | u128::from(rng.next() as u16);
            let len6 = if len6 <= 33 && rng.below(4) != 0 {
                44
            } else {
                len6
            };
            v6.push(Ipv6Net::new(Ipv6Addr::from(addr6), len6).unwrap().trunc());
            // And one of a real list's mix (BENCHMARKS.md's "IPv6
            // realistic"), over 4 /32s of the same /24s: /32s beside /48s
            // and longer ones.
            let len6 = match rng.below(10) {
                0 | 1 => 32,
                2..=5 => 48,
                6 => 56,
                7 | 8 => 64,
                _ => 128,
            };
            let base6 = (0x0020_0100 + u128::from(rng.below(8))) << 104
                | u128::from(rng.below(4)) << 96
                | u128::from(rng.below(64)) << 80;
            let addr6 = base6 | u128::from(rng.next()) << 16 | u128::from(rng.next() as u16);
            v6.push(Ipv6Net::new(Ipv6Addr::from(addr6), len6).unwrap().trunc());
        }
        Allowlist::from_prefixes(v4, v6)
    }

    /// A /32 other than `own` in the same bucket of the /32 table.
    fn colliding_mid(own: Mid, rng: &mut Rng) -> Mid {
        let bucket = mid_bucket(own);
        let start = rng.below(1 << 32);
        (1..1u64 << 32)
            .map(|i| (start + i) % (1 << 32))
            .find(|m| *m != own && mid_bucket(*m) == bucket)
            .expect("every bucket is reached within the /32s")
    }

    /// Addresses around every prefix of the lists: first, last, neighbours,
    /// and random ones in its block and /48.
    fn probes(rng: &mut Rng, lists: &[&Allowlist]) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for l in lists {
            for n in &l.v4 {
                let a = u32::from(n.network());
                let b = u32::from(n.broadcast());
                for x in [
                    a,
                    b,
                    a.wrapping_sub(1),
                    b.wrapping_add(1),
                    a ^ rng.below(256) as u32,
                ] {
                    out.push(IpAddr::V4(x.into()));
                }
            }
            for n in &l.v6 {
                let a = u128::from(n.network());
                let b = u128::from(n.broadcast());
                let r = u128::from(rng.next()) << 64 | u128::from(rng.next());
                for x in [
                    a,
                    b,
                    a.wrapping_sub(1),
                    b.wrapping_add(1),
                    a ^ (r >> 48),
                    a ^ (r >> 80),
                ] {
                    out.push(IpAddr::V6(x.into()));
                }
            }
        }
        out
    }

    #[test]
    fn the_fast_path_never_contradicts_the_list() {
        let mut rng = Rng(1);
        for round in 0..20 {
            let l = random_list(&mut rng, 1 + round * 20);
            let f = FastPath::from_list(&l);
            let trie: BTreeSet<IpNet> =
                l.v4.iter()
                    .map(|n| IpNet::V4(*n))
                    .chain(l.v6.iter().map(|n| IpNet::V6(*n)))
                    .collect();
            for addr in probes(&mut rng, &[&l]) {
                let allowed = l.lookup(addr).is_some();
                let path = f.path(addr);
                assert_eq!(
                    allows(f.path(addr), &trie, addr),
                    allowed,
                    "round {round}: {addr} {path:?}"
                );
                if let Some(answer) = path.answer() {
                    assert_eq!(answer, allowed, "{addr}: the fast path decided wrongly");
                }
            }
        }
    }

    /// The fast-path maps whole, as the program reads them.
    #[derive(Clone)]
    struct Dense {
        v4: Vec<u64>,
        v6: Vec<u64>,
        mids: Vec<u64>,
        slots: Vec<u64>,
    }

    impl Dense {
        fn of(fast: &FastPath) -> Self {
            let dense = |words: &Words, len: u32| {
                let mut out = vec![0; len as usize];
                for (i, w) in words.iter() {
                    out[i as usize] = w;
                }
                out
            };
            let words = filter_common::fast_path::WORDS;
            Self {
                v4: dense(&fast.v4, words),
                v6: dense(&fast.v6, words),
                mids: dense(&fast.mids, MID_SLOTS),
                slots: dense(&fast.slots, SUBBLOCK_SLOTS),
            }
        }

        fn maps(&self) -> BlockMaps<'_> {
            BlockMaps {
                v4: &self.v4,
                v6: &self.v6,
                mids: &self.mids,
                slots: &self.slots,
            }
        }

        fn set(&mut self, table: Table, i: u32, w: u64) {
            let words = match table {
                Table::V4 => &mut self.v4,
                Table::V6 => &mut self.v6,
                Table::Mids => &mut self.mids,
                Table::Slots => &mut self.slots,
            };
            words[i as usize] = w;
        }
    }

    /// The words are those the dense builder they replaced (7fe4c09) wrote
    /// into whole tables, word for word: its [`fast_sum`] of each of these
    /// lists, recorded then. The lists: random ones of every kind of
    /// block, the realistic IPv6 mix up to as many prefixes as a trie
    /// takes, unmerged and unsorted prefixes inside others, more /32s and
    /// more /48s than the tables take, and 100,000 random IPv4 prefixes.
    /// A change to the maps' layout changes these sums, and must change
    /// `LAYOUT_VERSION` with them.
    #[test]
    fn the_words_are_those_of_the_dense_tables_they_replaced() {
        let mut rng = Rng(77);
        let mut lists: Vec<Allowlist> = [0, 1, 2, 10, 30, 100, 300, 1000]
            .into_iter()
            .map(|n| random_list(&mut rng, n))
            .collect();
        for n in [1000, 100_000, filter_common::MAX_PREFIXES as usize] {
            lists.push(Allowlist::from_prefixes(vec![], realistic_v6(&mut rng, n)));
        }
        let v4 = [
            "10.1.2.0/24",
            "10.0.0.0/8",
            "10.1.0.0/16",
            "192.0.2.128/25",
            "192.0.2.0/24",
            "192.0.2.7/32",
            "203.0.113.0/26",
            "203.0.113.0/26",
        ];
        let v6 = [
            "2001:db8:1::/48",
            "2001:db8::/32",
            "2001:db8::/24",
            "2001:db9::/36",
            "2001:db9::/48",
            "2001:db9:1:2::/64",
            "3000::/20",
            "3000::1/128",
            "2001:dba::/33",
        ];
        lists.push(Allowlist {
            v4: v4.iter().map(|n| n.parse().unwrap()).collect(),
            v6: v6.iter().map(|n| n.parse().unwrap()).collect(),
        });
        let over_mids = (0..(MAX_MIDS / 128 + 1) as u128)
            .map(|i| Ipv6Net::new(Ipv6Addr::from((0x2400_0000 + i) << 104), 25).unwrap())
            .collect();
        lists.push(Allowlist::from_prefixes(vec![], over_mids));
        let over_subblocks: Vec<String> = (0..80)
            .map(|i| format!("2001:{:x}::/36", 0x100 + i))
            .collect();
        lists.push(list(
            &over_subblocks
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ));
        let v4 = (0..100_000)
            .map(|_| {
                let addr = Ipv4Addr::from(rng.next() as u32);
                let len = [18, 20, 22, 24, 24, 24, 25, 28, 30, 31, 32][rng.below(11) as usize];
                Ipv4Net::new(addr, len).unwrap().trunc()
            })
            .collect();
        lists.push(Allowlist::from_prefixes(v4, vec![]));
        let sums: [(usize, u64); 15] = [
            (0, 0),
            (3, 5980991331628883992),
            (6, 3391431440022800225),
            (25, 7786104740680726825),
            (58, 279402397379679942),
            (108, 16520031465260590187),
            (73, 5167464323959890163),
            (5, 784750421563517416),
            (1000, 7122361804734382391),
            (99996, 14764540493131410604),
            (262123, 13737622612961973918),
            (17, 8621787695472864980),
            (2049, 9832022619227211999),
            (80, 4453926016436167363),
            (95581, 1009213270205208293),
        ];
        for (i, (l, (len, sum))) in lists.iter().zip(sums).enumerate() {
            assert_eq!(l.len(), len, "list {i}");
            assert_eq!(FastPath::from_list(l).sum(), sum, "list {i}");
        }
    }

    /// An address takes the same path through the words (each looked up
    /// by its index) as through the whole maps the program reads.
    #[test]
    fn a_path_reads_the_same_from_the_words_and_the_whole_maps() {
        let mut rng = Rng(5);
        let l = random_list(&mut rng, 200);
        let f = FastPath::from_list(&l);
        let d = Dense::of(&f);
        for addr in probes(&mut rng, &[&l]) {
            assert_eq!(Path::of(addr, d.maps()), f.path(addr), "{addr}");
        }
    }

    /// Short prefixes, each inside the last, cover the same words again
    /// and again: each is one run of words until the words are made, and
    /// the words are one per word of the bitmap.
    #[test]
    fn nested_short_prefixes_cost_a_run_each_not_a_word_each() {
        let v4: Vec<Ipv4Net> = (0..=17)
            .map(|len| Ipv4Net::new(Ipv4Addr::UNSPECIFIED, len).unwrap())
            .collect();
        let mut parts = Parts::default();
        for net in &v4 {
            parts.fill(0, blocks_covered(net.prefix_len()).unwrap());
        }
        assert_eq!((parts.full.len(), parts.words.len()), (v4.len(), 0));
        let words = parts.words();
        assert_eq!(
            words.len() as u32,
            filter_common::fast_path::BLOCKS / BLOCKS_PER_WORD
        );
        assert!(words.iter().all(|(_, w)| w == FULL_WORD));
        let f = FastPath::from_list(&Allowlist { v4, v6: vec![] });
        assert_eq!(f, FastPath::from_list(&list(&["0.0.0.0/0"])));
        // Longer prefixes in the first and the last word of a run: the
        // run's words cover them, once each.
        let inside = ["10.0.0.0/16", "10.0.0.0/25", "10.0.255.128/25"];
        let l = Allowlist {
            v4: inside.iter().map(|n| n.parse().unwrap()).collect(),
            v6: vec![],
        };
        assert_eq!(
            FastPath::from_list(&l),
            FastPath::from_list(&list(&["10.0.0.0/16"]))
        );
    }

    /// The maps and tries as they stand after some of an update's writes.
    struct Sim {
        trie: BTreeSet<IpNet>,
        fast: Dense,
    }

    impl Sim {
        fn of(list: &Allowlist) -> Self {
            Self {
                trie: list
                    .v4
                    .iter()
                    .map(|n| IpNet::V4(*n))
                    .chain(list.v6.iter().map(|n| IpNet::V6(*n)))
                    .collect(),
                fast: Dense::of(&FastPath::from_list(list)),
            }
        }

        fn apply(&mut self, write: Write) {
            match write {
                Write::Insert(n) => {
                    self.trie.insert(n);
                }
                Write::Remove(n) => {
                    self.trie.remove(&n);
                }
                Write::Word(table, i, w) => self.fast.set(table, i, w),
            }
        }

        fn allows(&self, addr: IpAddr) -> bool {
            allows(Path::of(addr, self.fast.maps()), &self.trie, addr)
        }

        /// The update a refresh to `new` makes: the tries as they are
        /// (read back, unmerged after a kill) against the new list, and the
        /// live maps against the new list's.
        fn update_to(&self, new: &Allowlist) -> Update {
            let (v4, v6) = crate::allowlist::by_family(self.trie.iter().copied());
            let live = Allowlist { v4, v6 };
            Update::new(
                Diff::between(&live, new),
                self.fast.maps(),
                &FastPath::from_list(new),
            )
        }
    }

    /// Every write of an update, one at a time: no address allowed before it
    /// and by the new list is denied after any of them; at the end the maps
    /// are exactly the new list's. Then a refresh killed at a random write
    /// is followed by another, which must keep the same promise from the
    /// half-done state and converge.
    #[test]
    fn no_write_order_prefix_denies_an_address_both_allow() {
        let mut rng = Rng(7);
        for round in 0..20 {
            let old = random_list(&mut rng, 30);
            let mut new_v4 = old.v4.clone();
            let mut new_v6 = old.v6.clone();
            // Keep some, split some, widen some, add some, drop some.
            new_v4.retain(|_| rng.below(3) != 0);
            new_v6.retain(|_| rng.below(3) != 0);
            let extra = random_list(&mut rng, 15);
            new_v4.extend(extra.v4);
            new_v6.extend(extra.v6);
            for n in old
                .v4
                .iter()
                .filter(|n| n.prefix_len() < 32 && rng.below(4) == 0)
            {
                new_v4.extend(n.subnets(n.prefix_len() + 1).unwrap().take(1));
            }
            for n in &old.v6 {
                match rng.below(14) {
                    0 | 1 => new_v6.push(n.supernet().unwrap()),
                    2 | 3 if n.prefix_len() < 128 => {
                        new_v6.retain(|m| m != n);
                        new_v6.extend(n.subnets(n.prefix_len() + 1).unwrap().take(1));
                    }
                    // Its whole /24, or a /33 beside it (too many /48s).
                    4 => new_v6.push(Ipv6Net::new(n.network(), 24).unwrap().trunc()),
                    5 => new_v6.push(Ipv6Net::new(n.network(), 33).unwrap().trunc()),
                    // A /48 elsewhere that takes its slot, while its own
                    // /48 leaves the /48 table (its /24 covered in full, or
                    // asking the trie), or stays and shares the slot.
                    6..=8 => {
                        let own = v6_subblock(&n.network().octets());
                        new_v6.push(subblock_net(colliding(own, &mut rng)));
                        match rng.below(3) {
                            0 => new_v6.push(Ipv6Net::new(n.network(), 24).unwrap().trunc()),
                            1 => new_v6.push(Ipv6Net::new(n.network(), 33).unwrap().trunc()),
                            _ => {}
                        }
                    }
                    // Its whole /32 (the /32 table says `Full`).
                    9 => new_v6.push(Ipv6Net::new(n.network(), 32).unwrap().trunc()),
                    // A /32 elsewhere, whole or in part, that takes its
                    // /32's slot of the /32 table.
                    10 | 11 => {
                        let own = v6_mid(&n.network().octets());
                        let other = Ipv6Addr::from(u128::from(colliding_mid(own, &mut rng)) << 96);
                        let len = [32, 48, 64][rng.below(3) as usize];
                        new_v6.push(Ipv6Net::new(other, len).unwrap().trunc());
                    }
                    _ => {}
                }
            }
            for n in &old.v4 {
                if rng.below(10) == 0 {
                    new_v4.push(Ipv4Net::new(n.network(), 24).unwrap().trunc());
                }
            }
            let new = Allowlist::from_prefixes(new_v4, new_v6);
            let samples = probes(&mut rng, &[&old, &new]);

            let mut sim = Sim::of(&old);
            let before: Vec<bool> = samples.iter().map(|a| sim.allows(*a)).collect();
            let must: Vec<IpAddr> = samples
                .iter()
                .zip(&before)
                .filter(|(a, b)| **b && new.lookup(**a).is_some())
                .map(|(a, _)| *a)
                .collect();
            let update = sim.update_to(&new);
            let writes: Vec<Write> = update.writes().collect();
            let kill_at = rng.below(writes.len() as u64 + 1) as usize;
            for (i, w) in writes.iter().enumerate() {
                sim.apply(*w);
                for a in &must {
                    assert!(
                        sim.allows(*a),
                        "round {round}: write {i} ({w:?}) denies {a}"
                    );
                }
                if i + 1 == kill_at {
                    break;
                }
            }
            // Killed at `kill_at`: the next refresh goes to yet another list.
            let newer = Allowlist::from_prefixes(
                new.v4
                    .iter()
                    .copied()
                    .filter(|_| rng.below(2) == 0)
                    .collect(),
                new.v6
                    .iter()
                    .copied()
                    .filter(|_| rng.below(2) == 0)
                    .collect(),
            );
            let must: Vec<IpAddr> = samples
                .iter()
                .filter(|a| sim.allows(**a) && newer.lookup(**a).is_some())
                .copied()
                .collect();
            let update = sim.update_to(&newer);
            for (i, w) in update.writes().enumerate() {
                sim.apply(w);
                for a in &must {
                    assert!(
                        sim.allows(*a),
                        "round {round}, after a kill: write {i} ({w:?}) denies {a}"
                    );
                }
            }
            let converged = FastPath::of(sim.fast.maps());
            assert_eq!(
                converged,
                FastPath::from_list(&newer),
                "round {round}: did not converge"
            );
            assert_eq!(
                first_difference(&converged, &FastPath::from_list(&newer)),
                None
            );
            for a in &samples {
                assert_eq!(
                    sim.allows(*a),
                    newer.lookup(*a).is_some(),
                    "round {round}: {a}"
                );
            }
        }
    }

    #[test]
    fn an_update_to_the_same_list_writes_nothing() {
        let l = random_list(&mut Rng(3), 50);
        let f = FastPath::from_list(&l);
        let u = Update::new(Diff::between(&l, &l), Dense::of(&f).maps(), &f);
        assert!(u.is_empty());
        assert_eq!(u.writes().count(), 0);
    }

    #[test]
    fn the_digest_tells_lists_apart() {
        let a = list(&["192.0.2.0/24", "2001:db8::/48"]);
        assert_eq!(digest(&a), digest(&a.clone()));
        for other in [
            list(&["192.0.2.0/25", "2001:db8::/48"]),
            list(&["192.0.3.0/24", "2001:db8::/48"]),
            list(&["192.0.2.0/24", "2001:db8::/47"]),
            list(&["192.0.2.0/24"]),
            // The same bytes split differently between the families.
            Allowlist {
                v4: vec![],
                v6: vec!["2001:db8::/48".parse().unwrap()],
            },
        ] {
            assert_ne!(digest(&a), digest(&other), "{other:?}");
        }
    }

    #[test]
    fn the_record_tells_what_drifted() {
        let l = list(&["192.0.2.0/24", "203.0.113.0/26", "2001:db8::/48"]);
        let f = FastPath::from_list(&l);
        let record = Record::of(&l, &f);
        // Summed whole, as the live maps are.
        let survey = |l: &Allowlist, f: &Dense| Survey {
            entries: [l.v4.len() as u32, l.v6.len() as u32],
            trie_sums: Some([prefix_sum(&l.v4), prefix_sum(&l.v6)]),
            fast_sum: fast_sum(
                f.v4.iter().copied(),
                f.v6.iter().copied(),
                f.mids.iter().copied(),
                f.slots.iter().copied(),
            ),
        };
        assert!(record.drift(&survey(&l, &Dense::of(&f))).is_empty());
        // A key added: the count says so.
        let more = list(&[
            "192.0.2.0/24",
            "203.0.113.0/26",
            "203.0.113.128/26",
            "2001:db8::/48",
        ]);
        let drift_of_more = record.drift(&survey(&more, &Dense::of(&f)));
        assert_eq!(
            drift_of_more,
            ["the IPv4 trie holds 3 prefixes, the list applied last 2"]
        );
        // One replaced by another: the checksum says so.
        let other = list(&["192.0.2.0/24", "203.0.113.64/26", "2001:db8::/48"]);
        let drift = record.drift(&survey(&other, &Dense::of(&f)));
        assert!(
            drift[0].contains("other prefixes than the list applied last"),
            "{drift:?}"
        );
        // Counted by the kernel, no key read: as many entries pass, more
        // do not.
        let counted = |l: &Allowlist| Survey {
            trie_sums: None,
            ..survey(l, &Dense::of(&f))
        };
        assert!(record.drift(&counted(&other)).is_empty());
        assert_eq!(record.drift(&counted(&more)), drift_of_more);
        // A word of the fast path changed.
        let mut g = Dense::of(&f);
        let block = v4_block(&[198, 51, 100, 0]);
        g.v4[word_of(block) as usize] |= (BlockState::Full as u64) << shift_of(block);
        let drift = record.drift(&survey(&l, &g));
        assert_eq!(drift.len(), 1);
        assert!(drift[0].contains("fast path"), "{drift:?}");
        // The sums do not depend on the order of the prefixes.
        let mut reversed = l.v4.clone();
        reversed.reverse();
        assert_eq!(prefix_sum(&reversed), prefix_sum(&l.v4));
        assert_ne!(prefix_sum(&l.v4), prefix_sum(&other.v4));
    }

    #[test]
    fn differences_name_every_unit() {
        let a = FastPath::from_list(&list(&["192.0.2.0/24", "198.51.100.0/24"]));
        let b = FastPath::from_list(&list(&["192.0.2.0/25"]));
        let all: Vec<String> = differences(&a, &b).collect();
        for needle in [
            "192.0.2.0/24 is covered in full in the bitmap, covered in part, for the trie to decide by the list",
            "198.51.100.0/24 is covered in full in the bitmap, not covered by the list",
            "198.51.0.0/16 is covered in part in the summary, not covered by the list",
        ] {
            assert!(all.iter().any(|d| d == needle), "{needle:?} not in {all:?}");
        }
        assert_eq!(differences(&a, &a).count(), 0);
    }

    #[test]
    fn first_difference_names_the_block() {
        let a = FastPath::from_list(&list(&["192.0.2.0/24"]));
        let b = FastPath::from_list(&list(&["192.0.2.0/25"]));
        let text = first_difference(&a, &b).unwrap();
        assert!(text.contains("192.0.2.0/24 is covered in full"), "{text}");
        let c = FastPath::from_list(&list(&["2001:db8::/48"]));
        let d = FastPath::from_list(&list(&["2001:db8:1::/48"]));
        let text = first_difference(&c, &d).unwrap();
        assert!(text.contains("/48 table"), "{text}");
    }
}
