//! `mxgate top`: reads the pinned maps each interval (no lock, no
//! writes: it runs beside `run` and `refresh`) and shows them through
//! [`crate::top`].

use std::path::PathBuf;

use filter_common::FLAG_OPEN;

use super::TopRequest;
use crate::{
    filter::{AllowMaps, ConfigMap, Installed, Readout},
    metrics::Snapshot,
    pins::PinDir,
    report::FilterState,
    snapshot::{filter_state, metrics_snapshot},
    top::{terminal, view::View},
};

/// Intervals between two checks of the maps against their record, which
/// walks the tries (also done whenever the list changes).
const IN_STEP_EVERY: u32 = 30;

/// Reads snapshots: the list's state again only when it changed.
struct Reader {
    installed: Installed,
    readout: Readout,
    config: ConfigMap,
    allow: AllowMaps,
    cache_dir: Option<PathBuf>,
    top: usize,
    list_generation: u32,
    state: FilterState,
    in_step: Option<bool>,
    reads: u32,
}

impl Reader {
    fn open(pins: &PinDir, request: &TopRequest) -> anyhow::Result<Self> {
        let installed = Installed::require(pins)?;
        installed.warn_damage();
        let config = ConfigMap::open(&installed)?;
        let allow = AllowMaps::open(&installed)?;
        let list_generation = config.read()?.list_generation;
        let state = filter_state(&config, &allow)?;
        let in_step = allow.consistency().ok().map(|c| c.in_step());
        Ok(Self {
            readout: Readout::open(&installed)?,
            installed,
            config,
            allow,
            cache_dir: request.cache_dir.clone(),
            top: request.top,
            list_generation,
            state,
            in_step,
            reads: 0,
        })
    }

    fn read(&mut self) -> anyhow::Result<Snapshot> {
        let config = self.config.read()?;
        self.reads += 1;
        if config.list_generation != self.list_generation {
            self.list_generation = config.list_generation;
            self.state = filter_state(&self.config, &self.allow)?;
            self.in_step = self.allow.consistency().ok().map(|c| c.in_step());
        } else if self.reads.is_multiple_of(IN_STEP_EVERY) {
            self.in_step = self.allow.consistency().ok().map(|c| c.in_step());
        }
        // The switches are one read: always current.
        self.state.open = config.flags & FLAG_OPEN != 0;
        self.state.dry_run = config.flags & filter_common::FLAG_DRY_RUN != 0;
        // Links come and go: found again each time.
        if let Ok(Some(found)) = Installed::find(self.installed.pins()) {
            self.installed = found;
        }
        metrics_snapshot(
            &self.installed,
            &self.readout,
            self.state,
            self.in_step,
            self.cache_dir.as_deref(),
            self.top,
        )
    }
}

/// `mxgate top`.
pub fn command(pins: &PinDir, request: &TopRequest) -> anyhow::Result<()> {
    let mut reader = Reader::open(pins, request)?;
    let mut before = reader.read()?;
    if request.once {
        std::thread::sleep(request.interval);
        let now = reader.read()?;
        print!(
            "{}",
            crate::top::view::text(&View::between(&before, &now, request.top))
        );
        return Ok(());
    }
    let top = request.top;
    let mut next = move || -> anyhow::Result<View> {
        let now = reader.read()?;
        let view = View::between(&before, &now, top);
        before = now;
        Ok(view)
    };
    if terminal::capable() {
        // The first screen at once, with no rates yet.
        let first = next()?;
        terminal::interactive(request.interval, first, next)
    } else {
        std::thread::sleep(request.interval);
        let first = next()?;
        terminal::plain(request.interval, first, next)
    }
}
