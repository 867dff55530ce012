//! Whether an interface's driver supports native XDP: the `netdev`
//! generic-netlink family's `xdp-features` of the device (Linux 6.3+).
//! Older kernels have no such family: the answer is then unknown, never
//! guessed. Used for the metric the "generic mode on an interface that
//! supports native" alert reads.

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

/// `GENL_ID_CTRL`: the generic-netlink controller.
const GENL_ID_CTRL: u16 = 0x10;
/// `CTRL_CMD_GETFAMILY`.
const CTRL_CMD_GETFAMILY: u8 = 3;
/// `CTRL_ATTR_FAMILY_ID` (u16).
const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// `CTRL_ATTR_FAMILY_NAME` (string).
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// `NETDEV_CMD_DEV_GET`.
const NETDEV_CMD_DEV_GET: u8 = 1;
/// `NETDEV_A_DEV_IFINDEX` (u32).
const NETDEV_A_DEV_IFINDEX: u16 = 1;
/// `NETDEV_A_DEV_XDP_FEATURES` (u64).
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
/// `NETDEV_XDP_ACT_BASIC`: the driver runs XDP programs itself (pass,
/// drop, abort).
const NETDEV_XDP_ACT_BASIC: u64 = 1 << 0;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// Attribute type bits that are flags, not the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Whether the driver of interface `ifindex` supports native XDP; `None`
/// when the kernel cannot say (before 6.3) or the question failed.
pub fn native_supported(ifindex: u32) -> Option<bool> {
    let socket = Socket::new(NETLINK_GENERIC).ok()?;
    let reply = exchange(
        &socket,
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        &attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0"),
    )?;
    let family = attribute(&reply, CTRL_ATTR_FAMILY_ID)?;
    let family = u16::from_ne_bytes(family.get(..2)?.try_into().ok()?);
    let reply = exchange(
        &socket,
        family,
        NETDEV_CMD_DEV_GET,
        &attr(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes()),
    )?;
    let features = attribute(&reply, NETDEV_A_DEV_XDP_FEATURES)?;
    let features = u64::from_ne_bytes(features.get(..8)?.try_into().ok()?);
    Some(features & NETDEV_XDP_ACT_BASIC != 0)
}

/// One netlink attribute: length, type, value, padded to 4 bytes.
fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut out = Vec::with_capacity(len.next_multiple_of(4));
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(len.next_multiple_of(4), 0);
    out
}

/// Sends one generic-netlink request and returns the attributes of its
/// reply (after the netlink and generic headers); `None` on an error reply.
fn exchange(socket: &Socket, family: u16, command: u8, attrs: &[u8]) -> Option<Vec<u8>> {
    let len = 16 + 4 + attrs.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&u32::try_from(len).ok()?.to_ne_bytes());
    msg.extend_from_slice(&family.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    msg.extend_from_slice(&[command, 1, 0, 0]); // genlmsghdr: cmd, version
    msg.extend_from_slice(attrs);
    socket.send_to(&msg, &SocketAddr::new(0, 0), 0).ok()?;
    let (reply, _) = socket.recv_from_full().ok()?;
    let header = reply.get(..16)?;
    let reply_len = u32::from_ne_bytes(header[0..4].try_into().ok()?) as usize;
    let kind = u16::from_ne_bytes(header[4..6].try_into().ok()?);
    if kind == NLMSG_ERROR {
        return None;
    }
    reply
        .get(20..reply_len.min(reply.len()))
        .map(<[u8]>::to_vec)
}

/// The value of the first attribute of type `kind` in `attrs`.
fn attribute(attrs: &[u8], kind: u16) -> Option<&[u8]> {
    let mut rest = attrs;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let this = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            return None;
        }
        if this == kind {
            return Some(&rest[4..len]);
        }
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_found_again() {
        let mut attrs = attr(2, b"netdev\0");
        assert_eq!(attrs.len(), 12);
        attrs.extend(attr(1, &7u16.to_ne_bytes()));
        assert_eq!(attribute(&attrs, 1), Some(&7u16.to_ne_bytes()[..]));
        assert_eq!(attribute(&attrs, 2), Some(&b"netdev\0"[..]));
        assert_eq!(attribute(&attrs, 3), None);
        // A length past the end is no attribute.
        assert_eq!(attribute(&[40, 0, 1, 0, 0, 0], 1), None);
    }

    #[test]
    fn loopback_supports_no_native_xdp() {
        // lo has no driver XDP; a kernel before 6.3 cannot say.
        let lo = crate::interfaces::ifindex("lo").expect("every namespace has lo");
        assert_ne!(native_supported(lo), Some(true));
    }
}
