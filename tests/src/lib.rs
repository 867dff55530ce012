//! Helpers for mxgate's kernel tests: network namespaces joined by veth
//! pairs ([`netns`]), the `mxgate` binary run inside them ([`cli`]), real
//! TCP servers and clients ([`tcp`]), crafted frames ([`frames`]) and a
//! plain-Rust reference classifier for them ([`reference`]), the
//! program loaded for BPF_PROG_TEST_RUN ([`kernel`]), and private MTAs
//! ([`postfix`], [`exim`]) with swaks sessions ([`swaks`]) for the audit,
//! and an HTTP client for the metrics endpoint and Prometheus ([`http`]).
//!
//! Every test makes its own namespaces and pin directory, named after the
//! test and the process, and removes them on drop, also when it fails.

pub mod cli;
pub mod events;
pub mod exim;
pub mod frames;
#[cfg(feature = "kernel")]
pub mod hostile;
pub mod http;
#[cfg(feature = "kernel")]
pub mod kernel;
pub mod mutate;
pub mod netns;
pub mod packet;
pub mod postfix;
#[cfg(feature = "kernel")]
pub mod reference;
#[cfg(feature = "kernel")]
pub mod remote;
pub mod scenario;
pub mod swaks;
pub mod tcp;

/// A name unique to this test and process, for namespaces and pin dirs.
pub fn unique_name(tag: &str) -> String {
    format!("mxt-{tag}-{}", std::process::id())
}

/// The number in environment variable `name` (decimal, or hex after
/// `0x`), or `default` when it is not set; a test's knob, so a value that
/// is not a number fails the test.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number"))
        }
        Err(_) => default,
    }
}
