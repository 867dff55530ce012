//! mxgate tried as a hostile user and a careless administrator would: pin
//! directories that are symlinks, another user's, or not on bpffs; pins
//! removed by hand; other tools' pins beside mxgate's; inputs that never
//! end; downloads cut short; planted temporary files; commands racing each
//! other; signals. Each case asserts the exit code and the message, and
//! that nothing it must not touch changed: the live filter (allowlist,
//! settings, attachments), files outside the pin directory, other tools'
//! pins — and that the filter still protects.

mod attach;
mod cache;
mod damage;
mod downgrade;
mod drift;
mod files;
mod foreign;
mod guards;
mod locks;
mod output;
mod pin_dirs;
mod reads;
mod rename;
mod settings;
mod sources;
mod unusable;
mod usage;

use std::{
    fs,
    io::{self, BufRead as _, Write as _},
    os::unix::{
        fs::{PermissionsExt as _, symlink},
        process::ExitStatusExt as _,
    },
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use mxgate_tests::{
    cli::Mxgate,
    events::{self, until_event},
    hostile::{Live, NOBODY, Tree, as_nobody, must, pin_foreign_map},
    netns::SERVER_IF,
    remote::{Https, Reply},
    scenario::{ALLOWED_V4, DENIED_V4, Setup},
    unique_name,
};
use serde_json::Value;

/// One test's filter, attached with the scenario's list, and a victim
/// directory of files that no command may touch.
struct Host {
    s: Setup,
    victim: tempfile::TempDir,
}

impl Host {
    fn new(tag: &str) -> Self {
        let s = Setup::new(tag);
        s.attach();
        let victim = tempfile::tempdir().expect("a temporary directory");
        fs::write(victim.path().join("a.conf"), "precious\n").unwrap();
        fs::create_dir(victim.path().join("sub")).unwrap();
        fs::write(victim.path().join("sub/b.conf"), "also precious\n").unwrap();
        Self { s, victim }
    }

    fn mx(&self) -> &Mxgate {
        &self.s.mx
    }

    /// Runs `args`, asserts the exit code and that stdout or stderr says
    /// `needle`; returns both.
    fn expect(&self, code: i32, args: &[&str], needle: &str) -> String {
        check(self.mx().command(args), code, needle)
    }

    /// A path in the test's directory holding `text`.
    fn file(&self, name: &str, text: &str) -> String {
        self.s.write(name, text)
    }

    /// Asserts the filter still drops a spammer and lets a relay in.
    fn protects(&self) {
        self.s.assert_times_out(DENIED_V4, 25);
        self.s.assert_connects(ALLOWED_V4, 25);
    }
}

/// Runs `cmd` (stdin closed), asserts its exit code and that its stdout or
/// stderr contains `needle`; returns both.
fn check(mut cmd: Command, code: i32, needle: &str) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("running mxgate");
    judge(&out, code, needle)
}

fn judge(out: &Output, code: i32, needle: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}:\n{text}"
    );
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

/// A directory on bpffs for a test to play the careless admin in.
fn bpffs_dir(tag: &str) -> PathBuf {
    PathBuf::from("/sys/fs/bpf").join(unique_name(tag))
}

/// Removes what a test made on bpffs, whatever it is.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
            let _ = fs::remove_dir_all(path);
        }
    }
}

/// The copies of sources kept in `dir` (none when it does not exist):
/// every file but the refresh record, which holds no source's text.
fn cached_copies(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != filter_user::refresh_record::FILE_NAME)
        .collect()
}

fn ca_of(server: &Https) -> String {
    server.ca_file.display().to_string()
}
