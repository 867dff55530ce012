//! What the hostile-input tests need: other tools' pins, an unprivileged
//! user's commands, and snapshots of what must not change (the filter's
//! live state, files outside its pin directory).

use std::{
    collections::BTreeMap,
    io,
    os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
    process::{Command, Output},
};

use filter_user::{
    allowlist::Allowlist,
    filter::{AllowMaps, Installed},
    pins::PinDir,
};
use serde_json::Value;

use crate::cli::Mxgate;

/// The uid and gid of `nobody`, the unprivileged user of these tests.
pub const NOBODY: u32 = 65534;

/// Pins, at `path`, a BPF map mxgate did not make (an array called
/// `other_tool`): another tool's object sharing bpffs.
pub fn pin_foreign_map(path: &Path) -> io::Result<()> {
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
    map_name[..10].copy_from_slice(b"other_tool");
    let create = MapCreate {
        map_type: 2, // BPF_MAP_TYPE_ARRAY
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name,
    };
    let fd = bpf(0, &create)?; // BPF_MAP_CREATE
    // SAFETY: BPF_MAP_CREATE returned a new descriptor that we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    filter_user::sys::pin_fd(std::os::fd::AsFd::as_fd(&fd), path)
}

fn bpf<A>(cmd: libc::c_long, attr: &A) -> io::Result<i32> {
    // SAFETY: `attr` is a valid, initialised bpf_attr prefix of its size.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const A, size_of::<A>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(rc).map_err(|_| io::Error::other("bpf(2) returned an out-of-range value"))
}

/// `program args…` run as `nobody` (setpriv from util-linux).
pub fn as_nobody(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "--",
        program,
    ])
    .args(args);
    cmd
}

/// Runs `cmd`, asserting it succeeded.
pub fn must(mut cmd: Command) -> Output {
    let out = cmd.output().expect("running a helper command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every entry under a directory: its type, owner, mode and contents, to
/// show that a command left it exactly as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree(BTreeMap<PathBuf, (String, u32, u32, Vec<u8>)>);

impl Tree {
    /// Reads everything under `root` (not following symlinks).
    pub fn of(root: &Path) -> Self {
        let mut entries = BTreeMap::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(path) = todo.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = if meta.file_type().is_symlink() {
                format!("link:{:?}", std::fs::read_link(&path).ok())
            } else if meta.is_dir() {
                if let Ok(list) = std::fs::read_dir(&path) {
                    todo.extend(list.filter_map(Result::ok).map(|e| e.path()));
                }
                "dir".into()
            } else {
                "file".into()
            };
            let contents = if meta.is_file() {
                std::fs::read(&path).unwrap_or_default()
            } else {
                Vec::new()
            };
            entries.insert(path, (kind, meta.uid(), meta.mode(), contents));
        }
        Self(entries)
    }

    /// Number of entries, the root included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when even the root is missing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What users rely on in a live filter: its allowlist, switches, settings
/// and attachments. Equal snapshots mean nothing they see changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    /// The allowlist in the tries.
    pub allowlist: Allowlist,
    /// `status --json`, without what legitimately moves (times).
    pub status: Value,
}

impl Live {
    /// The live state of `mx`'s filter.
    pub fn of(mx: &Mxgate) -> Self {
        let installed =
            Installed::require(&PinDir::new(mx.pin_dir())).expect("a filter is installed");
        let allowlist = AllowMaps::open(&installed)
            .and_then(|a| a.read())
            .expect("reading the allowlist");
        let mut status: Value =
            serde_json::from_str(&mx.ok(&["status", "--json"])).expect("status --json is JSON");
        if let Some(list) = status["interfaces"].as_array_mut() {
            for iface in list {
                iface["attached_at"] = Value::Null;
            }
        }
        Self { allowlist, status }
    }
}
