//! Files mxgate reads, writes or trusts outside bpffs (range files, the CA
//! file, the last-good cache, the metrics file, /etc/resolv.conf).
//!
//! Every file is read through [`read_regular`]: opened without waiting (a
//! FIFO would wait for a writer), refused unless it is a regular file (a
//! device such as /dev/zero never ends), and read up to a bound. Files are
//! written whole — a fresh temporary file created with `O_EXCL|O_NOFOLLOW`,
//! fsynced, then renamed over the target — and read back only when they
//! belong to the user running mxgate (root) and nobody else can write them.

use std::{
    fs::{self, File, Metadata, OpenOptions},
    io::{self, Read as _, Write as _},
    os::unix::fs::{
        DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
    },
    path::Path,
};

use anyhow::{Context as _, bail};

/// Whether [`read_regular`] follows a symbolic link at the path itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Follow it (the administrator's own files: /etc/ssl/certs is links).
    Follow,
    /// Refuse it (files mxgate wrote itself, where a link was planted).
    Refuse,
}

/// The whole content of the regular file at `path`, and its metadata, if
/// it holds at most `max_bytes` bytes. A FIFO, a device, a socket or a
/// directory is refused at once without being read: the open does not wait
/// (`O_NONBLOCK`) and the type is checked on the open descriptor, so the
/// file checked is the file read. `limit` names the bound in the error
/// ("--max-download").
pub fn read_regular(
    path: &Path,
    max_bytes: u64,
    limit: &str,
    links: Links,
) -> io::Result<(Vec<u8>, Metadata)> {
    let (file, meta) = open_regular(path, links)?;
    let too_large = || {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {max_bytes} bytes ({limit})"),
        )
    };
    if meta.len() > max_bytes {
        return Err(too_large());
    }
    // The size can grow between the stat and the read: read one byte past
    // the bound to tell.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok((bytes, meta))
}

/// The regular file at `path`, open for reading, and its metadata, for a
/// reader that streams it (an MTA log) rather than reading it whole. The
/// same checks as [`read_regular`]: the open does not wait, and a FIFO, a
/// device, a socket or a directory is refused on the open descriptor.
pub fn open_regular(path: &Path, links: Links) -> io::Result<(File, Metadata)> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) if links == Links::Refuse => io::Error::new(
                io::ErrorKind::InvalidInput,
                "a symbolic link, not a file mxgate wrote",
            ),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file (a {})", kind_of(&meta)),
        ));
    }
    Ok((file, meta))
}

/// What a file that is not a regular file is, for messages.
fn kind_of(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Whether [`write_atomically`] waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The file, then its directory, synced: after a crash the path holds
    /// the old file or the new one. For what must survive (sources' last
    /// good copies).
    Synced,
    /// Not synced: a crash right after may leave the path empty or as it
    /// was. For what the next write puts right: the metrics file (within
    /// an interval) and the refresh record (which then shows the refresh
    /// before, or none, until the next refresh). Two syncs cost a refresh
    /// of unchanged sources a tenth of its time, and far more on a busy
    /// disk.
    Unsynced,
}

/// Writes `contents` to `path` whole, with permissions `mode`. A reader sees
/// the old file or the new one, never half of one; a symlink or file an
/// attacker planted at a temporary name is never followed or overwritten,
/// and a symlink at `path` itself is replaced, not followed.
pub fn write_atomically(
    path: &Path,
    contents: &[u8],
    mode: u32,
    durability: Durability,
) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // tempfile creates `.NAME.RANDOM.tmp` with O_CREAT | O_EXCL (a planted
    // file or symlink at that name is never opened) and removes it again
    // on every way out short of the rename.
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let temporary = file.path().to_owned();
    // Set after creation: the umask may have taken bits the caller asked for.
    file.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", temporary.display()))?;
    file.write_all(contents)
        .and_then(|()| match durability {
            Durability::Synced => file.as_file().sync_all(),
            Durability::Unsynced => Ok(()),
        })
        .with_context(|| format!("writing {}", temporary.display()))?;
    file.persist(path).map_err(|e| {
        anyhow::Error::new(e.error).context(format!(
            "renaming {} to {}",
            temporary.display(),
            path.display()
        ))
    })?;
    // The rename is durable once the directory is; losing that only costs a
    // fresh copy next time, so a failure here is not an error.
    if durability == Durability::Synced
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Sets the modification time of `path` (not following a symlink); the
/// access time stays.
pub fn set_mtime(path: &Path, at: std::time::SystemTime) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Timestamps, UTIME_OMIT, utimensat};
    let since = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(io::Error::other)?;
    let times = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: i64::try_from(since.as_secs()).map_err(io::Error::other)?,
            tv_nsec: i64::from(since.subsec_nanos()),
        },
    };
    Ok(utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// The user mxgate runs as; the only owner (besides root) it trusts.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Why `meta` (of `path`) is not to be trusted: owned by another user, or
/// writable by group or others. `None` when it is fine.
pub fn distrust(path: &Path, meta: &Metadata) -> Option<String> {
    let uid = meta.uid();
    if uid != 0 && uid != effective_uid() {
        return Some(format!(
            "{} is owned by uid {uid}, not by root",
            path.display()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "{} is writable by {} (mode {mode:04o})",
            path.display(),
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            }
        ));
    }
    None
}

