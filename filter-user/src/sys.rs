//! The few kernel calls aya 0.16 does not expose: what kind of object a pin
//! holds, which interface a pinned XDP link is attached to (aya's `LinkInfo`
//! has no accessor for the XDP member of `bpf_link_info`), a pinned
//! program's maps without CAP_SYS_ADMIN, pinning a program found by id,
//! batched map updates and deletes. Interfaces are [`crate::interfaces`]'.
//!
//! Every bpf(2) call fills aya-obj's generated `bpf_attr` (the kernel's own
//! union, so no offset is counted by hand), zeroed first: the kernel
//! refuses an attribute whose bytes past the command's member are not zero.

use std::{
    ffi::CString,
    io,
    ops::ControlFlow,
    os::{
        fd::{AsFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
        unix::io::AsRawFd as _,
    },
    path::Path,
};

use aya_obj::generated::{
    BPF_F_NO_PREALLOC, bpf_attr, bpf_cmd, bpf_link_info, bpf_link_type, bpf_map_type, bpf_prog_info,
};

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
    // SAFETY: bpf_link_info is plain integers and unions of them; all
    // zeroes is a valid value, and the kernel wants the bytes it does not
    // know zero.
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    let mut attr = zeroed_attr();
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_link_info>() as u32;
    attr.info.info = &raw mut info as u64;
    // SAFETY: `info` lives until the call returns and is `info_len` bytes.
    unsafe { bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    if info.type_ != bpf_link_type::BPF_LINK_TYPE_XDP as u32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not an XDP link", path.display()),
        ));
    }
    Ok(XdpLinkInfo {
        link_id: info.id,
        program_id: info.prog_id,
        // SAFETY: the kernel filled the xdp member: the link is an XDP
        // link (checked above); every member is plain integers anyway.
        ifindex: unsafe { info.__bindgen_anon_1.xdp.ifindex },
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
    let mut capacity = 32u32;
    loop {
        let mut map_ids = vec![0u32; capacity as usize];
        // SAFETY: plain old data; all zeroes is a valid value, and the
        // kernel wants the fields it does not fill zero on the way in.
        let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
        info.nr_map_ids = capacity;
        info.map_ids = map_ids.as_mut_ptr() as u64;
        let mut attr = zeroed_attr();
        attr.info.bpf_fd = fd.as_raw_fd() as u32;
        attr.info.info_len = size_of::<bpf_prog_info>() as u32;
        attr.info.info = &raw mut info as u64;
        // SAFETY: `info` and the `capacity` ids `map_ids` holds live until
        // the call returns; the kernel writes at most `nr_map_ids` ids.
        unsafe { bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
        // The kernel wrote at most `capacity` ids and says how many there are.
        if info.nr_map_ids > capacity {
            capacity = info.nr_map_ids;
            continue;
        }
        map_ids.truncate(info.nr_map_ids as usize);
        let name: Vec<u8> = info
            .name
            .iter()
            .take_while(|b| **b != 0)
            .map(|b| *b as u8)
            .collect();
        return Ok(ProgramIdentity {
            id: info.id,
            name: String::from_utf8_lossy(&name).into_owned(),
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
    let mut attr = zeroed_attr();
    attr.link_detach.link_fd = fd.as_raw_fd() as u32;
    // SAFETY: the attribute holds no pointer.
    unsafe { bpf(bpf_cmd::BPF_LINK_DETACH, &mut attr) }.map(drop)
}

/// Creates an array map called `name` of `entries` values of
/// `value_size` bytes, keyed by `u32`: what the loader makes of such a map
/// in the object file.
pub fn create_array(name: &str, value_size: usize, entries: u32) -> io::Result<OwnedFd> {
    let value_size = u32::try_from(value_size).map_err(io::Error::other)?;
    create_map(
        bpf_map_type::BPF_MAP_TYPE_ARRAY,
        name,
        4,
        value_size,
        entries,
        0,
    )
}

fn create_map(
    kind: bpf_map_type,
    name: &str,
    key_size: u32,
    value_size: u32,
    entries: u32,
    flags: u32,
) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing Copy members of the union.
    let create = unsafe { &mut attr.__bindgen_anon_1 };
    create.map_type = kind as u32;
    create.key_size = key_size;
    create.value_size = value_size;
    create.max_entries = entries;
    create.map_flags = flags;
    // At most 15 bytes: the name stays NUL-terminated.
    for (to, from) in create.map_name.iter_mut().zip(name.bytes().take(15)) {
        *to = from as libc::c_char;
    }
    // SAFETY: the attribute holds no pointer.
    let fd = unsafe { bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr) }?;
    // SAFETY: BPF_MAP_CREATE returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Pins the object behind `fd` at `path` (which must not exist).
pub fn pin_fd(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_4.pathname = c_path.as_ptr() as u64;
    attr.__bindgen_anon_4.bpf_fd = fd.as_raw_fd() as u32;
    // SAFETY: `c_path` is NUL-terminated and lives until the call returns.
    unsafe { bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr) }.map(drop)
}

fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_4.pathname = c_path.as_ptr() as u64;
    // SAFETY: `c_path` is NUL-terminated and lives until the call returns.
    let fd = unsafe { bpf(bpf_cmd::BPF_OBJ_GET, &mut attr) }?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Which batch command a [`map_batch`] call makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// BPF_MAP_UPDATE_BATCH: insert or replace each key with its value.
    Update,
    /// BPF_MAP_DELETE_BATCH: delete each key.
    Delete,
}

/// A batch call that stopped part-way.
#[derive(Debug)]
pub struct BatchError {
    /// How many elements, from the first, the kernel processed.
    pub done: usize,
    /// Why it stopped.
    pub error: io::Error,
}

/// Makes one BPF_MAP_UPDATE_BATCH (`values` given, as many as `keys`) or
/// BPF_MAP_DELETE_BATCH (`values` empty) call on the map `map`, whose key
/// and value sizes must be those of `K` and `V`. The kernel processes the
/// elements in order and stops at the first it cannot: the error then says
/// how many went in before it. Kernels whose map type has no batch
/// operations fail at once with ENOTSUPP (524), older ones with EINVAL
/// (see [`batch_unsupported`]).
pub fn map_batch<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    op: BatchOp,
    keys: &[K],
    values: &[V],
) -> Result<(), BatchError> {
    let fail = |error| BatchError { done: 0, error };
    let (cmd, values_ptr) = match op {
        BatchOp::Update if values.len() == keys.len() => {
            (bpf_cmd::BPF_MAP_UPDATE_BATCH, values.as_ptr() as u64)
        }
        BatchOp::Delete if values.is_empty() => (bpf_cmd::BPF_MAP_DELETE_BATCH, 0),
        _ => {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a batch's values do not match its keys",
            )));
        }
    };
    let count = u32::try_from(keys.len())
        .map_err(|_| fail(io::Error::other("too many elements for one batch")))?;
    if count == 0 {
        return Ok(());
    }
    let mut attr = zeroed_attr();
    attr.batch.map_fd = map.as_raw_fd() as u32;
    attr.batch.keys = keys.as_ptr() as u64;
    attr.batch.values = values_ptr;
    attr.batch.count = count;
    // SAFETY: `keys` (and `values` for an update) hold `count` elements of
    // the map's key (value) size, which the caller vouches for, and live
    // until the call returns; the kernel only reads them, and writes
    // `count` back into `attr`.
    match unsafe { bpf(cmd, &mut attr) } {
        Ok(_) => Ok(()),
        Err(error) => Err(BatchError {
            // SAFETY: reading a plain integer member of the union.
            done: (unsafe { attr.batch.count }).min(count) as usize,
            error,
        }),
    }
}

