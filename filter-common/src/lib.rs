//! What mxgate's XDP program and its user space must agree on: map names and
//! sizes, the layout of map keys and values, counter indexes and config flags.
//!
//! The kernel side reads these maps on every frame; user space fills and reads
//! them through the pins under the pin directory. A change to any layout here
//! must bump [`LAYOUT_VERSION`] so that a newer `mxgate` refuses to drive
//! maps pinned by an older one instead of misreading them.
#![no_std]

pub mod fast_path;

/// Version of the map layout below; stored in [`Config::layout`].
pub const LAYOUT_VERSION: u32 = 9;

/// Name of the XDP program in the object file (and in `bpftool prog`).
pub const PROGRAM_NAME: &str = "mxgate";

/// Names of the maps in the object file; also their pin file names.
pub mod map_names {
    /// LPM trie of allowed IPv4 source prefixes, key [`crate::Ipv4Key`].
    pub const ALLOW_V4: &str = "ALLOW_V4";
    /// LPM trie of allowed IPv6 source prefixes, key [`crate::Ipv6Key`].
    pub const ALLOW_V6: &str = "ALLOW_V6";
    /// Array indexed by TCP destination port; non-zero marks a protected port.
    pub const PORTS: &str = "PORTS";
    /// Hash set of protected local IPv4 addresses (see [`crate::FLAG_PROTECT_DST`]).
    pub const PROTECT_V4: &str = "PROTECT_V4";
    /// Hash set of protected local IPv6 addresses (see [`crate::FLAG_PROTECT_DST`]).
    pub const PROTECT_V6: &str = "PROTECT_V6";
    /// One-element array holding the [`crate::Config`].
    pub const CONFIG: &str = "CONFIG";
    /// Per-CPU array of `u64` counters, [`crate::COUNTER_ROWS`] rows of
    /// [`crate::COUNTERS_PER_ROW`], indexed by [`crate::counter_index`].
    pub const COUNTERS: &str = "COUNTERS";
    /// Per-CPU table of recently denied sources, [`crate::DENIED_SLOTS`]
    /// [`crate::DeniedSlot`]s indexed by [`crate::denied_slot`].
    pub const DENIED: &str = "DENIED";
    /// Bitmap of IPv4 /24 block states in front of ALLOW_V4: an array of
    /// [`crate::fast_path::WORDS`] `u64`s (see [`crate::fast_path`]).
    pub const FAST_V4: &str = "FAST_V4";
    /// Bitmap of IPv6 /24 block states in front of ALLOW_V6.
    pub const FAST_V6: &str = "FAST_V6";
    /// The IPv6 /32 table for /24s in state `Next`: an array of
    /// [`crate::fast_path::MID_SLOTS`] `u64` slots.
    pub const MIDS_V6: &str = "MIDS_V6";
    /// The IPv6 /48 table for /32s in state `Next`: an array of
    /// [`crate::fast_path::SUBBLOCK_SLOTS`] `u64` slots.
    pub const BLOCKS_V6: &str = "BLOCKS_V6";
    /// One-element array holding the [`crate::fast_path::ListDigest`]: the
    /// applied list's digest, entry counts and checksums.
    pub const LIST_DIGEST: &str = "LIST_DIGEST";
    /// Per-CPU one-element array holding each CPU's [`crate::Sampler`].
    pub const SAMPLER: &str = "SAMPLER";
    /// aya-log's ring buffer, created by aya-log-ebpf.
    pub const AYA_LOGS: &str = "AYA_LOGS";

    /// Every map mxgate pins, in the order they are created.
    pub const ALL: [&str; 14] = [
        ALLOW_V4,
        ALLOW_V6,
        FAST_V4,
        FAST_V6,
        MIDS_V6,
        BLOCKS_V6,
        LIST_DIGEST,
        PORTS,
        PROTECT_V4,
        PROTECT_V6,
        CONFIG,
        COUNTERS,
        DENIED,
        SAMPLER,
    ];
}

