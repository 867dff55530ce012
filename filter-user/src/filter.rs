//! The installed filter: the XDP program and its maps, created once and then
//! reached through their pins by every later command.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    EbpfLoader,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, lpm_trie::Key},
    programs::{ProgramInfo, Xdp},
};
use aya_obj::programs::XdpAttachType;
use filter_common::{
    Config, DENIED_SLOTS, DeniedSlot, FLAG_DRY_RUN, FLAG_OPEN, FLAG_PROTECT_DST, Family, Ipv4Key,
    Ipv6Key, LAYOUT_VERSION, Outcome, PROGRAM_NAME, SourceKey, counter_index, map_names,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::{EBPF_OBJECT, diff::Diff, pins::PinDir, ranges::Allowlist};

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

/// Counter totals summed over CPUs, per family and outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// IPv4 outcomes.
    pub v4: OutcomeCounts,
    /// IPv6 outcomes.
    pub v6: OutcomeCounts,
}

/// How many examined SYNs had each outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutcomeCounts {
    /// Source allowed.
    pub allowed: u64,
    /// Dropped.
    pub dropped: u64,
    /// Would have been dropped (dry run).
    pub would_drop: u64,
    /// Passed because the filter is open.
    pub passed_open: u64,
}

impl OutcomeCounts {
    /// Every examined SYN.
    pub fn examined(&self) -> u64 {
        self.allowed + self.dropped + self.would_drop + self.passed_open
    }

    fn set(&mut self, outcome: Outcome, value: u64) {
        match outcome {
            Outcome::Allowed => self.allowed = value,
            Outcome::Dropped => self.dropped = value,
            Outcome::WouldDrop => self.would_drop = value,
            Outcome::PassedOpen => self.passed_open = value,
        }
    }
}

/// A source that sent denied SYNs, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeniedEntry {
    /// The source address.
    pub source: IpAddr,
    /// Denied SYNs counted.
    pub count: u64,
    /// `CLOCK_MONOTONIC` nanoseconds of the last one.
    pub last_seen_ns: u64,
}

/// The filter's switches and settings as the kernel sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Protected destination ports.
    pub ports: BTreeSet<u16>,
    /// Protected local addresses; empty means every address.
    pub protect_dst: BTreeSet<IpAddr>,
    /// Denied SYNs are counted, not dropped.
    pub dry_run: bool,
}

/// The installed filter.
pub struct Filter {
    pins: PinDir,
    program: Xdp,
    allow_v4: LpmTrie<MapData, Ipv4Key, u8>,
    allow_v6: LpmTrie<MapData, Ipv6Key, u8>,
    ports: Array<MapData, u8>,
    protect_v4: HashMap<MapData, Ipv4Key, u8>,
    protect_v6: HashMap<MapData, Ipv6Key, u8>,
    config: Array<MapData, Config>,
    counters: PerCpuArray<MapData, u64>,
    denied: PerCpuArray<MapData, DeniedSlot>,
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
        let mut config: Array<MapData, Config> = open_map(pins, map_names::CONFIG)?;
        let initial = Config {
            layout: LAYOUT_VERSION,
            ..Config::default()
        };
        config
            .set(0, &initial, 0)
            .context("initialising the CONFIG map")?;
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
        let config: Array<MapData, Config> = open_map(pins, map_names::CONFIG)?;
        let layout = config.get(&0, 0).context("reading CONFIG")?.layout;
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
            allow_v4: open_map(pins, map_names::ALLOW_V4)?,
            allow_v6: open_map(pins, map_names::ALLOW_V6)?,
            ports: open_map(pins, map_names::PORTS)?,
            protect_v4: open_map(pins, map_names::PROTECT_V4)?,
            protect_v6: open_map(pins, map_names::PROTECT_V6)?,
            config,
            counters: open_map(pins, map_names::COUNTERS)?,
            denied: open_map(pins, map_names::DENIED)?,
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

