//! The pin directory's lock: mutating commands hold it so that two of them
//! never interleave; the kernel drops it when the holder exits, even by
//! SIGKILL. The wait is bounded, and a holder that removed the directory
//! (`detach`) leaves waiters a dead inode, which they notice and start
//! over from.

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{PinDir, permission_denied};

/// How long a command waits for another one's lock unless `--lock-timeout`
/// says otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

impl PinDir {
    /// Runs `look`, a read of the pins that takes no lock (a command's
    /// first look, before it changes anything or waits). A command that
    /// holds the lock (a detach) may be removing the pins meanwhile, so
    /// that one listed is gone when it is opened: if `look` fails, it runs
    /// again under the lock, once that command is done (or without it when
    /// the directory is gone). An error that stands, such as an untrusted
    /// directory or an impostor pin, comes back from the second run.
    pub fn unlocked_look<T>(&self, look: impl Fn() -> anyhow::Result<T>) -> anyhow::Result<T> {
        if let Ok(seen) = look() {
            return Ok(seen);
        }
        let _lock = self.lock()?;
        look()
    }

    /// Takes the directory's lock, waiting at most the lock timeout for
    /// another mxgate that holds it. `Ok(None)` when the directory is gone
    /// (or was removed while this waited).
    pub fn lock(&self) -> anyhow::Result<Option<Lock>> {
        let timeout = self.lock_timeout;
        if !self.check()? {
            return Ok(None);
        }
        let dir = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.root)
        {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(permission_denied(&self.root));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("opening {} to lock it", self.root.display()));
            }
        };
        let started = Instant::now();
        let mut announced = false;
        // std's try_lock is flock(LOCK_EX | LOCK_NB) on Linux: the lock
        // /proc/locks shows (lock_holder) and older mxgate releases take.
        loop {
            match dir.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(err)) => {
                    return Err(err).with_context(|| format!("locking {}", self.root.display()));
                }
            }
            let holder = lock_holder(&dir).map_or_else(String::new, |pid| format!(" (pid {pid})"));
            if started.elapsed() >= timeout {
                bail!(
                    "another mxgate command{holder} has held the lock on {} for more than {} s; \
                     nothing changed (wait for it, or raise --lock-timeout)",
                    self.root.display(),
                    timeout.as_secs()
                );
            }
            if !announced {
                eprintln!(
                    "mxgate: waiting for another mxgate command{holder} working on {}",
                    self.root.display()
                );
                announced = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // A `detach` that held the lock may have removed the directory: the
        // lock is then on a dead inode, and the path names nothing or a new
        // directory.
        let held = dir
            .metadata()
            .with_context(|| format!("reading {}", self.root.display()))?;
        let now = fs::symlink_metadata(&self.root).ok();
        let same = now.is_some_and(|m| m.ino() == held.ino() && m.dev() == held.dev());
        if held.nlink() == 0 || !same {
            return Ok(None);
        }
        Ok(Some(Lock { _dir: dir }))
    }
}

/// Held while a command changes the filter; released on drop or exit.
#[derive(Debug)]
pub struct Lock {
    _dir: File,
}

/// The pid holding an flock on `dir`, from /proc/locks.
fn lock_holder(dir: &File) -> Option<u32> {
    let meta = dir.metadata().ok()?;
    let dev = meta.dev();
    // /proc/locks writes the device as MAJOR:MINOR in hex, then the inode.
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK ADVISORY WRITE PID DEV:INODE 0 EOF"; waiters have "->".
        if fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&wanted.as_str()) {
            fields.get(4)?.parse().ok()
        } else {
            None
        }
    })
}
