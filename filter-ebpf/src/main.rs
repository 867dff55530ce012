//! mxgate's XDP program.
//!
//! For every frame: find a TCP SYN (SYN set, ACK clear) to a protected port,
//! look its source up in the allowlist, and drop it if the source is not
//! there (unless the filter is in dry-run or open mode). Everything else
//! passes, malformed and truncated frames included: the program must never
//! drop anything but the SYNs described in DESIGN.md, "The verdict".
//!
//! Parsing is straight-line: every read goes through [`read`], which checks
//! the frame bounds first, and a failed read means "not an examined SYN".
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, xdp_action},
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use filter_common::{
    COUNTER_COUNT, Config, DENIED_SLOTS, DeniedSlot, FLAG_DRY_RUN, FLAG_OPEN, FLAG_PROTECT_DST,
    Family, Ipv4Key, Ipv6Key, MAX_IPV6_EXT_HEADERS, MAX_PREFIXES, MAX_PROTECTED_DST, MAX_VLAN_TAGS,
    Outcome, PORT_COUNT, SourceKey, counter_index, denied_slot, v4_mapped,
};

#[map(name = "ALLOW_V4")]
static ALLOW_V4: LpmTrie<Ipv4Key, u8> = LpmTrie::with_max_entries(MAX_PREFIXES, BPF_F_NO_PREALLOC);
#[map(name = "ALLOW_V6")]
static ALLOW_V6: LpmTrie<Ipv6Key, u8> = LpmTrie::with_max_entries(MAX_PREFIXES, BPF_F_NO_PREALLOC);
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

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_HLEN: usize = 4;

const IPV4_MIN_HLEN: usize = 20;
/// Fragment offset bits of the IPv4 flags/fragment field (RFC 791).
const IPV4_FRAG_OFFSET: u16 = 0x1fff;

const IPV6_HLEN: usize = 40;
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;
/// Fragment offset bits of the IPv6 fragment header's offset field (RFC 8200).
const IPV6_FRAG_OFFSET: u16 = 0xfff8;

const IPPROTO_TCP: u8 = 6;
const TCP_MIN_HLEN: usize = 20;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