    /// The live allowlist, read back from the tries.
    pub fn allowlist(&self) -> anyhow::Result<Allowlist> {
        let mut v4 = Vec::new();
        for key in self.allow_v4.keys() {
            let key = key.context("reading ALLOW_V4")?;
            v4.push(Ipv4Net::new(
                Ipv4Addr::from(key.data()),
                key.prefix_len() as u8,
            )?);
        }
        let mut v6 = Vec::new();
        for key in self.allow_v6.keys() {
            let key = key.context("reading ALLOW_V6")?;
            v6.push(Ipv6Net::new(
                Ipv6Addr::from(key.data()),
                key.prefix_len() as u8,
            )?);
        }
        v4.sort_unstable();
        v6.sort_unstable();
        Ok(Allowlist { v4, v6 })
    }

    /// Applies `diff` to the tries: every insert before any delete, so an
    /// address allowed both before and after is never denied in between.
    pub fn apply(&mut self, diff: &Diff) -> anyhow::Result<()> {
        for net in &diff.v4.added {
            let key = Key::new(u32::from(net.prefix_len()), net.network().octets());
            self.allow_v4
                .insert(&key, &net.prefix_len(), 0)
                .with_context(|| format!("adding {net} to ALLOW_V4"))?;
        }
        for net in &diff.v6.added {
            let key = Key::new(u32::from(net.prefix_len()), net.network().octets());
            self.allow_v6
                .insert(&key, &net.prefix_len(), 0)
                .with_context(|| format!("adding {net} to ALLOW_V6"))?;
        }
        for net in &diff.v4.removed {
            let key = Key::new(u32::from(net.prefix_len()), net.network().octets());
            ignore_missing(self.allow_v4.remove(&key))
                .with_context(|| format!("removing {net} from ALLOW_V4"))?;
        }
        for net in &diff.v6.removed {
            let key = Key::new(u32::from(net.prefix_len()), net.network().octets());
            ignore_missing(self.allow_v6.remove(&key))
                .with_context(|| format!("removing {net} from ALLOW_V6"))?;
        }
        if !diff.is_empty() {
            self.write_config(|c| c.list_generation = c.list_generation.wrapping_add(1))?;
        }
        Ok(())
    }

    /// The live prefix that allows `addr`, by the kernel's own longest-prefix
    /// match (each entry's value is its prefix length).
    pub fn lookup(&self, addr: IpAddr) -> anyhow::Result<Option<IpNet>> {
        let found = match addr {
            IpAddr::V4(a) => self.allow_v4.get(&Key::new(32, a.octets()), 0),
            IpAddr::V6(a) => self.allow_v6.get(&Key::new(128, a.octets()), 0),
        };
        match found {
            Ok(len) => Ok(Some(IpNet::new(addr, len)?.trunc())),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("looking the address up in the allowlist"),
        }
    }

    /// The CONFIG element.
    pub fn config(&self) -> anyhow::Result<Config> {
        self.config.get(&0, 0).context("reading CONFIG")
    }

    /// Sets or clears the open switch.
    pub fn set_open(&mut self, open: bool) -> anyhow::Result<()> {
        self.update_flags(FLAG_OPEN, open)
    }

