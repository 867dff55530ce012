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
//! Mutating commands hold [`PinDir::lock`] (an `flock` on the directory) so
//! that two of them never interleave; the kernel drops the lock when the
//! holder exits, even by SIGKILL. The wait is bounded, and a holder that
//! removed the directory (`detach`) leaves waiters a dead inode, which they
//! notice and start over from.

use std::{
    collections::BTreeMap,
    ffi::CString,
    fs::{self, File, OpenOptions},
    io,
    os::unix::{
        ffi::OsStrExt as _,
        fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _},
    },
    path::{Component, Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use filter_common::{PROGRAM_NAME, fast_path::ListDigest, map_names};

use crate::{error::InvalidInput, files::distrust, interfaces, sys};

/// Where the filter is pinned unless `--pin-dir` says otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/mxgate";
/// Where bpffs is conventionally mounted; mxgate mounts it there if needed.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";
/// How long a command waits for another one's lock unless `--lock-timeout`
/// says otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// `statfs` magic of bpffs (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;
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

/// The filter the pins belong to: its program's id and the ids of the maps
/// that program uses. Every other pin at one of mxgate's names is judged
/// against it.
struct Owner {
    /// The program, when found.
    program: Option<sys::ProgramIdentity>,
    /// True when the program is the one pinned as `prog`.
    pinned: bool,
}

impl Owner {
    /// The program pinned as `prog`, if it is an mxgate program; else,
    /// with CAP_SYS_ADMIN (finding a program by id needs it), the mxgate
    /// program run by the links pinned here that uses the most of the
    /// maps pinned here.
    fn find(dir: &Path, names: &BTreeMap<String, sys::PinKind>) -> Self {
        if names.get(PROGRAM) == Some(&sys::PinKind::Program)
            && let Ok(program) = sys::pinned_program(&dir.join(PROGRAM))
            && program.name == PROGRAM_NAME
        {
            return Self {
                program: Some(program),
                pinned: true,
            };
        }
        let map_ids: Vec<u32> = map_names::ALL
            .iter()
            .filter(|m| names.get(**m) == Some(&sys::PinKind::Map))
            .filter_map(|m| sys::pinned_map(&dir.join(m)).ok())
            .filter(|(_, name)| map_names::ALL.contains(&name.as_str()))
            .map(|(id, _)| id)
            .collect();
        let mut candidates: Vec<u32> = names
            .iter()
            .filter(|(n, k)| n.starts_with(LINK_PREFIX) && **k == sys::PinKind::Link)
            .filter_map(|(n, _)| sys::pinned_xdp_link(&dir.join(n)).ok())
            .map(|l| l.program_id)
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let overlap =
            |p: &sys::ProgramIdentity| p.map_ids.iter().filter(|id| map_ids.contains(id)).count();
        let program = candidates
            .into_iter()
            .filter_map(live_program)
            .filter(|p| p.name == PROGRAM_NAME)
            .max_by_key(overlap)
            .filter(|p| map_ids.is_empty() || overlap(p) > 0)
            // No link runs it: the program whose pin and links were just
            // removed may still be alive a moment (the kernel releases a
            // link later), using these maps; no other filter's program
            // uses more than one of them.
            .or_else(|| {
                aya::programs::loaded_programs()
                    .filter_map(Result::ok)
                    .filter(|p| p.name_as_str() == Some(PROGRAM_NAME))
                    .filter_map(|p| live_program(p.id()))
                    .filter(|p| overlap(p) >= 2)
                    .max_by_key(overlap)
            });
        Self {
            program,
            pinned: false,
        }
    }

    fn judge_program(&self, path: &Path, kind: sys::PinKind) -> Result<(), String> {
        if kind != sys::PinKind::Program {
            return Err(format!("holds {}, not a program", kind_text(kind)));
        }
        match sys::pinned_program(path) {
            Ok(p) if self.pinned && self.program.as_ref().is_some_and(|o| o.id == p.id) => Ok(()),
            Ok(p) => Err(format!(
                "holds program {} {:?}, not an mxgate program",
                p.id, p.name
            )),
            Err(e) => Err(format!("cannot be read ({e})")),
        }
    }

    fn judge_map(&self, path: &Path, name: &str, kind: sys::PinKind) -> Result<(), String> {
        if kind != sys::PinKind::Map {
            return Err(format!("holds {}, not a map", kind_text(kind)));
        }
        let (id, actual) = sys::pinned_map(path).map_err(|e| format!("cannot be read ({e})"))?;
        if actual != name {
            return Err(format!("holds map {id} {actual:?}, not {name}"));
        }
        match &self.program {
            Some(p) if p.map_ids.contains(&id) => Ok(()),
            Some(p) => Err(format!(
                "holds map {id} {name:?}, which this filter's program ({}) does not use: \
                 another filter's",
                p.id
            )),
            // No program to ask (it is gone, or finding it needs
            // CAP_SYS_ADMIN): a map another live program uses is that
            // program's.
            None => match user_of_map(id) {
                Some(user) => Err(format!(
                    "holds map {id} {name:?} of program {} {:?}: another filter's",
                    user.id, user.name
                )),
                None => Ok(()),
            },
        }
    }

    fn judge_link(&self, path: &Path, kind: sys::PinKind) -> Result<(), String> {
        if kind != sys::PinKind::Link {
            return Err(format!("holds {}, not a link", kind_text(kind)));
        }
        let link = sys::pinned_xdp_link(path).map_err(|e| format!("is not an XDP link ({e})"))?;
        let iface = if link.ifindex == 0 {
            "no interface".to_owned()
        } else {
            interfaces::ifname(link.ifindex)
                .unwrap_or_else(|| format!("interface #{}", link.ifindex))
        };
        match &self.program {
            Some(p) if p.id == link.program_id => Ok(()),
            Some(p) => Err(format!(
                "holds link {} attaching program {} (not this filter's program {}) to {iface}",
                link.link_id, link.program_id, p.id
            )),
            None => Err(format!(
                "holds link {} attaching program {} to {iface}, which mxgate cannot tell is \
                 this filter's: no program is pinned as {PROGRAM} (finding it by id needs \
                 CAP_SYS_ADMIN)",
                link.link_id, link.program_id
            )),
        }
    }
}

/// LIST_DIGEST, which the program does not use (its map ids cannot vouch
/// for it): this filter's when it is stamped with this filter's ALLOW_V4
/// (`allow_v4`), or not stamped yet.
fn judge_record(path: &Path, kind: sys::PinKind, allow_v4: Option<u32>) -> Result<(), String> {
    if kind != sys::PinKind::Map {
        return Err(format!("holds {}, not a map", kind_text(kind)));
    }
    let (id, actual) = sys::pinned_map(path).map_err(|e| format!("cannot be read ({e})"))?;
    if actual != map_names::LIST_DIGEST {
        return Err(format!(
            "holds map {id} {actual:?}, not {}",
            map_names::LIST_DIGEST
        ));
    }
    // A record of another layout (an older mxgate's, which `detach`
    // removes) has no owner to compare.
    let Some(record) = aya::maps::MapData::from_pin(path)
        .ok()
        .and_then(|data| aya::maps::Map::from_map_data(data).ok())
        .and_then(|map| aya::maps::Array::<_, ListDigest>::try_from(map).ok())
        .and_then(|array| array.get(&0, 0).ok())
    else {
        return Ok(());
    };
    match allow_v4 {
        Some(own) if record.owner != 0 && record.owner != own => Err(format!(
            "holds map {id}, the list record of another filter (of ALLOW_V4 map {}, not this \
             filter's {own})",
            record.owner
        )),
        _ => Ok(()),
    }
}

fn kind_text(kind: sys::PinKind) -> &'static str {
    match kind {
        sys::PinKind::Program => "a program",
        sys::PinKind::Map => "a map",
        sys::PinKind::Link => "a link",
        sys::PinKind::Other => "something that is not a BPF object",
    }
}

