//! The pin directory: where the filter's program, maps and per-interface
//! links live on bpffs, so the filter keeps working when `mxgate` exits.
//!
//! Layout under the directory (default `/sys/fs/bpf/mxgate`, mode 0700):
//! - `prog`: the XDP program;
//! - one file per map, named as in [`filter_common::map_names`];
//! - `link_IFACE`: the XDP link attaching the program to interface IFACE.
//!
//! Mutating commands hold [`PinDir::lock`] (an `flock` on the directory) so
//! that two of them never interleave; the kernel drops the lock when the
//! holder exits, even by SIGKILL, so it cannot wedge the next run.

use std::{
    ffi::CString,
    fs::{self, File},
    io,
    os::unix::{ffi::OsStrExt as _, fs::DirBuilderExt as _, io::AsRawFd as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// Where the filter is pinned unless `--pin-dir` says otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/mxgate";
/// Where bpffs is conventionally mounted; mxgate mounts it there if needed.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";
/// `statfs` magic of bpffs (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;
const PROGRAM: &str = "prog";
const LINK_PREFIX: &str = "link_";

/// The pin directory of one filter.
#[derive(Clone, Debug)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    /// The pin directory at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Pin of the XDP program.
    pub fn program(&self) -> PathBuf {
        self.root.join(PROGRAM)
    }

    /// Pin of the map called `name` in the object file.
    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Pin of the link attaching the program to `iface`.
    pub fn link(&self, iface: &str) -> PathBuf {
        self.root.join(format!("{LINK_PREFIX}{iface}"))
    }

    /// True when a filter is installed here (its program is pinned).
    pub fn is_installed(&self) -> bool {
        self.program().exists()
    }

    /// Names of the interfaces with a pinned link, sorted.
    pub fn linked_interfaces(&self) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            if let Some(iface) = name.to_str().and_then(|n| n.strip_prefix(LINK_PREFIX)) {
                names.push(iface.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Makes sure the directory exists on a mounted bpffs, mounting bpffs at
    /// [`BPFFS_MOUNT`] when that is where it belongs and it is missing.
    pub fn prepare(&self) -> anyhow::Result<()> {
        let parent = self
            .root
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .with_context(|| format!("pin directory {} has no parent", self.root.display()))?;
        if !is_bpffs(parent)? {
            if parent != Path::new(BPFFS_MOUNT) {
                bail!(
                    "{} is not on a bpf filesystem; mount one first (mount -t bpf bpf {}) \
                     or use a --pin-dir under {BPFFS_MOUNT}",
                    self.root.display(),
                    parent.display()
                );
            }
            mount_bpffs(parent)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e).with_context(|| format!("creating {}", self.root.display())),
        }
    }

    /// Takes the directory's lock, waiting for another mxgate that holds it.
    pub fn lock(&self) -> anyhow::Result<Lock> {
        let dir = File::open(&self.root)
            .with_context(|| format!("opening {} to lock it", self.root.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err).with_context(|| format!("locking {}", self.root.display()));
            }
            eprintln!(
                "mxgate: waiting for another mxgate command working on {}",
                self.root.display()
            );
            // SAFETY: as above; this call blocks until the holder is done.
            if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(io::Error::last_os_error())
                    .with_context(|| format!("locking {}", self.root.display()));
            }
        }
        Ok(Lock { _dir: dir })
    }

    /// Removes every pin mxgate made here and the directory. Removing a link
    /// pin detaches it from its interface once no process holds it open.
    pub fn remove_all(&self) -> anyhow::Result<()> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.root.display())),
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", self.root.display()))?
                .path();
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        fs::remove_dir(&self.root).with_context(|| format!("removing {}", self.root.display()))
    }
}

/// Held while a command changes the filter; released on drop or exit.
#[derive(Debug)]
pub struct Lock {
    _dir: File,
}

fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", path.display()))?;
    // SAFETY: statfs is plain old data; all zeroes is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs writes into the struct we pass; the path is NUL-terminated.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::NotFound {
            return Ok(false);
        }
        return Err(err).with_context(|| format!("statfs {}", path.display()));
    }
    // f_type's integer type differs between libc targets.
    #[allow(clippy::unnecessary_cast)]
    Ok(stat.f_type as u32 == BPF_FS_MAGIC)
}

fn mount_bpffs(at: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(at).with_context(|| format!("creating {}", at.display()))?;
    let target = CString::new(at.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", at.display()))?;
    // SAFETY: all pointers are valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).with_context(|| {
            format!(
                "mounting bpffs at {} (mount -t bpf bpf {})",
                at.display(),
                at.display()
            )
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names() {
        let pins = PinDir::new("/sys/fs/bpf/mxgate");
        assert_eq!(pins.program(), Path::new("/sys/fs/bpf/mxgate/prog"));
        assert_eq!(
            pins.map("ALLOW_V4"),
            Path::new("/sys/fs/bpf/mxgate/ALLOW_V4")
        );
        assert_eq!(pins.link("eth0"), Path::new("/sys/fs/bpf/mxgate/link_eth0"));
    }

    #[test]
    fn linked_interfaces_of_a_missing_dir_is_empty() {
        let pins = PinDir::new("/nonexistent/mxgate");
        assert!(pins.linked_interfaces().unwrap().is_empty());
        assert!(!pins.is_installed());
    }

    #[test]
    fn lock_excludes_a_second_holder() {
        let dir = std::env::temp_dir().join(format!("mxgate-lock-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let pins = PinDir::new(&dir);
        let held = pins.lock().unwrap();
        let other = File::open(&dir).unwrap();
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, -1, "a second exclusive lock must fail while held");
        drop(held);
        // SAFETY: as above.
        let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0, "the lock is free once the holder drops it");
        fs::remove_dir(&dir).unwrap();
    }
}
