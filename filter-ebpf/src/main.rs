//! mxgate's XDP program.
//!
//! For every frame: find a TCP SYN (SYN set, ACK clear) to a protected port,
//! look its source up in the allowlist, and drop it if the source is not
//! there (unless the filter is in dry-run or open mode). The verdict fails
//! closed (docs/DESIGN.md §2, V1–V8): once the source is known, a frame the
//! program cannot parse to a whole TCP header — a tiny first fragment, a
//! header chain longer than it walks — is judged like a SYN to a protected
//! port, never passed unseen. Frames that are not TCP pass.
//!
//! Parsing is straight-line: every read goes through [`header`], which
//! checks the frame bounds first. The allowlist lookup asks the fast path
//! first (a bitmap of /24 block states, and for IPv6 tables of /32s and
//! /48s, see `filter_common::fast_path`) and the LPM trie only for blocks
//! the list covers in part.
#![no_std]
#![no_main]
// BPF assembly: the word loads of `addrs`.
#![feature(asm_experimental_arch)]

#[allow(
    dead_code,
    reason = "each header names all its fields; the parser reads some"
)]
mod headers;

mod addrs;

use aya_ebpf::{
    Global,
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, xdp_action},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use filter_common::{
    COUNTER_COUNT, Config, DENIED_SLOTS, DeniedSlot, FLAG_DRY_RUN, FLAG_OPEN, FLAG_PROTECT_DST,
    Family, Ipv4Key, Ipv6Key, MAX_CHAIN_OFFSET, MAX_IPV6_EXT_HEADERS, MAX_PREFIXES,
    MAX_PROTECTED_DST, MAX_SAMPLE_SHIFT, MAX_VLAN_TAGS, Outcome, PORT_COUNT, SAMPLE_BUDGET,
    SAMPLE_WINDOW_NS, Sampler, SourceKey, counter_index, counter_row, denied_slot,
    fast_path::{
        self, BlockState, Bucket, ListDigest, MID_BUCKETS, SUBBLOCK_BUCKETS, WORDS, bucket_state,
        mid_bucket, subblock_bucket, top_block, top_mid, top_subblock, v4_block,
    },
    no_ip_header_index, v4_mapped,
};

use crate::addrs::{V4Addr, V6Addr};
use crate::headers::{
    EthHdr, ExtHdr, FragHdr, Header, Ipv4Hdr, Ipv6Hdr, RoutingHdr, TcpHdr, TcpPorts, VlanTag, be16,
};

#[map(name = "ALLOW_V4")]
static ALLOW_V4: LpmTrie<Ipv4Key, u8> = LpmTrie::with_max_entries(MAX_PREFIXES, BPF_F_NO_PREALLOC);
#[map(name = "ALLOW_V6")]
static ALLOW_V6: LpmTrie<Ipv6Key, u8> = LpmTrie::with_max_entries(MAX_PREFIXES, BPF_F_NO_PREALLOC);
// Memory-mappable so user space rewrites a word with one store instead of a
// syscall, and a refresh can compare all 4 MiB against the wanted bitmap.
#[map(name = "FAST_V4")]
static FAST_V4: Array<u64> = Array::with_max_entries(WORDS, BPF_F_MMAPABLE);
#[map(name = "FAST_V6")]
static FAST_V6: Array<u64> = Array::with_max_entries(WORDS, BPF_F_MMAPABLE);
#[map(name = "MIDS_V6")]
static MIDS_V6: Array<Bucket> = Array::with_max_entries(MID_BUCKETS, BPF_F_MMAPABLE);
#[map(name = "BLOCKS_V6")]
static BLOCKS_V6: Array<Bucket> = Array::with_max_entries(SUBBLOCK_BUCKETS, BPF_F_MMAPABLE);
// Only user space reads and writes it; declared here so it is created and
// pinned with the rest.
#[map(name = "LIST_DIGEST")]
static LIST_DIGEST: Array<ListDigest> = Array::with_max_entries(1, 0);
#[map(name = "PORTS")]
static PORTS: Array<u8> = Array::with_max_entries(PORT_COUNT, 0);
#[map(name = "PROTECT_V4")]
static PROTECT_V4: HashMap<Ipv4Key, u8> = HashMap::with_max_entries(MAX_PROTECTED_DST, 0);
#[map(name = "PROTECT_V6")]
static PROTECT_V6: HashMap<Ipv6Key, u8> = HashMap::with_max_entries(MAX_PROTECTED_DST, 0);
#[map(name = "CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);
#[map(name = "DENIED")]
static DENIED: PerCpuArray<DeniedSlot> = PerCpuArray::with_max_entries(DENIED_SLOTS, 0);
#[map(name = "SAMPLER")]
static SAMPLER: PerCpuArray<Sampler> = PerCpuArray::with_max_entries(1, 0);

