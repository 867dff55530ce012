//! The pin directory: where the filter's program, maps and per-interface
//! links live on bpffs, so the filter keeps working when `mxgate` exits.
//!
//! Layout under the directory (default `/sys/fs/bpf/mxgate`, mode 0700):
//! - `prog`: the XDP program;
//! - one pin per map, named as in [`filter_common::map_names`];
//! - `link_IFACE`: the XDP link attaching the program to interface IFACE.
//!
//! Trust: mxgate runs as root, and bpffs is often world-writable (mode
//! 1777). So it only uses a pin directory that is a real directory (not a
//! symlink) on bpffs, owned by root and writable by nobody else, below
//! directories nobody else can rename it out of; anything else is refused
//! as invalid input (exit 2) before any change. It only ever removes its
//! own objects, by name and after checking what each one is; other pins in
//! the directory are left alone, and so is the directory while they exist.
//!
//! Mutating commands hold [`PinDir::lock`] (an `flock` on the directory,
//! `lock.rs`); `trust.rs` tells the filter's own pins from others and checks
//! the directories above; `bpffs.rs` finds or mounts the filesystem.

mod bpffs;
mod lock;
mod trust;

use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::DirBuilderExt as _,
    path::{Component, Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use filter_common::map_names;

pub use self::{
    bpffs::BPFFS_MOUNT,
    lock::{DEFAULT_LOCK_TIMEOUT, Lock},
    trust::program_name,
};
use self::{
    bpffs::{is_bpffs, mount_bpffs},
    trust::{Owner, check_ancestors, judge_record},
};
use crate::{error::InvalidInput, files::distrust, sys};

/// Where the filter is pinned unless `--pin-dir` says otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/mxgate";
/// Pin name of the program.
pub const PROGRAM: &str = "prog";
const LINK_PREFIX: &str = "link_";
/// Longest interface name Linux allows (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// The pin directory of one filter.
#[derive(Clone, Debug)]
pub struct PinDir {
    root: PathBuf,
    lock_timeout: Duration,
}

/// What a pin directory holds, sorted by what mxgate makes of each entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entries {
    /// `prog`, when it holds a program.
    pub program: bool,
    /// Map pins present, by name, when each holds a map.
    pub maps: Vec<&'static str>,
    /// Interfaces with a `link_IFACE` pin holding a link.
    pub links: Vec<String>,
    /// Pins at mxgate's own names (`prog`, a map's, `link_IF`) that hold
    /// something that is not this filter's: another filter's map or link,
    /// a program or map of another tool. Never used, never removed.
    pub impostors: Vec<Impostor>,
    /// Everything else: other tools' pins. Never removed.
    pub foreign: Vec<String>,
}

/// A pin at one of mxgate's names that holds something not this
/// filter's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impostor {
    /// The pin's name in the directory.
    pub name: String,
    /// What it holds, in words ("holds map 12 …").
    pub holds: String,
}

impl Impostor {
    /// What it is and what to do, for `status` and errors.
    pub fn describe(&self, dir: &Path) -> String {
        let path = dir.join(&self.name);
        format!(
            "{} {}: mxgate neither uses nor removes it. If it is left over or planted, remove \
             it (`rm {}`) and run `mxgate attach` to pin this filter's own again; if it is \
             another filter's, give each filter its own --pin-dir",
            path.display(),
            self.holds,
            path.display()
        )
    }
}

impl Entries {
    /// True when nothing of mxgate's is here.
    pub fn is_empty(&self) -> bool {
        !self.program && self.maps.is_empty() && self.links.is_empty()
    }

    /// The impostor pinned as `name`, if there is one.
    pub fn impostor(&self, name: &str) -> Option<&Impostor> {
        self.impostors.iter().find(|i| i.name == name)
    }

    /// The maps whose pins are missing.
    pub fn missing_maps(&self) -> Vec<&'static str> {
        map_names::ALL
            .into_iter()
            .filter(|n| !self.maps.contains(n))
            .collect()
    }
}