/// Load-time constants of the program (`.rodata`), set by user space with
/// aya's `EbpfLoader::override_global`. The verifier sees their values and
/// drops the code of the branches they rule out.
pub mod globals {
    /// `u8`: 1 where the kernel has `bpf_ktime_get_coarse_ns` (5.11+), 0
    /// to stamp denied sources with `bpf_ktime_get_ns` instead (5.10).
    pub const COARSE_CLOCK: &str = "MXGATE_COARSE_CLOCK";
    /// `u8`: 1 (the default) records denied sources in the DENIED table; 0
    /// leaves it out, so the benchmark can measure what it costs.
    pub const DENIED_SOURCES: &str = "MXGATE_DENIED_SOURCES";
    /// `u8`: 1 where the kernel reads misaligned words of a frame (x86-64,
    /// arm64): the program copies addresses a word at a time; 0 (the
    /// default), a byte at a time.
    pub const WIDE_LOADS: &str = "MXGATE_WIDE_LOADS";
}

/// Capacity of each allowlist trie. Entries are allocated on insert
/// (`BPF_F_NO_PREALLOC`), so an unused capacity costs no memory.
pub const MAX_PREFIXES: u32 = 1 << 18;
/// Capacity of each protected-destination set.
pub const MAX_PROTECTED_DST: u32 = 256;
/// Slots of the denied-source table (a power of two).
pub const DENIED_SLOTS: u32 = 4096;
/// The PORTS array covers every TCP port.
pub const PORT_COUNT: u32 = 1 << 16;
/// Port protected when none is given: SMTP.
pub const DEFAULT_PORT: u16 = 25;

/// VLAN tags the program looks through (802.1Q and 802.1ad, in any order).
/// Real traffic carries at most two (802.1ad); the kernel strips any number
/// of priority tags, so a frame with more is dropped (docs/DESIGN.md V2).
pub const MAX_VLAN_TAGS: usize = 8;
/// IPv6 extension headers the program walks to reach TCP. Real traffic
/// carries two or three; a longer chain is judged by its source, never
/// passed unseen (docs/DESIGN.md V3).
pub const MAX_IPV6_EXT_HEADERS: usize = 16;
/// How far into a frame the program follows an IPv6 header chain. A chain
/// reaching past it is judged as one too long: XDP frames are smaller
/// (a page at most), and the bound lets the verifier prove every offset
/// the walk computes stays small.
pub const MAX_CHAIN_OFFSET: usize = 4096;

/// Dry run: denied SYNs are counted as "would drop" and pass.
pub const FLAG_DRY_RUN: u32 = 1 << 0;
/// Open (the emergency switch): denied SYNs are counted and pass.
pub const FLAG_OPEN: u32 = 1 << 1;
/// Only SYNs to an address in PROTECT_V4/PROTECT_V6 are examined.
pub const FLAG_PROTECT_DST: u32 = 1 << 2;

/// The filter's switches, element 0 of the CONFIG array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `FLAG_*` bits.
    pub flags: u32,
    /// [`LAYOUT_VERSION`] of the user space that created the maps; 0 means the
    /// maps were created but never initialised.
    pub layout: u32,
    /// Bumped by user space at every change of the allowlist, so `mxgate
    /// run` can tell a refresh happened without reading the tries.
    pub list_generation: u32,
    /// Bumped at every change of flags, ports or protected destinations.
    pub settings_generation: u32,
}

/// Address family of an examined SYN; selects a block of counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4 = 0,
    /// IPv6.
    V6 = 1,
}

/// What happened to an examined SYN. Every examined SYN bumps exactly one
/// outcome counter, so "examined" is their sum.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Source in the allowlist: passed.
    Allowed = 0,
    /// Source not in the allowlist: dropped.
    Dropped = 1,
    /// Source not in the allowlist, dry run: passed and counted.
    WouldDrop = 2,
    /// Source not in the allowlist, filter open: passed and counted.
    PassedOpen = 3,
    /// A frame the program could not parse to a whole TCP header (a tiny
    /// first fragment, a header chain longer than it walks, an IPv4
    /// fragment at offset 1), judged as a SYN to a protected port: its
    /// source is not in the allowlist, so it was dropped.
    DroppedUnparsed = 4,
}

