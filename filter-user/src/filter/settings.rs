//! The filter's settings: protected ports and destinations, the dry-run and
//! open switches in CONFIG, and CONFIG's generation counters, which every
//! change bumps explicitly so `mxgate run` can report it.

use std::{collections::BTreeSet, net::IpAddr};

use anyhow::Context as _;
use aya::maps::{Array, HashMap, MapData};
use filter_common::{
    Config, FLAG_DRY_RUN, FLAG_OPEN, FLAG_PROTECT_DST, Ipv4Key, Ipv6Key, LAYOUT_VERSION, map_names,
};

use super::{Installed, ignore_missing};

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

/// The CONFIG map: its one element holds the flags, the layout version and
/// the generation counters.
pub struct ConfigMap {
    map: Array<MapData, Config>,
}

impl ConfigMap {
    /// Opens CONFIG.
    pub fn open(installed: &Installed) -> anyhow::Result<Self> {
        Ok(Self {
            map: installed.map(map_names::CONFIG)?,
        })
    }

    /// CONFIG from an opened map.
    pub fn from_map(map: aya::maps::Map) -> anyhow::Result<Self> {
        Ok(Self {
            map: map
                .try_into()
                .context("CONFIG is not the map mxgate expects")?,
        })
    }

    /// The CONFIG element.
    pub fn read(&self) -> anyhow::Result<Config> {
        self.map.get(&0, 0).context("reading CONFIG")
    }

    /// Writes the first CONFIG of a new filter: this layout, all off.
    pub fn initialise(&mut self) -> anyhow::Result<()> {
        let initial = Config {
            layout: LAYOUT_VERSION,
            ..Config::default()
        };
        self.map
            .set(0, &initial, 0)
            .context("initialising the CONFIG map")
    }

    /// True when `flag` is on.
    pub fn flag(&self, flag: u32) -> anyhow::Result<bool> {
        Ok(self.read()?.flags & flag != 0)
    }

    /// Turns `flag` on or off; true when that changed it. The flag and the
    /// settings generation change in one write, so a reader never sees one
    /// without the other.
    fn set_flag(&mut self, flag: u32, on: bool) -> anyhow::Result<bool> {
        let mut config = self.read()?;
        let flags = if on {
            config.flags | flag
        } else {
            config.flags & !flag
        };
        if flags == config.flags {
            return Ok(false);
        }
        config.flags = flags;
        config.settings_generation = config.settings_generation.wrapping_add(1);
        self.write(&config)?;
        Ok(true)
    }

    /// Marks a change of the allowlist.
    pub fn bump_list_generation(&mut self) -> anyhow::Result<()> {
        let mut config = self.read()?;
        config.list_generation = config.list_generation.wrapping_add(1);
        self.write(&config)
    }

    /// Marks a change of ports or protected destinations (flag changes mark
    /// themselves).
    pub fn bump_settings_generation(&mut self) -> anyhow::Result<()> {
        let mut config = self.read()?;
        config.settings_generation = config.settings_generation.wrapping_add(1);
        self.write(&config)
    }

    fn write(&mut self, config: &Config) -> anyhow::Result<()> {
        self.map.set(0, config, 0).context("writing CONFIG")
    }

    /// Sets or clears the open switch; true when that changed it.
    pub fn set_open(&mut self, open: bool) -> anyhow::Result<bool> {
        self.set_flag(FLAG_OPEN, open)
    }
}

/// The maps of protected ports and destinations.
pub struct SettingsMaps {
    ports: Array<MapData, u8>,
    protect_v4: HashMap<MapData, Ipv4Key, u8>,
    protect_v6: HashMap<MapData, Ipv6Key, u8>,
}

impl SettingsMaps {
    /// Opens the PORTS and PROTECT_* pins.
    pub fn open(installed: &Installed) -> anyhow::Result<Self> {
        Ok(Self {
            ports: installed.map(map_names::PORTS)?,
            protect_v4: installed.map(map_names::PROTECT_V4)?,
            protect_v6: installed.map(map_names::PROTECT_V6)?,
        })
    }

