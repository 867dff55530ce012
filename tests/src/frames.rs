//! Crafted Ethernet frames: VLAN tags, IPv4 with options and fragments,
//! IPv6 with extension headers, TCP/UDP, with correct lengths and
//! checksums so the kernel accepts them on the wire too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP flag bits.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// Destination MAC of built frames; give the receiving interface this
/// address so the kernel takes them as its own.
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// 802.1Q tag protocol id.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad (QinQ outer) tag protocol id.
pub const TPID_8021AD: u16 = 0x88a8;

/// An IPv6 extension header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options, `len` extra 8-octet units.
    HopByHop(u8),
    /// Routing header of type 0 with segments left 0 (which Linux skips,
    /// RFC 5095), `len` extra 8-octet units.
    Routing(u8),
    /// Destination options, `len` extra 8-octet units.
    DestOpts(u8),
    /// Fragment header with this offset (8-octet units) and M flag.
    Fragment {
        /// Fragment offset in 8-octet units.
        offset: u16,
        /// More fragments follow.
        more: bool,
    },
    /// Authentication header, payload length `len` (4-octet units minus 2).
    Auth(u8),
    /// Another header type `kind` in the generic extension-header format
    /// (next header, 8-octet units): Mobility (135), HIP (139), Shim6
    /// (140), the experimental 253 and 254.
    Other {
        /// Its next-header value.
        kind: u8,
        /// Extra 8-octet units.
        len: u8,
    },
}

impl Ext {
    fn protocol(self) -> u8 {
        match self {
            Ext::HopByHop(_) => 0,
            Ext::Routing(_) => 43,
            Ext::Fragment { .. } => 44,
            Ext::Auth(_) => 51,
            Ext::DestOpts(_) => 60,
            Ext::Other { kind, .. } => kind,
        }
    }

    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            Ext::HopByHop(len) | Ext::DestOpts(len) => {
                let total = (usize::from(len) + 1) * 8;
                let mut h = vec![next, len];
                options(&mut h, total - 2);
                h
            }
            Ext::Other { len, .. } => {
                let mut h = vec![next, len];
                h.resize((usize::from(len) + 1) * 8, 0);
                h
            }
            Ext::Routing(len) => {
                let total = (usize::from(len) + 1) * 8;
                let mut h = vec![next, len, 0, 0];
                h.resize(total, 0);
                h
            }
            Ext::Fragment { offset, more } => fragment_header(next, offset, more, 0x1234_5678),
            Ext::Auth(len) => {
                let total = (usize::from(len) + 2) * 4;
                let mut h = vec![next, len];
                h.resize(total, 0);
                h
            }
        }
    }
}

/// The network layer of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ip {
    /// IPv4.
    V4 {
        /// Source.
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
        /// Bytes of options (a multiple of 4, at most 40).
        options: usize,
        /// The flags/fragment-offset field as sent.
        frag: u16,
    },
    /// IPv6.
    V6 {
        /// Source.
        src: Ipv6Addr,
        /// Destination.
        dst: Ipv6Addr,
        /// Extension headers, in order.
        ext: Vec<Ext>,
    },
}

/// The transport layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP with these ports and flags.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flag bits.
        flags: u8,
    },
    /// UDP with these ports.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
}

/// A frame to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// TCP sequence number (a marker to find the frame again).
    pub seq: u32,
    /// TCP acknowledgement number.
    pub ack: u32,
    /// Bytes of TCP (or UDP) payload.
    pub payload: Vec<u8>,
    /// IPv4 identification, and the identification of the fragment
    /// header [`Frame::fragments`] adds to an IPv6 packet.
    pub id: u32,
    /// VLAN tag protocol ids, outermost first.
    pub vlans: Vec<u16>,
    /// VLAN id of every tag: 0 makes them priority tags (IEEE 802.1p),
    /// which the kernel strips and delivers on the interface itself; else
    /// the tags get ids 100, 101, ...
    pub vlan_id: Option<u16>,
    /// Network layer.
    pub ip: Ip,
    /// Transport layer.
    pub transport: Transport,
}

