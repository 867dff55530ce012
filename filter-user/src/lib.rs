//! mxgate's loader library: everything the `mxgate` binary does, as a
//! library the tests and xtask can call.
//!
//! Data flows one way: range sources ([`sources`], with [`spf`] and
//! [`https`], which deliver in [`delivery`]'s terms and report with
//! [`warning`]) → [`ranges`] (parsed into an [`allowlist::Allowlist`]) →
//! [`diff`] (against the live maps, judged by [`guard`], written by
//! [`apply`]) → [`filter`] (the pinned maps, installed and attached by
//! [`install`]); and
//! [`filter`] counters ([`snapshot`]) → [`report`] → [`logline`]. [`pins`]
//! owns the bpffs layout, [`links`] the per-interface attachments (on
//! [`interfaces`]), [`commands`] the CLI's subcommands as [`cli`] defines
//! them.

pub mod allowlist;
pub mod apply;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod delivery;
pub mod describe;
pub mod diff;
pub mod doctor;
pub mod error;
pub mod fast_path;
pub mod files;
pub mod filter;
pub mod guard;
pub mod https;
pub mod install;
pub mod interfaces;
pub mod ip_text;
pub mod kernel_support;
pub mod links;
pub mod logline;
pub mod metrics;
pub mod metrics_http;
pub mod netlink;
pub mod parallel;
pub mod pins;
pub mod ranges;
pub mod refresh_record;
pub mod report;
pub mod snapshot;
pub mod sources;
pub mod spf;
pub mod sys;
pub mod text;
pub mod top;
pub mod warning;
pub mod xdp_features;

/// The compiled XDP program (filter-ebpf), embedded at build time.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mxgate"));

/// The benchmarks' baseline programs: `xdp_pass`, `xdp_drop`, `xdp_tx`.
#[cfg(feature = "bench")]
pub static BASELINES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/baselines"));