/// 1 where the kernel has `bpf_ktime_get_coarse_ns` (5.11+). User space
/// sets it at load time; the verifier then never sees the other call, so
/// a 5.10 kernel does not refuse the program for a helper it lacks.
#[unsafe(no_mangle)]
static MXGATE_COARSE_CLOCK: Global<u8> = Global::new(1);
/// 0 leaves denied SYNs out of the DENIED table (only the benchmark sets
/// it, to measure what the table costs).
#[unsafe(no_mangle)]
static MXGATE_DENIED_SOURCES: Global<u8> = Global::new(1);
/// 1 where the kernel reads misaligned frame words: addresses are copied
/// a word at a time (see [`addrs`]). User space sets it; the default is
/// the copy every kernel takes.
#[unsafe(no_mangle)]
static MXGATE_WIDE_LOADS: Global<u8> = Global::new(0);

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// Fragment offset bits of the IPv4 flags/fragment field (RFC 791).
const IPV4_FRAG_OFFSET: u16 = 0x1fff;
const IPV4_MIN_HLEN: usize = size_of::<Ipv4Hdr>();

const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;
// Extension headers the walk does not follow (RFC 7045's list beyond the
// ones above; ESP, 50, is left out on purpose: see docs/DESIGN.md V3).
const NEXTHDR_MOBILITY: u8 = 135;
const NEXTHDR_HIP: u8 = 139;
const NEXTHDR_SHIM6: u8 = 140;
const NEXTHDR_EXPERIMENT1: u8 = 253;
const NEXTHDR_EXPERIMENT2: u8 = 254;
/// Fragment offset bits of the IPv6 fragment header's offset field (RFC 8200).
const IPV6_FRAG_OFFSET: u16 = 0xfff8;

