//! What XDP program an interface runs, and in which mode, as the kernel
//! reports it: one rtnetlink RTM_GETLINK request for the interface, and the
//! IFLA_XDP attribute of the reply (IFLA_XDP_ATTACHED, IFLA_XDP_PROG_ID).
//! `attach` refuses to replace a program it does not own, and `status` shows
//! the mode the kernel chose, so both ask the kernel rather than trust a pin.
//!
//! The rust-netlink crates do the work: netlink-sys the socket (opened in
//! the calling thread's network namespace), netlink-packet-core and
//! netlink-packet-route the message layout and the IFLA_XDP nest. Only that
//! one attribute is handed to the parser: a reply carries dozens of others,
//! and one the crate misreads must not stop mxgate from attaching.

use std::io;

use netlink_packet_core::{
    DecodeError, Emitable as _, ErrorBuffer, ErrorMessage, NLM_F_REQUEST, NLMSG_ERROR,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, Parseable as _,
    ParseableParametrized as _,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkHeader, LinkMessage, LinkXdp, XdpAttached},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use serde::Serialize;

/// The mode an XDP program runs in, named once for every message, log
/// line and JSON field that shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedMode {
    /// The driver's own hook (IFLA_XDP_ATTACHED 1).
    Native,
    /// Generic XDP, on the socket buffer (2).
    Skb,
    /// Offloaded to the NIC (3).
    Hw,
    /// Programs in several modes at once (4).
    Multi,
    /// The kernel did not say (the interface could not be asked).
    Unknown,
}

impl AttachedMode {
    /// The mode's name: `native`, `skb`, `hw`, `multi` or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Skb => "skb",
            AttachedMode::Hw => "hw",
            AttachedMode::Multi => "multi",
            AttachedMode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The XDP program attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct XdpAttachment {
    /// The mode it runs in.
    pub mode: AttachedMode,
    /// The program's id (0 when several are attached in different modes).
    pub program_id: u32,
}

/// The XDP program on interface `ifindex` of this network namespace, if any.
pub fn xdp_attachment(ifindex: u32) -> io::Result<Option<XdpAttachment>> {
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    header.sequence_number = 1;
    let mut request = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(link)),
    );
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);

    let socket = Socket::new(NETLINK_ROUTE)?;
    socket.send_to(&bytes, &SocketAddr::new(0, 0), 0)?;
    let (reply, _) = socket.recv_from_full()?;
    parse_reply(&reply)
}

/// The attachment an RTM_GETLINK reply reports (an NLMSG_ERROR becomes the
/// kernel's errno).
fn parse_reply(reply: &[u8]) -> io::Result<Option<XdpAttachment>> {
    let message = NetlinkBuffer::new_checked(reply).map_err(invalid)?;
    let payload = message.payload();
    if message.message_type() == NLMSG_ERROR {
        let error = ErrorBuffer::new_checked(&payload)
            .and_then(|b| ErrorMessage::parse(&b))
            .map_err(invalid)?;
        return Err(error.to_io());
    }
    let link = LinkHeader::parse(payload).map_err(invalid)?;
    let attributes = payload.get(link.buffer_len()..).unwrap_or_default();
    for attribute in NlasIterator::new(attributes) {
        let attribute = attribute.map_err(invalid)?;
        if attribute.kind() != libc::IFLA_XDP {
            continue;
        }
        let parsed =
            LinkAttribute::parse_with_param(&attribute, link.interface_family).map_err(invalid)?;
        return Ok(match parsed {
            LinkAttribute::Xdp(xdp) => attachment(&xdp),
            _ => None,
        });
    }
    Ok(None)
}

/// The mode and program of an IFLA_XDP nest; `None` when nothing (or a mode
/// this build does not know) is attached.
fn attachment(xdp: &[LinkXdp]) -> Option<XdpAttachment> {
    let mode = xdp.iter().find_map(|a| match a {
        LinkXdp::Attached(mode) => Some(*mode),
        _ => None,
    })?;
    let mode = match mode {
        XdpAttached::Driver => AttachedMode::Native,
        XdpAttached::SocketBuffer => AttachedMode::Skb,
        XdpAttached::Hardware => AttachedMode::Hw,
        XdpAttached::Multiple => AttachedMode::Multi,
        _ => return None,
    };
    let program_id = xdp
        .iter()
        .find_map(|a| match a {
            LinkXdp::ProgId(id) => Some(*id),
            _ => None,
        })
        .unwrap_or(0);
    Some(XdpAttachment { mode, program_id })
}

