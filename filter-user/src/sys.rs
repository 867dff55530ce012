//! The few kernel calls aya 0.16 does not expose: what kind of object a pin
//! holds, which interface a pinned XDP link is attached to (aya's `LinkInfo`
//! has no accessor for the XDP member of `bpf_link_info`), a pinned
//! program's maps without CAP_SYS_ADMIN, pinning a program found by id.
//! Interfaces are [`crate::interfaces`]'.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
        unix::io::AsRawFd as _,
    },
    path::Path,
};

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_DETACH: libc::c_long = 34;
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

/// What the kernel says about a pinned program: enough to tell which maps
/// are its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramIdentity {
    /// The program's id.
    pub id: u32,
    /// Its name (at most 15 bytes).
    pub name: String,
    /// The ids of the maps it uses.
    pub map_ids: Vec<u32>,
}

/// Reads the pinned program at `path`, with its map ids, through the
/// pin's own descriptor. aya's `ProgramInfo::map_ids` opens the program
/// again by id, which needs CAP_SYS_ADMIN; this needs only the pin (and
/// CAP_BPF), so the systemd unit's mxgate can tell its own maps too.
pub fn pinned_program(path: &Path) -> io::Result<ProgramIdentity> {
    let fd = obj_get(path)?;
    /// The head of struct bpf_prog_info, then room for the fields newer
    /// kernels add (which must be zero on the way in).
    #[repr(C)]
    struct ProgInfo {
        prog_type: u32,
        id: u32,
        tag: [u8; 8],
        jited_prog_len: u32,
        xlated_prog_len: u32,
        jited_prog_insns: u64,
        xlated_prog_insns: u64,
        load_time: u64,
        created_by_uid: u32,
        nr_map_ids: u32,
        map_ids: u64,
        name: [u8; 16],
        rest: [u64; 32],
    }
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut capacity = 32u32;
    loop {
        let mut map_ids = vec![0u32; capacity as usize];
        // SAFETY: plain old data; all zeroes is a valid value.
        let mut info: ProgInfo = unsafe { std::mem::zeroed() };
        info.nr_map_ids = capacity;
        info.map_ids = map_ids.as_mut_ptr() as u64;
        let attr = InfoAttr {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: size_of::<ProgInfo>() as u32,
            info: &mut info as *mut ProgInfo as u64,
        };
        bpf(BPF_OBJ_GET_INFO_BY_FD, &attr)?;
        // The kernel wrote at most `capacity` ids and says how many there are.
        if info.nr_map_ids > capacity {
            capacity = info.nr_map_ids;
            continue;
        }
        map_ids.truncate(info.nr_map_ids as usize);
        let end = info
            .name
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(info.name.len());
        return Ok(ProgramIdentity {
            id: info.id,
            name: String::from_utf8_lossy(&info.name[..end]).into_owned(),
            map_ids,
        });
    }
}

/// The id and name of the map pinned at `path`.
pub fn pinned_map(path: &Path) -> io::Result<(u32, String)> {
    let info = aya::maps::MapInfo::from_pin(path).map_err(io::Error::other)?;
    Ok((info.id(), info.name_as_str().unwrap_or_default().to_owned()))
}

/// What a bpffs entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinKind {
    /// A BPF program.
    Program,
    /// A BPF map.
    Map,
    /// A BPF link.
    Link,
    /// Something else (a directory, a symlink, a kind this code does not know).
    Other,
}

/// The kind of BPF object pinned at `path`, told by the anonymous inode
/// behind the descriptor BPF_OBJ_GET returns (asking for the wrong kind of
/// info would let the kernel fill a buffer of another layout).
pub fn pin_kind(path: &Path) -> io::Result<PinKind> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Ok(PinKind::Other);
    }
    let fd = obj_get(path)?;
    let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    Ok(match target.to_str() {
        Some("anon_inode:bpf-prog") => PinKind::Program,
        Some("anon_inode:bpf-map") => PinKind::Map,
        // "bpf_link" on older kernels.
        Some("anon_inode:bpf-link" | "anon_inode:bpf_link") => PinKind::Link,
        _ => PinKind::Other,
    })
}

/// Detaches the link pinned at `path` from its interface now. Removing the
/// pin alone releases the link later, from a kernel work queue: the
/// interface could still run the program when `detach` returns.
pub fn detach_pinned_link(path: &Path) -> io::Result<()> {
    let fd = obj_get(path)?;
    #[repr(C)]
    struct LinkDetachAttr {
        link_fd: u32,
    }
    let attr = LinkDetachAttr {
        link_fd: fd.as_raw_fd() as u32,
    };
    bpf(BPF_LINK_DETACH, &attr).map(drop)
}

/// Creates an array map called `name` of `entries` values of
/// `value_size` bytes, keyed by `u32`: what the loader makes of such a map
/// in the object file.
pub fn create_array(name: &str, value_size: usize, entries: u32) -> io::Result<OwnedFd> {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        inner_map_fd: u32,
        numa_node: u32,
        map_name: [u8; 16],
    }
    let mut map_name = [0u8; 16];
    for (to, from) in map_name.iter_mut().zip(name.bytes().take(15)) {
        *to = from;
    }
    let attr = MapCreate {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: u32::try_from(value_size).map_err(io::Error::other)?,
        max_entries: entries,
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name,
    };
    let fd = bpf(BPF_MAP_CREATE, &attr)?;
    // SAFETY: BPF_MAP_CREATE returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Pins the object behind `fd` at `path` (which must not exist).
pub fn pin_fd(fd: std::os::fd::BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let attr = ObjAttr {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
    };
    bpf(BPF_OBJ_PIN, &attr).map(drop)
}

/// The `bpf_attr` of BPF_OBJ_PIN and BPF_OBJ_GET.
#[repr(C)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let attr = ObjAttr {
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
