//! The installed filter: the XDP program and its maps, created once and then
//! reached through their pins by every later command.
//!
//! - this module: loading and pinning ([`Filter::install`]), finding what is
//!   installed ([`Installed`]) even when a pin was removed by hand, and
//!   opening all of it ([`Filter::open`]);
//! - [`allowlist`]: reading and changing the allowlist tries and the fast
//!   path in front of them ([`fast_maps`]: the bitmaps, the /48 table, the
//!   list's digest);
//! - [`memory`]: what each map takes;
//! - [`settings`]: ports, protected destinations, the dry-run and open
//!   switches, and the generation counters `mxgate run` watches;
//! - [`trie_writes`]: writing the tries, batched where the kernel can;
//! - [`readout`]: counters and denied sources.
//!
//! Each command opens only the maps it needs, so one missing pin does not
//! stop the others (the emergency `open` needs only CONFIG).

pub mod allowlist;
pub mod fast_maps;
pub mod memory;
pub mod readout;
pub mod settings;
pub mod trie_reads;
pub mod trie_writes;

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    EbpfLoader,
    maps::{Map, MapData, MapError},
    programs::{ProgramInfo, Xdp},
};
use aya_obj::programs::XdpAttachType;
use filter_common::{Config, LAYOUT_VERSION, PROGRAM_NAME, fast_path::ListDigest, map_names};

pub use self::{
    allowlist::{AllowMaps, Lookup},
    fast_maps::FastMaps,
    readout::{
        CounterRow, Counters, DeniedEntry, OutcomeCounts, Readout, RowCounters,
        total as total_counters,
    },
    settings::{ConfigMap, Settings, SettingsMaps},
};
use crate::{
    EBPF_OBJECT,
    allowlist::Allowlist,
    diff::Diff,
    error::Refused,
    kernel_support,
    pins::{Entries, PinDir},
    sys,
};

/// No filter is installed in the pin directory.
#[derive(Debug, thiserror::Error)]
#[error("no filter is installed in {} (run `mxgate attach` first)", .0.display())]
pub struct NotInstalled(pub PathBuf);

/// How much the kernel side logs through aya-log. Fixed at load time: the
/// verifier removes the code of disabled levels, so "off" costs nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelLog {
    /// Nothing per packet (the default).
    #[default]
    Quiet,
    /// One line per denied SYN. Floods the log under attack.
    EveryDenial,
}

/// A filter found in a pin directory: which of its objects are pinned, and
/// the live program, found through its pin or, when that was removed,
/// through a link still attaching it.
#[derive(Clone, Debug)]
pub struct Installed {
    pins: PinDir,
    entries: Entries,
    program: Option<LiveProgram>,
}

/// The filter's program as found.
#[derive(Clone, Debug)]
struct LiveProgram {
    id: u32,
    /// `None` when found through its pin; else the interface whose link
    /// still attaches it.
    via_link: Option<String>,
}

impl Installed {
    /// What of mxgate's is installed under `pins`; `None` when nothing is.
    /// Refuses an untrusted pin directory.
    pub fn find(pins: &PinDir) -> anyhow::Result<Option<Self>> {
        if !pins.check()? {
            return Ok(None);
        }
        let entries = pins.entries()?;
        if entries.is_empty() {
            return Ok(None);
        }
        let program = if entries.program {
            let info = ProgramInfo::from_pin(pins.program())
                .with_context(|| format!("reading {}", pins.program().display()))?;
            Some(LiveProgram {
                id: info.id(),
                via_link: None,
            })
        } else {
            entries.links.iter().find_map(|iface| {
                let link = sys::pinned_xdp_link(&pins.link(iface)).ok()?;
                Some(LiveProgram {
                    id: link.program_id,
                    via_link: Some(iface.clone()),
                })
            })
        };
        let installed = Self {
            pins: pins.clone(),
            entries,
            program,
        };
        if let Ok(config) = installed.map::<aya::maps::Array<MapData, Config>>(map_names::CONFIG) {
            let layout = config.get(&0, 0).context("reading CONFIG")?.layout;
            // 0: an attach was killed before it wrote CONFIG; the next one
            // completes it.
            if layout != LAYOUT_VERSION && layout != 0 {
                return Err(Refused(format!(
                    "the filter in {} was installed by a different mxgate (map layout {layout}, \
                     this one uses {LAYOUT_VERSION}); run `mxgate detach` and attach again",
                    pins.root().display()
                ))
                .into());
            }
        }
        Ok(Some(installed))
    }

