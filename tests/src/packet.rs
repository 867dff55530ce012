//! AF_PACKET sockets: send crafted frames out of a namespace's interface,
//! and capture what reaches the other side. A capture on the filtered
//! interface sees only what XDP passed: it taps frames after XDP runs.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::Context as _;

use crate::netns::Netns;

/// A raw packet socket bound to one interface of one namespace.
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSocket {
    /// Opens a socket on `iface` inside `ns`, receiving every protocol.
    pub fn open(ns: &Netns, iface: &str) -> anyhow::Result<Self> {
        ns.run(|| -> anyhow::Result<Self> {
            let name = std::ffi::CString::new(iface)?;
            // SAFETY: a valid NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
            if ifindex == 0 {
                return Err(io::Error::last_os_error())
                    .with_context(|| format!("no interface {iface}"));
            }
            let protocol = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2); the result is checked.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
            if fd < 0 {
                return Err(io::Error::last_os_error()).context("socket(AF_PACKET)");
            }
            // SAFETY: socket(2) returned a new descriptor we now own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let addr = link_addr(ifindex, protocol);
            // SAFETY: binding to a fully initialised sockaddr_ll.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error()).context("bind(AF_PACKET)");
            }
            Ok(Self { fd, ifindex })
        })?
    }

    /// Makes the socket's receive buffer `bytes` large (root may exceed
    /// the system's limit), so a burst of replies is not lost while a
    /// test sends.
    pub fn receive_buffer(&self, bytes: usize) -> io::Result<()> {
        let size = bytes as libc::c_int;
        // SAFETY: setting an int option from a valid int.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends one whole Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let addr = link_addr(self.ifindex, 0);
        // SAFETY: frame and addr are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame seen, or `None` after `timeout` without one.
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        // SAFETY: setting SO_RCVTIMEO from a valid timeval.
        unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        let mut buf = vec![0u8; 65536];
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                return Ok(None);
            }
            return Err(err);
        }
        buf.truncate(n as usize);
        Ok(Some(buf))
    }
}

fn link_addr(ifindex: i32, protocol: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol;
    addr.sll_ifindex = ifindex;
    addr.sll_halen = 6;
    addr
}