const IPPROTO_TCP: u8 = 6;
/// The smallest mask over every offset up to [`MAX_CHAIN_OFFSET`].
const CHAIN_OFFSET_MASK: usize = (MAX_CHAIN_OFFSET + 1).next_power_of_two() - 1;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// The XDP entry point: drops what step V7 of docs/DESIGN.md drops and
/// the over-tagged frames of V2, passes every other frame.
#[xdp]
fn mxgate(ctx: XdpContext) -> u32 {
    match examine(&ctx) {
        Some(outcome) if outcome.drops() => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

/// What the parser found in a frame.
enum Found {
    /// A frame the verdict does not judge: it passes.
    Pass,
    /// An IP header behind more VLAN tags than the program walks (V2).
    Hidden,
    /// A frame judged on its source (V5–V7).
    Judge(Suspect),
}

/// A frame that may open a connection, as far as the parser could see it.
struct Suspect {
    /// Its source and destination.
    addrs: Addrs,
    /// Where the TCP header starts, or `None` when the parser could not
    /// reach it (V3: a chain it cannot finish; V4: offset 1).
    tcp: Option<usize>,
    /// [`WHOLE`], [`OVERLAP`], [`REROUTED`].
    bits: u32,
}

/// The whole TCP header was in the frame (else: dropped as unparsed).
const WHOLE: u32 = 1 << 0;
/// An IPv4 fragment at offset 1: not allowed whatever its source (V4).
const OVERLAP: u32 = 1 << 1;
/// A routing header with segments left: the destination is not the final
/// one, so V6's address test counts it as protected.
const REROUTED: u32 = 1 << 2;

/// Source and destination of a judged packet, copied out of the frame.
enum Addrs {
    V4 { src: V4Addr, dst: V4Addr },
    V6 { src: V6Addr, dst: V6Addr },
}

/// Judges a SYN or an unparsed frame, counts it and remembers a denied
/// source; `None` for a frame the verdict does not judge (it passes).
#[inline(always)]
fn examine(ctx: &XdpContext) -> Option<Outcome> {
    let Suspect {
        addrs,
        tcp,
        mut bits,
    } = match find(ctx) {
        Found::Pass => return None,
        Found::Hidden => return Some(hidden(ctx)),
        Found::Judge(suspect) => suspect,
    };
    // V5: the TCP header, or what the frame holds of it.
    let port = match tcp.map(|off| (off, header::<TcpHdr>(ctx, off))) {
        Some((_, Some(tcp))) => {
            // Only a connection's opening SYN is judged; SYN-ACK, ACK, RST
            // and the rest belong to connections that already got past
            // this filter.
            if tcp.flags & (TCP_SYN | TCP_ACK) != TCP_SYN {
                return None;
            }
            bits |= WHOLE;
            Some(be16(&tcp.dst_port))
        }
        // A tiny first fragment (RFC 1858 3.1) or a cut segment: its port
        // if the first 4 bytes are there.
        Some((off, None)) => header::<TcpPorts>(ctx, off).map(|p| be16(&p.dst_port)),
        None => None,
    };
    // V6: a port the program cannot see counts as protected.
    if let Some(port) = port
        && *PORTS.get(u32::from(port))? == 0
    {
        return None;
    }
    judge(ctx, &addrs, bits, port.map_or(0, u32::from))
}

/// Steps V6 and V7 for a frame from and to `addrs`, with the parser's
/// `bits` and `port` (0: not shown).
#[inline(always)]
fn judge(ctx: &XdpContext, addrs: &Addrs, bits: u32, port: u32) -> Option<Outcome> {
    let flags = CONFIG.get(0)?.flags;
    let check_dst = flags & FLAG_PROTECT_DST != 0 && bits & REROUTED == 0;
    let (family, allowed) = match addrs {
        Addrs::V4 { src, dst } => {
            // SAFETY: a hash map lookup; the value is only compared with None.
            if check_dst && unsafe { PROTECT_V4.get(&dst.bytes()) }.is_none() {
                return None;
            }
            (Family::V4, bits & OVERLAP == 0 && allowed_v4(src.bytes()))
        }
        Addrs::V6 { src, dst } => {
            // SAFETY: as above.
            if check_dst && unsafe { PROTECT_V6.get(&dst.bytes()) }.is_none() {
                return None;
            }
            (Family::V6, allowed_v6(src))
        }
    };
    // V7.
    let outcome = if allowed {
        Outcome::Allowed
    } else if flags & FLAG_OPEN != 0 {
        Outcome::PassedOpen
    } else if flags & FLAG_DRY_RUN != 0 {
        Outcome::WouldDrop
    } else if bits & WHOLE != 0 {
        Outcome::Dropped
    } else {
        Outcome::DroppedUnparsed
    };
    bump(counter_index(row(ctx), family, outcome));
    if outcome != Outcome::Allowed {
        // The table's key is made only for the SYNs the sampler records.
        // The log lines are compiled out by the verifier unless loaded with
        // AYA_LOG_LEVEL at debug: one line per dropped SYN would flood the
        // log under attack.
        let record = MXGATE_DENIED_SOURCES.load() != 0;
        match addrs {
            Addrs::V4 { src, .. } => {
                if record {
                    remember_denied(|| v4_mapped(src.bytes()));
                }
                debug!(ctx, "denied SYN from {:i} to port {}", src.bytes(), port);
            }
            Addrs::V6 { src, .. } => {
                if record {
                    remember_denied(|| src.bytes());
                }
                debug!(ctx, "denied SYN from {:i} to port {}", src.bytes(), port);
            }
        }
    }
    Some(outcome)
}

/// The outcome for a frame whose IP header the program could not find
/// (V2): dropped unless dry run or open is on, counted either way.
#[inline(always)]
fn hidden(ctx: &XdpContext) -> Outcome {
    bump(no_ip_header_index(row(ctx)));
    let flags = CONFIG.get(0).map_or(0, |c| c.flags);
    if flags & FLAG_OPEN != 0 {
        Outcome::PassedOpen
    } else if flags & FLAG_DRY_RUN != 0 {
        Outcome::WouldDrop
    } else {
        Outcome::DroppedUnparsed
    }
}

/// The COUNTERS row of the interface the frame came in on: computed, so
/// the counters per interface cost no lookup beyond the one in [`bump`].
#[inline(always)]
fn row(ctx: &XdpContext) -> u32 {
    // ingress_ifindex is a u32 in xdp_md; aya widens it to usize.
    counter_row(ctx.ingress_ifindex() as u32)
}

/// Adds one to counter `index` of this CPU. The array lookup checks
/// `index` against the array's size, so a row past it cannot write
/// out of bounds.
#[inline(always)]
fn bump(index: u32) {
    if let Some(counter) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot; nothing else on this CPU runs concurrently.
        unsafe { *counter += 1 };
    }
}

/// Steps V1–V4: Ethernet, VLAN tags, the IP header and its extensions.
#[inline(always)]
fn find(ctx: &XdpContext) -> Found {
    let Some(eth) = header::<EthHdr>(ctx, 0) else {
        return Found::Pass;
    };
    let mut ethertype = be16(&eth.ethertype);
    let mut off = size_of::<EthHdr>();
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // A tag cut off by the frame's end: nothing the kernel delivers.
        let Some(tag) = header::<VlanTag>(ctx, off) else {
            return Found::Pass;
        };
        ethertype = be16(&tag.ethertype);
        off += size_of::<VlanTag>();
    }
    // Behind tags, at most 14 + 8 * 4 bytes; untagged frames, the most,
    // keep their constant offset.
    let off = if off == size_of::<EthHdr>() {
        off
    } else {
        widen(off, 0x3f)
    };
    match ethertype {
        ETH_P_IP => ipv4(ctx, off),
        ETH_P_IPV6 => ipv6(ctx, off),
        ETH_P_8021Q | ETH_P_8021AD => Found::Hidden,
        _ => Found::Pass,
    }
}

