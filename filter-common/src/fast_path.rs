//! The fast path in front of the allowlist tries: what a block's state
//! means and where it is stored.
//!
//! Both families keep one bitmap of 2 bits per /24 (IPv6: per /24 of the
//! 128-bit space, the top 24 bits) in an array of `u64` words, 32 blocks a
//! word, so that a lookup is one inlined array load and a shift. A block
//! is not covered at all ([`BlockState::None`]: denied without touching
//! the trie), covered in full ([`BlockState::Full`]: allowed), or covered
//! in part: then IPv4 asks the trie, and IPv6 asks the /32 table
//! ([`BlockState::Next`]) or, where the tables would need too many
//! entries, the trie ([`BlockState::Trie`]).
//!
//! In front of the /24s, the same array starts with two summaries of 2
//! bits per unit: per /16 (16 KiB) and per /20 (256 KiB), [`SUMMARY_WORDS`]
//! words in all. A unit no prefix touches is `None`, one covered whole is
//! `Full`, any other is `Next` (ask the next level). A flood from sources
//! spread over the whole space thus mostly reads the summaries, which stay
//! in cache and in few pages, and reaches the 4 MiB of /24s only where the
//! list has something in that /20.
//!
//! Below an IPv6 /24 in state `Next` are two hashed tables of the same
//! shape: the /32 table ([`MID_BUCKETS`] buckets) and the /48 table
//! ([`SUBBLOCK_BUCKETS`] buckets), each bucket [`SLOTS_PER_BUCKET`] `u64`
//! slots (64 bytes, one cache line), indexed by a hash of the key
//! ([`mid_bucket`], [`subblock_bucket`]): each slot holds one key and its
//! state ([`slot_value`]) or is empty; a bucket more keys hash to than it
//! has slots holds [`SLOT_SHARED`] instead, and the trie decides for every
//! key of it. A bucket's keys fill its slots from the first, so a lookup
//! is one array load and at most eight compares per level, ending at the
//! first empty slot ([`bucket_state`]); refresh keeps every key both
//! lists allow behind filled slots while it rewrites a bucket (see
//! [`bucket_state`]). A /32 no prefix touches is in no slot (denied), one
//! a prefix covers whole is `Full`, one covered in part is `Next` (ask the
//! /48 table) or, if it alone would need more than
//! [`MAX_SUBBLOCKS_PER_MID`] /48s, `Trie`. In the /48 table a /48 is `Full`
//! or `Trie` (covered in part by longer prefixes). Both tables have a slot
//! for every prefix the trie accepts ([`MAX_PREFIXES`]) in buckets of 8 at
//! 2 keys a bucket on average, so that a list of any length fits them
//! unless its prefixes between /25 and /47 need more than that many /32s
//! or /48s, and few buckets overflow even then (about 1 in 4,000 at the
//! full load, against 1 in 270 for buckets of 4 at 1 a bucket).
//!
//! The tries stay the source of truth; these maps are derived from the
//! same list by user space and only ever answer "denied" where the list
//! allows nothing.
//!
//! [`MAX_PREFIXES`]: crate::MAX_PREFIXES

/// What the allowlist covers of one block.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockState {
    /// No address of the block is allowed.
    None = 0,
    /// Every address of the block is allowed.
    Full = 1,
    /// Some addresses are allowed: IPv4 asks the trie, IPv6 the /48 map.
    Next = 2,
    /// Some addresses are allowed: ask the trie.
    Trie = 3,
}

impl BlockState {
    /// Every state, by its bits.
    pub const ALL: [BlockState; 4] = [
        BlockState::None,
        BlockState::Full,
        BlockState::Next,
        BlockState::Trie,
    ];

    /// The state in the two low bits of `bits` (higher bits ignored).
    #[inline(always)]
    pub const fn from_bits(bits: u64) -> BlockState {
        match bits & BLOCK_MASK {
            0 => BlockState::None,
            1 => BlockState::Full,
            2 => BlockState::Next,
            _ => BlockState::Trie,
        }
    }

    /// The state's name, for `lookup` and `status`.
    pub const fn label(self) -> &'static str {
        match self {
            BlockState::None => "not covered",
            BlockState::Full => "covered in full",
            BlockState::Next => "covered in part",
            BlockState::Trie => "covered in part, for the trie to decide",
        }
    }
}