    /// Reads the settings back from the maps.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut ports = BTreeSet::new();
        for (port, value) in self.ports.iter().enumerate() {
            if value.context("reading PORTS")? != 0 {
                ports.insert(u16::try_from(port)?);
            }
        }
        let mut protect_dst = BTreeSet::new();
        for key in self.protect_v4.keys() {
            protect_dst.insert(IpAddr::from(key.context("reading PROTECT_V4")?));
        }
        for key in self.protect_v6.keys() {
            protect_dst.insert(IpAddr::from(key.context("reading PROTECT_V6")?));
        }
        Ok(Settings {
            ports,
            protect_dst,
            dry_run: self.config()?.flags & FLAG_DRY_RUN != 0,
        })
    }

    /// Makes the kernel's settings equal `wanted`, writing only what differs.
    /// Returns true when something changed.
    pub fn apply_settings(&mut self, wanted: &Settings) -> anyhow::Result<bool> {
        let live = self.settings()?;
        if live == *wanted {
            return Ok(false);
        }
        for port in wanted.ports.difference(&live.ports) {
            self.ports
                .set(u32::from(*port), &1, 0)
                .with_context(|| format!("protecting port {port}"))?;
        }
        for port in live.ports.difference(&wanted.ports) {
            self.ports
                .set(u32::from(*port), &0, 0)
                .with_context(|| format!("unprotecting port {port}"))?;
        }
        for addr in wanted.protect_dst.difference(&live.protect_dst) {
            match addr {
                IpAddr::V4(a) => self.protect_v4.insert(&a.octets(), &1, 0),
                IpAddr::V6(a) => self.protect_v6.insert(&a.octets(), &1, 0),
            }
            .with_context(|| format!("protecting destination {addr}"))?;
        }
        // The flag goes on only once the set is filled, and off before it
        // is emptied, so no SYN sees an empty set with the flag on.
        if !wanted.protect_dst.is_empty() {
            self.update_flags(FLAG_PROTECT_DST, true)?;
        } else {
            self.update_flags(FLAG_PROTECT_DST, false)?;
        }
        for addr in live.protect_dst.difference(&wanted.protect_dst) {
            match addr {
                IpAddr::V4(a) => ignore_missing(self.protect_v4.remove(&a.octets())),
                IpAddr::V6(a) => ignore_missing(self.protect_v6.remove(&a.octets())),
            }
            .with_context(|| format!("unprotecting destination {addr}"))?;
        }
        self.update_flags(FLAG_DRY_RUN, wanted.dry_run)?;
        // Ports and destinations live outside CONFIG: mark the change too.
        self.write_config(|_| {})?;
        Ok(true)
    }

    fn update_flags(&mut self, flag: u32, on: bool) -> anyhow::Result<()> {
        let flags = self.config()?.flags;
        let wanted = if on { flags | flag } else { flags & !flag };
        if wanted != flags {
            self.write_config(|c| c.flags = wanted)?;
        }
        Ok(())
    }

    /// Changes CONFIG with `change`, bumping its settings generation unless
    /// only the list generation moved.
    fn write_config(&mut self, change: impl FnOnce(&mut Config)) -> anyhow::Result<()> {
        let mut config = self.config()?;
        let before = config;
        change(&mut config);
        if config.list_generation == before.list_generation {
            config.settings_generation = config.settings_generation.wrapping_add(1);
        }
        self.config.set(0, &config, 0).context("writing CONFIG")
    }

    /// Counter totals, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        let mut totals = Counters::default();
        for (family, counts) in [(Family::V4, &mut totals.v4), (Family::V6, &mut totals.v6)] {
            for outcome in Outcome::ALL {
                let per_cpu = self
                    .counters
                    .get(&counter_index(family, outcome), 0)
                    .context("reading COUNTERS")?;
                counts.set(outcome, per_cpu.iter().sum());
            }
        }
        Ok(totals)
    }

    /// Every source in the denied-source table, summed over CPUs.
    pub fn denied_sources(&self) -> anyhow::Result<Vec<DeniedEntry>> {
        let mut by_source: std::collections::HashMap<SourceKey, (u64, u64)> =
            std::collections::HashMap::new();
        for slot in 0..DENIED_SLOTS {
            let per_cpu = self.denied.get(&slot, 0).context("reading DENIED")?;
            for entry in per_cpu.iter().filter(|e| e.count > 0) {
                let seen = by_source.entry(entry.source).or_default();
                seen.0 += entry.count;
                seen.1 = seen.1.max(entry.last_seen_ns);
            }
        }
        Ok(by_source
            .into_iter()
            .map(|(key, (count, last_seen_ns))| {
                let ip = Ipv6Addr::from(key);
                let source = match ip.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(ip),
                };
                DeniedEntry {
                    source,
                    count,
                    last_seen_ns,
                }
            })
            .collect())
    }
}

fn open_map<M>(pins: &PinDir, name: &str) -> anyhow::Result<M>
where
    M: TryFrom<Map, Error = MapError>,
{
    let path = pins.map(name);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let map = Map::from_map_data(data).with_context(|| format!("opening {}", path.display()))?;
    M::try_from(map).with_context(|| format!("{} is not the map mxgate expects", path.display()))
}

/// Deleting what is already gone is success: the goal state holds.
fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}