impl Outcome {
    /// Every outcome, in counter order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Allowed,
        Outcome::Dropped,
        Outcome::WouldDrop,
        Outcome::PassedOpen,
        Outcome::DroppedUnparsed,
    ];

    /// The outcome's name in stats, logs, metrics and JSON.
    pub const fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Dropped => "dropped",
            Outcome::WouldDrop => "would_drop",
            Outcome::PassedOpen => "passed_open",
            Outcome::DroppedUnparsed => "dropped_unparsed",
        }
    }

    /// Whether the frame was dropped.
    pub const fn drops(self) -> bool {
        matches!(self, Outcome::Dropped | Outcome::DroppedUnparsed)
    }
}

/// Index in a row of COUNTERS of the count of frames whose IP header lies
/// behind more than [`MAX_VLAN_TAGS`] tags (docs/DESIGN.md V2): they have
/// no family, so they are counted once, after the family blocks.
pub const NO_IP_HEADER_COUNTER: u32 = 2 * Outcome::ALL.len() as u32;

/// Name of the [`NO_IP_HEADER_COUNTER`] in stats, logs, metrics and JSON.
pub const NO_IP_HEADER_LABEL: &str = "no_ip_header";

/// Counters in one row of COUNTERS: each family's outcomes, then
/// [`NO_IP_HEADER_COUNTER`].
pub const COUNTERS_PER_ROW: u32 = NO_IP_HEADER_COUNTER + 1;

/// Rows of COUNTERS, one per ingress interface: row `r` counts the frames
/// that came in on the interface with ifindex `r`, for `0 < r <
/// COUNTER_ROWS`; row [`OTHER_ROW`] those of every interface with a larger
/// ifindex (no interface has ifindex 0). The row is computed from the
/// frame's ingress ifindex, so the program still makes one counter lookup.
pub const COUNTER_ROWS: u32 = 1024;

/// The row shared by the interfaces whose ifindex is [`COUNTER_ROWS`] or
/// more; user space reports it as such, not as one interface.
pub const OTHER_ROW: u32 = 0;

/// Number of entries in the COUNTERS array.
pub const COUNTER_COUNT: u32 = COUNTERS_PER_ROW * COUNTER_ROWS;

/// The COUNTERS row of a frame that came in on `ifindex`.
#[inline(always)]
pub const fn counter_row(ifindex: u32) -> u32 {
    if ifindex < COUNTER_ROWS {
        ifindex
    } else {
        OTHER_ROW
    }
}

/// Index in COUNTERS of the counter for `outcome` in `family`, in `row`.
#[inline(always)]
pub const fn counter_index(row: u32, family: Family, outcome: Outcome) -> u32 {
    row * COUNTERS_PER_ROW + family as u32 * Outcome::ALL.len() as u32 + outcome as u32
}

/// Index in COUNTERS of the [`NO_IP_HEADER_COUNTER`] of `row`.
#[inline(always)]
pub const fn no_ip_header_index(row: u32) -> u32 {
    row * COUNTERS_PER_ROW + NO_IP_HEADER_COUNTER
}

/// Key data of the IPv4 allowlist trie: the address in network byte order.
pub type Ipv4Key = [u8; 4];
/// Key data of the IPv6 allowlist trie: the address in network byte order.
pub type Ipv6Key = [u8; 16];
/// A source in the DENIED table: an IPv6 address, IPv4 sources as
/// `::ffff:a.b.c.d`.
pub type SourceKey = [u8; 16];

/// The DENIED slot of `source`: a multiplicative hash of its four 32-bit
/// words. The table is direct-mapped, like a CPU cache: a source whose slot
/// is taken replaces the one there. That keeps the cost of a denied SYN to
/// an array write even when every SYN of a flood has a new source, at the
/// price of losing a quiet source's count to a colliding busy one.
#[inline(always)]
pub const fn denied_slot(source: &SourceKey) -> u32 {
    let mut folded = 0u32;
    let mut i = 0;
    while i < 16 {
        let word = u32::from_ne_bytes([source[i], source[i + 1], source[i + 2], source[i + 3]]);
        folded = (folded ^ word).wrapping_mul(0x9e37_79b1);
        i += 4;
    }
    folded >> (32 - DENIED_SLOTS.trailing_zeros())
}

/// `::ffff:a.b.c.d`, the DENIED key of an IPv4 source.
#[inline(always)]
pub const fn v4_mapped(addr: Ipv4Key) -> SourceKey {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3],
    ]
}