/// Prefix length of a bitmap block, in both families.
pub const BLOCK_LEN: u8 = 24;
/// Bits per block in a bitmap word.
pub const BLOCK_BITS: u32 = 2;
/// Mask of one block's bits.
pub const BLOCK_MASK: u64 = (1 << BLOCK_BITS) - 1;
/// Blocks per `u64` word.
pub const BLOCKS_PER_WORD: u32 = 64 / BLOCK_BITS;
/// Blocks in a bitmap: every /24.
pub const BLOCKS: u32 = 1 << BLOCK_LEN;
/// Prefix lengths of the summaries, widest first. Each level has 16 units
/// under each unit of the level before (and each /20 16 /24s), so a unit's
/// children are one half of a word.
pub const SUMMARY_LENS: [u8; SUMMARY_LEVELS] = [16, 20];
/// Levels of summary.
pub const SUMMARY_LEVELS: usize = 2;
/// Words of all summaries at the start of each bitmap (272 KiB).
pub const SUMMARY_WORDS: u32 = summary_base(SUMMARY_LEVELS);
/// Words in a bitmap: the summaries, then the /24s (4 MiB).
pub const WORDS: u32 = SUMMARY_WORDS + BLOCKS / BLOCKS_PER_WORD;

const _: () = {
    assert!(SUMMARY_LENS[0] + 4 == SUMMARY_LENS[1] && SUMMARY_LENS[1] + 4 == BLOCK_LEN);
};

/// Index of the first word of summary `level` (of the words after the
/// summaries, for `level` = [`SUMMARY_LEVELS`]).
pub const fn summary_base(level: usize) -> u32 {
    let mut base = 0;
    let mut l = 0;
    while l < level {
        base += (1 << SUMMARY_LENS[l]) / BLOCKS_PER_WORD;
        l += 1;
    }
    base
}

/// Prefix length of a key of the IPv6 /32 table.
pub const MID_LEN: u8 = 32;
/// Buckets of the /32 table (8 MiB), one for every two prefixes the trie
/// takes.
pub const MID_BUCKETS: u32 = crate::MAX_PREFIXES / 2;
/// Slots of the /32 table.
pub const MID_SLOTS: u32 = MID_BUCKETS * SLOTS_PER_BUCKET as u32;
/// Most /32 entries the table is given, two per bucket on average, so that
/// few buckets overflow; past it, the /24s needing most ask the trie.
pub const MAX_MIDS: u32 = crate::MAX_PREFIXES;
/// Prefix length of an IPv6 sub-block in the /48 table.
pub const SUBBLOCK_LEN: u8 = 48;
/// `u64` slots in a bucket of either table.
pub const SLOTS_PER_BUCKET: usize = 8;
/// Buckets of the /48 table (8 MiB), one for every two prefixes the trie
/// takes.
pub const SUBBLOCK_BUCKETS: u32 = crate::MAX_PREFIXES / 2;
/// Slots of the /48 table.
pub const SUBBLOCK_SLOTS: u32 = SUBBLOCK_BUCKETS * SLOTS_PER_BUCKET as u32;
/// Most /48 entries the table is given, two per bucket on average, so that
/// few buckets overflow; past it, the /32s needing most ask the trie.
pub const MAX_SUBBLOCKS: u32 = crate::MAX_PREFIXES;
/// Most /48 entries one /32 may use; a /32 needing more asks the trie
/// ([`BlockState::Trie`]). 4,096 is one /36.
pub const MAX_SUBBLOCKS_PER_MID: u32 = 1 << 12;
/// A bucket more keys hash to than it has slots: the trie decides for
/// each of them. Only this very value marks a bucket shared; a key's slot
/// value with this bit set is no value mxgate writes, and holds nothing.
pub const SLOT_SHARED: u64 = 1 << 2;
/// Bits of a slot below its key.
const SLOT_KEY_SHIFT: u32 = 16;

const _: () = {
    assert!(MID_BUCKETS.is_power_of_two() && SUBBLOCK_BUCKETS.is_power_of_two());
};

/// A /32 of the IPv6 space: the top 32 bits of its addresses.
pub type Mid = u64;
/// A /48 of the IPv6 space: the top 48 bits of its addresses.
pub type Subblock = u64;
/// A bucket of the /48 table.
pub type Bucket = [u64; SLOTS_PER_BUCKET];

/// The block of an IPv4 address: its top 24 bits.
#[inline(always)]
pub const fn v4_block(addr: &[u8; 4]) -> u32 {
    u32::from_be_bytes([0, addr[0], addr[1], addr[2]])
}

