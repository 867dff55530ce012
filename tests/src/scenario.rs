//! The common scenario of the namespace tests: an "internet" namespace
//! with allowed and denied senders, a "mail server" namespace with an SMTP
//! listener on ports 25 and 2525, mxgate pinned per test, a range file.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use serde_json::Value;

use crate::{
    cli::Mxgate,
    frames::Frame,
    netns::{SERVER_IF, Wire},
    tcp::{ALLOWED_TIMEOUT, BANNER, DENIED_TIMEOUT, Server, connect},
    unique_name,
};

/// A relay of the service (allowed).
pub const ALLOWED_V4: &str = "192.0.2.10";
/// A spammer (denied).
pub const DENIED_V4: &str = "203.0.113.66";
/// A relay of the service (allowed).
pub const ALLOWED_V6: &str = "2001:db8:5e::10";
/// A spammer (denied).
pub const DENIED_V6: &str = "2001:db8:bad::66";
/// The mail server.
pub const SERVER_V4: &str = "198.51.100.25";
/// The mail server.
pub const SERVER_V6: &str = "2001:db8:25::25";
/// The range file every test starts with.
pub const RANGES: &str = "# the service's published ranges\n192.0.2.0/24\n2001:db8:5e::/48\n";

/// `text` as an address (a test's own constant).
pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("a test address")
}

/// A bare SYN from `src` to port 25 of the mail server, in `src`'s family.
pub fn syn(src: &str) -> Frame {
    let dst = if src.contains(':') {
        SERVER_V6
    } else {
        SERVER_V4
    };
    Frame::syn(ip(src), ip(dst), 25)
}

/// One test's namespaces, listener, mxgate and range file.
pub struct Setup {
    /// The namespaces.
    pub wire: Wire,
    _server: Server,
    /// mxgate in the mail server's namespace.
    pub mx: Mxgate,
    dir: tempfile::TempDir,
}

impl Setup {
    /// Makes everything for the test named `tag`, with the test listener
    /// on ports 25 and 2525.
    pub fn new(tag: &str) -> Self {
        Self::with_listener_ports(tag, &[25, 2525])
    }

    /// As [`Setup::new`], with the test listener on `ports` only (none
    /// when a real MTA takes port 25).
    pub fn with_listener_ports(tag: &str, ports: &[u16]) -> Self {
        let name = unique_name(tag);
        let wire = Wire::new(
            &name,
            &[ALLOWED_V4, DENIED_V4, ALLOWED_V6, DENIED_V6],
            &[SERVER_V4, SERVER_V6],
        )
        .expect("making the namespaces");
        let server = Server::start(&wire.server, ports).expect("starting the listener");
        let mx = Mxgate::new(&wire.server, &name);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let setup = Self {
            wire,
            _server: server,
            mx,
            dir,
        };
        setup.write("ranges.txt", RANGES);
        setup
    }

    /// Writes `text` to a file in the test's directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let path: PathBuf = self.dir.path().join(name);
        std::fs::write(&path, text).expect("writing a range file");
        path.display().to_string()
    }

    /// The path of the initial range file.
    pub fn ranges(&self) -> String {
        self.dir.path().join("ranges.txt").display().to_string()
    }

    /// `mxgate attach` on the mail server's interface with the initial list.
    pub fn attach(&self) -> String {
        self.mx
            .ok(&["attach", "--iface", SERVER_IF, "--ranges", &self.ranges()])
    }

    /// The server address of `src`'s family, at `port`.
    pub fn target(src: &str, port: u16) -> SocketAddr {
        let dst = if src.contains(':') {
            SERVER_V6
        } else {
            SERVER_V4
        };
        SocketAddr::new(dst.parse().unwrap(), port)
    }

    /// Asserts `src` connects to `port` and gets the greeting.
    pub fn assert_connects(&self, src: &str, port: u16) {
        let source: IpAddr = src.parse().unwrap();
        match connect(
            &self.wire.client,
            source,
            Self::target(src, port),
            ALLOWED_TIMEOUT,
        ) {
            Ok(banner) => assert_eq!(banner, BANNER),
            Err(e) => panic!("{src} → port {port} should connect: {e}"),
        }
    }

    /// Asserts `src`'s SYN to `port` gets no answer.
    pub fn assert_times_out(&self, src: &str, port: u16) {
        let source: IpAddr = src.parse().unwrap();
        match connect(
            &self.wire.client,
            source,
            Self::target(src, port),
            DENIED_TIMEOUT,
        ) {
            Ok(_) => panic!("{src} → port {port} connected, but mxgate should drop its SYN"),
            Err(e) => assert_eq!(
                e.kind(),
                std::io::ErrorKind::TimedOut,
                "{src} → port {port}: {e}"
            ),
        }
    }

    /// `mxgate stats --json`.
    pub fn stats(&self) -> Value {
        serde_json::from_str(&self.mx.ok(&["stats", "--json"])).expect("stats --json is JSON")
    }

    /// `mxgate status --json`.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.mx.ok(&["status", "--json"])).expect("status --json is JSON")
    }
}

