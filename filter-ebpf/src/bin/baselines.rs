//! Programs the benchmarks measure mxgate against (never loaded by mxgate):
//! the floor (pass everything), drop everything, and the SYN-flood
//! generator's program (transmit every frame it is given).
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// The cheapest XDP program: the floor every cost is measured above.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Drops every frame: the floor of a SYN flood's cost at the receiver.
#[xdp]
pub fn xdp_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Run with BPF_PROG_RUN in live-frames mode on the generator's veth: each
/// frame goes out to the peer, as a flood would arrive.
#[xdp]
pub fn xdp_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