impl PinDir {
    /// The pin directory at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// The same directory, whose [`PinDir::lock`] waits at most `timeout`.
    pub fn with_lock_timeout(self, timeout: Duration) -> Self {
        Self {
            lock_timeout: timeout,
            ..self
        }
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

    /// Checks the directory can be trusted. `Ok(false)` when it does not
    /// exist (its parent is still checked); an [`InvalidInput`] error names
    /// what is wrong.
    pub fn check(&self) -> anyhow::Result<bool> {
        self.check_path()?;
        let parent = self.parent()?;
        check_ancestors(parent)?;
        let meta = match fs::symlink_metadata(&self.root) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(permission_denied(&self.root));
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.root.display())),
        };
        let root = self.root.display();
        if meta.file_type().is_symlink() {
            return Err(InvalidInput(format!(
                "the pin directory {root} is a symbolic link; mxgate only uses a real directory \
                 (remove the link, or give --pin-dir a directory of root's)"
            ))
            .into());
        }
        if !meta.is_dir() {
            return Err(
                InvalidInput(format!("the pin directory {root} is not a directory")).into(),
            );
        }
        if let Some(why) = distrust(&self.root, &meta) {
            return Err(InvalidInput(format!(
                "{why}: another user could remove or replace the filter's pins; mxgate does not \
                 use it (remove it, or `chown root {root} && chmod 0700 {root}` if you trust it)"
            ))
            .into());
        }
        if !is_bpffs(&self.root)? {
            return Err(InvalidInput(format!(
                "the pin directory {root} is not on a bpf filesystem; give --pin-dir a \
                 directory under {BPFFS_MOUNT}"
            ))
            .into());
        }
        Ok(true)
    }

    /// Refuses a relative path or one with `..`: the directory must be the
    /// one the administrator named, wherever mxgate runs from.
    fn check_path(&self) -> anyhow::Result<()> {
        let root = self.root.display();
        if !self.root.is_absolute() {
            return Err(InvalidInput(format!("--pin-dir {root} is not an absolute path")).into());
        }
        if self
            .root
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(InvalidInput(format!(
                "--pin-dir {root} contains `.` or `..`; name the directory itself"
            ))
            .into());
        }
        Ok(())
    }

    fn parent(&self) -> anyhow::Result<&Path> {
        self.root
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && self.root.file_name().is_some())
            .ok_or_else(|| {
                InvalidInput(format!(
                    "--pin-dir {} names no directory under a bpf filesystem",
                    self.root.display()
                ))
                .into()
            })
    }

    /// Makes sure the directory exists on a mounted bpffs, mounting bpffs at
    /// [`BPFFS_MOUNT`] when that is where it belongs and it is missing.
    /// Returns true when this call created the directory.
    pub fn prepare(&self) -> anyhow::Result<bool> {
        self.check_path()?;
        let parent = self.parent()?;
        if !is_bpffs(parent)? {
            if parent != Path::new(BPFFS_MOUNT) {
                return Err(InvalidInput(format!(
                    "{} is not on a bpf filesystem; mount one first (mount -t bpf bpf {}) \
                     or use a --pin-dir under {BPFFS_MOUNT}",
                    self.root.display(),
                    parent.display()
                ))
                .into());
            }
            mount_bpffs(parent)?;
        }
        if self.check()? {
            return Ok(false);
        }
        let created = match fs::DirBuilder::new().mode(0o700).create(&self.root) {
            Ok(()) => true,
            // Someone made it meanwhile: the check below judges it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e).with_context(|| format!("creating {}", self.root.display())),
        };
        self.check()?;
        Ok(created)
    }

    /// Sorts the directory's entries into mxgate's objects and the rest,
    /// checking what each pin holds. An absent directory has no entries.
    pub fn entries(&self) -> anyhow::Result<Entries> {
        let mut found = Entries::default();
        let listing = match fs::read_dir(&self.root) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(permission_denied(&self.root));
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.root.display())),
        };
        let mut names = BTreeMap::new();
        for entry in listing {
            let entry = entry.with_context(|| format!("reading {}", self.root.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = sys::pin_kind(&entry.path()).unwrap_or(sys::PinKind::Other);
            names.insert(name, kind);
        }
        let owner = Owner::find(&self.root, &names);
        // ALLOW_V4's id, when it is this filter's: LIST_DIGEST is stamped
        // with it.
        let allow_v4 = names
            .get(map_names::ALLOW_V4)
            .filter(|k| {
                owner
                    .judge_map(
                        &self.root.join(map_names::ALLOW_V4),
                        map_names::ALLOW_V4,
                        **k,
                    )
                    .is_ok()
            })
            .and_then(|_| sys::pinned_map(&self.root.join(map_names::ALLOW_V4)).ok())
            .map(|(id, _)| id);
        for (name, kind) in names {
            let path = self.root.join(&name);
            let map = map_names::ALL.into_iter().find(|m| *m == name);
            let verdict = if name == PROGRAM {
                owner.judge_program(&path, kind)
            } else if map == Some(map_names::LIST_DIGEST) {
                judge_record(&path, kind, allow_v4)
            } else if let Some(map) = map {
                owner.judge_map(&path, map, kind)
            } else if name.starts_with(LINK_PREFIX) {
                owner.judge_link(&path, kind)
            } else {
                found.foreign.push(name);
                continue;
            };
            match verdict {
                Err(holds) => found.impostors.push(Impostor { name, holds }),
                Ok(()) if name == PROGRAM => found.program = true,
                Ok(()) => match map {
                    Some(map) => found.maps.push(map),
                    None => found.links.push(name[LINK_PREFIX.len()..].to_owned()),
                },
            }
        }
        Ok(found)
    }

    /// Removes `name` if it is a pin of mxgate's; false if it was not there.
    pub fn remove(&self, name: &str) -> anyhow::Result<bool> {
        let path = self.root.join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    /// Removes every object of mxgate's found in `entries` (links first, so
    /// the program stops before its maps lose their pins), then the
    /// directory if nothing else is left in it. Returns the other tools'
    /// pins that stay (impostors stay too, unnamed here).
    pub fn remove_own(&self, entries: &Entries) -> anyhow::Result<Vec<String>> {
        for iface in &entries.links {
            self.remove_link(iface)?;
        }
        if entries.program {
            self.remove(PROGRAM)?;
        }
        for map in &entries.maps {
            self.remove(map)?;
        }
        if entries.foreign.is_empty() && entries.impostors.is_empty() {
            match fs::remove_dir(&self.root) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("removing {}", self.root.display()));
                }
            }
        }
        Ok(entries.foreign.clone())
    }

    /// Detaches and removes the link pin of `iface` (one of mxgate's);
    /// false if it was not there.
    pub fn remove_link(&self, iface: &str) -> anyhow::Result<bool> {
        // Best effort: a link whose interface is gone has nothing to detach,
        // and the pin's removal releases the link in any case.
        let _ = sys::detach_pinned_link(&self.link(iface));
        self.remove(&format!("{LINK_PREFIX}{iface}"))
    }

    /// Removes the directory if it is empty (nothing of anyone's in it).
    pub fn remove_if_empty(&self) {
        let _ = fs::remove_dir(&self.root);
    }
}

