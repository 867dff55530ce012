//! The few kernel calls aya does not expose: which interface a pinned XDP
//! link is attached to, and interface name/index conversion.

use std::{
    ffi::{CStr, CString},
    io,
    os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
        unix::io::AsRawFd as _,
    },
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_TYPE_XDP: u32 = 6;

/// What the kernel says about a pinned XDP link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpLinkInfo {
    /// The link's id.
    pub link_id: u32,
    /// The attached program's id.
    pub program_id: u32,
    /// The interface it is attached to; 0 once that interface is gone.
    pub ifindex: u32,
}

/// Reads the pinned XDP link at `path`.
pub fn pinned_xdp_link(path: &Path) -> io::Result<XdpLinkInfo> {
    let fd = obj_get(path)?;
    // struct bpf_link_info: type, id, prog_id, then a union at offset 16
    // whose xdp member starts with ifindex. The rest of the buffer must stay
    // zero for the kernel to accept its length.
    let mut info = [0u32; 64];
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &attr)?;
    if info[0] != BPF_LINK_TYPE_XDP {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not an XDP link", path.display()),
        ));
    }
    Ok(XdpLinkInfo {
        link_id: info[1],
        program_id: info[2],
        ifindex: info[4],
    })
}

fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    #[repr(C)]
    struct ObjGetAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let attr = ObjGetAttr {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    let fd = bpf(BPF_OBJ_GET, &attr)?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bpf<A>(cmd: libc::c_long, attr: &A) -> io::Result<i32> {
    // SAFETY: `attr` is a valid, initialised bpf_attr prefix of the given size.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const A, size_of::<A>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(rc).map_err(|_| io::Error::other("bpf(2) returned an out-of-range value"))
}

/// Index of the interface called `name` in this network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Name of the interface with index `index` in this network namespace.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_round_trips() {
        let index = ifindex("lo").expect("every namespace has lo");
        assert_eq!(ifname(index).as_deref(), Some("lo"));
        assert_eq!(ifindex("no-such-if0"), None);
    }
}