impl Frame {
    /// A bare TCP SYN from `src` to `dst`:`dport`.
    pub fn syn(src: IpAddr, dst: IpAddr, dport: u16) -> Self {
        let ip = match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Ip::V4 {
                src,
                dst,
                options: 0,
                frag: 0x4000, // don't fragment
            },
            (IpAddr::V6(src), IpAddr::V6(dst)) => Ip::V6 {
                src,
                dst,
                ext: Vec::new(),
            },
            _ => panic!("{src} and {dst} are of different families"),
        };
        Self {
            dst_mac: DST_MAC,
            seq: 0x0102_0304,
            ack: 0,
            payload: Vec::new(),
            id: 0x4d58,
            vlans: Vec::new(),
            vlan_id: None,
            ip,
            transport: Transport::Tcp {
                sport: 40000,
                dport,
                flags: flags::SYN,
            },
        }
    }

    /// Same frame with these TCP flags.
    pub fn flags(mut self, bits: u8) -> Self {
        if let Transport::Tcp { flags, .. } = &mut self.transport {
            *flags = bits;
        }
        self
    }

    /// Same frame with this TCP source port (a marker for wire tests).
    pub fn sport(mut self, port: u16) -> Self {
        match &mut self.transport {
            Transport::Tcp { sport, .. } | Transport::Udp { sport, .. } => *sport = port,
        }
        self
    }

    /// Same frame with this TCP sequence number.
    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self
    }

    /// Same frame with this TCP acknowledgement number.
    pub fn ack(mut self, ack: u32) -> Self {
        self.ack = ack;
        self
    }

    /// Same frame carrying `bytes` of payload.
    pub fn payload(mut self, bytes: &[u8]) -> Self {
        self.payload = bytes.to_vec();
        self
    }

    /// Same frame with this IPv4 identification (and IPv6 fragment id).
    pub fn id(mut self, id: u32) -> Self {
        self.id = id;
        self
    }

    /// Same frame with these VLAN tags, outermost first.
    pub fn vlans(mut self, tpids: &[u16]) -> Self {
        self.vlans = tpids.to_vec();
        self
    }

    /// Same frame with these tags as priority tags (VLAN id 0).
    pub fn priority_tags(mut self, tpids: &[u16]) -> Self {
        self.vlans = tpids.to_vec();
        self.vlan_id = Some(0);
        self
    }

    /// Same IPv4 frame with `bytes` of options.
    pub fn ipv4_options(mut self, bytes: usize) -> Self {
        if let Ip::V4 { options, .. } = &mut self.ip {
            *options = bytes;
        }
        self
    }

    /// Same IPv4 frame with this flags/fragment-offset field.
    pub fn ipv4_frag(mut self, field: u16) -> Self {
        if let Ip::V4 { frag, .. } = &mut self.ip {
            *frag = field;
        }
        self
    }

    /// Same IPv6 frame with these extension headers.
    pub fn ipv6_ext(mut self, headers: &[Ext]) -> Self {
        if let Ip::V6 { ext, .. } = &mut self.ip {
            *ext = headers.to_vec();
        }
        self
    }

    /// Same frame carrying UDP between the same ports.
    pub fn udp(mut self) -> Self {
        if let Transport::Tcp { sport, dport, .. } = self.transport {
            self.transport = Transport::Udp { sport, dport };
        }
        self
    }

    /// Offset of the network header in [`Frame::bytes`].
    pub fn l3_offset(&self) -> usize {
        14 + 4 * self.vlans.len()
    }

    /// The frame on the wire.
    pub fn bytes(&self) -> Vec<u8> {
        let (l4_proto, mut l4) = match self.transport {
            Transport::Tcp {
                sport,
                dport,
                flags,
            } => {
                let mut h = Vec::with_capacity(20);
                h.extend(sport.to_be_bytes());
                h.extend(dport.to_be_bytes());
                h.extend(self.seq.to_be_bytes());
                h.extend(self.ack.to_be_bytes());
                h.extend([5 << 4, flags]);
                h.extend(64240u16.to_be_bytes()); // window
                h.extend([0, 0, 0, 0]); // checksum, urgent pointer
                h.extend(&self.payload);
                (6u8, h)
            }
            Transport::Udp { sport, dport } => {
                let mut h = Vec::with_capacity(8);
                h.extend(sport.to_be_bytes());
                h.extend(dport.to_be_bytes());
                h.extend(((8 + self.payload.len()) as u16).to_be_bytes());
                h.extend([0, 0]);
                h.extend(&self.payload);
                (17u8, h)
            }
        };
        let checksum_at = if l4_proto == 6 { 16 } else { 6 };
        let (ethertype, l3) = match &self.ip {
            Ip::V4 {
                src,
                dst,
                options,
                frag,
            } => {
                let mut pseudo = Vec::new();
                pseudo.extend(src.octets());
                pseudo.extend(dst.octets());
                pseudo.extend([0, l4_proto]);
                pseudo.extend((l4.len() as u16).to_be_bytes());
                set_checksum(&mut l4, checksum_at, &pseudo);
                let hlen = 20 + options;
                let mut h = Vec::with_capacity(hlen + l4.len());
                h.push(0x40 | (hlen / 4) as u8);
                h.push(0);
                h.extend(((hlen + l4.len()) as u16).to_be_bytes());
                h.extend((self.id as u16).to_be_bytes());
                h.extend(frag.to_be_bytes());
                h.extend([64, l4_proto, 0, 0]);
                h.extend(src.octets());
                h.extend(dst.octets());
                // End-of-options-list padding, as a real option area ends.
                h.resize(hlen, 0);
                let sum = internet_checksum(&h, 0);
                h[10..12].copy_from_slice(&sum.to_be_bytes());
                h.extend(l4);
                (0x0800u16, h)
            }
            Ip::V6 { src, dst, ext } => {
                let mut pseudo = Vec::new();
                pseudo.extend(src.octets());
                pseudo.extend(dst.octets());
                pseudo.extend((l4.len() as u32).to_be_bytes());
                pseudo.extend([0, 0, 0, l4_proto]);
                set_checksum(&mut l4, checksum_at, &pseudo);
                let mut chain = Vec::new();
                for (i, e) in ext.iter().enumerate() {
                    let next = ext.get(i + 1).map_or(l4_proto, |n| n.protocol());
                    chain.extend(e.bytes(next));
                }
                let first = ext.first().map_or(l4_proto, |e| e.protocol());
                let mut h = Vec::with_capacity(40 + chain.len() + l4.len());
                h.extend([0x60, 0, 0, 0]);
                h.extend(((chain.len() + l4.len()) as u16).to_be_bytes());
                h.extend([first, 64]);
                h.extend(src.octets());
                h.extend(dst.octets());
                h.extend(chain);
                h.extend(l4);
                (0x86ddu16, h)
            }
        };
        let mut frame = Vec::with_capacity(18 + 8 + l3.len());
        frame.extend(self.dst_mac);
        frame.extend([0x02, 0, 0, 0, 0, 0x01]);
        for (i, tpid) in self.vlans.iter().enumerate() {
            frame.extend(tpid.to_be_bytes());
            frame.extend(self.vlan_id.unwrap_or(100 + i as u16).to_be_bytes());
        }
        frame.extend(ethertype.to_be_bytes());
        frame.extend(l3);
        frame
    }
}