/// Every key of the map `map` (key type `K`, value type `V`: the map's own
/// sizes, which the caller vouches for) after the key `after` (from the
/// first, when `None`), read with BPF_MAP_LOOKUP_BATCH, `chunk` keys per
/// call: the kernel walks the map itself instead of one
/// BPF_MAP_GET_NEXT_KEY call per key. Each call's keys go to `each`, in
/// the map's order, until it breaks. For a key `after` that is not in the
/// map the kernel picks where to start, as BPF_MAP_GET_NEXT_KEY does (an
/// LPM trie: from its first key since Linux 6.13 and the stable releases
/// that took the fix, after a neighbour of the same length before). Fails as
/// [`map_batch`] does on a kernel without batches (see
/// [`batch_unsupported`]) before calling `each`.
pub fn map_keys_batched<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    chunk: usize,
    after: Option<&K>,
    mut each: impl FnMut(&[K]) -> anyhow::Result<ControlFlow<()>>,
) -> anyhow::Result<()> {
    let count = u32::try_from(chunk.max(1)).unwrap_or(u32::MAX);
    // SAFETY: K and V are Pod: plain bytes, every pattern valid, zero included.
    let mut keys: Vec<K> = vec![unsafe { std::mem::zeroed() }; count as usize];
    // SAFETY: as above.
    let mut values: Vec<V> = vec![unsafe { std::mem::zeroed() }; count as usize];
    // The kernel's position token for this map type is a key: the one the
    // walk goes on after.
    // SAFETY: as above.
    let mut token: K = after.copied().unwrap_or(unsafe { std::mem::zeroed() });
    let mut first = after.is_none();
    loop {
        let mut attr = zeroed_attr();
        attr.batch.map_fd = map.as_raw_fd() as u32;
        attr.batch.in_batch = if first { 0 } else { &raw const token as u64 };
        attr.batch.out_batch = &raw mut token as u64;
        attr.batch.keys = keys.as_mut_ptr() as u64;
        attr.batch.values = values.as_mut_ptr() as u64;
        attr.batch.count = count;
        // SAFETY: `keys` and `values` hold `count` elements of the map's key
        // and value sizes, and `token` one key, all alive until the call
        // returns; the kernel reads `token` and writes into the three, and
        // `count` back into `attr`.
        let result = unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr) };
        // SAFETY: reading a plain integer member of the union.
        let got = (unsafe { attr.batch.count }).min(count) as usize;
        let done = match result {
            Ok(_) => false,
            // ENOENT: the walk reached the end, with `got` keys in this call.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) => return Err(e.into()),
        };
        if each(&keys[..got])?.is_break() || done || got == 0 {
            return Ok(());
        }
        first = false;
    }
}