/// The top 64 bits of an IPv6 address (its /64), as a number: the block,
/// the /32 and the /48 are its top bits. The XDP program loads them as
/// one word; [`v6_block`], [`v6_mid`] and [`v6_subblock`] take them from
/// an address's bytes.
#[inline(always)]
pub const fn v6_top(addr: &[u8; 16]) -> u64 {
    u64::from_be_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ])
}

/// The block of an IPv6 address whose top 64 bits are `top`.
#[inline(always)]
pub const fn top_block(top: u64) -> u32 {
    (top >> (64 - BLOCK_LEN)) as u32
}

/// The /32 of an IPv6 address whose top 64 bits are `top`.
#[inline(always)]
pub const fn top_mid(top: u64) -> Mid {
    top >> (64 - MID_LEN)
}

/// The /48 of an IPv6 address whose top 64 bits are `top`.
#[inline(always)]
pub const fn top_subblock(top: u64) -> Subblock {
    top >> (64 - SUBBLOCK_LEN)
}

/// The block of an IPv6 address: its top 24 bits.
#[inline(always)]
pub const fn v6_block(addr: &[u8; 16]) -> u32 {
    top_block(v6_top(addr))
}

/// The /48 of an IPv6 address.
#[inline(always)]
pub const fn v6_subblock(addr: &[u8; 16]) -> Subblock {
    top_subblock(v6_top(addr))
}

/// The /32 of an IPv6 address.
#[inline(always)]
pub const fn v6_mid(addr: &[u8; 16]) -> Mid {
    top_mid(v6_top(addr))
}

/// The bucket of a table of `buckets` (a power of two) that `key` hashes
/// to (Fibonacci hashing: the top bits of a multiplication by 2^64 / φ).
#[inline(always)]
const fn bucket_of(key: u64, buckets: u32) -> u32 {
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - buckets.trailing_zeros())) as u32
}

/// The bucket of the /32 table a /32 hashes to.
#[inline(always)]
pub const fn mid_bucket(mid: Mid) -> u32 {
    bucket_of(mid, MID_BUCKETS)
}

/// The bucket of the /48 table a /48 hashes to.
#[inline(always)]
pub const fn subblock_bucket(subblock: Subblock) -> u32 {
    bucket_of(subblock, SUBBLOCK_BUCKETS)
}

/// The slot value that holds `key` (a /32 or a /48) in `state`.
#[inline(always)]
pub const fn slot_value(key: u64, state: BlockState) -> u64 {
    (key << SLOT_KEY_SHIFT) | state as u64
}

/// What one slot says of `key`: `Some` of its state if the slot holds
/// it, `Some(Trie)` if the slot is the shared mark, `None` otherwise
/// (empty, another key's, or a value no mxgate writes).
///
/// A slot holds `key` when it differs from `key`'s slot value only in its
/// two state bits, and they are not 0: one XOR and one compare, the
/// fewest instructions the XDP program runs per slot (eight slots a
/// table).
#[inline(always)]
pub const fn slot_state(slot: u64, key: u64) -> Option<BlockState> {
    let state = slot ^ (key << SLOT_KEY_SHIFT);
    if slot == SLOT_SHARED {
        Some(BlockState::Trie)
    } else if state.wrapping_sub(1) < BLOCK_MASK {
        Some(BlockState::from_bits(state))
    } else {
        None
    }
}

/// What a bucket says of `key` (which hashes to it): the state a slot
/// holding it gives, "ask the trie" if the bucket is shared, and not
/// covered if no slot before the first empty one holds it.
///
/// Stopping at the first empty slot spares a lookup of a key the list
/// does not cover (most buckets hold fewer than two keys) seven of its
/// eight compares. It is sound because user space fills a bucket's slots
/// from the first, and a refresh rewrites them slot by slot in two steps,
/// widening, then narrowing (see the write order in docs/DESIGN.md §6),
/// through values that keep a slot filled wherever the old or the new
/// bucket has it filled: a lookup made during one step reads each slot as
/// it was before or after that step, in any mixture and order, and every
/// slot before one answering a key both buckets hold is filled. (A lookup
/// stalled from the widening to the narrowing, reading some slots before
/// one and others after the other, could miss such a key; so could it
/// between the levels, which the write order already assumes do not
/// happen.) A refresh killed while narrowing may leave a gap, with only
/// keys the new list does not hold behind it. A slot emptied by hand
/// hides the keys after it: denied, never a way in, and repaired as drift
/// by the next refresh.
#[inline(always)]
pub fn bucket_state(bucket: &Bucket, key: u64) -> BlockState {
    for slot in bucket {
        if *slot == 0 {
            break;
        }
        if let Some(state) = slot_state(*slot, key) {
            return state;
        }
    }
    BlockState::None
}