#[xdp]
pub fn mxgate(ctx: XdpContext) -> u32 {
    match examine(&ctx) {
        Some(Outcome::Dropped) => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

/// Judges an examined SYN, counts and remembers it; `None` for any frame
/// that is not an examined SYN (which therefore passes).
#[inline(always)]
fn examine(ctx: &XdpContext) -> Option<Outcome> {
    let (ethertype, l3) = skip_vlan_tags(ctx)?;
    let (addrs, l4) = match ethertype {
        ETH_P_IP => ipv4(ctx, l3)?,
        ETH_P_IPV6 => ipv6(ctx, l3)?,
        _ => return None,
    };

    // A frame too short for a whole TCP header is not a SYN Linux would accept.
    let tcp: &[u8; TCP_MIN_HLEN] = header(ctx, l4)?;
    // Only a connection's opening SYN is judged; SYN-ACK, ACK, RST and the
    // rest belong to connections that already got past this filter.
    if tcp[13] & (TCP_SYN | TCP_ACK) != TCP_SYN {
        return None;
    }
    let port = u16::from_be_bytes([tcp[2], tcp[3]]);
    if *PORTS.get(u32::from(port))? == 0 {
        return None;
    }
    let flags = CONFIG.get(0)?.flags;

    let (family, source, allowed) = match addrs {
        Addrs::V4 { src, dst } => {
            // SAFETY: a hash map lookup; the value is only compared with None.
            if flags & FLAG_PROTECT_DST != 0 && unsafe { PROTECT_V4.get(&dst) }.is_none() {
                return None;
            }
            let allowed = ALLOW_V4.get(&Key::new(32, src)).is_some();
            (Family::V4, v4_mapped(src), allowed)
        }
        Addrs::V6 { src, dst } => {
            // SAFETY: as above.
            if flags & FLAG_PROTECT_DST != 0 && unsafe { PROTECT_V6.get(&dst) }.is_none() {
                return None;
            }
            let allowed = ALLOW_V6.get(&Key::new(128, src)).is_some();
            (Family::V6, src, allowed)
        }
    };

    let outcome = if allowed {
        Outcome::Allowed
    } else if flags & FLAG_OPEN != 0 {
        Outcome::PassedOpen
    } else if flags & FLAG_DRY_RUN != 0 {
        Outcome::WouldDrop
    } else {
        Outcome::Dropped
    };
    if let Some(counter) = COUNTERS.get_ptr_mut(counter_index(family, outcome)) {
        // SAFETY: a per-CPU slot; nothing else on this CPU runs concurrently.
        unsafe { *counter += 1 };
    }
    if outcome != Outcome::Allowed {
        remember_denied(&source);
        // Compiled out by the verifier unless loaded with AYA_LOG_LEVEL at
        // debug: one line per dropped SYN would flood the log under attack.
        match family {
            Family::V4 => {
                let v4 = [source[12], source[13], source[14], source[15]];
                debug!(ctx, "denied SYN from {:i} to port {}", v4, port);
            }
            Family::V6 => debug!(ctx, "denied SYN from {:i} to port {}", source, port),
        }
    }
    Some(outcome)
}

/// Source and destination of an IP packet.
enum Addrs {
    V4 { src: Ipv4Key, dst: Ipv4Key },
    V6 { src: Ipv6Key, dst: Ipv6Key },
}

/// Skips the Ethernet header and up to [`MAX_VLAN_TAGS`] VLAN tags; returns
/// the ethertype found and the offset of the header it names.
#[inline(always)]
fn skip_vlan_tags(ctx: &XdpContext) -> Option<(u16, usize)> {
    let eth: &[u8; ETH_HLEN] = header(ctx, 0)?;
    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // The tag's second half is the encapsulated ethertype.
        let tag: &[u8; VLAN_HLEN] = header(ctx, off)?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        off += VLAN_HLEN;
    }
    // A third tag is left unparsed: its ethertype is neither IPv4 nor IPv6.
    Some((ethertype, off))
}

/// Addresses of an IPv4 packet at `l3` and the offset of its TCP header, if
/// the packet is TCP and carries the TCP header (not a non-first fragment).
#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize) -> Option<(Addrs, usize)> {
    let ip: &[u8; IPV4_MIN_HLEN] = header(ctx, l3)?;
    let hlen = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || hlen < IPV4_MIN_HLEN {
        return None;
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & IPV4_FRAG_OFFSET != 0 {
        return None;
    }
    if ip[9] != IPPROTO_TCP {
        return None;
    }
    let addrs = Addrs::V4 {
        src: [ip[12], ip[13], ip[14], ip[15]],
        dst: [ip[16], ip[17], ip[18], ip[19]],
    };
    Some((addrs, l3 + hlen))
}

/// Addresses of an IPv6 packet at `l3` and the offset of its TCP header,
/// walking up to [`MAX_IPV6_EXT_HEADERS`] extension headers (RFC 8200 4).
#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize) -> Option<(Addrs, usize)> {
    let ip: &[u8; IPV6_HLEN] = header(ctx, l3)?;
    if ip[0] >> 4 != 6 {
        return None;
    }
    let mut next = ip[6];
    let mut off = l3 + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            NEXTHDR_FRAGMENT => {
                let frag: &[u8; 8] = header(ctx, off)?;
                if u16::from_be_bytes([frag[2], frag[3]]) & IPV6_FRAG_OFFSET != 0 {
                    return None;
                }
                next = frag[0];
                off += 8;
            }
            NEXTHDR_AUTH => {
                let ext: &[u8; 2] = header(ctx, off)?;
                next = ext[0];
                // AH counts 4-octet units, minus 2 (RFC 4302).
                off += (usize::from(ext[1]) + 2) * 4;
            }
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let ext: &[u8; 2] = header(ctx, off)?;
                next = ext[0];
                // 8-octet units, not counting the first.
                off += (usize::from(ext[1]) + 1) * 8;
            }
            _ => break,
        }
    }
    // A chain longer than the bound leaves `next` at an extension header.
    if next != IPPROTO_TCP {
        return None;
    }
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    Some((Addrs::V6 { src, dst }, off))
}

/// Adds one to the denied count of `source` on this CPU.
#[inline(always)]
fn remember_denied(source: &SourceKey) {
    let Some(slot) = DENIED.get_ptr_mut(denied_slot(source)) else {
        return;
    };
    // SAFETY: the coarse clock helper has no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: a per-CPU slot, only touched by this CPU.
    let slot = unsafe { &mut *slot };
    if slot.source != *source {
        // Direct-mapped: a new source takes the slot over.
        slot.source = *source;
        slot.count = 0;
    }
    slot.count += 1;
    slot.last_seen_ns = now;
}

/// The `N` bytes of the frame at offset `off`, or `None` if the frame ends
/// before them. Fields must be read through the returned reference: the
/// verifier knows the bounds of this one pointer, not of a recomputed one.
#[inline(always)]
fn header<const N: usize>(ctx: &XdpContext, off: usize) -> Option<&[u8; N]> {
    let start = ctx.data() + off;
    if start + N > ctx.data_end() {
        return None;
    }
    // SAFETY: [start, start + N) lies inside the frame, which stays valid
    // while the program runs; [u8; N] has alignment 1.
    Some(unsafe { &*(start as *const [u8; N]) })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