/// Checks that `name` can be an interface name (and so a `link_` pin name).
pub fn check_iface_name(name: &str) -> Result<(), InvalidInput> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if ok {
        Ok(())
    } else {
        Err(InvalidInput(format!(
            "{name:?} is not an interface name (1 to {MAX_IFNAME} characters, no `/`, `:` or spaces)"
        )))
    }
}

fn permission_denied(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "permission denied reading {}: mxgate needs root (CAP_BPF and CAP_NET_ADMIN)",
        path.display()
    )
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
    fn a_missing_dir_has_no_entries() {
        let pins = PinDir::new("/nonexistent/mxgate");
        assert!(pins.entries().unwrap().is_empty());
    }

    #[test]
    fn relative_and_dotted_paths_are_refused() {
        for bad in ["mxgate", "/sys/fs/bpf/../../tmp/x", "/"] {
            let e = PinDir::new(bad).check().unwrap_err();
            assert!(e.is::<InvalidInput>(), "{bad}: {e}");
        }
    }

    #[test]
    fn a_dir_outside_bpffs_is_refused() {
        let dir = std::env::temp_dir().join(format!("mxgate-pins-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let e = PinDir::new(&dir).check().unwrap_err();
        assert!(e.to_string().contains("not on a bpf filesystem"), "{e}");
        fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn interface_names() {
        for ok in ["eth0", "mx-mail", "a", "enp0s31f6.100"] {
            check_iface_name(ok).unwrap();
        }
        for bad in ["", "a/b", "../x", "..", "a b", "sixteen-chars-xx", "a:b"] {
            assert!(check_iface_name(bad).is_err(), "{bad:?}");
        }
    }
}