/// A slot of the DENIED table (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeniedSlot {
    /// The source; all zero while the slot is unused.
    pub source: SourceKey,
    /// Denied SYNs from it seen by this CPU since it took the slot; an
    /// estimate (each recorded SYN counting for its sampling period) when
    /// `sampled` is not zero.
    pub count: u64,
    /// `CLOCK_MONOTONIC` time of the last one recorded, in nanoseconds
    /// (coarse where the kernel has the coarse clock).
    pub last_seen_ns: u64,
    /// 0 when `count` is exact; else the longest sampling period (1 in N)
    /// in force while this source's SYNs were recorded.
    pub sampled: u64,
}

/// Each CPU's sampler of denied SYNs for the DENIED table (the SAMPLER
/// map's one element). While a CPU sees more than [`SAMPLE_BUDGET`] denied
/// SYNs per [`SAMPLE_WINDOW_NS`], it records only one in `2^shift`, chosen
/// at random, counting for `2^shift`: the table then costs the same per
/// denied SYN whether a flood has one source or a new one each time. The
/// per-family counters stay exact.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sampler {
    /// xorshift32 state; 0 until first used.
    pub rng: u32,
    /// log2 of the sampling period in force.
    pub shift: u32,
    /// Start of the current window, on the `last_seen_ns` clock.
    pub window_start_ns: u64,
    /// Denied SYNs seen in the current window.
    pub seen: u64,
}

/// Length of a sampling window.
pub const SAMPLE_WINDOW_NS: u64 = 100_000_000;
/// Denied SYNs a CPU records per window, at most: past it, the sampling
/// period doubles.
pub const SAMPLE_BUDGET: u64 = 256;
/// Longest sampling period: one in 2^20.
pub const MAX_SAMPLE_SHIFT: u32 = 20;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are repr(C), made only of integers, without padding.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DeniedSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::fast_path::ListDigest {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Sampler {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_listed_in_counter_order_with_distinct_labels() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "{outcome:?}");
            let label = outcome.label();
            // A JSON key and a Prometheus label value as they are.
            assert!(
                !label.is_empty() && label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{label:?}"
            );
            for other in &Outcome::ALL[..i] {
                assert_ne!(other.label(), label);
            }
        }
    }

    #[test]
    fn counter_indexes_are_distinct_and_in_range() {
        let mut seen = [false; COUNTER_COUNT as usize];
        for row in 0..COUNTER_ROWS {
            let i = no_ip_header_index(row) as usize;
            assert!(!seen[i], "index {i} used twice");
            seen[i] = true;
            for family in [Family::V4, Family::V6] {
                for outcome in Outcome::ALL {
                    let i = counter_index(row, family, outcome) as usize;
                    assert!(i < seen.len());
                    assert!(!seen[i], "index {i} used twice");
                    seen[i] = true;
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn large_ifindexes_share_the_other_row() {
        assert_eq!(counter_row(1), 1);
        assert_eq!(counter_row(COUNTER_ROWS - 1), COUNTER_ROWS - 1);
        assert_eq!(counter_row(COUNTER_ROWS), OTHER_ROW);
        assert_eq!(counter_row(u32::MAX), OTHER_ROW);
        // The last index of the last row is inside the array.
        assert!(no_ip_header_index(COUNTER_ROWS - 1) < COUNTER_COUNT);
    }

    #[test]
    fn denied_slots_are_in_range_and_spread() {
        let mut used = [false; DENIED_SLOTS as usize];
        for i in 0..2048u32 {
            let slot = denied_slot(&v4_mapped(i.to_be_bytes()));
            assert!(slot < DENIED_SLOTS);
            used[slot as usize] = true;
        }
        // 2,048 sequential sources should fill most of 4,096 slots' share.
        let filled = used.iter().filter(|u| **u).count();
        assert!(filled > 1200, "{filled} slots used by 2048 sources");
    }

    #[test]
    fn v4_mapped_is_the_rfc4291_form() {
        let k = v4_mapped([192, 0, 2, 1]);
        assert_eq!(k[..10], [0; 10]);
        assert_eq!(k[10..], [0xff, 0xff, 192, 0, 2, 1]);
    }
}