fn invalid(error: DecodeError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unreadable netlink reply: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_xdp_program() {
        let lo = crate::interfaces::ifindex("lo").expect("lo exists");
        assert_eq!(xdp_attachment(lo).unwrap(), None);
    }

    #[test]
    fn a_missing_interface_is_an_error() {
        let error = xdp_attachment(0x7fff_fff0).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENODEV), "{error}");
    }

    /// One netlink attribute: header, value, padding to 4 bytes.
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(u16::try_from(4 + value.len()).unwrap().to_ne_bytes());
        out.extend(kind.to_ne_bytes());
        out.extend(value);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    /// A netlink message of `kind` around `payload`.
    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(u32::try_from(16 + payload.len()).unwrap().to_ne_bytes());
        out.extend(kind.to_ne_bytes());
        out.extend([0; 10]);
        out.extend(payload);
        out
    }

    /// An RTM_NEWLINK reply for interface 7 carrying `attributes`.
    fn newlink(attributes: &[Vec<u8>]) -> Vec<u8> {
        let mut payload = vec![0u8; 16];
        payload[4..8].copy_from_slice(&7u32.to_ne_bytes());
        payload.extend(attributes.concat());
        message(libc::RTM_NEWLINK, &payload)
    }

    /// IFLA_XDP (flagged nested, as the kernel sends it) around `inner`.
    fn xdp(inner: &[Vec<u8>]) -> Vec<u8> {
        nla(libc::IFLA_XDP | 0x8000, &inner.concat())
    }

    const ATTACHED: u16 = 2;
    const PROG_ID: u16 = 4;
    const SKB_PROG_ID: u16 = 6;
    const DRV_PROG_ID: u16 = 5;

    #[test]
    fn reads_mode_and_program_behind_other_attributes() {
        let reply = newlink(&[
            nla(libc::IFLA_IFNAME, b"mx0\0"),
            nla(libc::IFLA_MTU, &1500u32.to_ne_bytes()),
            xdp(&[nla(ATTACHED, &[1]), nla(PROG_ID, &42u32.to_ne_bytes())]),
        ]);
        let found = parse_reply(&reply).unwrap();
        assert_eq!(
            found,
            Some(XdpAttachment {
                mode: AttachedMode::Native,
                program_id: 42
            })
        );
    }

    #[test]
    fn names_every_mode() {
        for (byte, mode) in [
            (1, AttachedMode::Native),
            (2, AttachedMode::Skb),
            (3, AttachedMode::Hw),
        ] {
            let reply = newlink(&[xdp(&[
                nla(ATTACHED, &[byte]),
                nla(PROG_ID, &9u32.to_ne_bytes()),
            ])]);
            let found = parse_reply(&reply).unwrap().expect("attached");
            assert_eq!((found.mode, found.program_id), (mode, 9));
        }
    }

    #[test]
    fn several_modes_at_once_have_no_single_program() {
        // The kernel sends per-mode ids and no IFLA_XDP_PROG_ID then.
        let reply = newlink(&[xdp(&[
            nla(ATTACHED, &[4]),
            nla(DRV_PROG_ID, &5u32.to_ne_bytes()),
            nla(SKB_PROG_ID, &6u32.to_ne_bytes()),
        ])]);
        let found = parse_reply(&reply).unwrap();
        assert_eq!(
            found,
            Some(XdpAttachment {
                mode: AttachedMode::Multi,
                program_id: 0
            })
        );
    }

    #[test]
    fn nothing_attached_or_no_xdp_attribute_is_none() {
        let none = newlink(&[xdp(&[nla(ATTACHED, &[0])])]);
        assert_eq!(parse_reply(&none).unwrap(), None);
        let absent = newlink(&[nla(libc::IFLA_MTU, &1500u32.to_ne_bytes())]);
        assert_eq!(parse_reply(&absent).unwrap(), None);
    }

    #[test]
    fn an_attribute_the_parser_would_reject_does_not_hide_xdp() {
        // IFLA_MTU must hold 4 bytes; a parser of the whole message fails here.
        let reply = newlink(&[
            nla(libc::IFLA_MTU, &[1]),
            xdp(&[nla(ATTACHED, &[2]), nla(PROG_ID, &3u32.to_ne_bytes())]),
        ]);
        let found = parse_reply(&reply).unwrap().expect("attached");
        assert_eq!((found.mode, found.program_id), (AttachedMode::Skb, 3));
    }

    #[test]
    fn a_malformed_xdp_attribute_is_an_error_not_none() {
        let reply = newlink(&[xdp(&[nla(ATTACHED, &[1]), nla(PROG_ID, &[1, 2])])]);
        let error = parse_reply(&reply).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }

    #[test]
    fn a_kernel_error_becomes_its_errno() {
        let mut payload = (-libc::ENODEV).to_ne_bytes().to_vec();
        payload.extend(message(libc::RTM_GETLINK, &[0; 16]));
        let error = parse_reply(&message(NLMSG_ERROR, &payload)).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENODEV), "{error}");
    }

    #[test]
    fn a_truncated_reply_is_an_error() {
        let reply = newlink(&[xdp(&[nla(ATTACHED, &[1])])]);
        for len in [0, 10, 20, reply.len() - 1] {
            let error = parse_reply(&reply[..len]).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{len}: {error}");
        }
    }
}