    /// As [`Installed::find`], but nothing installed is an error.
    pub fn require(pins: &PinDir) -> anyhow::Result<Self> {
        Self::find(pins)?.ok_or_else(|| NotInstalled(pins.root().to_path_buf()).into())
    }

    /// The pin directory.
    pub fn pins(&self) -> &PinDir {
        &self.pins
    }

    /// What the pin directory holds.
    pub fn entries(&self) -> &Entries {
        &self.entries
    }

    /// The live program's id, if the program is reachable.
    pub fn program_id(&self) -> Option<u32> {
        self.program.as_ref().map(|p| p.id)
    }

    /// When the program was loaded: the time its pin was made (attach
    /// makes it right after loading; a repair that pins it again keeps the
    /// load time). A stored time, so it does not move with the boot clock
    /// or a clock step as one computed from the kernel's boot-time stamp
    /// would. `None` while the program's pin is missing.
    pub fn loaded_at(&self) -> Option<std::time::SystemTime> {
        if !self.entries.program {
            return None;
        }
        std::fs::symlink_metadata(self.pins.program())
            .and_then(|m| m.modified())
            .ok()
    }

    /// The kernel's view of the live program.
    pub fn program_info(&self) -> anyhow::Result<Option<ProgramInfo>> {
        let Some(program) = &self.program else {
            return Ok(None);
        };
        if program.via_link.is_none() {
            return ProgramInfo::from_pin(self.pins.program())
                .map(Some)
                .with_context(|| format!("reading {}", self.pins.program().display()));
        }
        Ok(aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == program.id))
    }

    /// The map called `name`: through its pin, or through the program.
    pub fn map<M>(&self, name: &str) -> anyhow::Result<M>
    where
        M: TryFrom<Map, Error = MapError>,
    {
        let path = self.pins.map(name);
        Self::typed(self.map_data(name)?, &path)
    }

    /// A map's data, opened as [`Installed::map`] does.
    pub fn map_data(&self, name: &str) -> anyhow::Result<MapData> {
        // A pin at the map's name holding another filter's map is never
        // written (nor read as this filter's).
        if let Some(impostor) = self.entries.impostor(name) {
            return Err(Refused(format!(
                "{}; nothing changed",
                impostor.describe(self.pins.root())
            ))
            .into());
        }
        let path = self.pins.map(name);
        let data = if self.entries.maps.contains(&name) {
            MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?
        } else {
            self.map_through_program(name)?.ok_or_else(|| {
                anyhow!(
                    "{} is missing and no live program of this filter uses such a map: the \
                     filter is damaged ({}). `mxgate detach` removes what is left; then attach \
                     again",
                    path.display(),
                    self.damage().join("; ")
                )
            })?
        };
        Ok(data)
    }

    /// `data`, the map at `path`, as the kind of map `M`.
    pub fn typed<M>(data: MapData, path: &std::path::Path) -> anyhow::Result<M>
    where
        M: TryFrom<Map, Error = MapError>,
    {
        let map =
            Map::from_map_data(data).with_context(|| format!("opening {}", path.display()))?;
        M::try_from(map)
            .with_context(|| format!("{} is not the map mxgate expects", path.display()))
    }

    /// The program's map called `name`, found through the program's map ids.
    fn map_through_program(&self, name: &str) -> anyhow::Result<Option<MapData>> {
        let Some(info) = self.program_info()? else {
            return Ok(None);
        };
        let ids = info
            .map_ids()
            .context("listing the program's maps")?
            .unwrap_or_default();
        for id in ids {
            let data = MapData::from_id(id).context("opening a map of the program")?;
            let info = data.info().context("reading a map's info")?;
            if info.name_as_str() == Some(name) {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    /// What is missing, each with its repair; empty when complete.
    pub fn damage(&self) -> Vec<String> {
        let dir = self.pins.root().display();
        let mut found = Vec::new();
        match &self.program {
            Some(LiveProgram {
                via_link: Some(iface),
                ..
            }) => found.push(format!(
                "the program's pin {dir}/prog is missing; the program still runs on {iface} \
                 through its link (`mxgate attach` re-pins it)"
            )),
            None => found.push(format!(
                "the program is gone ({dir}/prog was removed and no link runs it): the filter \
                 protects nothing (`mxgate attach` loads it again with the allowlist kept in \
                 the maps)"
            )),
            Some(_) => {}
        }
        for impostor in &self.entries.impostors {
            found.push(impostor.describe(self.pins.root()));
        }
        for name in self.entries.missing_maps() {
            if self.entries.impostor(name).is_some() {
                continue;
            }
            let reachable = self.map_through_program(name).ok().flatten().is_some();
            found.push(if reachable {
                format!(
                    "{dir}/{name} is missing; the map still works (found through the program; \
                     `mxgate attach` re-pins it)"
                )
            } else if name == map_names::LIST_DIGEST {
                format!(
                    "{dir}/{name} is gone (the program does not use it, so nothing kept it): \
                     `mxgate attach` makes a new one, and the next refresh reads the maps back"
                )
            } else {
                format!("{dir}/{name} is gone")
            });
        }
        found
    }

    /// Prints each missing piece as a warning.
    pub fn warn_damage(&self) {
        for damage in self.damage() {
            eprintln!("mxgate: warning: {}", crate::text::printable(&damage));
        }
    }

    /// Refuses (exit 3) when a pin at the program's or a map's name holds
    /// something not this filter's: attach would use it or pin over it.
    pub fn refuse_impostors(pins: &PinDir, entries: &Entries) -> anyhow::Result<()> {
        let found: Vec<String> = entries
            .impostors
            .iter()
            .filter(|i| !i.name.starts_with("link_"))
            .map(|i| i.describe(pins.root()))
            .collect();
        if found.is_empty() {
            return Ok(());
        }
        Err(Refused(format!("{}; nothing changed", found.join("; "))).into())
    }

    /// Pins again whatever is missing but still alive: the program (from a
    /// link that runs it) and its maps. Returns what it re-pinned.
    pub fn repair(&mut self) -> anyhow::Result<Vec<String>> {
        let mut repaired = Vec::new();
        if let Some(program) = &mut self.program
            && let Some(iface) = program.via_link.take()
        {
            let info = aya::programs::loaded_programs()
                .filter_map(Result::ok)
                .find(|p| p.id() == program.id)
                .with_context(|| format!("program {} is gone", program.id))?;
            let fd = info.fd().context("opening the live program")?;
            let path = self.pins.program();
            sys::pin_fd(std::os::fd::AsFd::as_fd(&fd), &path)
                .with_context(|| format!("pinning the program again at {}", path.display()))?;
            // The pin's time is the load time `status` shows: keep it.
            if let Some(loaded) = info.loaded_at() {
                let _ = crate::files::set_mtime(&path, loaded);
            }
            self.entries.program = true;
            repaired.push(format!(
                "{} (the program running on {iface})",
                path.display()
            ));
        }
        for name in self.entries.missing_maps() {
            let path = self.pins.map(name);
            if let Some(data) = self.map_through_program(name)? {
                data.pin(&path)
                    .with_context(|| format!("pinning {name} again at {}", path.display()))?;
                self.entries.maps.push(name);
                repaired.push(path.display().to_string());
            } else if name == map_names::LIST_DIGEST {
                // Only its pin kept it. A new, empty record says "unknown":
                // the next refresh reads the maps back.
                let fd = sys::create_array(name, size_of::<ListDigest>(), 1)
                    .with_context(|| format!("creating a new {name}"))?;
                sys::pin_fd(std::os::fd::AsFd::as_fd(&fd), &path)
                    .with_context(|| format!("pinning a new {name} at {}", path.display()))?;
                self.entries.maps.push(name);
                repaired.push(format!("{} (a new, empty one)", path.display()));
            }
        }
        Ok(repaired)
    }
}

/// Every map of the installed filter, opened through its pins: what a
/// reader needs without the program (`mxgate run`), and what [`Filter`]
/// holds beside it. The maps stay valid even if a pin is removed meanwhile.
pub struct FilterMaps {
    /// CONFIG: switches, layout version, generation counters.
    pub config: ConfigMap,
    /// The allowlist tries.
    pub allow: AllowMaps,
    /// Protected ports and destinations.
    pub settings: SettingsMaps,
    /// Counters and denied sources.
    pub readout: Readout,
}

impl FilterMaps {
    /// Opens every map `installed` found.
    pub fn open(installed: &Installed) -> anyhow::Result<Self> {
        Ok(Self {
            config: ConfigMap::open(installed)?,
            allow: AllowMaps::open(installed)?,
            settings: SettingsMaps::open(installed)?,
            readout: Readout::open(installed)?,
        })
    }
}

/// The installed filter: its program and every map, each part opened
/// through its pins. `filter.allow` and the other maps are its
/// [`FilterMaps`]' (through `Deref`); code that borrows two of them
/// mutably at once names `filter.maps`.
pub struct Filter {
    pins: PinDir,
    program: Xdp,
    /// The maps.
    pub maps: FilterMaps,
}

impl std::ops::Deref for Filter {
    type Target = FilterMaps;

    fn deref(&self) -> &FilterMaps {
        &self.maps
    }
}

impl std::ops::DerefMut for Filter {
    fn deref_mut(&mut self) -> &mut FilterMaps {
        &mut self.maps
    }
}

impl Filter {
    /// Loads the program and creates its maps, all pinned under `pins`
    /// (which must be prepared and locked), without attaching it anywhere.
    /// Map pins already there (a filter whose program was lost) are reused,
    /// so their allowlist and switches are kept. The program pin is made
    /// last. Returns the pins this call created; on failure it removes them
    /// itself.
    pub fn install(pins: &PinDir, log: KernelLog) -> anyhow::Result<Vec<PathBuf>> {
        Self::install_with(pins, log, &[])
    }

    /// [`Filter::install`], with more load-time constants of the program
    /// (`filter_common::globals`) set: the benchmark's variants.
    pub fn install_with(
        pins: &PinDir,
        log: KernelLog,
        extra: &[(&str, u8)],
    ) -> anyhow::Result<Vec<PathBuf>> {
        Self::install_object(pins, log, extra, EBPF_OBJECT, true)
    }

    /// [`Filter::install_with`] from another build of the program, `object`
    /// (an ELF file's bytes): the benchmark's "before" (an earlier
    /// commit's program, whose maps must be laid out as this one's). The
    /// load-time constants it predates are left out.
    #[cfg(feature = "bench")]
    pub fn install_from(
        pins: &PinDir,
        log: KernelLog,
        object: &[u8],
    ) -> anyhow::Result<Vec<PathBuf>> {
        Self::install_object(pins, log, &[], object, false)
    }

    /// Installs `object` with the probe's globals and `extra`; with
    /// `all_globals`, an object without one of them is refused.
    fn install_object(
        pins: &PinDir,
        log: KernelLog,
        extra: &[(&str, u8)],
        object: &[u8],
        all_globals: bool,
    ) -> anyhow::Result<Vec<PathBuf>> {
        // Before anything is created: a kernel that cannot run the program
        // is refused in one line, and the probe picks the variant it runs.
        let support = kernel_support::probe()?;
        let mut globals: Vec<(&str, u8)> = support.globals().to_vec();
        globals.extend_from_slice(extra);
        let existing = pins.entries()?.maps;
        let mut created: Vec<PathBuf> = map_names::ALL
            .iter()
            .filter(|n| !existing.contains(n))
            .map(|n| pins.map(n))
            .collect();
        let result = Self::load_and_pin(pins, log, &globals, object, all_globals);
        match result {
            Ok(()) => {
                created.push(pins.program());
                Ok(created)
            }
            Err(e) => {
                for path in &created {
                    let _ = std::fs::remove_file(path);
                }
                Err(e)
            }
        }
    }

    fn load_and_pin(
        pins: &PinDir,
        log: KernelLog,
        globals: &[(&str, u8)],
        object: &[u8],
        all_globals: bool,
    ) -> anyhow::Result<()> {
        let mut loader = EbpfLoader::new();
        let map_pins: Vec<(&str, PathBuf)> =
            map_names::ALL.iter().map(|n| (*n, pins.map(n))).collect();
        for (name, path) in &map_pins {
            loader.map_pin_path(name, path.as_path());
        }
        let level = match log {
            KernelLog::Quiet => aya_log::Level::Info,
            KernelLog::EveryDenial => aya_log::Level::Debug,
        } as u8;
        loader.override_global(aya_log::LEVEL, &level, true);
        for (name, value) in globals {
            loader.override_global(name, value, all_globals);
        }
        let mut ebpf = loader
            .load(object)
            .context("loading mxgate's eBPF object")?;
        // A reused CONFIG keeps its switches; a new one (or one an
        // interrupted attach left unwritten) starts with this layout.
        let data =
            MapData::from_pin(pins.map(map_names::CONFIG)).context("opening the CONFIG map")?;
        let mut config = ConfigMap::from_map(Map::from_map_data(data)?)?;
        if config.read()?.layout == 0 {
            config.initialise()?;
        }
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| anyhow!("the eBPF object has no program {PROGRAM_NAME}"))?
            .try_into()?;
        program
            .load()
            .map_err(|e| anyhow!(kernel_support::refused_by_verifier(&e)))?;
        program
            .pin(pins.program())
            .with_context(|| format!("pinning the program at {}", pins.program().display()))?;
        Ok(())
    }

    /// Opens the whole filter installed under `pins`; its program must be
    /// pinned (see [`Installed::repair`]).
    pub fn open(pins: &PinDir) -> anyhow::Result<Self> {
        Self::from_installed(&Installed::require(pins)?)
    }

    /// Opens the whole filter `installed` found.
    pub fn from_installed(installed: &Installed) -> anyhow::Result<Self> {
        let pins = installed.pins();
        if !installed.entries().program {
            bail!(
                "the filter in {} is damaged: {}",
                pins.root().display(),
                installed.damage().join("; ")
            );
        }
        let program = Xdp::from_pin(pins.program(), XdpAttachType::Interface)
            .with_context(|| format!("opening {}", pins.program().display()))?;
        Ok(Self {
            pins: pins.clone(),
            program,
            maps: FilterMaps::open(installed)?,
        })
    }

    /// The pin directory this filter lives in.
    pub fn pins(&self) -> &PinDir {
        &self.pins
    }

    /// The program, for running it on test frames.
    pub fn program(&self) -> &Xdp {
        &self.program
    }

    /// The program, for attaching it.
    pub fn program_mut(&mut self) -> &mut Xdp {
        &mut self.program
    }

    /// The kernel's view of the program (id, sizes, verifier statistics).
    pub fn program_info(&self) -> anyhow::Result<ProgramInfo> {
        self.program.info().context("reading the program's info")
    }

    /// The CONFIG element.
    pub fn config(&self) -> anyhow::Result<Config> {
        self.config.read()
    }

    /// The live allowlist, read back from the tries.
    pub fn allowlist(&self) -> anyhow::Result<Allowlist> {
        self.allow.read()
    }

    /// Makes the allowlist `new` (see [`AllowMaps::apply`]); returns the
    /// fast-path writes made.
    pub fn apply(&mut self, new: &Allowlist) -> anyhow::Result<usize> {
        let live = self.allow.read()?;
        let maps = &mut self.maps;
        maps.allow.apply(
            &live,
            &Diff::between(&live, new),
            new,
            None,
            &mut maps.config,
        )
    }

    /// What the program does with `addr`, read from the live maps.
    pub fn lookup(&self, addr: IpAddr) -> anyhow::Result<Lookup> {
        self.allow.lookup(addr)
    }

    /// The live settings.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        self.settings.read(&self.config)
    }

    /// Makes the live settings equal `wanted`; true when something changed.
    pub fn apply_settings(&mut self, wanted: &Settings) -> anyhow::Result<bool> {
        let maps = &mut self.maps;
        maps.settings.apply(wanted, &mut maps.config)
    }

    /// Sets or clears the open switch; true when that changed it.
    pub fn set_open(&mut self, open: bool) -> anyhow::Result<bool> {
        self.config.set_open(open)
    }

    /// Counter totals, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        self.readout.counters()
    }

    /// Every source in the denied-source table, summed over CPUs.
    pub fn denied_sources(&self) -> anyhow::Result<Vec<DeniedEntry>> {
        self.readout.denied_sources()
    }
}

/// Deleting what is already gone is success: the goal state holds.
pub(crate) fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}
