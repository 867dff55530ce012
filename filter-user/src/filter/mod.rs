//! The installed filter: the XDP program and its maps, created once and then
//! reached through their pins by every later command.
//!
//! - this module: loading and pinning ([`Filter::install`]) and opening
//!   ([`Filter::open`]);
//! - [`allowlist`]: reading and changing the allowlist tries;
//! - [`settings`]: ports, protected destinations, the dry-run and open
//!   switches, and the generation counters `mxgate run` watches;
//! - [`readout`]: counters and denied sources.

pub mod allowlist;
pub mod readout;
pub mod settings;

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    EbpfLoader,
    maps::{Map, MapData, MapError},
    programs::{ProgramInfo, Xdp},
};
use aya_obj::programs::XdpAttachType;
use filter_common::{Config, LAYOUT_VERSION, PROGRAM_NAME, map_names};
use ipnet::IpNet;

pub use self::{
    allowlist::AllowMaps,
    readout::{Counters, DeniedEntry, OutcomeCounts, Readout},
    settings::{ConfigMap, Settings, SettingsMaps},
};
use crate::{EBPF_OBJECT, allowlist::Allowlist, diff::Diff, pins::PinDir};

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

/// The installed filter: its program and every map, each part opened
/// through its pins.
pub struct Filter {
    pins: PinDir,
    program: Xdp,
    /// CONFIG: switches, layout version, generation counters.
    pub config: ConfigMap,
    /// The allowlist tries.
    pub allow: AllowMaps,
    /// Protected ports and destinations.
    pub settings: SettingsMaps,
    /// Counters and denied sources.
    pub readout: Readout,
}

impl Filter {
    /// Loads the program and creates its maps, all pinned under `pins`,
    /// without attaching it anywhere. The program pin is made last, so a
    /// filter counts as installed only once it is complete.
    pub fn install(pins: &PinDir, log: KernelLog) -> anyhow::Result<()> {
        pins.prepare()?;
        let map_pins: Vec<(&str, PathBuf)> =
            map_names::ALL.iter().map(|n| (*n, pins.map(n))).collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &map_pins {
            loader.map_pin_path(name, path.as_path());
        }
        let level = match log {
            KernelLog::Quiet => aya_log::Level::Info,
            KernelLog::EveryDenial => aya_log::Level::Debug,
        } as u8;
        loader.override_global(aya_log::LEVEL, &level, true);
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .context("loading mxgate's eBPF object")?;
        ConfigMap::open(pins)?.initialise()?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| anyhow!("the eBPF object has no program {PROGRAM_NAME}"))?
            .try_into()?;
        program
            .load()
            .context("the kernel's verifier refused the XDP program")?;
        program
            .pin(pins.program())
            .with_context(|| format!("pinning the program at {}", pins.program().display()))?;
        Ok(())
    }

    /// Opens the filter installed under `pins`.
    pub fn open(pins: &PinDir) -> anyhow::Result<Self> {
        if !pins.is_installed() {
            return Err(NotInstalled(pins.root().to_path_buf()).into());
        }
        let config = ConfigMap::open(pins)?;
        let layout = config.read()?.layout;
        if layout != LAYOUT_VERSION {
            bail!(
                "the filter in {} was installed by a different mxgate (map layout {layout}, \
                 this one uses {LAYOUT_VERSION}); run `mxgate detach` and attach again",
                pins.root().display()
            );
        }
        let program = Xdp::from_pin(pins.program(), XdpAttachType::Interface)
            .with_context(|| format!("opening {}", pins.program().display()))?;
        Ok(Self {
            pins: pins.clone(),
            program,
            config,
            allow: AllowMaps::open(pins)?,
            settings: SettingsMaps::open(pins)?,
            readout: Readout::open(pins)?,
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

    /// Applies `diff` to the allowlist (see [`AllowMaps::apply`]).
    pub fn apply(&mut self, diff: &Diff) -> anyhow::Result<()> {
        self.allow.apply(diff, &mut self.config)
    }

    /// The live prefix that allows `addr`, by the kernel's own match.
    pub fn lookup(&self, addr: IpAddr) -> anyhow::Result<Option<IpNet>> {
        self.allow.lookup(addr)
    }

    /// The live settings.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        self.settings.read(&self.config)
    }

    /// Makes the live settings equal `wanted`; true when something changed.
    pub fn apply_settings(&mut self, wanted: &Settings) -> anyhow::Result<bool> {
        self.settings.apply(wanted, &mut self.config)
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

/// Opens the map pinned as `name` under `pins` as the map type `M`.
pub(crate) fn open_map<M>(pins: &PinDir, name: &str) -> anyhow::Result<M>
where
    M: TryFrom<Map, Error = MapError>,
{
    let path = pins.map(name);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let map = Map::from_map_data(data).with_context(|| format!("opening {}", path.display()))?;
    M::try_from(map).with_context(|| format!("{} is not the map mxgate expects", path.display()))
}

/// Deleting what is already gone is success: the goal state holds.
pub(crate) fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}
