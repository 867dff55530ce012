//! `mxgate top` against a flood in a test namespace: the full-screen view
//! in an 80x24 tmux session (send-keys, capture-pane), `--once`, and plain
//! text where the terminal cannot show the view. The drop rate shown must
//! match the counters within 10 %. Host only (tmux).

use std::{
    io::BufRead as _,
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use mxgate_tests::{
    frames::Frame,
    netns::{CLIENT_IF, SERVER_IF},
    packet::RawSocket,
    scenario::{Setup, ip},
};
use serde_json::Value;

/// SYNs per 10 ms batch of the steady flood: 10,000 per second.
const BATCH: u32 = 100;
const BATCHES_PER_SECOND: u32 = 100;

/// Runs `f` while the internet side sends a steady flood of SYNs to port
/// 25 from 50 sources of 203.0.113.0/24 (outside the list), paced by
/// absolute deadlines so that every second carries the same number.
fn during_flood<T>(s: &Setup, f: impl FnOnce() -> T) -> T {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            let socket = RawSocket::open(&s.wire.client, CLIENT_IF).expect("a packet socket");
            let frames: Vec<Vec<u8>> = (1..=50)
                .map(|i| Frame::syn(ip(&format!("203.0.113.{i}")), ip("198.51.100.25"), 25).bytes())
                .collect();
            let start = Instant::now();
            let mut batch = 0u32;
            while !stop.load(Ordering::SeqCst) {
                for n in 0..BATCH {
                    socket
                        .send(&frames[(n as usize) % frames.len()])
                        .expect("sending a SYN");
                }
                batch += 1;
                let due = start + Duration::from_secs(1) * batch / BATCHES_PER_SECOND;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        let result = f();
        stop.store(true, Ordering::SeqCst);
        sender.join().expect("the flood thread");
        result
    })
}

/// Dropped SYNs counted so far (`stats --json`).
fn dropped(s: &Setup) -> u64 {
    let stats: Value =
        serde_json::from_str(&s.mx.ok(&["stats", "--json"])).expect("stats --json is JSON");
    stats["v4"]["counts"]["dropped"]
        .as_u64()
        .expect("a dropped count")
}

/// The counters' drop rate over `window`, per second.
fn counted_rate(s: &Setup, window: Duration) -> f64 {
    let (a, t0) = (dropped(s), Instant::now());
    std::thread::sleep(window);
    let (b, t1) = (dropped(s), Instant::now());
    (b - a) as f64 / (t1 - t0).as_secs_f64()
}

/// The dropped-per-second column of the mail server's interface line in a
/// screen of `top`.
fn shown_rate(screen: &str) -> Option<f64> {
    let line = screen
        .lines()
        .find(|l| l.starts_with(SERVER_IF) && l.len() > SERVER_IF.len())?;
    // name, mode, allowed, dropped, ...
    line.split_whitespace().nth(3)?.parse().ok()
}

fn assert_within_10_percent(shown: f64, counted: f64, screen: &str) {
    assert!(
        counted > 1000.0,
        "the flood did not get through: {counted}/s"
    );
    let off = (shown - counted).abs() / counted;
    assert!(
        off <= 0.10,
        "top showed {shown} drops/s, the counters {counted:.0}/s ({:.1} % off):\n{screen}",
        off * 100.0
    );
}