/// Whether the allowlist allows an IPv4 source: the /24's state, and the
/// trie only for a /24 the list covers in part.
#[inline(always)]
fn allowed_v4(src: Ipv4Key) -> bool {
    match block_state(&FAST_V4, v4_block(&src)) {
        BlockState::None => false,
        BlockState::Full => true,
        BlockState::Next | BlockState::Trie => ALLOW_V4.get(&Key::new(32, src)).is_some(),
    }
}

/// Whether the allowlist allows an IPv6 source: the /24's state, then for a
/// /24 covered in part the /32's, then for a /32 covered in part the /48's,
/// then the trie. Each level is one array load: no hash-map helper, and a
/// source from a /32 or /48 the list does not cover is denied there. The
/// keys are shifts of the address's first word (a byte-wise build of the
/// /48 alone took 30 instructions).
#[inline(always)]
fn allowed_v6(src: &V6Addr) -> bool {
    let top = src.top();
    let state = match block_state(&FAST_V6, top_block(top)) {
        BlockState::Next => table_state(&MIDS_V6, mid_bucket(top_mid(top)), top_mid(top)),
        other => other,
    };
    let state = match state {
        BlockState::Next => {
            let subblock = top_subblock(top);
            table_state(&BLOCKS_V6, subblock_bucket(subblock), subblock)
        }
        other => other,
    };
    match state {
        BlockState::None => false,
        BlockState::Full => true,
        BlockState::Next | BlockState::Trie => ALLOW_V6.get(&Key::new(128, src.bytes())).is_some(),
    }
}

/// What bucket `index` of a hashed table says of `key`. An index the
/// array refuses cannot happen (the hash has the table's bits); if it did,
/// the trie would decide.
#[inline(always)]
fn table_state(table: &Array<Bucket>, index: u32, key: u64) -> BlockState {
    match table.get(index) {
        Some(bucket) => bucket_state(bucket, key),
        None => BlockState::Trie,
    }
}

/// The state of `block` in a bitmap: its /16's from the first summary; if
/// that is covered in part, its /20's from the second; if that too, its
/// own. An index the array refuses cannot happen (blocks are 24 bits); if
/// it did, the trie would decide.
#[inline(always)]
fn block_state(bitmap: &Array<u64>, block: u32) -> BlockState {
    let region = fast_path::unit_of(0, block);
    let state = state_at(bitmap, fast_path::summary_word_of(0, region), region);
    if state != BlockState::Next {
        return state;
    }
    let area = fast_path::unit_of(1, block);
    let state = state_at(bitmap, fast_path::summary_word_of(1, area), area);
    if state != BlockState::Next {
        return state;
    }
    state_at(bitmap, fast_path::word_of(block), block)
}

/// The state of `unit` in word `index` of `bitmap`.
#[inline(always)]
fn state_at(bitmap: &Array<u64>, index: u32, unit: u32) -> BlockState {
    match bitmap.get(index) {
        Some(word) => fast_path::state_in(*word, unit),
        None => BlockState::Trie,
    }
}