/// True when `error` says the kernel has no batch operation for the map
/// (ENOTSUPP, the kernel's internal 524, from a map type without them;
/// EINVAL from a kernel older than the batch commands (5.6);
/// EOPNOTSUPP for good measure), rather than that one element failed.
pub fn batch_unsupported(error: &io::Error) -> bool {
    const ENOTSUPP: i32 = 524;
    matches!(
        error.raw_os_error(),
        Some(ENOTSUPP | libc::EINVAL | libc::EOPNOTSUPP)
    )
}

/// Whether this kernel's LPM tries take BPF_MAP_UPDATE_BATCH and
/// BPF_MAP_DELETE_BATCH (Linux 5.13+; 5.10's do not), asked the way the
/// kernel feature probes ask: by trying both on a small trie made for the
/// question, then dropped. Probed once per process.
pub fn lpm_batch_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let supported = probe_lpm_batch();
        log::debug!(
            "kernel: batched updates of LPM tries: {}",
            if supported { "yes" } else { "no" }
        );
        supported
    })
}

fn probe_lpm_batch() -> bool {
    // An IPv4 LPM key: prefix length, then the address.
    type ProbeKey = aya::maps::lpm_trie::Key<[u8; 4]>;
    let Ok(map) = create_map(
        bpf_map_type::BPF_MAP_TYPE_LPM_TRIE,
        "mxgate_probe",
        size_of::<ProbeKey>() as u32,
        1,
        1,
        BPF_F_NO_PREALLOC,
    ) else {
        return false;
    };
    let keys = [ProbeKey::new(8, [10, 0, 0, 0])];
    map_batch(map.as_fd(), BatchOp::Update, &keys, &[8u8]).is_ok()
        && map_batch::<_, u8>(map.as_fd(), BatchOp::Delete, &keys, &[]).is_ok()
}

/// The bytes the kernel charges a map for, as `/proc/self/fdinfo` says
/// (`memlock:`). Since Linux 6.4 that is the memory the map uses now; an
/// LPM trie's is its entry count times the size of one entry (see
/// [`lpm_entry_bytes`]). Before 6.4, what the map could use at most.
pub fn map_memlock(map: BorrowedFd<'_>) -> io::Result<u64> {
    use std::io::Read as _;
    // The kernel writes a dozen short lines; 4 KiB bounds the read.
    let mut text = String::new();
    std::fs::File::open(format!("/proc/self/fdinfo/{}", map.as_raw_fd()))?
        .take(4096)
        .read_to_string(&mut text)?;
    memlock_of(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "fdinfo has no memlock line"))
}