    /// Reads the settings back from the maps and `config`. Protected
    /// destinations count only while their flag is on.
    pub fn read(&self, config: &ConfigMap) -> anyhow::Result<Settings> {
        let mut ports = BTreeSet::new();
        for (port, value) in self.ports.iter().enumerate() {
            if value.context("reading PORTS")? != 0 {
                ports.insert(u16::try_from(port)?);
            }
        }
        let protect_dst = if config.flag(FLAG_PROTECT_DST)? {
            self.destinations()?
        } else {
            BTreeSet::new()
        };
        Ok(Settings {
            ports,
            protect_dst,
            dry_run: config.flag(FLAG_DRY_RUN)?,
        })
    }

    /// The addresses in PROTECT_V4 and PROTECT_V6, whatever the flag says.
    fn destinations(&self) -> anyhow::Result<BTreeSet<IpAddr>> {
        let mut found = BTreeSet::new();
        for key in self.protect_v4.keys() {
            found.insert(IpAddr::from(key.context("reading PROTECT_V4")?));
        }
        for key in self.protect_v6.keys() {
            found.insert(IpAddr::from(key.context("reading PROTECT_V6")?));
        }
        Ok(found)
    }

    /// Makes the kernel's settings equal `wanted`, writing only what differs.
    /// Returns true when something changed.
    ///
    /// Changes that let more SYNs through (dry run on, a port or protected
    /// destination dropped, protection narrowed to some addresses) are made
    /// first, those that drop more last: in between, the filter never drops
    /// a SYN that neither the old nor the new settings drop.
    pub fn apply(&mut self, wanted: &Settings, config: &mut ConfigMap) -> anyhow::Result<bool> {
        let live = self.read(config)?;
        if live == *wanted {
            return Ok(false);
        }
        let stored = self.destinations()?;
        let narrowed = config.flag(FLAG_PROTECT_DST)?;
        // Fail-open changes.
        if wanted.dry_run {
            config.set_flag(FLAG_DRY_RUN, true)?;
        }
        for port in live.ports.difference(&wanted.ports) {
            self.set_port(*port, false)?;
        }
        if !wanted.protect_dst.is_empty() {
            if narrowed {
                self.remove_destinations(stored.difference(&wanted.protect_dst))?;
            } else {
                // While the flag is off the set is not read: fill it, then
                // narrow protection to it.
                self.remove_destinations(stored.difference(&wanted.protect_dst))?;
                self.add_destinations(wanted.protect_dst.difference(&stored))?;
                config.set_flag(FLAG_PROTECT_DST, true)?;
            }
        }
        // Fail-closed changes.
        if wanted.protect_dst.is_empty() {
            config.set_flag(FLAG_PROTECT_DST, false)?;
            self.remove_destinations(stored.iter())?;
        } else if narrowed {
            self.add_destinations(wanted.protect_dst.difference(&stored))?;
        }
        for port in wanted.ports.difference(&live.ports) {
            self.set_port(*port, true)?;
        }
        if !wanted.dry_run {
            config.set_flag(FLAG_DRY_RUN, false)?;
        }
        if live.ports != wanted.ports || live.protect_dst != wanted.protect_dst {
            config.bump_settings_generation()?;
        }
        Ok(true)
    }

    fn set_port(&mut self, port: u16, protected: bool) -> anyhow::Result<()> {
        self.ports
            .set(u32::from(port), &u8::from(protected), 0)
            .with_context(|| {
                let verb = if protected {
                    "protecting"
                } else {
                    "unprotecting"
                };
                format!("{verb} port {port}")
            })
    }

    fn add_destinations<'a>(
        &mut self,
        addrs: impl Iterator<Item = &'a IpAddr>,
    ) -> anyhow::Result<()> {
        for addr in addrs {
            match addr {
                IpAddr::V4(a) => self.protect_v4.insert(&a.octets(), &1, 0),
                IpAddr::V6(a) => self.protect_v6.insert(&a.octets(), &1, 0),
            }
            .with_context(|| format!("protecting destination {addr}"))?;
        }
        Ok(())
    }

    fn remove_destinations<'a>(
        &mut self,
        addrs: impl Iterator<Item = &'a IpAddr>,
    ) -> anyhow::Result<()> {
        for addr in addrs {
            match addr {
                IpAddr::V4(a) => ignore_missing(self.protect_v4.remove(&a.octets())),
                IpAddr::V6(a) => ignore_missing(self.protect_v6.remove(&a.octets())),
            }
            .with_context(|| format!("unprotecting destination {addr}"))?;
        }
        Ok(())
    }
}