/// The key (/32 or /48) a slot value holds, if it holds one.
#[inline(always)]
pub const fn slot_key(slot: u64) -> Option<u64> {
    let key = slot >> SLOT_KEY_SHIFT;
    match slot_state(slot, key) {
        Some(_) if slot != SLOT_SHARED => Some(key),
        _ => None,
    }
}

/// The unit of summary `level` that holds `block`.
#[inline(always)]
pub const fn unit_of(level: usize, block: u32) -> u32 {
    block >> (BLOCK_LEN - SUMMARY_LENS[level])
}

/// Index of the word of summary `level` holding `unit`.
#[inline(always)]
pub const fn summary_word_of(level: usize, unit: u32) -> u32 {
    summary_base(level) + unit / BLOCKS_PER_WORD
}

/// Index of the word holding `block`, after the summary.
#[inline(always)]
pub const fn word_of(block: u32) -> u32 {
    SUMMARY_WORDS + block / BLOCKS_PER_WORD
}

/// Shift of a block's (or region's) bits inside its word. They never
/// straddle a byte, so a block reads as its old or its new state even if a
/// word were written a byte at a time.
#[inline(always)]
pub const fn shift_of(block: u32) -> u32 {
    (block % BLOCKS_PER_WORD) * BLOCK_BITS
}

/// The state of `block` (or region) in `word`, the word that holds it.
#[inline(always)]
pub const fn state_in(word: u64, block: u32) -> BlockState {
    BlockState::from_bits(word >> shift_of(block))
}

/// The record of the allowlist the maps hold, kept in the LIST_DIGEST map:
/// its digest, so a refresh with the same list need not diff it against
/// the tries, and what the maps held when it was applied (counts and
/// checksums), so that refresh can tell cheaply whether anything changed
/// them since.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListDigest {
    /// [`DIGEST_VALID`] when the record describes the maps; anything else
    /// (a refresh under way or killed) means "unknown".
    pub valid: u32,
    /// The id of the ALLOW_V4 map whose list this records (0 until first
    /// written). The program does not use this map, so its map ids cannot
    /// tell this filter's record from another filter's pinned in its
    /// place; this does.
    pub owner: u32,
    /// SHA-256 of the list, as user space computes it.
    pub digest: [u8; 32],
    /// Prefixes in ALLOW_V4 and ALLOW_V6.
    pub entries: [u32; 2],
    /// An order-independent checksum of the prefixes in ALLOW_V4 and
    /// ALLOW_V6, as user space computes it.
    pub trie_sums: [u64; 2],
    /// A checksum of the words of FAST_V4, FAST_V6, MIDS_V6 and BLOCKS_V6,
    /// as user space computes it.
    pub fast_sum: u64,
    /// SHA-256 of the bytes of every source the list was read from and of
    /// the options that shaped it, as user space computes it; all zeroes
    /// when not known. A refresh whose sources deliver the same bytes
    /// stops before parsing them.
    pub sources: [u8; 32],
}