/// V3–V4 for an IPv4 packet at `l3`.
#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize) -> Found {
    let Some(ip) = header::<Ipv4Hdr>(ctx, l3) else {
        return Found::Pass;
    };
    let hlen = usize::from(ip.version_ihl & 0x0f) * 4;
    // Not a header the kernel accepts (RFC 1122 3.2.1.1–2).
    if ip.version_ihl >> 4 != 4 || hlen < IPV4_MIN_HLEN || ip.protocol != IPPROTO_TCP {
        return Found::Pass;
    }
    let offset = be16(&ip.flags_frag) & IPV4_FRAG_OFFSET;
    // Offset 1 can only overlap the first fragment's TCP flags (RFC 1858
    // 3.2); any later fragment holds none of the first 16 bytes.
    if offset > 1 {
        return Found::Pass;
    }
    Found::Judge(Suspect {
        addrs: Addrs::V4 {
            src: V4Addr::read(&ip.src),
            dst: V4Addr::read(&ip.dst),
        },
        // At offset 1 the bytes after the header are the TCP header's
        // from byte 8 on: no ports, and flags the program must not trust.
        tcp: if offset == 0 { Some(l3 + hlen) } else { None },
        bits: if offset == 1 { OVERLAP } else { 0 },
    })
}

/// V3–V4 for an IPv6 packet at `l3`: walks up to [`MAX_IPV6_EXT_HEADERS`]
/// extension headers (RFC 8200 4) to the TCP header.
#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize) -> Found {
    let Some(ip) = header::<Ipv6Hdr>(ctx, l3) else {
        return Found::Pass;
    };
    if ip.version_class_flow[0] >> 4 != 6 {
        return Found::Pass;
    }
    let mut suspect = Suspect {
        addrs: Addrs::V6 {
            src: V6Addr::read(&ip.src),
            dst: V6Addr::read(&ip.dst),
        },
        tcp: None,
        bits: 0,
    };
    let mut next = ip.next_header;
    let mut off = l3 + size_of::<Ipv6Hdr>();
    // An extension header cut off by the frame's end, or past the bound
    // the verifier needs: a chain the program cannot finish is judged
    // (RFC 7112).
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            NEXTHDR_FRAGMENT => {
                let Some(frag) = chain_header::<FragHdr>(ctx, off) else {
                    return Found::Judge(suspect);
                };
                // Not the first fragment: no TCP header in it (V4).
                if be16(&frag.offset_flags) & IPV6_FRAG_OFFSET != 0 {
                    return Found::Pass;
                }
                next = frag.next_header;
                off += size_of::<FragHdr>();
            }
            NEXTHDR_AUTH => {
                let Some(ext) = chain_header::<ExtHdr>(ctx, off) else {
                    return Found::Judge(suspect);
                };
                next = ext.next_header;
                // AH counts 4-octet units, minus 2 (RFC 4302).
                off += (usize::from(ext.len) + 2) * 4;
            }
            NEXTHDR_ROUTING => {
                let Some(ext) = chain_header::<RoutingHdr>(ctx, off) else {
                    return Found::Judge(suspect);
                };
                if ext.segments_left != 0 {
                    suspect.bits |= REROUTED;
                }
                next = ext.next_header;
                off += (usize::from(ext.len) + 1) * 8;
            }
            NEXTHDR_HOP | NEXTHDR_DEST => {
                let Some(ext) = chain_header::<ExtHdr>(ctx, off) else {
                    return Found::Judge(suspect);
                };
                next = ext.next_header;
                // 8-octet units, not counting the first.
                off += (usize::from(ext.len) + 1) * 8;
            }
            _ => break,
        }
        // Past the bound the verifier needs: judged as a chain cut short.
        if off > MAX_CHAIN_OFFSET {
            return Found::Judge(suspect);
        }
        off = widen(off, CHAIN_OFFSET_MASK);
    }
    match next {
        IPPROTO_TCP if off <= MAX_CHAIN_OFFSET => {
            suspect.tcp = Some(off);
            Found::Judge(suspect)
        }
        // A chain longer than the bound, or a header the walk does not
        // follow: what is behind it is unseen.
        IPPROTO_TCP | NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_FRAGMENT | NEXTHDR_AUTH
        | NEXTHDR_DEST | NEXTHDR_MOBILITY | NEXTHDR_HIP | NEXTHDR_SHIM6 | NEXTHDR_EXPERIMENT1
        | NEXTHDR_EXPERIMENT2 => Found::Judge(suspect),
        _ => Found::Pass,
    }
}

