//! bpffs itself: whether a directory is on it, and mounting it where it
//! conventionally lives when it is missing.

use std::{ffi::CString, fs, io, os::unix::ffi::OsStrExt as _, path::Path};

use anyhow::Context as _;

/// Where bpffs is conventionally mounted; mxgate mounts it there if needed.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";
/// `statfs` magic of bpffs (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

pub(super) fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
    match rustix::fs::statfs(path) {
        // f_type's integer type differs between targets.
        #[allow(clippy::unnecessary_cast)]
        Ok(stat) => Ok(stat.f_type as u32 == BPF_FS_MAGIC),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(io::Error::from(e)).with_context(|| format!("statfs {}", path.display())),
    }
}

pub(super) fn mount_bpffs(at: &Path) -> anyhow::Result<()> {
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