/// What [`flip_under_load`] saw.
#[derive(Debug)]
pub struct FlipResult {
    /// Refreshes done.
    pub refreshes: usize,
    /// Connects from the staying senders during them.
    pub connects: u64,
    /// The connects that failed, with why.
    pub failures: Vec<String>,
}

/// Refreshes `refreshes` times between two lists while the staying senders
/// ([`ALLOWED_V4`], [`ALLOWED_V6`]) connect without pause. Their covering
/// prefix differs between the lists (a /24 or /48 in one, a /25 or /49 in
/// the other), so a refresh that deleted before inserting would refuse
/// them for a moment. The moving senders ([`DENIED_V4`], [`DENIED_V6`]) are
/// in one list only; each move is checked with `mxgate lookup`, and now
/// and then on the wire. Panics if a move does not take effect.
pub fn flip_under_load(s: &Setup, refreshes: usize) -> FlipResult {
    use std::sync::atomic::{AtomicBool, Ordering};
    let a = s.write(
        "flip-a.txt",
        "192.0.2.0/24\n2001:db8:5e::/48\n203.0.113.0/24\n2001:db8:bad::/48\n",
    );
    let b = s.write(
        "flip-b.txt",
        "192.0.2.0/25\n192.0.2.128/26\n2001:db8:5e::/49\n2001:db8:5e:8000::/50\n",
    );
    let stop = AtomicBool::new(false);
    let (connects, failures) = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let (mut connects, mut failures) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                for src in [ALLOWED_V4, ALLOWED_V6] {
                    connects += 1;
                    // Shorter than the SYN retransmission timeout: a single
                    // dropped SYN fails the connect.
                    let source: IpAddr = src.parse().expect("an address");
                    if let Err(e) = connect(
                        &s.wire.client,
                        source,
                        Setup::target(src, 25),
                        DENIED_TIMEOUT,
                    ) {
                        failures.push(format!("{src}: {e}"));
                    }
                }
            }
            (connects, failures)
        });
        for i in 0..refreshes {
            let (list, movers_in) = if i % 2 == 0 { (&b, false) } else { (&a, true) };
            s.mx.ok(&["refresh", "--ranges", list, "--max-shrink", "100"]);
            for mover in [DENIED_V4, DENIED_V6] {
                let answer: Value = serde_json::from_str(&s.mx.ok(&["lookup", mover, "--json"]))
                    .expect("lookup --json is JSON");
                assert_eq!(
                    answer["allowed"], movers_in,
                    "refresh {i}: {mover}: {answer}"
                );
            }
            if i % 40 == 1 {
                s.assert_connects(DENIED_V4, 25);
            } else if i % 40 == 20 {
                s.assert_times_out(DENIED_V6, 25);
            }
        }
        stop.store(true, Ordering::SeqCst);
        load.join().expect("the load thread")
    });
    FlipResult {
        refreshes,
        connects,
        failures,
    }
}