/// The loaded program with id `id`, with its map ids (CAP_SYS_ADMIN).
fn live_program(id: u32) -> Option<sys::ProgramIdentity> {
    let info = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)?;
    Some(sys::ProgramIdentity {
        id,
        name: info.name_as_str().unwrap_or_default().to_owned(),
        map_ids: info.map_ids().ok().flatten().unwrap_or_default(),
    })
}

/// A loaded program that uses map `id`, if any (CAP_SYS_ADMIN; none
/// without it).
fn user_of_map(id: u32) -> Option<sys::ProgramIdentity> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| {
            p.map_ids()
                .ok()
                .flatten()
                .is_some_and(|ids| ids.contains(&id))
        })
        .and_then(|p| live_program(p.id()))
}

/// The name of the loaded program with id `id`.
pub fn program_name(id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_owned))
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

/// Each directory from `/` down to `dir` must be one nobody but root can
/// rename entries in: owned by root and not writable by others, unless it
/// is sticky (like /tmp or bpffs's 1777 root), where only an entry's owner
/// may rename it. A symlink on the way must be root's.
fn check_ancestors(dir: &Path) -> anyhow::Result<()> {
    let mut at = PathBuf::new();
    for component in dir.components() {
        at.push(component);
        let meta = match fs::symlink_metadata(&at) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(InvalidInput(format!(
                    "{} does not exist (the pin directory's parent must)",
                    at.display()
                ))
                .into());
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", at.display())),
        };
        let untrusted_owner = meta.uid() != 0 && meta.uid() != crate::files::effective_uid();
        if meta.file_type().is_symlink() {
            if untrusted_owner {
                return Err(InvalidInput(format!(
                    "{} is a symbolic link owned by uid {}; mxgate does not follow it to its \
                     pin directory",
                    at.display(),
                    meta.uid()
                ))
                .into());
            }
            // Follow it: what it points to is checked from the top.
            let target =
                fs::canonicalize(&at).with_context(|| format!("resolving {}", at.display()))?;
            check_ancestors(&target)?;
            at = target;
            continue;
        }
        let loose = meta.mode() & 0o022 != 0 && meta.mode() & libc::S_ISVTX == 0;
        if untrusted_owner || loose {
            return Err(InvalidInput(format!(
                "{} can be changed by another user (owner uid {}, mode {:04o}), who could swap \
                 the pin directory under it; use a --pin-dir below directories of root's",
                at.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ))
            .into());
        }
    }
    Ok(())
}

fn permission_denied(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "permission denied reading {}: mxgate needs root (CAP_BPF and CAP_NET_ADMIN)",
        path.display()
    )
}

fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
    match rustix::fs::statfs(path) {
        // f_type's integer type differs between targets.
        #[allow(clippy::unnecessary_cast)]
        Ok(stat) => Ok(stat.f_type as u32 == BPF_FS_MAGIC),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(io::Error::from(e)).with_context(|| format!("statfs {}", path.display())),
    }
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
