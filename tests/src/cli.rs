//! The `mxgate` binary, run inside a test's namespace with its own pin dir.

use std::{
    io::{BufRead as _, BufReader, Lines},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio},
};

use crate::netns::Netns;

/// Where the binary under test is: `$MXGATE_BIN` (set by `cargo xtask
/// test`), else next to the test executable's directory.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MXGATE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/<profile>/deps/<test> → target/<profile>/mxgate
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("mxgate"))
        .expect("the test executable lives in target/<profile>/deps");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, or build it first \
         (cargo build -p filter-user) or set MXGATE_BIN",
        path.display()
    );
    path
}

/// The subcommands that take `--cache-dir`.
const TAKES_CACHE_DIR: [&str; 7] = [
    "attach", "refresh", "run", "top", "check", "audit", "doctor",
];

/// `mxgate` run in one namespace (through nsenter) with one pin directory,
/// which is removed (with everything attached) on drop, and a cache
/// directory of its own, which its commands use unless a test names one:
/// no test writes the host's `/var/lib/mxgate/cache`.
#[derive(Debug)]
pub struct Mxgate {
    binary: PathBuf,
    netns: Option<PathBuf>,
    pin_dir: PathBuf,
    cache_dir: tempfile::TempDir,
}

impl Mxgate {
    /// mxgate ([`binary`]) for `netns`, pinning under `/sys/fs/bpf/{name}`.
    pub fn new(netns: &Netns, name: &str) -> Self {
        Self::with_binary(binary(), netns, name)
    }

    /// mxgate in the test's own namespace, for commands that need no
    /// interface (refresh, check, stats), pinning under `/sys/fs/bpf/{name}`.
    pub fn without_netns(name: &str) -> Self {
        Self::make(binary(), None, name)
    }

    /// The mxgate at `path`, for `netns`, pinning under `/sys/fs/bpf/{name}`.
    pub fn with_binary(path: PathBuf, netns: &Netns, name: &str) -> Self {
        Self::make(path, Some(netns.path()), name)
    }

    fn make(binary: PathBuf, netns: Option<PathBuf>, name: &str) -> Self {
        // Mode 0700, as mxgate requires of a cache directory.
        let cache_dir = tempfile::Builder::new()
            .prefix(&format!("mxgate-cache-{name}-"))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .expect("making the test's cache directory");
        let me = Self {
            binary,
            netns,
            pin_dir: PathBuf::from("/sys/fs/bpf").join(name),
            cache_dir,
        };
        // Pins left by a killed earlier run with the same pid.
        me.detach_all();
        me
    }

    /// The pin directory.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The command `mxgate --pin-dir DIR ARGS`, in the namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_at(&self.pin_dir, args)
    }

    /// The cache directory its commands use when a test names none.
    pub fn cache_dir(&self) -> &Path {
        self.cache_dir.path()
    }

    /// The command `mxgate --pin-dir PIN_DIR ARGS` in the namespace: this
    /// mxgate, pointed at another directory (which is not cleaned up). A
    /// subcommand that takes `--cache-dir` gets [`Self::cache_dir`] unless
    /// ARGS name one.
    pub fn command_at(&self, pin_dir: &Path, args: &[&str]) -> Command {
        let mut cmd = match &self.netns {
            Some(netns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", netns.display()))
                    .arg(&self.binary);
                cmd
            }
            None => Command::new(&self.binary),
        };
        cmd.arg("--pin-dir").arg(pin_dir);
        let names_cache = args
            .iter()
            .any(|a| *a == "--cache-dir" || a.starts_with("--cache-dir="));
        match args.split_first() {
            Some((sub, rest)) if TAKES_CACHE_DIR.contains(sub) && !names_cache => cmd
                .arg(sub)
                .arg("--cache-dir")
                .arg(self.cache_dir())
                .args(rest),
            _ => cmd.args(args),
        };
        cmd
    }

    /// The binary under test.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Runs mxgate and returns what it did.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("running mxgate through nsenter")
    }

    /// Runs mxgate, asserts it succeeded, returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mxgate {args:?} failed with {}:\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs mxgate, asserts it exited with `code`, returns its stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "mxgate {args:?}:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Starts mxgate in the background with piped stdout.
    pub fn start(&self, args: &[&str]) -> Running {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting mxgate through nsenter");
        let stdout = child.stdout.take().expect("piped stdout");
        Running {
            child,
            lines: Some(BufReader::new(stdout).lines()),
        }
    }

    fn detach_all(&self) {
        let _ = self.command(&["detach"]).output();
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

/// A background mxgate (nsenter execs it, so the pid is mxgate's). It is
/// killed and reaped on drop if still running.
pub struct Running {
    child: Child,
    lines: Option<Lines<BufReader<ChildStdout>>>,
}

impl Running {
    /// Its standard output, line by line (once).
    pub fn lines(&mut self) -> Lines<BufReader<ChildStdout>> {
        self.lines.take().expect("lines() is taken once")
    }

    /// Sends `signal` and waits for it to exit.
    pub fn signal(mut self, signal: i32) -> ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("a pid fits i32");
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(pid, signal) };
        self.child.wait().expect("waiting for mxgate")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Mxgate {
    fn drop(&mut self) {
        self.detach_all();
    }
}
