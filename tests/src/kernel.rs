//! The real program loaded into the real kernel, unattached, for running
//! crafted frames through it with BPF_PROG_TEST_RUN.

use aya::{TestRun as _, TestRunOptions};
use filter_user::{
    filter::{Counters, Filter, KernelLog, Settings},
    pins::PinDir,
};

use crate::reference::Policy;

/// An installed filter in its own pin directory, removed on drop.
pub struct LoadedFilter {
    pins: PinDir,
    filter: Filter,
}

impl LoadedFilter {
    /// Loads the program under `/sys/fs/bpf/{name}` and applies `policy`.
    pub fn new(name: &str, policy: &Policy) -> anyhow::Result<Self> {
        Self::with_log(name, policy, KernelLog::Quiet)
    }

    /// As [`LoadedFilter::new`], with the kernel log level `log`.
    pub fn with_log(name: &str, policy: &Policy, log: KernelLog) -> anyhow::Result<Self> {
        Self::load(name, policy, |pins| Filter::install(pins, log).map(drop))
    }

    /// As [`LoadedFilter::new`], with the program's load-time constants
    /// `globals` (`filter_common::globals`) set: another variant of it.
    pub fn with_globals(
        name: &str,
        policy: &Policy,
        globals: &[(&str, u8)],
    ) -> anyhow::Result<Self> {
        Self::load(name, policy, |pins| {
            Filter::install_with(pins, KernelLog::Quiet, globals).map(drop)
        })
    }

    /// As [`LoadedFilter::new`], with another build of the program: the
    /// benchmark's "before", an ELF object of an earlier commit.
    #[cfg(feature = "bench")]
    pub fn from_object(name: &str, policy: &Policy, object: &[u8]) -> anyhow::Result<Self> {
        Self::load(name, policy, |pins| {
            Filter::install_from(pins, KernelLog::Quiet, object).map(drop)
        })
    }

    /// Installs a filter with `install` under `/sys/fs/bpf/{name}`, opens
    /// it and applies `policy`; whatever fails leaves no pins behind.
    fn load(
        name: &str,
        policy: &Policy,
        install: impl FnOnce(&PinDir) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let pins = PinDir::new(format!("/sys/fs/bpf/{name}"));
        // Pins left by a killed earlier run with the same pid.
        remove(&pins);
        pins.prepare()?;
        // Before `Self` exists, no Drop removes them: an object of another
        // map layout, refused by `open`, left its pins here once.
        let filter = match install(&pins).and_then(|()| Filter::open(&pins)) {
            Ok(filter) => filter,
            Err(e) => {
                remove(&pins);
                return Err(e);
            }
        };
        let mut loaded = Self { pins, filter };
        loaded.set_policy(policy)?;
        Ok(loaded)
    }

    /// Makes the maps say what `policy` says.
    pub fn set_policy(&mut self, policy: &Policy) -> anyhow::Result<()> {
        self.filter.apply(&policy.allow)?;
        self.filter.apply_settings(&Settings {
            ports: policy.ports.clone(),
            protect_dst: policy.protect_dst.clone(),
            dry_run: policy.dry_run,
        })?;
        self.filter.set_open(policy.open)?;
        Ok(())
    }

    /// The program's return code for `frame`.
    pub fn verdict(&self, frame: &[u8]) -> anyhow::Result<u32> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        };
        let result = self.filter.program().test_run(opts)?;
        Ok(result.return_value)
    }

    /// The counters, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        self.filter.counters()
    }

    /// The filter itself.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }
}

impl Drop for LoadedFilter {
    fn drop(&mut self) {
        remove(&self.pins);
    }
}

/// Removes mxgate's objects under `pins`, and the directory.
fn remove(pins: &PinDir) {
    if let Ok(entries) = pins.entries() {
        let _ = pins.remove_own(&entries);
    }
}
