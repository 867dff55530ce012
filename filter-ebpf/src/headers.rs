//! The packet headers the program reads, as `#[repr(C)]` structs of bytes
//! with named fields, so the parser says `ip.protocol`, not `ip[9]`.
//!
//! Every field is a `u8` or a byte array: the structs have alignment 1 and
//! no padding, which lets [`crate::header`] hand out a reference into the
//! frame at any offset. Multi-byte fields stay in network byte order; read
//! them with [`be16`].

/// Types [`crate::header`] may return.
///
/// # Safety
///
/// Implementors are `#[repr(C)]`, made only of `u8` and byte arrays (so
/// alignment 1, no padding), and valid for any bit pattern.
pub(crate) unsafe trait Header {}

/// Ethernet II (IEEE 802.3).
#[repr(C)]
pub(crate) struct EthHdr {
    pub(crate) dst: [u8; 6],
    pub(crate) src: [u8; 6],
    pub(crate) ethertype: [u8; 2],
}

/// An 802.1Q or 802.1ad tag, after the outer ethertype that announced it.
#[repr(C)]
pub(crate) struct VlanTag {
    pub(crate) tci: [u8; 2],
    /// The encapsulated ethertype.
    pub(crate) ethertype: [u8; 2],
}

/// The fixed part of an IPv4 header (RFC 791); options follow.
#[repr(C)]
pub(crate) struct Ipv4Hdr {
    /// Version (high nibble) and header length in 32-bit words (low nibble).
    pub(crate) version_ihl: u8,
    pub(crate) tos: u8,
    pub(crate) total_len: [u8; 2],
    pub(crate) id: [u8; 2],
    /// Flags (3 high bits) and fragment offset (13 low bits).
    pub(crate) flags_frag: [u8; 2],
    pub(crate) ttl: u8,
    pub(crate) protocol: u8,
    pub(crate) checksum: [u8; 2],
    pub(crate) src: [u8; 4],
    pub(crate) dst: [u8; 4],
}

/// The IPv6 header (RFC 8200 3).
#[repr(C)]
pub(crate) struct Ipv6Hdr {
    /// Version (high nibble of byte 0), traffic class, flow label.
    pub(crate) version_class_flow: [u8; 4],
    pub(crate) payload_len: [u8; 2],
    pub(crate) next_header: u8,
    pub(crate) hop_limit: u8,
    pub(crate) src: [u8; 16],
    pub(crate) dst: [u8; 16],
}

/// The first two bytes of every IPv6 extension header the parser walks.
#[repr(C)]
pub(crate) struct ExtHdr {
    pub(crate) next_header: u8,
    /// Length in units that depend on the header (see the parser).
    pub(crate) len: u8,
}

/// The first four bytes of an IPv6 routing header (RFC 8200 4.4).
#[repr(C)]
pub(crate) struct RoutingHdr {
    pub(crate) next_header: u8,
    /// 8-octet units, not counting the first.
    pub(crate) len: u8,
    pub(crate) routing_type: u8,
    pub(crate) segments_left: u8,
}

/// The IPv6 fragment header (RFC 8200 4.5).
#[repr(C)]
pub(crate) struct FragHdr {
    pub(crate) next_header: u8,
    pub(crate) reserved: u8,
    /// Fragment offset (13 high bits), reserved, M flag.
    pub(crate) offset_flags: [u8; 2],
    pub(crate) id: [u8; 4],
}

/// The ports, the first four bytes of a TCP header: all a tiny first
/// fragment may hold (RFC 1858 3.1).
#[repr(C)]
pub(crate) struct TcpPorts {
    pub(crate) src_port: [u8; 2],
    pub(crate) dst_port: [u8; 2],
}

/// The fixed part of a TCP header (RFC 9293 3.1); options follow.
#[repr(C)]
pub(crate) struct TcpHdr {
    pub(crate) src_port: [u8; 2],
    pub(crate) dst_port: [u8; 2],
    pub(crate) seq: [u8; 4],
    pub(crate) ack: [u8; 4],
    /// Data offset (high nibble) and reserved bits.
    pub(crate) data_offset: u8,
    /// CWR ECE URG ACK PSH RST SYN FIN.
    pub(crate) flags: u8,
    pub(crate) window: [u8; 2],
    pub(crate) checksum: [u8; 2],
    pub(crate) urgent: [u8; 2],
}

// SAFETY: each is repr(C) and made only of u8 and byte arrays.
unsafe impl Header for EthHdr {}
// SAFETY: as above.
unsafe impl Header for VlanTag {}
// SAFETY: as above.
unsafe impl Header for Ipv4Hdr {}
// SAFETY: as above.
unsafe impl Header for Ipv6Hdr {}
// SAFETY: as above.
unsafe impl Header for ExtHdr {}
// SAFETY: as above.
unsafe impl Header for FragHdr {}
// SAFETY: as above.
unsafe impl Header for TcpHdr {}
// SAFETY: as above.
unsafe impl Header for TcpPorts {}
// SAFETY: as above.
unsafe impl Header for RoutingHdr {}

// The sizes the parser's offsets rely on.
const _: () = {
    assert!(size_of::<EthHdr>() == 14);
    assert!(size_of::<VlanTag>() == 4);
    assert!(size_of::<Ipv4Hdr>() == 20);
    assert!(size_of::<Ipv6Hdr>() == 40);
    assert!(size_of::<ExtHdr>() == 2);
    assert!(size_of::<FragHdr>() == 8);
    assert!(size_of::<TcpHdr>() == 20);
    assert!(size_of::<TcpPorts>() == 4);
    assert!(size_of::<RoutingHdr>() == 4);
    assert!(align_of::<Ipv4Hdr>() == 1 && align_of::<Ipv6Hdr>() == 1);
    assert!(align_of::<TcpHdr>() == 1 && align_of::<FragHdr>() == 1);
};

/// A 16-bit field in network byte order.
#[inline(always)]
pub(crate) fn be16(field: &[u8; 2]) -> u16 {
    u16::from_be_bytes(*field)
}
