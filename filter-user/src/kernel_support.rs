//! What the running kernel offers the XDP program, probed before loading
//! it: a kernel without something the program needs is refused with one
//! line naming the feature and the release that brought it, instead of a
//! verifier log; where the program has a variant for older kernels (the
//! clock that stamps denied sources) or for the architecture (word loads
//! from the frame), the probe picks it.

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{BpfHelper, is_bpf_global_data_supported, is_helper_supported, is_map_supported},
    util::KernelVersion,
};
use filter_common::globals;

/// The kernel lacks something the program needs.
#[derive(Debug, thiserror::Error)]
#[error(
    "this kernel ({kernel}) cannot run mxgate's XDP program: it needs {feature} (Linux {since} or later)"
)]
pub struct Unsupported {
    /// The running kernel's release.
    pub kernel: String,
    /// What is missing.
    pub feature: &'static str,
    /// The first Linux release with it.
    pub since: &'static str,
}

/// What the probes found, as the load-time constants of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSupport {
    /// `bpf_ktime_get_coarse_ns` is there (5.11+); without it the program
    /// stamps denied sources with `bpf_ktime_get_ns`.
    pub coarse_clock: bool,
    /// The verifier lets the program read misaligned words of a frame; it
    /// then copies addresses a word at a time, else a byte at a time.
    pub wide_loads: bool,
}

/// Whether the kernel mxgate runs on lets BPF programs read misaligned
/// words of a frame. It does where the architecture has efficient
/// unaligned access (the verifier checks alignment only without
/// CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS), which x86-64 and arm64 always
/// have; other architectures keep the byte copies every kernel takes.
const WIDE_LOADS: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

impl KernelSupport {
    /// The `.rodata` globals to set for this kernel, by name.
    pub fn globals(&self) -> [(&'static str, u8); 2] {
        [
            (globals::COARSE_CLOCK, u8::from(self.coarse_clock)),
            (globals::WIDE_LOADS, u8::from(self.wide_loads)),
        ]
    }
}

/// Needed, and how to tell: each is checked in turn, the first missing one
/// is the refusal.
const NEEDS: [(&str, &str, Check); 4] = [
    ("XDP programs", "4.8", Check::Xdp),
    (
        "global data in BPF programs (.rodata)",
        "5.2",
        Check::GlobalData,
    ),
    ("the BPF ring buffer", "5.8", Check::RingBuf),
    (
        "XDP attached through BPF links",
        "5.9",
        Check::Version(5, 9),
    ),
];

#[derive(Clone, Copy)]
enum Check {
    Xdp,
    GlobalData,
    RingBuf,
    Version(u8, u8),
}

/// Probes the running kernel.
pub fn probe() -> Result<KernelSupport, Unsupported> {
    let version = KernelVersion::current().ok();
    let kernel = version.map_or_else(|| "version unknown".to_owned(), |v| v.to_string());
    for (feature, since, check) in NEEDS {
        let present = match check {
            Check::Xdp => aya::sys::is_program_supported(ProgramType::Xdp).unwrap_or(true),
            Check::GlobalData => is_bpf_global_data_supported().unwrap_or(true),
            Check::RingBuf => is_map_supported(MapType::RingBuf).unwrap_or(true),
            // A version we cannot read is given the benefit of the doubt:
            // attaching would then fail with its own message.
            Check::Version(major, minor) => {
                version.is_none_or(|v| v >= KernelVersion::new(major, minor, 0))
            }
        };
        log::debug!(
            "kernel {kernel}: {feature}: {}",
            if present { "yes" } else { "no" }
        );
        if !present {
            return Err(Unsupported {
                kernel,
                feature,
                since,
            });
        }
    }
    let coarse_clock =
        is_helper_supported(ProgramType::Xdp, BpfHelper::BPF_FUNC_ktime_get_coarse_ns)
            .unwrap_or(false);
    log::debug!(
        "kernel {kernel}: bpf_ktime_get_coarse_ns: {}",
        if coarse_clock {
            "yes"
        } else {
            "no (using bpf_ktime_get_ns)"
        }
    );
    Ok(KernelSupport {
        coarse_clock,
        wide_loads: WIDE_LOADS,
    })
}

/// One line for a program the verifier refused, ending with the log's last
/// line; the whole log goes to the `log` crate's debug level.
pub fn refused_by_verifier(error: &aya::programs::ProgramError) -> String {
    match error {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            log::debug!("the verifier's log:\n{verifier_log}");
            let last = verifier_log
                .to_string()
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with("processed "))
                .map(str::to_owned);
            match last {
                Some(line) => format!(
                    "the kernel's verifier refused mxgate's XDP program ({io_error}): {line:?} \
                     (its whole log is logged at the debug level)"
                ),
                None => format!("the kernel refused mxgate's XDP program ({io_error})"),
            }
        }
        other => format!("loading mxgate's XDP program: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_one_line_naming_feature_and_release() {
        let e = Unsupported {
            kernel: "5.4.0".into(),
            feature: "the BPF ring buffer",
            since: "5.8",
        };
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.contains("the BPF ring buffer (Linux 5.8 or later)"),
            "{text}"
        );
        assert!(text.contains("5.4.0"), "{text}");
    }

    #[test]
    fn the_globals_follow_the_probe() {
        let old = KernelSupport {
            coarse_clock: false,
            wide_loads: false,
        };
        assert_eq!(
            old.globals(),
            [(globals::COARSE_CLOCK, 0), (globals::WIDE_LOADS, 0)]
        );
        let new = KernelSupport {
            coarse_clock: true,
            wide_loads: true,
        };
        assert_eq!(new.globals().map(|(_, value)| value), [1, 1]);
    }
}
