//! Which pins are the filter's: the program and maps found by id, every
//! other pin at one of mxgate's names judged against them; and the
//! directories above the pin directory, which nobody but root may rename
//! entries in.

use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use filter_common::{PROGRAM_NAME, fast_path::ListDigest, map_names};

use super::{LINK_PREFIX, PROGRAM};
use crate::{error::InvalidInput, interfaces, sys};

/// The filter the pins belong to: its program's id and the ids of the maps
/// that program uses. Every other pin at one of mxgate's names is judged
/// against it.
pub(super) struct Owner {
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
    pub(super) fn find(dir: &Path, names: &BTreeMap<String, sys::PinKind>) -> Self {
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

    pub(super) fn judge_program(&self, path: &Path, kind: sys::PinKind) -> Result<(), String> {
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

    pub(super) fn judge_map(
        &self,
        path: &Path,
        name: &str,
        kind: sys::PinKind,
    ) -> Result<(), String> {
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

    pub(super) fn judge_link(&self, path: &Path, kind: sys::PinKind) -> Result<(), String> {
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
pub(super) fn judge_record(
    path: &Path,
    kind: sys::PinKind,
    allow_v4: Option<u32>,
) -> Result<(), String> {
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

/// Each directory from `/` down to `dir` must be one nobody but root can
/// rename entries in: owned by root and not writable by others, unless it
/// is sticky (like /tmp or bpffs's 1777 root), where only an entry's owner
/// may rename it. A symlink on the way must be root's.
pub(super) fn check_ancestors(dir: &Path) -> anyhow::Result<()> {
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