/// [`ListDigest::valid`] when the digest may be trusted.
pub const DIGEST_VALID: u32 = 0x6d78_6431;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_bits() {
        for state in BlockState::ALL {
            assert_eq!(BlockState::from_bits(state as u64), state);
        }
    }

    #[test]
    fn every_block_has_one_place() {
        assert_eq!(WORDS, 2048 + 32768 + (1 << 19));
        assert_eq!(summary_word_of(0, unit_of(0, BLOCKS - 1)), 2047);
        assert_eq!(summary_word_of(1, unit_of(1, 0)), 2048);
        assert_eq!(
            summary_word_of(1, unit_of(1, BLOCKS - 1)),
            SUMMARY_WORDS - 1
        );
        assert_eq!(word_of(0), SUMMARY_WORDS);
        // The 256 /24s of a /16 are the 8 words of one 64-byte line.
        assert_eq!((word_of(0x0a_0b_ff) - word_of(0x0a_0b_00)) as usize, 7);
        assert_eq!(word_of(0x0a_0b_00) % 8, 0);
        for block in [0, 1, 31, 32, 33, BLOCKS - 1] {
            assert!(word_of(block) < WORDS);
            assert!(shift_of(block) <= 62);
            assert!(shift_of(block) % 8 + BLOCK_BITS <= 8);
        }
        let word = 0b10u64 << shift_of(33);
        assert_eq!(state_in(word, 33), BlockState::Next);
        assert_eq!(state_in(word, 32), BlockState::None);
    }

    #[test]
    fn blocks_are_the_top_24_bits() {
        assert_eq!(v4_block(&[192, 0, 2, 77]), 0x00c0_0002);
        let mut v6 = [0u8; 16];
        v6[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x5e]);
        v6[15] = 1;
        assert_eq!(v6_block(&v6), 0x0020_010d);
        assert_eq!(v6_subblock(&v6), 0x2001_0db8_005e);
        assert_eq!(v6_mid(&v6), 0x2001_0db8);
        assert!(mid_bucket(0xffff_ffff) < MID_BUCKETS);
    }

    #[test]
    fn a_bucket_answers_only_for_its_own_48s() {
        let a = 0x2001_0db8_005e;
        let b = 0x2001_0db8_005f;
        assert!(subblock_bucket(a) < SUBBLOCK_BUCKETS && subblock_bucket(b) < SUBBLOCK_BUCKETS);
        let of = |slots: &[u64]| {
            let mut bucket = [0; SLOTS_PER_BUCKET];
            bucket[..slots.len()].copy_from_slice(slots);
            bucket
        };
        let bucket = of(&[slot_value(a, BlockState::Full)]);
        assert_eq!(bucket_state(&bucket, a), BlockState::Full);
        assert_eq!(bucket_state(&bucket, b), BlockState::None);
        let full: [u64; SLOTS_PER_BUCKET] = core::array::from_fn(|i| {
            let key = if i == SLOTS_PER_BUCKET - 1 {
                a
            } else {
                b + 1 + i as u64
            };
            slot_value(key, BlockState::Trie)
        });
        assert_eq!(bucket_state(&full, a), BlockState::Trie);
        assert_eq!(bucket_state(&full, b), BlockState::None);
        let bucket = of(&[
            slot_value(b, BlockState::Trie),
            slot_value(a, BlockState::Full),
        ]);
        assert_eq!(bucket_state(&bucket, a), BlockState::Full);
        assert_eq!(bucket_state(&bucket, b), BlockState::Trie);
        // The first empty slot ends the bucket: what follows it is not read.
        let gap = of(&[
            slot_value(b, BlockState::Trie),
            0,
            slot_value(a, BlockState::Full),
        ]);
        assert_eq!(bucket_state(&gap, a), BlockState::None);
        assert_eq!(bucket_state(&of(&[0, SLOT_SHARED]), a), BlockState::None);
        // The /48 0::/48 is not held by an empty slot.
        assert_eq!(bucket_state(&of(&[]), 0), BlockState::None);
        assert_eq!(
            bucket_state(&of(&[slot_value(0, BlockState::Full)]), 0),
            BlockState::Full
        );
        assert_eq!(bucket_state(&of(&[SLOT_SHARED]), a), BlockState::Trie);
        assert_eq!(bucket_state(&of(&[SLOT_SHARED]), 0), BlockState::Trie);
        // Only the shared mark itself shares a bucket, and a key's slot
        // holds it only with its state bits alone below it: other values
        // hold nothing.
        let odd = slot_value(a, BlockState::Full) | SLOT_SHARED;
        assert_eq!(bucket_state(&of(&[odd]), a), BlockState::None);
        assert_eq!(
            bucket_state(&of(&[slot_value(a, BlockState::Full) | 1 << 8]), a),
            BlockState::None
        );
        assert_eq!(slot_state(odd, a), None);
        assert_eq!(slot_key(odd), None);
        assert_eq!(slot_key(slot_value(a, BlockState::Full)), Some(a));
        assert_eq!(slot_key(slot_value(0, BlockState::Next)), Some(0));
        assert_eq!(slot_key(0), None);
        assert_eq!(slot_key(SLOT_SHARED), None);
        let top = 0xffff_ffff_ffff;
        assert_eq!(
            bucket_state(&of(&[slot_value(top, BlockState::Trie)]), top),
            BlockState::Trie
        );
    }
}