/// The `memlock:` value of a map's fdinfo text.
fn memlock_of(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|value| value.trim().parse().ok())
}

/// What one entry of an LPM trie with keys of `key_size` bytes and values
/// of `value_size` bytes adds to its [`map_memlock`], when this kernel
/// charges a trie by its entries (Linux 6.4+: `trie_mem_usage`, entries
/// times the size of a node with its key and value); `None` when it does
/// not. Asked as the kernel feature probes ask, on a trie made for the
/// question: empty it must be charged nothing, and each of two entries as
/// much. Probed once per process and key size.
pub fn lpm_entry_bytes(key_size: u32, value_size: u32) -> Option<u64> {
    use std::{collections::BTreeMap, sync::Mutex};
    static PROBED: Mutex<BTreeMap<(u32, u32), Option<u64>>> = Mutex::new(BTreeMap::new());
    let mut probed = PROBED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *probed.entry((key_size, value_size)).or_insert_with(|| {
        let bytes = probe_lpm_entry_bytes(key_size, value_size);
        log::debug!("kernel: LPM trie memory counts entries: {bytes:?} bytes each");
        bytes
    })
}

fn probe_lpm_entry_bytes(key_size: u32, value_size: u32) -> Option<u64> {
    let map = create_map(
        bpf_map_type::BPF_MAP_TYPE_LPM_TRIE,
        "mxgate_probe",
        key_size,
        value_size,
        2,
        BPF_F_NO_PREALLOC,
    )
    .ok()?;
    let charged = || map_memlock(map.as_fd()).ok();
    if charged()? != 0 {
        return None;
    }
    // Two keys of the trie's size: prefix length (host order), then the
    // address; /1s of 0.0.0.0 and 128.0.0.0 (or their IPv6 twins).
    let mut keys = vec![0u8; 2 * key_size as usize];
    let data = usize::min(4, key_size as usize);
    for (i, key) in keys.chunks_exact_mut(key_size as usize).enumerate() {
        key[..data].copy_from_slice(&1u32.to_ne_bytes()[..data]);
        if let Some(first) = key.get_mut(4) {
            *first = if i == 0 { 0 } else { 0x80 };
        }
    }
    let value = vec![0u8; value_size as usize];
    let mut per_entry = None;
    for (i, key) in keys.chunks_exact(key_size as usize).enumerate() {
        update_elem(map.as_fd(), key, &value).ok()?;
        let bytes = charged()?;
        match per_entry {
            None if bytes > 0 => per_entry = Some(bytes),
            Some(one) if bytes == one * (i as u64 + 1) => {}
            _ => return None,
        }
    }
    per_entry
}

/// BPF_MAP_UPDATE_ELEM of `key` to `value`, each of the map's own size.
fn update_elem(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = zeroed_attr();
    // SAFETY: writing Copy members of the union.
    let elem = unsafe { &mut attr.__bindgen_anon_2 };
    elem.map_fd = map.as_raw_fd() as u32;
    elem.key = key.as_ptr() as u64;
    elem.__bindgen_anon_1.value = value.as_ptr() as u64;
    // SAFETY: `key` and `value` are the map's key and value sizes (the
    // caller made the map so) and live until the call returns; the kernel
    // only reads them.
    unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// An all-zero `bpf_attr`, as every command wants the bytes it does not use.
fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a union of structs of plain integers; all zeroes
    // is a valid value of each.
    unsafe { std::mem::zeroed() }
}

/// bpf(2) with the whole of aya-obj's `bpf_attr` (newer than some kernels'
/// and larger: they accept it because the bytes they do not know are zero).
///
/// # Safety
///
/// Every pointer the member of `attr` that `cmd` uses holds must be valid
/// for what the kernel does with it (reads or writes of the stated sizes)
/// until the call returns.
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i32> {
    // SAFETY: `attr` is a valid, initialised bpf_attr of the size given;
    // the pointers in it are the caller's to vouch for.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(rc).map_err(|_| io::Error::other("bpf(2) returned an out-of-range value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_is_read_from_fdinfo() {
        let text = "pos:\t0\nflags:\t02000002\nmap_type:\t1\nmemlock:\t4198400\nmap_id:\t7\n";
        assert_eq!(memlock_of(text), Some(4_198_400));
        assert_eq!(memlock_of("pos:\t0\n"), None);
    }
}
