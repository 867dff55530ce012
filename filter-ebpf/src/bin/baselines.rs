//! Programs the benchmarks measure mxgate against (never loaded by mxgate):
//! the floor (pass everything), drop everything, and the SYN-flood
//! generator's program (transmit every frame it is given, with a new
//! random source each time when asked to).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_get_prandom_u32,
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};

/// 1 while the generator gives each frame a source from the pools; 0
/// leaves each frame's own.
#[map(name = "GEN_MODE")]
static GEN_MODE: Array<u32> = Array::with_max_entries(1, 0);
/// Sources to draw from, filled by the benchmark with addresses the
/// receiver's list denies (all of one /16, or random ones over the whole
/// space), so every frame of the flood is a SYN the receiver must deny.
#[map(name = "GEN_POOL_V4")]
static GEN_POOL_V4: Array<[u8; 4]> = Array::with_max_entries(POOL, 0);
#[map(name = "GEN_POOL_V6")]
static GEN_POOL_V6: Array<[u8; 16]> = Array::with_max_entries(POOL, 0);

/// Entries in each pool (a power of two).
const POOL: u32 = 1 << 16;

/// The cheapest XDP program: the floor every cost is measured above.
#[xdp]
fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Drops every frame: the floor of a SYN flood's cost at the receiver.
#[xdp]
fn xdp_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Run with BPF_PROG_RUN in live-frames mode on the generator's veth: each
/// frame goes out to the peer, as a flood would arrive. The frame's page is
/// reused across runs, so each run rewrites the source it finds there and
/// updates the checksums incrementally: every frame leaves with valid ones.
#[xdp]
fn xdp_tx(ctx: XdpContext) -> u32 {
    let _ = spoof(&ctx);
    xdp_action::XDP_TX
}

/// Ethernet, then IPv4 (20 bytes, no options) or IPv6 (no extension
/// headers), then TCP: the frames the benchmark builds.
#[inline(always)]
fn spoof(ctx: &XdpContext) -> Option<()> {
    if *GEN_MODE.get(0)? == 0 {
        return Some(());
    }
    // SAFETY: the helper has no preconditions.
    let pick = unsafe { bpf_get_prandom_u32() } & (POOL - 1);
    let eth: &mut [u8; 14] = at(ctx, 0)?;
    match u16::from_be_bytes([eth[12], eth[13]]) {
        0x0800 => {
            let new = *GEN_POOL_V4.get(pick)?;
            let ip: &mut [u8; 20] = at(ctx, 14)?;
            let tcp: &mut [u8; 20] = at(ctx, 34)?;
            let old = [ip[12], ip[13], ip[14], ip[15]];
            ip[12..16].copy_from_slice(&new);
            // The source is in the IPv4 header's checksum and in TCP's
            // pseudo-header.
            replace(&mut ip[10..12], &old, &new);
            replace(&mut tcp[16..18], &old, &new);
        }
        0x86dd => {
            let new = *GEN_POOL_V6.get(pick)?;
            let ip: &mut [u8; 40] = at(ctx, 14)?;
            let tcp: &mut [u8; 20] = at(ctx, 54)?;
            let mut old = [0u8; 16];
            old.copy_from_slice(&ip[8..24]);
            ip[8..24].copy_from_slice(&new);
            replace(&mut tcp[16..18], &old, &new);
        }
        _ => {}
    }
    Some(())
}

/// Updates the one's-complement checksum `check` for 16-bit words `old`
/// replaced by `new` (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline(always)]
fn replace(check: &mut [u8], old: &[u8], new: &[u8]) {
    if check.len() != 2 {
        return;
    }
    let mut sum = u32::from(!u16::from_be_bytes([check[0], check[1]]));
    for i in 0..8 {
        let (Some(o), Some(n)) = (old.get(2 * i..2 * i + 2), new.get(2 * i..2 * i + 2)) else {
            break;
        };
        sum += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        sum += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    check.copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// The `N` bytes of the frame at `off`, writable, if the frame has them.
#[expect(
    clippy::mut_from_ref,
    reason = "the frame's bytes are not in `ctx`, which only points at them"
)]
#[inline(always)]
fn at<const N: usize>(ctx: &XdpContext, off: usize) -> Option<&mut [u8; N]> {
    let start = ctx.data() + off;
    if start + N > ctx.data_end() {
        return None;
    }
    // SAFETY: [start, start + N) lies inside the frame, which stays valid
    // and is ours alone while the program runs; [u8; N] has alignment 1.
    Some(unsafe { &mut *(start as *mut [u8; N]) })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