/// Why `dir` (with `meta`) is not a private directory of mxgate's: not a
/// directory, another user's, or open to its group or others in any way
/// (a cache directory another umask made 0755 shows what sources are used,
/// and lets everyone read the copies). `None` when it is.
pub fn distrust_private_dir(dir: &Path, meta: &Metadata) -> Option<String> {
    if meta.file_type().is_symlink() {
        return Some(format!(
            "{} is a symbolic link; mxgate keeps its files only in a real directory",
            dir.display()
        ));
    }
    if !meta.is_dir() {
        return Some(format!("{} is not a directory", dir.display()));
    }
    if let Some(why) = distrust(dir, meta) {
        return Some(why);
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Some(format!(
            "{} has mode {mode:04o}, not 0700 (`chmod 0700 {}` if its files are yours)",
            dir.display(),
            dir.display()
        ));
    }
    None
}

/// Makes sure `dir` exists as a private directory (created with mode 0700,
/// refused unless it is 0700) that nobody but root can change; refuses a
/// symlink or an untrusted one.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?,
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        Ok(_) => {}
    }
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if let Some(why) = distrust_private_dir(dir, &meta) {
        bail!("{why}; mxgate does not keep its files there");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::symlink, path::PathBuf};

    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mxgate-files-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_whole_files_with_the_mode_asked() {
        let dir = scratch("write");
        let path = dir.join("m.prom");
        write_atomically(&path, b"one\n", 0o644, Durability::Synced).unwrap();
        write_atomically(&path, b"two\n", 0o600, Durability::Unsynced).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_rename_leaves_the_target_and_no_temporary() {
        let dir = scratch("failed");
        let path = dir.join("busy");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("kept"), b"kept").unwrap();
        let e = write_atomically(&path, b"new", 0o600, Durability::Synced).unwrap_err();
        assert!(format!("{e:#}").contains("renaming"), "{e:#}");
        assert_eq!(fs::read(path.join("kept")).unwrap(), b"kept");
        let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = scratch("link");
        let victim = dir.join("victim");
        fs::write(&victim, b"secret").unwrap();
        let path = dir.join("m.prom");
        symlink(&victim, &path).unwrap();
        write_atomically(&path, b"metrics", 0o644, Durability::Unsynced).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"secret");
        assert!(
            !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn private_dirs_refuse_symlinks_and_loose_modes() {
        let dir = scratch("private");
        let made = dir.join("a/b");
        private_dir(&made).unwrap();
        assert_eq!(fs::metadata(&made).unwrap().mode() & 0o777, 0o700);
        let link = dir.join("link");
        symlink(&made, &link).unwrap();
        assert!(
            private_dir(&link)
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
        let loose = dir.join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            private_dir(&loose)
                .unwrap_err()
                .to_string()
                .contains("writable by everyone (mode 0777)")
        );
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
        let e = private_dir(&loose).unwrap_err().to_string();
        assert!(e.contains("has mode 0755, not 0700"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_regular_files_are_read_and_only_up_to_the_bound() {
        let dir = scratch("read");
        let path = dir.join("list.txt");
        fs::write(&path, b"192.0.2.0/24\n").unwrap();
        let (bytes, meta) = read_regular(&path, 13, "--max-download", Links::Refuse).unwrap();
        assert_eq!((bytes.as_slice(), meta.len()), (&b"192.0.2.0/24\n"[..], 13));
        let e = read_regular(&path, 12, "--max-download", Links::Refuse).unwrap_err();
        assert_eq!(e.to_string(), "larger than 12 bytes (--max-download)");
        // Devices, directories and FIFOs are refused without a read (or a
        // wait for a writer).
        for (other, kind) in [
            (Path::new("/dev/zero"), "device"),
            (dir.as_path(), "directory"),
        ] {
            let e = read_regular(other, 1 << 20, "x", Links::Follow).unwrap_err();
            assert_eq!(e.to_string(), format!("not a regular file (a {kind})"));
        }
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string for the length of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_regular(&fifo, 1 << 20, "x", Links::Follow).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file (a FIFO)");
        // A link is followed only when asked.
        let link = dir.join("link");
        symlink(&path, &link).unwrap();
        assert!(read_regular(&link, 100, "x", Links::Follow).is_ok());
        let e = read_regular(&link, 100, "x", Links::Refuse).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