/// One fragment of a packet, as [`Frame::fragments`] cuts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Where it starts in the fragmentable part, in bytes (the offset
    /// field says `offset / 8`).
    pub offset: usize,
    /// How many bytes it carries (cut at the packet's end).
    pub len: usize,
    /// The more-fragments flag.
    pub more: bool,
}

impl Piece {
    /// Pieces of `size` bytes (the last one shorter) covering `total`.
    pub fn every(size: usize, total: usize) -> Vec<Piece> {
        (0..total)
            .step_by(size.max(1))
            .map(|offset| Piece {
                offset,
                len: size.min(total - offset),
                more: offset + size < total,
            })
            .collect()
    }
}

impl Frame {
    /// Bytes of the fragmentable part: everything after the IPv4 header,
    /// or after the IPv6 header and its extension headers.
    pub fn fragmentable_len(&self) -> usize {
        let l4 = 20 * usize::from(matches!(self.transport, Transport::Tcp { .. }))
            + 8 * usize::from(matches!(self.transport, Transport::Udp { .. }));
        l4 + self.payload.len()
    }

    /// The packet cut into fragments, one frame per piece, in the order
    /// given. IPv4: each fragment repeats the header (options included)
    /// with its offset and flags. IPv6: a fragment header (id
    /// [`Frame::id`]) follows the packet's own extension headers, which
    /// every fragment repeats. The transport checksum is the whole
    /// packet's, so the reassembled packet is valid.
    pub fn fragments(&self, pieces: &[Piece]) -> Vec<Vec<u8>> {
        let whole = match self.ip {
            Ip::V4 { .. } => self.clone().ipv4_frag(0).bytes(),
            Ip::V6 { .. } => self.bytes(),
        };
        let l3 = self.l3_offset();
        let (unfragmentable, rest) = match &self.ip {
            Ip::V4 { .. } => whole.split_at(l3 + usize::from(whole[l3] & 0x0f) * 4),
            Ip::V6 { ext, .. } => {
                let chain: usize = ext.iter().map(|e| e.bytes(0).len()).sum();
                whole.split_at(l3 + 40 + chain)
            }
        };
        let upper = match self.transport {
            Transport::Tcp { .. } => 6,
            Transport::Udp { .. } => 17,
        };
        pieces
            .iter()
            .map(|piece| {
                let start = piece.offset.min(rest.len());
                let end = (piece.offset + piece.len).min(rest.len());
                let data = &rest[start..end];
                let mut frame = unfragmentable.to_vec();
                match &self.ip {
                    Ip::V4 { .. } => {
                        let hlen = frame.len() - l3;
                        let field = (u16::from(piece.more) << 13) | (piece.offset / 8) as u16;
                        let ip = &mut frame[l3..];
                        ip[2..4].copy_from_slice(&((hlen + data.len()) as u16).to_be_bytes());
                        ip[6..8].copy_from_slice(&field.to_be_bytes());
                        ip[10..12].copy_from_slice(&[0, 0]);
                        let sum = internet_checksum(&ip[..hlen], 0);
                        ip[10..12].copy_from_slice(&sum.to_be_bytes());
                    }
                    Ip::V6 { ext, .. } => {
                        // The last next-header field of the chain now names
                        // the fragment header.
                        let last = if ext.is_empty() {
                            l3 + 6
                        } else {
                            let before: usize =
                                ext[..ext.len() - 1].iter().map(|e| e.bytes(0).len()).sum();
                            l3 + 40 + before
                        };
                        frame[last] = 44;
                        frame.extend(fragment_header(
                            upper,
                            (piece.offset / 8) as u16,
                            piece.more,
                            self.id,
                        ));
                        let payload = frame.len() - l3 - 40 + data.len();
                        frame[l3 + 4..l3 + 6].copy_from_slice(&(payload as u16).to_be_bytes());
                    }
                }
                frame.extend(data);
                frame
            })
            .collect()
    }
}

