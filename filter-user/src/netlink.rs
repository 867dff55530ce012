//! What XDP program an interface runs, and in which mode, as the kernel
//! reports it (rtnetlink RTM_GETLINK, attribute IFLA_XDP).

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use serde::Serialize;

const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
const XDP_ATTACHED_MULTI: u8 = 4;

/// The XDP program attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct XdpAttachment {
    /// "native", "skb", "hw" or "multi".
    pub mode: &'static str,
    /// The program's id (0 when several are attached in different modes).
    pub program_id: u32,
}

/// The XDP program on interface `ifindex` of this network namespace, if any.
pub fn xdp_attachment(ifindex: u32) -> io::Result<Option<XdpAttachment>> {
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket(2) returned a new descriptor we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };

    // struct nlmsghdr (16 bytes) + struct ifinfomsg (16 bytes).
    let mut request = [0u8; 32];
    request[0..4].copy_from_slice(&32u32.to_ne_bytes());
    request[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    request[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    request[16] = libc::AF_UNSPEC as u8;
    request[20..24].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    // SAFETY: sending a buffer we own to the kernel (address defaults to it).
    if unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = vec![0u8; 64 * 1024];
    // SAFETY: reply is writable for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    parse_reply(&reply[..n as usize])
}

fn parse_reply(reply: &[u8]) -> io::Result<Option<XdpAttachment>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "short netlink reply");
    let header = reply.get(..16).ok_or_else(bad)?;
    let kind = u16::from_ne_bytes([header[4], header[5]]);
    if kind == libc::NLMSG_ERROR as u16 {
        let errno = i32::from_ne_bytes(
            reply
                .get(16..20)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        return Err(io::Error::from_raw_os_error(-errno));
    }
    let length = u32::from_ne_bytes(header[..4].try_into().map_err(|_| bad())?) as usize;
    let attrs = reply.get(32..length.min(reply.len())).ok_or_else(bad)?;
    let Some(xdp) = attributes(attrs)
        .find(|(t, _)| *t == IFLA_XDP)
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    let mut mode = None;
    let mut program_id = 0;
    for (t, value) in attributes(xdp) {
        match (t, value) {
            (IFLA_XDP_ATTACHED, [m, ..]) => mode = Some(*m),
            (IFLA_XDP_PROG_ID, [a, b, c, d, ..]) => {
                program_id = u32::from_ne_bytes([*a, *b, *c, *d])
            }
            _ => {}
        }
    }
    let mode = match mode {
        Some(XDP_ATTACHED_DRV) => "native",
        Some(XDP_ATTACHED_SKB) => "skb",
        Some(XDP_ATTACHED_HW) => "hw",
        Some(XDP_ATTACHED_MULTI) => "multi",
        _ => return Ok(None),
    };
    Ok(Some(XdpAttachment { mode, program_id }))
}

/// The (type, value) pairs of a run of netlink attributes.
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]));
        let kind = u16::from_ne_bytes([*bytes.get(2)?, *bytes.get(3)?]) & NLA_TYPE_MASK;
        let value = bytes.get(4..len)?;
        bytes = bytes.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_xdp_program() {
        let lo = crate::sys::ifindex("lo").expect("lo exists");
        assert_eq!(xdp_attachment(lo).unwrap(), None);
    }

    #[test]
    fn a_missing_interface_is_an_error() {
        assert!(xdp_attachment(0x7fff_fff0).is_err());
    }

    #[test]
    fn attributes_are_walked_with_padding() {
        // IFLA_XDP { ATTACHED=1 (padded to 8), PROG_ID=42 }
        let mut nested = vec![5, 0, 2, 0, 1, 0, 0, 0];
        nested.extend([8, 0, 4, 0]);
        nested.extend(42u32.to_ne_bytes());
        let mut outer = vec![(4 + nested.len()) as u8, 0, 43, 0x80];
        outer.extend(&nested);
        let found: Vec<u16> = attributes(&outer).map(|(t, _)| t).collect();
        assert_eq!(found, [43]);
        let inner: Vec<(u16, usize)> = attributes(&nested).map(|(t, v)| (t, v.len())).collect();
        assert_eq!(inner, [(2, 1), (4, 4)]);
    }
}