/// Records a denied SYN from `source` in this CPU's DENIED table: every one
/// while they are few; while they come faster than [`SAMPLE_BUDGET`] a
/// window, one in 2^shift, picked at random and counting for 2^shift. A
/// flood then costs the same per SYN whatever its sources, and little: the
/// sampler's element stays in cache, the clock is read on one SYN in 16,
/// and the table is written only now and then.
#[inline(always)]
fn remember_denied(source: impl FnOnce() -> SourceKey) {
    let Some(sampler) = SAMPLER.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU element, only touched by this CPU.
    let sampler = unsafe { &mut *sampler };
    sampler.seen += 1;
    let mut now = 0;
    // While sampling, the window is looked at on every 16th SYN only: after
    // a flood, up to 15 denied SYNs may pass unrecorded before the sampler
    // sees that the rate fell.
    if sampler.shift == 0 || sampler.seen % 16 == 0 {
        now = now_ns();
        let elapsed = now.wrapping_sub(sampler.window_start_ns);
        if elapsed >= SAMPLE_WINDOW_NS {
            // After a quiet window the rate goes back up, a step for each
            // window that passed, so a lone SYN after a flood is recorded.
            if sampler.seen >> (sampler.shift & 63) < SAMPLE_BUDGET / 4 {
                let windows = elapsed / SAMPLE_WINDOW_NS;
                sampler.shift = if windows >= u64::from(sampler.shift) {
                    0
                } else {
                    sampler.shift - windows as u32
                };
            }
            sampler.window_start_ns = now;
            sampler.seen = 1;
        }
        if sampler.seen >> (sampler.shift & 63) >= SAMPLE_BUDGET && sampler.shift < MAX_SAMPLE_SHIFT
        {
            sampler.shift += 1;
        }
    }
    let shift = sampler.shift & 31;
    if shift > 0 {
        if sampler.rng == 0 {
            // SAFETY: the helper has no preconditions.
            sampler.rng = unsafe { bpf_get_prandom_u32() } | 1;
        }
        // xorshift32 (Marsaglia): a random pick without a helper call.
        let mut x = sampler.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        sampler.rng = x;
        if x & ((1u32 << shift) - 1) != 0 {
            return;
        }
        if now == 0 {
            now = now_ns();
        }
    }
    let weight = 1u64 << shift;

    let source = source();
    let Some(slot) = DENIED.get_ptr_mut(denied_slot(&source)) else {
        return;
    };
    // SAFETY: a per-CPU slot, only touched by this CPU.
    let slot = unsafe { &mut *slot };
    if slot.source != source {
        // Direct-mapped: a new source takes the slot over.
        slot.source = source;
        slot.count = 0;
        slot.sampled = 0;
    }
    slot.count += weight;
    slot.last_seen_ns = now;
    if weight > 1 && weight > slot.sampled {
        slot.sampled = weight;
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds, by the cheapest helper the kernel has.
#[inline(always)]
fn now_ns() -> u64 {
    if MXGATE_COARSE_CLOCK.load() != 0 {
        // SAFETY: the coarse clock helper has no preconditions.
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        // SAFETY: as above.
        unsafe { bpf_ktime_get_ns() }
    }
}

/// The extension header `H` at offset `off` of an IPv6 chain, or `None`
/// if the frame ends before it.
#[inline(always)]
fn chain_header<H: Header>(ctx: &XdpContext, off: usize) -> Option<&H> {
    header(ctx, off)
}

/// `off`, known to be at most `mask` (a power of two less one), as a value
/// the verifier only knows to lie in `0..=mask`. It checks the code after
/// a point once for every distinct state that reaches it: with the exact
/// offsets, each count of VLAN tags and each length of an IPv6 chain would
/// be a state of its own, and the walk's loop would be checked over and
/// over. `black_box` keeps the compiler from dropping the mask, a no-op.
#[inline(always)]
fn widen(off: usize, mask: usize) -> usize {
    core::hint::black_box(off) & mask
}

/// The header `H` at offset `off` of the frame, or `None` if the frame ends
/// before it. Fields must be read through the returned reference: the
/// verifier knows the bounds of this one pointer, not of a recomputed one.
#[inline(always)]
fn header<H: Header>(ctx: &XdpContext, off: usize) -> Option<&H> {
    let start = ctx.data() + off;
    if start + size_of::<H>() > ctx.data_end() {
        return None;
    }
    // SAFETY: [start, start + size_of::<H>()) lies inside the frame, which
    // stays valid while the program runs; a Header has alignment 1 and is
    // valid for any bytes.
    Some(unsafe { &*(start as *const H) })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
