//! The interfaces of this network namespace: names and indexes, whether
//! one is loopback, the addresses configured on them. Through rustix where
//! it has the call; the two it lacks (SIOCGIFFLAGS, getifaddrs) through
//! libc.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, OwnedFd},
};

use rustix::net::{AddressFamily, SocketFlags, SocketType, netdevice};

/// A datagram socket to ask the kernel about interfaces with.
fn query_socket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Index of the interface called `name` in this network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let socket = query_socket().ok()?;
    netdevice::name_to_index(&socket, name)
        .ok()
        .filter(|&index| index != 0)
}

/// Name of the interface with index `index` in this network namespace.
pub fn ifname(index: u32) -> Option<String> {
    let socket = query_socket().ok()?;
    netdevice::index_to_name(&socket, index).ok()
}

/// True when `name` is a loopback interface in this network namespace.
pub fn is_loopback(name: &str) -> bool {
    if name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return false;
    }
    let Ok(socket) = query_socket() else {
        return false;
    };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(name.as_bytes()) {
        *to = *from as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name in `request` (at
    // most IFNAMSIZ - 1 bytes, checked above, the rest zero) and writes the
    // flags into it.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } != 0 {
        return false;
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    flags & libc::IFF_LOOPBACK as libc::c_short != 0
}

/// Every address configured on an interface of this network namespace.
pub fn local_addresses() -> io::Result<Vec<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates the list and stores its head in `list`.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not yet freed.
        let node = unsafe { &*at };
        if !node.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says its type.
            let family = i32::from(unsafe { (*node.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*node.ifa_addr.cast::<libc::sockaddr_in>() };
                found.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into());
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*node.ifa_addr.cast::<libc::sockaddr_in6>() };
                found.push(Ipv6Addr::from(sin6.sin6_addr.s6_addr).into());
            }
        }
        at = node.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_round_trips() {
        let index = ifindex("lo").expect("every namespace has lo");
        assert_eq!(ifname(index).as_deref(), Some("lo"));
        assert!(is_loopback("lo"));
        assert_eq!(ifindex("no-such-if0"), None);
        assert!(!is_loopback("no-such-if0"));
        assert_eq!(ifindex("a-name-longer-than-ifnamsiz"), None);
    }
}