/// The shell command line that runs `mxgate top ARGS` in the mail
/// server's namespace, for tmux.
fn top_command(s: &Setup, args: &[&str]) -> String {
    let cmd = s.mx.command(&[&["top"], args].concat());
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A tmux session of its own (its own server socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in an 80x24 session with `TERM` set to `term`.
    fn start(tag: &str, term: &str, command: &str) -> Self {
        let tmux = Tmux {
            socket: mxgate_tests::unique_name(tag),
        };
        let status = Command::new("tmux")
            .args([
                "-L",
                &tmux.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "80",
                "-y",
                "24",
            ])
            .args(["-e", &format!("TERM={term}")])
            .arg(format!("TERM={term} {command}; sleep 60"))
            .status()
            .expect("tmux (installed by `cargo xtask setup`)");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn send_keys(&self, keys: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", keys])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Waits until a screen satisfies `check`; panics with the last one.
    fn wait<T>(&self, within: Duration, mut check: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.capture();
            if let Some(found) = check(&screen) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "the screen did not show what was expected within {within:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn top_in_an_80x24_terminal_shows_the_drop_rate_of_the_counters_and_quits_on_q() {
    let s = Setup::new("top-tmux");
    s.attach();
    let tmux = Tmux::start(
        "top-tmux",
        "xterm-256color",
        &top_command(&s, &["--interval", "1"]),
    );
    let (shown, counted, screen) = during_flood(&s, || {
        // The first screens include the flood's ramp-up: wait for two
        // intervals of it, then compare a screen with the counters' rate
        // over the seconds around it.
        tmux.wait(Duration::from_secs(20), |screen| {
            shown_rate(screen).filter(|r| *r > 1000.0).map(|_| ())
        });
        std::thread::sleep(Duration::from_secs(2));
        let counted = counted_rate(&s, Duration::from_secs(3));
        let screen = tmux.capture();
        let shown = shown_rate(&screen).expect("the interface's line");
        (shown, counted, screen)
    });
    assert_within_10_percent(shown, counted, &screen);
    assert!(screen.starts_with("mxgate top  ENFORCING"), "{screen}");
    assert!(screen.contains("203.0.113.0/24"), "{screen}");
    assert!(
        screen.contains("list: 1 IPv4 and 1 IPv6 entries"),
        "{screen}"
    );
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    tmux.send_keys("q");
    // top ends; the session's shell goes on to `sleep`, on a clean screen.
    tmux.wait(Duration::from_secs(10), |screen| {
        (!screen.contains("mxgate top")).then_some(())
    });
}

#[test]
fn top_shows_open_in_the_header() {
    let s = Setup::new("top-open");
    s.attach();
    s.mx.ok(&["open"]);
    let out = s.mx.ok(&["top", "--once", "--interval", "1"]);
    assert!(out.starts_with("mxgate top  OPEN"), "{out}");
}

#[test]
fn top_once_prints_one_plain_snapshot_with_the_drop_rate() {
    let s = Setup::new("top-once");
    s.attach();
    let (out, counted) = during_flood(&s, || {
        std::thread::sleep(Duration::from_secs(1));
        let mut once = s.mx.command(&["top", "--once", "--interval", "2"]);
        let child = once
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting top --once");
        let counted = counted_rate(&s, Duration::from_millis(1500));
        let out = child.wait_with_output().expect("top --once");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (String::from_utf8_lossy(&out.stdout).into_owned(), counted)
    });
    // Plain text: no escape sequences.
    assert!(!out.contains('\u{1b}'), "{out:?}");
    let shown = shown_rate(&out).expect("the interface's line");
    assert_within_10_percent(shown, counted, &out);
    assert!(out.contains("203.0.113.0/24"), "{out}");
}

#[test]
fn top_on_a_dumb_terminal_prints_plain_text() {
    let s = Setup::new("top-dumb");
    s.attach();
    let tmux = Tmux::start("top-dumb", "dumb", &top_command(&s, &["--interval", "1"]));
    let screen = tmux.wait(Duration::from_secs(20), |screen| {
        screen.contains("list: ").then(|| screen.to_owned())
    });
    assert!(screen.contains("mxgate top  ENFORCING"), "{screen}");
    // Not a full-screen view: no key hint, and the views follow each other.
    assert!(!screen.contains("q quits"), "{screen}");
    tmux.wait(Duration::from_secs(20), |screen| {
        (screen.matches("mxgate top").count() >= 2).then_some(())
    });

    // Standard output a pipe: the same.
    let mut child =
        s.mx.command(&["top", "--interval", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting top");
    let first = std::io::BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .next();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        matches!(&first, Some(Ok(line)) if line.starts_with("mxgate top  ENFORCING")),
        "{first:?}"
    );
}