/// Fills `room` bytes of an options header the way Linux accepts it: at
/// most 7 bytes of padding in a row (RFC 4942 2.1.9.5), so longer headers
/// carry options of an unassigned type whose two high bits say "skip"
/// (RFC 8200 4.2), 255 bytes of data at most each, then padding.
fn options(h: &mut Vec<u8>, mut room: usize) {
    while room > 7 {
        let data = (room - 2).min(255);
        h.extend([0x1e, data as u8]);
        h.resize(h.len() + data, 0);
        room -= data + 2;
    }
    match room {
        0 => {}
        // Pad1.
        1 => h.push(0),
        _ => {
            h.extend([1, (room - 2) as u8]);
            h.resize(h.len() + room - 2, 0);
        }
    }
}

/// An IPv6 fragment header (RFC 8200 4.5).
fn fragment_header(next: u8, offset: u16, more: bool, id: u32) -> Vec<u8> {
    let field = (offset << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend(field.to_be_bytes());
    h.extend(id.to_be_bytes());
    h
}

fn set_checksum(l4: &mut [u8], at: usize, pseudo: &[u8]) {
    let partial = sum_words(pseudo, 0);
    let sum = internet_checksum(l4, partial);
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

fn sum_words(bytes: &[u8], mut sum: u32) -> u32 {
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    sum
}

/// RFC 1071 checksum of `bytes`, starting from a partial sum.
fn internet_checksum(bytes: &[u8], partial: u32) -> u16 {
    let mut sum = sum_words(bytes, partial);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_syn_layout_and_checksums() {
        let f = Frame::syn(
            "192.0.2.1".parse().unwrap(),
            "198.51.100.25".parse().unwrap(),
            25,
        );
        let b = f.bytes();
        assert_eq!(b.len(), 14 + 20 + 20);
        assert_eq!(&b[12..14], &[0x08, 0x00]);
        assert_eq!(internet_checksum(&b[14..34], 0), 0, "IPv4 header checksum");
        assert_eq!(b[34 + 13], flags::SYN);
        assert_eq!(u16::from_be_bytes([b[36], b[37]]), 25);
    }

    #[test]
    fn vlan_tags_and_ipv6_chain() {
        let f = Frame::syn(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            25,
        )
        .vlans(&[TPID_8021AD, TPID_8021Q])
        .ipv6_ext(&[
            Ext::HopByHop(0),
            Ext::Fragment {
                offset: 0,
                more: true,
            },
            Ext::Auth(4),
        ]);
        let b = f.bytes();
        assert_eq!(&b[12..14], &[0x88, 0xa8]);
        assert_eq!(&b[16..18], &[0x81, 0x00]);
        assert_eq!(&b[20..22], &[0x86, 0xdd]);
        let l3 = f.l3_offset();
        assert_eq!(l3, 22);
        assert_eq!(b[l3 + 6], 0, "first next header: hop-by-hop");
        assert_eq!(b[l3 + 40], 44, "then fragment");
        assert_eq!(b[l3 + 48], 51, "then AH");
        assert_eq!(b[l3 + 56], 6, "then TCP");
        assert_eq!(b.len(), l3 + 40 + 8 + 8 + 24 + 20);
    }
}
