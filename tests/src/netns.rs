//! Network namespaces and veth pairs made for one test.

use std::{fs::File, os::fd::AsRawFd as _, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with its loopback up.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        // A namespace left by a killed earlier run with the same pid.
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file that names it, for `nsenter --net=` and `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Adds a veth pair `name`/`{name}-peer` inside this namespace, both
    /// ends up: a second interface to attach to.
    pub fn add_veth(&self, name: &str) -> anyhow::Result<()> {
        let peer = format!("{name}-peer");
        self.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer])?;
        self.ip(&["link", "set", name, "up"])?;
        self.ip(&["link", "set", &peer, "up"])
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it
    /// creates belong to the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let file = File::open(self.path())
            .with_context(|| format!("opening {}", self.path().display()))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on a namespace file we hold open; it only
                    // changes this thread's network namespace.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(std::io::Error::last_os_error())
                            .with_context(|| format!("entering namespace {}", self.name));
                    }
                    Ok(f())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("thread in namespace {} panicked", self.name))?
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2); `cargo xtask setup` installs it")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Interface of the "internet" side of a [`Wire`].
pub const CLIENT_IF: &str = "mx-inet";
/// Interface of the "mail server" side of a [`Wire`].
pub const SERVER_IF: &str = "mx-mail";

/// Two namespaces joined by a veth pair: `client` (the internet) and
/// `server` (the mail server, where mxgate attaches to [`SERVER_IF`]).
/// Every client address reaches every server address directly.
#[derive(Debug)]
pub struct Wire {
    /// The internet side.
    pub client: Netns,
    /// The mail-server side.
    pub server: Netns,
}

impl Wire {
    /// Makes the namespaces `{tag}-c` and `{tag}-s` and the veth pair
    /// between them, with `client_addrs` and `server_addrs` (no prefix
    /// length: each is a host address routed over the link).
    pub fn new(tag: &str, client_addrs: &[&str], server_addrs: &[&str]) -> anyhow::Result<Self> {
        let client = Netns::new(&format!("{tag}-c"))?;
        let server = Netns::new(&format!("{tag}-s"))?;
        ip(&[
            "link",
            "add",
            CLIENT_IF,
            "netns",
            client.name(),
            "type",
            "veth",
            "peer",
            "name",
            SERVER_IF,
            "netns",
            server.name(),
        ])?;
        for (ns, dev, own, peer) in [
            (&client, CLIENT_IF, client_addrs, server_addrs),
            (&server, SERVER_IF, server_addrs, client_addrs),
        ] {
            // No duplicate address detection: the link is ours alone, and
            // tentative IPv6 addresses would make the first connects fail.
            ns.ip(&["link", "set", dev, "up"])?;
            for addr in own.iter() {
                let host = if addr.contains(':') { "128" } else { "32" };
                let cidr = format!("{addr}/{host}");
                let mut args = vec!["addr", "add", cidr.as_str(), "dev", dev];
                if addr.contains(':') {
                    args.push("nodad");
                }
                ns.ip(&args)?;
            }
            for addr in peer.iter() {
                ns.ip(&["route", "add", addr, "dev", dev])?;
            }
        }
        Ok(Self { client, server })
    }
}
