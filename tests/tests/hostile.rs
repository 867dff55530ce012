//! mxgate tried as a hostile user and a careless administrator would: pin
//! directories that are symlinks, another user's, or not on bpffs; pins
//! removed by hand; other tools' pins beside mxgate's; inputs that never
//! end; downloads cut short; planted temporary files; commands racing each
//! other; signals. Each case asserts the exit code and the message, and
//! that nothing it must not touch changed: the live filter (allowlist,
//! settings, attachments), files outside the pin directory, other tools'
//! pins — and that the filter still protects.

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

// ---------------------------------------------------------------------
// Pin directories that are not mxgate's to use (issue cases 1, 2, 5, 18).

#[test]
fn pin_directories_mxgate_must_not_use_are_refused_and_left_untouched() {
    let h = Host::new("ho-pindir");
    let before = Live::of(h.mx());
    let victim = h.victim.path().to_path_buf();
    let victim_tree = Tree::of(&victim);
    let ranges = h.s.ranges();
    let attach = |dir: &Path| {
        h.mx()
            .command_at(dir, &["attach", "--iface", SERVER_IF, "--ranges", &ranges])
    };

    // 1. A plain directory outside bpffs: detach deletes nothing.
    check(
        h.mx().command_at(&victim, &["detach"]),
        2,
        "is not on a bpf filesystem",
    );
    assert_eq!(Tree::of(&victim), victim_tree);
    check(attach(&victim), 2, "is not on a bpf filesystem");
    check(
        h.mx()
            .command_at(&victim, &["refresh", "--ranges", &ranges]),
        2,
        "is not on a bpf filesystem",
    );
    assert_eq!(Tree::of(&victim), victim_tree);

    // 2. nobody's symlink on world-writable bpffs, pointing at the victim.
    let evil = bpffs_dir("ho-evil");
    let _cleanup = Cleanup(vec![evil.clone()]);
    must(as_nobody(
        "ln",
        &[
            "-s",
            &victim.display().to_string(),
            &evil.display().to_string(),
        ],
    ));
    check(attach(&evil), 2, "is a symbolic link");
    for args in [
        &["detach"][..],
        &["refresh", "--ranges", &ranges],
        &["open"],
        &["status"],
    ] {
        check(h.mx().command_at(&evil, args), 2, "is a symbolic link");
    }
    assert_eq!(Tree::of(&victim), victim_tree);

    // 3. A directory nobody made (mode 0777) where the pin dir would go.
    let squat = bpffs_dir("ho-squat");
    let _cleanup2 = Cleanup(vec![squat.clone()]);
    must(as_nobody(
        "mkdir",
        &["-m", "0777", &squat.display().to_string()],
    ));
    check(
        attach(&squat),
        2,
        &format!("is owned by uid {NOBODY}, not by root"),
    );
    assert!(
        fs::read_dir(&squat).unwrap().next().is_none(),
        "nothing pinned there"
    );

    // 4. root's, but world-writable.
    let loose = bpffs_dir("ho-loose");
    let _cleanup3 = Cleanup(vec![loose.clone()]);
    fs::create_dir(&loose).unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o777)).unwrap();
    check(attach(&loose), 2, "is writable by everyone (mode 0777)");

    // 5. Under a directory nobody owns: nobody could swap it out.
    let parent = bpffs_dir("ho-parent");
    let _cleanup4 = Cleanup(vec![parent.clone()]);
    must(as_nobody(
        "mkdir",
        &["-m", "0755", &parent.display().to_string()],
    ));
    check(
        attach(&parent.join("mx")),
        2,
        "can be changed by another user (owner uid 65534",
    );

    // 6. A relative path, a path with `..`, a pinned map as the directory.
    check(
        h.mx().command_at(Path::new("mxgate"), &["status"]),
        2,
        "is not an absolute path",
    );
    check(
        h.mx()
            .command_at(Path::new("/sys/fs/bpf/../../tmp"), &["detach"]),
        2,
        "contains `.` or `..`",
    );
    check(
        h.mx()
            .command_at(&h.mx().pin_dir().join("CONFIG"), &["status"]),
        2,
        "is not a directory",
    );
    assert_eq!(Tree::of(&victim), victim_tree);
    assert_eq!(Live::of(h.mx()), before);
    h.protects();
}

#[test]
fn detach_removes_only_mxgates_own_objects() {
    let h = Host::new("ho-own");
    let dir = h.mx().pin_dir().to_path_buf();
    // Another tool's pin in mxgate's directory.
    pin_foreign_map(&dir.join("other_tool")).unwrap();
    // A directory of another tool's pins, with none of mxgate's.
    let foreign = bpffs_dir("ho-foreign");
    let _cleanup = Cleanup(vec![foreign.join("their_map"), foreign.clone()]);
    fs::create_dir(&foreign).unwrap();
    fs::set_permissions(&foreign, fs::Permissions::from_mode(0o700)).unwrap();
    pin_foreign_map(&foreign.join("their_map")).unwrap();
    // A pin of someone else's called like one of mxgate's maps.
    pin_foreign_map(&foreign.join("CONFIG")).unwrap();
    let _cleanup2 = Cleanup(vec![foreign.join("CONFIG")]);

    check(h.mx().command_at(&foreign, &["detach"]), 0, "nothing to do");
    assert!(foreign.join("their_map").exists() && foreign.join("CONFIG").exists());
    check(
        h.mx().command_at(&foreign, &["status"]),
        1,
        "no filter is installed",
    );

    let status = h.expect(0, &["status"], "also in");
    assert!(
        status.contains("other_tool (not mxgate's; left alone)"),
        "{status}"
    );
    let out = h.expect(0, &["detach"], "detached from mx-mail");
    assert!(out.contains("left other_tool in place"), "{out}");
    assert!(
        dir.join("other_tool").exists(),
        "the other tool's pin stays"
    );
    let left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["other_tool"], "everything of mxgate's is gone");
    h.s.assert_connects(DENIED_V4, 25);
    fs::remove_file(dir.join("other_tool")).unwrap();
}

// ---------------------------------------------------------------------
// An attach that fails changes nothing (case 3).

#[test]
fn a_failed_attach_leaves_everything_as_it_was() {
    let s = Setup::new("ho-fail");
    // Another filter instance takes the interface first: from this pin
    // directory's point of view, a foreign XDP program.
    let other = bpffs_dir("ho-fail-other");
    let _cleanup = Cleanup(vec![other.clone()]);
    check(
        s.mx.command_at(
            &other,
            &["attach", "--iface", SERVER_IF, "--ranges", &s.ranges()],
        ),
        0,
        "attached to mx-mail",
    );
    // The pin directory already holds another tool's pin.
    let dir = s.mx.pin_dir().to_path_buf();
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    pin_foreign_map(&dir.join("other_tool")).unwrap();
    let before = Tree::of(&dir);
    let out = s.mx.fails(
        3,
        &["attach", "--iface", SERVER_IF, "--ranges", &s.ranges()],
    );
    assert!(out.contains("mx-mail already runs XDP program"), "{out}");
    assert_eq!(Tree::of(&dir), before, "nothing added, nothing removed");
    fs::remove_file(dir.join("other_tool")).unwrap();
    fs::remove_dir(&dir).unwrap();

    // Without a directory before: none after.
    let out = s.mx.fails(
        3,
        &["attach", "--iface", SERVER_IF, "--ranges", &s.ranges()],
    );
    assert!(
        out.contains("mxgate does not replace another program"),
        "{out}"
    );
    assert!(!dir.exists(), "the failed attach left no directory");
    // The other filter still protects.
    s.assert_times_out(DENIED_V4, 25);

    // Interfaces that cannot be attached: refused before anything exists.
    for (iface, code, needle) in [
        ("no-such-if0", 2, "there is no interface named"),
        ("lo", 2, "is the loopback interface"),
        ("a/b", 2, "is not an interface name"),
    ] {
        let out =
            s.mx.fails(code, &["attach", "--iface", iface, "--ranges", &s.ranges()]);
        assert!(out.contains(needle), "{iface}: {out}");
        assert!(!dir.exists(), "{iface}: nothing was created");
    }
    check(
        s.mx.command_at(&other, &["detach"]),
        0,
        "removed the filter",
    );
}

#[test]
fn several_interfaces_are_all_checked_before_any_is_attached() {
    let s = Setup::new("ho-multi");
    s.wire.server.add_veth("mx-b").unwrap();
    let other = bpffs_dir("ho-multi-other");
    let _cleanup = Cleanup(vec![other.clone()]);
    check(
        s.mx.command_at(
            &other,
            &["attach", "--iface", "mx-b", "--ranges", &s.ranges()],
        ),
        0,
        "attached to mx-b",
    );
    let out = s.mx.fails(
        3,
        &[
            "attach",
            "--iface",
            SERVER_IF,
            "mx-b",
            "--ranges",
            &s.ranges(),
        ],
    );
    assert!(out.contains("mx-b already runs XDP program"), "{out}");
    assert!(!s.mx.pin_dir().exists());
    // mx-mail was not attached: a spammer gets in there.
    s.assert_connects(DENIED_V4, 25);
    check(s.mx.command_at(&other, &["detach"]), 0, "removed");
}

// ---------------------------------------------------------------------
// Pins removed by hand: commands keep working, name the damage, and attach
// repairs it without ever detaching a live interface (cases 4 and 12).

#[test]
fn a_removed_program_pin_is_named_and_repaired_while_the_filter_keeps_working() {
    let h = Host::new("ho-prog");
    let before = Live::of(h.mx());
    let link_before = before.status["interfaces"][0]["link_id"].clone();
    fs::remove_file(h.mx().pin_dir().join("prog")).unwrap();
    h.protects();

    let status = h.expect(0, &["status"], "DAMAGED: the program's pin");
    assert!(
        status.contains("still runs on mx-mail through its link"),
        "{status}"
    );
    assert!(status.contains("attached to mx-mail"), "{status}");
    let json: Value = serde_json::from_str(&h.mx().ok(&["status", "--json"])).unwrap();
    assert_eq!(json["interfaces"][0]["link_id"], link_before);
    // Every command still works on what it needs.
    let list = h.file(
        "more.txt",
        "192.0.2.0/24\n198.51.100.0/24\n2001:db8:5e::/48\n",
    );
    h.expect(0, &["refresh", "--ranges", &list], "refreshed: IPv4 +1");
    h.expect(0, &["open"], "filter OPEN");
    h.expect(0, &["enforce"], "enforcing");
    h.expect(0, &["stats"], "examined");
    h.expect(0, &["lookup", "198.51.100.7"], "allowed by 198.51.100.0/24");
    h.protects();

    // The repair: the same program and link, pinned again.
    let out = h.expect(
        0,
        &["attach", "--iface", SERVER_IF, "--ranges", &list],
        "repaired: pinned",
    );
    assert!(out.contains("already attached to mx-mail"), "{out}");
    let after = Live::of(h.mx());
    assert_eq!(after.status["interfaces"][0]["link_id"], link_before);
    assert_eq!(
        after.status["program"]["id"],
        before.status["program"]["id"]
    );
    assert!(h.mx().pin_dir().join("prog").exists());
    h.expect(0, &["status"], "filter installed in");
    h.protects();
}

#[test]
fn removed_map_pins_are_found_through_the_program() {
    let h = Host::new("ho-maps");
    let before = Live::of(h.mx());
    for map in ["DENIED", "CONFIG", "ALLOW_V4"] {
        fs::remove_file(h.mx().pin_dir().join(map)).unwrap();
    }
    h.protects();
    let status = h.expect(0, &["status"], "DAMAGED:");
    assert!(
        status.contains("/CONFIG is missing; the map still works"),
        "{status}"
    );
    // The emergency switch works without its pin.
    h.expect(0, &["open"], "filter OPEN");
    h.s.assert_connects(DENIED_V4, 25);
    h.expect(0, &["enforce"], "enforcing");
    h.expect(0, &["stats", "--json"], "\"top_denied\"");
    h.expect(0, &["lookup", ALLOWED_V4], "allowed by 192.0.2.0/24");
    h.expect(
        0,
        &["attach", "--iface", SERVER_IF, "--ranges", &h.s.ranges()],
        "repaired: pinned",
    );
    for map in ["DENIED", "CONFIG", "ALLOW_V4"] {
        assert!(h.mx().pin_dir().join(map).exists(), "{map} pinned again");
    }
    assert_eq!(Live::of(h.mx()).allowlist, before.allowlist);
    h.protects();
}

#[test]
fn a_filter_whose_program_is_gone_is_reloaded_with_its_allowlist() {
    let h = Host::new("ho-gone");
    let before = Live::of(h.mx());
    let dir = h.mx().pin_dir().to_path_buf();
    fs::remove_file(dir.join("prog")).unwrap();
    fs::remove_file(dir.join("link_mx-mail")).unwrap();
    // Nothing runs it: the interface is open to everyone.
    h.s.assert_connects(DENIED_V4, 25);
    let status = h.expect(0, &["status"], "has no live program: it protects nothing");
    assert!(status.contains("attached to no interface"), "{status}");
    // A refresh still keeps the allowlist current for the repair.
    h.expect(0, &["refresh", "--ranges", &h.s.ranges()], "no change");
    let out = h.expect(
        0,
        &["attach", "--iface", SERVER_IF, "--ranges", &h.s.ranges()],
        "loaded the filter into the kernel",
    );
    assert!(
        out.contains("(unchanged)"),
        "the maps' allowlist was kept: {out}"
    );
    assert_eq!(Live::of(h.mx()).allowlist, before.allowlist);
    h.protects();
}

#[test]
fn run_names_damage_and_lost_interfaces_and_stops_only_on_a_real_detach() {
    let h = Host::new("ho-run");
    h.s.wire.server.add_veth("mx-b").unwrap();
    h.s.wire.server.add_veth("mx-c").unwrap();
    h.mx().ok(&[
        "attach",
        "--iface",
        "mx-b",
        "mx-c",
        "--ranges",
        &h.s.ranges(),
    ]);
    let mut run = h
        .mx()
        .start(&["run", "--log-format", "json", "--interval", "3600"]);
    let mut lines = run.lines();
    let mut next = |event: &str| -> Value {
        loop {
            let line = lines.next().expect("run ended early").expect("reading run");
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_ne!(v["event"], "detached", "run stopped: {v}");
            if v["event"] == event {
                return v;
            }
        }
    };
    next("adopted");
    fs::remove_file(h.mx().pin_dir().join("prog")).unwrap();
    let v = next("damaged");
    assert_eq!(v["level"], "warn");
    assert!(
        v["message"].as_str().unwrap().contains("the program's pin"),
        "{v}"
    );
    h.mx().ok(&["detach", "--iface", "mx-b"]);
    let v = next("link_removed");
    assert_eq!(
        (v["level"].as_str(), v["iface"].as_str()),
        (Some("warn"), Some("mx-b"))
    );
    h.s.wire.server.ip(&["link", "del", "mx-c"]).unwrap();
    let v = next("interface_gone");
    assert_eq!(
        (v["level"].as_str(), v["iface"].as_str()),
        (Some("warn"), Some("mx-c"))
    );
    h.protects();
    // SIGHUP (a closed terminal, a careless `kill -HUP`) stops run cleanly,
    // saying so; the filter stays.
    let status = run.signal(libc::SIGHUP);
    assert!(status.success(), "{status}");
    let v = next("stopped");
    assert_eq!(v["signal"], "SIGHUP", "{v}");
    h.protects();
}

#[test]
fn run_warns_when_the_filter_is_left_attached_nowhere() {
    let h = Host::new("ho-unprot");
    let mut run = h.mx().start(&["run", "--log-format", "json"]);
    let mut lines = run.lines();
    until_event(&mut lines, "adopted");
    h.mx().ok(&["detach", "--iface", SERVER_IF]);
    let (removed, _) = until_event(&mut lines, "link_removed");
    assert_eq!(removed["iface"], SERVER_IF, "{removed}");
    let (v, _) = until_event(&mut lines, "unprotected");
    assert_eq!(v["level"], "warn", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("protects nothing"),
        "{v}"
    );
    // The filter is still installed: run keeps watching until stopped.
    assert!(run.signal(libc::SIGTERM).success());
}

#[test]
fn run_adopting_a_filter_attached_nowhere_warns() {
    let h = Host::new("ho-nowhere");
    h.mx().ok(&["detach", "--iface", SERVER_IF]);
    let mut run = h.mx().start(&["run", "--log-format", "json"]);
    let line = run.lines().next().unwrap().unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "adopted", "{v}");
    assert_eq!(v["level"], "warn", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("protects nothing"),
        "{v}"
    );
}

// ---------------------------------------------------------------------
// The shrink guard under attach and run (case 6).

/// Reads run's JSON lines up to the first whose event is `event`; returns
/// it and the events of the lines before it.
fn until_event<B: io::BufRead>(lines: &mut io::Lines<B>, event: &str) -> (Value, Vec<String>) {
    let mut earlier = Vec::new();
    loop {
        let line = lines.next().expect("run ended early").expect("reading run");
        let v: Value = serde_json::from_str(&line).expect("a JSON log line");
        if v["event"] == event {
            return (v, earlier);
        }
        earlier.push(v["event"].as_str().unwrap_or_default().to_owned());
    }
}

#[test]
fn attach_and_run_take_the_guard_options_and_run_never_loops_on_a_refusal() {
    let h = Host::new("ho-guard");
    let before = Live::of(h.mx());
    // Half of the 2 entries → 1 of 2 = 50% is allowed; drop both but add
    // another: 100% of the live entries lose access.
    let other = h.file("other.txt", "198.51.100.0/24\n");
    let out = h.expect(
        3,
        &["attach", "--iface", SERVER_IF, "--ranges", &other],
        "more than --max-shrink 50%",
    );
    assert!(out.contains("run again with --force"), "{out}");
    assert_eq!(Live::of(h.mx()), before);

    // run (the service) keeps the live list, warns, and keeps running.
    let run_with = |guard: &[&str]| {
        let mut args = vec![
            "run",
            "--iface",
            SERVER_IF,
            "--ranges",
            &other,
            "--log-format",
            "json",
        ];
        args.extend_from_slice(guard);
        h.mx().start(&args)
    };
    let mut run = run_with(&[]);
    let (refused, _) = until_event(&mut run.lines(), "refresh_refused");
    assert_eq!(refused["level"], "warn");
    assert!(
        refused["action"]
            .as_str()
            .unwrap()
            .contains("kept the live allowlist")
    );
    assert_eq!(Live::of(h.mx()).allowlist, before.allowlist);
    h.protects();
    assert!(run.signal(libc::SIGTERM).success());

    h.expect(
        0,
        &[
            "attach",
            "--iface",
            SERVER_IF,
            "--ranges",
            &other,
            "--max-shrink",
            "100",
        ],
        "allowlist: 1 IPv4 and 0 IPv6 prefixes (+1 -2)",
    );
    h.expect(
        0,
        &[
            "attach",
            "--iface",
            SERVER_IF,
            "--ranges",
            &h.s.ranges(),
            "--force",
        ],
        "(+2 -1)",
    );

    // run takes the same options: with them, the shrinking list is applied.
    for guard in [&["--max-shrink", "100"][..], &["--force"]] {
        let mut run = run_with(guard);
        let (applied, earlier) = until_event(&mut run.lines(), "refreshed");
        assert!(
            !earlier.contains(&"refresh_refused".to_owned()),
            "{guard:?}: {earlier:?}"
        );
        assert_eq!(applied["v4_prefixes"], 1, "{guard:?}: {applied}");
        assert!(run.signal(libc::SIGTERM).success());
        h.mx()
            .ok(&["refresh", "--ranges", &h.s.ranges(), "--force"]);
    }

    // And the unit never restarts a run that a guard (3) or bad input (2)
    // stopped: it would only be refused again, every 5 s.
    let unit = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/mxgate.service"
    ))
    .expect("reading dist/mxgate.service");
    assert!(
        unit.lines()
            .any(|l| l.trim() == "RestartPreventExitStatus=2 3"),
        "{unit}"
    );
}

#[test]
fn run_keeps_the_live_list_when_its_source_fails() {
    let h = Host::new("ho-runsrc");
    let before = Live::of(h.mx());
    let server = Https::start(&h.s.wire.server, |_| Reply::Status(503)).unwrap();
    let url = server.url("/list.txt");
    let ca = server.ca_file.display().to_string();
    let mut run = h.mx().start(&[
        "run",
        "--iface",
        SERVER_IF,
        "--ranges",
        &url,
        "--https-ca",
        &ca,
        "--log-format",
        "json",
    ]);
    let mut lines = run.lines();
    let (failed, _) = until_event(&mut lines, "list_failed");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("HTTP status 503"),
        "{failed}"
    );
    let attached: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(attached["event"], "attached", "{attached}");
    assert_eq!(Live::of(h.mx()), before);
    h.protects();
    assert!(run.signal(libc::SIGTERM).success());
}

// ---------------------------------------------------------------------
// Limits: lists larger than the maps, too many destinations (8, 9).

#[test]
fn limits_are_checked_before_the_kernel_is_touched() {
    let h = Host::new("ho-limits");
    let before = Live::of(h.mx());
    let mut big = String::new();
    for i in 0..=131_072u32 {
        big.push_str(&format!(
            "{}\n",
            std::net::Ipv4Addr::from(0x0a00_0000 + 2 * i)
        ));
    }
    let big = h.file("big.txt", &big);
    let needle = "131073 IPv4 prefixes after merging; mxgate takes at most 131072";
    h.expect(2, &["check", "--ranges", &big], needle);
    h.expect(2, &["refresh", "--ranges", &big, "--force"], needle);
    h.expect(
        2,
        &["attach", "--iface", SERVER_IF, "--ranges", &big],
        needle,
    );

    let mut args = vec!["attach", "--iface", SERVER_IF, "--ranges"];
    let ranges = h.s.ranges();
    args.push(&ranges);
    args.push("--protect-dst");
    let dsts: Vec<String> = (0..257)
        .map(|i| format!("10.9.{}.{}", i / 256, i % 256))
        .collect();
    args.extend(dsts.iter().map(String::as_str));
    h.expect(
        2,
        &args,
        "257 IPv4 --protect-dst addresses; the filter holds at most 256",
    );
    assert_eq!(Live::of(h.mx()), before);
    h.protects();
}

// ---------------------------------------------------------------------
// Files mxgate writes and reads outside bpffs (case 10).

#[test]
fn planted_temporaries_and_untrusted_caches_are_not_followed_or_used() {
    let h = Host::new("ho-files");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("shadow");
    fs::write(&secret, "root:secret\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    // The old predictable temporary names, planted as symlinks.
    let prom = dir.path().join("mxgate.prom");
    symlink(&secret, dir.path().join("mxgate.prom.tmp")).unwrap();
    // And a symlink at the metrics file itself.
    symlink(&secret, &prom).unwrap();
    let mut run = h.mx().start(&[
        "run",
        "--log-format",
        "json",
        "--prom-file",
        &prom.display().to_string(),
    ]);
    let _ = run.lines().next();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::symlink_metadata(&prom)
        .unwrap()
        .file_type()
        .is_symlink()
    {
        assert!(
            Instant::now() < deadline,
            "the metrics file was never written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(run.signal(libc::SIGTERM).success());
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root:secret\n");
    assert!(
        fs::read_to_string(&prom)
            .unwrap()
            .contains("mxgate_syns_total")
    );

    // A cache written by someone else is never applied.
    let before = Live::of(h.mx());
    let failing = Https::start(&h.s.wire.server, |_| Reply::Status(500)).unwrap();
    let url = failing.url("/list.txt");
    let ca = ca_of(&failing);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("cache");
    let cache_arg = cache_dir.display().to_string();
    // A good copy made by mxgate itself first: the directory is mxgate's.
    let good = Https::start(&h.s.wire.server, |_| {
        Reply::Body(b"192.0.2.0/24\n2001:db8:5e::/48\n".to_vec())
    })
    .unwrap();
    let good_url = good.url("/list.txt");
    h.expect(
        0,
        &[
            "refresh",
            "--ranges",
            &good_url,
            "--https-ca",
            &ca_of(&good),
            "--cache-dir",
            &cache_arg,
        ],
        "no change",
    );
    let copy = fs::read_dir(&cache_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // An everyone-in list planted under the name the failing source uses.
    let planted = filter_user::sources::cache_path(&cache_dir, &url);
    fs::write(&planted, "0.0.0.0/1\n128.0.0.0/2\n").unwrap();
    let args = [
        "refresh",
        "--ranges",
        url.as_str(),
        "--https-ca",
        ca.as_str(),
        "--use-cache-on-failure",
        "--cache-dir",
        cache_arg.as_str(),
    ];
    for (owner, mode, needle) in [
        (NOBODY, 0o600, "is owned by uid 65534"),
        (0, 0o666, "is writable by everyone"),
    ] {
        std::os::unix::fs::chown(&planted, Some(owner), Some(owner)).unwrap();
        fs::set_permissions(&planted, fs::Permissions::from_mode(mode)).unwrap();
        let out = h.expect(1, &args, "failed: HTTP status 500 (nothing changed)");
        assert!(out.contains("not using the copy"), "{out}");
        assert!(out.contains(needle), "{out}");
        assert_eq!(Live::of(h.mx()), before);
    }
    // A trusted copy (root's, 0600) that holds host bits is damaged, not
    // widened into 192.0.2.0/24: refused like a cut-off download.
    fs::write(&planted, "192.0.2.77/24\n").unwrap();
    std::os::unix::fs::chown(&planted, Some(0), Some(0)).unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o600)).unwrap();
    let out = h.expect(1, &args, "failed: HTTP status 500 (nothing changed)");
    assert!(
        out.contains("not using the copy") && out.contains("(cached):1: host bits"),
        "{out}"
    );
    assert_eq!(Live::of(h.mx()), before);
    // A cache directory that is a symlink is neither written nor read.
    let elsewhere = tempfile::tempdir().unwrap();
    let link = cache.path().join("linked");
    symlink(elsewhere.path(), &link).unwrap();
    let out = h.expect(
        0,
        &[
            "refresh",
            "--ranges",
            &good_url,
            "--https-ca",
            &ca_of(&good),
            "--cache-dir",
            &link.display().to_string(),
        ],
        "no change",
    );
    assert!(
        out.contains("could not keep a copy") && out.contains("symbolic link"),
        "{out}"
    );
    assert!(fs::read_dir(elsewhere.path()).unwrap().next().is_none());
    h.protects();
}

fn ca_of(server: &Https) -> String {
    server.ca_file.display().to_string()
}

// ---------------------------------------------------------------------
// Downloads cut short (case 11).

#[test]
fn a_cut_off_download_is_a_failed_source_and_nothing_is_kept() {
    let h = Host::new("ho-cut");
    let before = Live::of(h.mx());
    let full = b"192.0.2.0/24\n198.51.100.0/24\n2001:db8:5e::/48\n".to_vec();
    let cut = full[..17].to_vec(); // "192.0.2.0/24\n198." — or worse:
    let server = Https::start(&h.s.wire.server, move |path| match path {
        "/unframed" => Reply::Unframed(b"192.0.2.0/24\n192.0.2.0/2".to_vec()),
        "/short" => Reply::CutShort {
            body: cut.clone(),
            claimed: full.len(),
        },
        "/hostbits" => Reply::Body(b"192.0.2.0/24\n192.0.2.0/2\n".to_vec()),
        _ => Reply::Status(404),
    })
    .unwrap();
    let ca = ca_of(&server);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("c");
    let cache_arg = cache_dir.display().to_string();
    for (path, needle) in [
        ("/unframed", "did not say how long the body is"),
        ("/short", "failed:"),
        ("/hostbits", "host bits set in a fetched list"),
    ] {
        let url = server.url(path);
        h.expect(
            1,
            &[
                "refresh",
                "--ranges",
                &url,
                "--https-ca",
                &ca,
                "--cache-dir",
                &cache_arg,
            ],
            needle,
        );
        h.expect(1, &["check", "--ranges", &url, "--https-ca", &ca], needle);
        assert!(!cache_dir.exists(), "{path}: nothing was cached");
        assert_eq!(Live::of(h.mx()), before, "{path}");
    }
    h.protects();
}

#[test]
fn refresh_diff_writes_nothing_not_even_the_cache() {
    let h = Host::new("ho-diff");
    let before = Live::of(h.mx());
    let server = Https::start(&h.s.wire.server, |_| {
        Reply::Body(b"198.51.100.0/24\n192.0.2.0/24\n".to_vec())
    })
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("c");
    h.expect(
        0,
        &[
            "refresh",
            "--diff",
            "--ranges",
            &server.url("/l"),
            "--https-ca",
            &ca_of(&server),
            "--cache-dir",
            &cache_dir.display().to_string(),
        ],
        "+ 198.51.100.0/24",
    );
    assert!(!cache_dir.exists());
    assert_eq!(Live::of(h.mx()), before);
}

// ---------------------------------------------------------------------
// Local sources that never end (case 13).

#[test]
fn endless_and_odd_local_sources_are_refused() {
    let h = Host::new("ho-endless");
    let before = Live::of(h.mx());
    let fifo = h.s.write("placeholder", "");
    let fifo = Path::new(&fifo).with_file_name("fifo");
    must({
        let mut c = Command::new("mkfifo");
        c.arg(&fifo);
        c
    });
    let dir = h.victim.path().display().to_string();
    for (source, needle) in [
        ("/dev/zero", "reading /dev/zero: not a regular file"),
        (fifo.to_str().unwrap(), "not a regular file"),
        (dir.as_str(), "not a regular file"),
    ] {
        h.expect(2, &["refresh", "--ranges", source], needle);
        h.expect(2, &["check", "--ranges", source], needle);
    }
    // A file larger than --max-download.
    let big = h.file("big.txt", &"192.0.2.0/24\n".repeat(1000));
    h.expect(
        2,
        &["check", "--ranges", &big, "--max-download", "1000"],
        "larger than 1000 bytes",
    );
    // Standard input without end: /dev/zero, and a pipe never closed.
    let zero = fs::File::open("/dev/zero").unwrap();
    let out = h
        .mx()
        .command(&["refresh", "--ranges", "-"])
        .stdin(zero)
        .output()
        .unwrap();
    judge(&out, 2, "reading -: larger than 10485760 bytes");
    let mut child = h
        .mx()
        .command(&["check", "--ranges", "-", "--fetch-timeout", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"192.0.2.0/24\n").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    judge(&out, 2, "no end of input within --fetch-timeout");
    assert_eq!(Live::of(h.mx()), before);
    h.protects();
}

// ---------------------------------------------------------------------
// Locks: held by another user, held for long, and racing a detach (5, 14).

#[test]
fn a_held_lock_is_waited_for_a_bounded_time_naming_its_holder() {
    let h = Host::new("ho-lock");
    let before = Live::of(h.mx());
    let dir = h.mx().pin_dir().display().to_string();
    let mut holder = Command::new("flock")
        .args([&dir, "-c", "echo locked; sleep 30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let started = Instant::now();
    let text = h.expect(
        1,
        &["--lock-timeout", "1", "refresh", "--ranges", &h.s.ranges()],
        "has held the lock on",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(text.contains("(pid "), "{text}");
    h.expect(1, &["--lock-timeout", "1", "open"], "nothing changed");
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(Live::of(h.mx()), before);
    // An unprivileged user cannot even open the directory to lock it.
    let nobody = as_nobody("flock", &["-n", &dir, "true"]).output().unwrap();
    assert!(
        !nobody.status.success(),
        "nobody could lock the pin directory"
    );
    h.protects();
}

#[test]
fn detach_racing_two_attaches_leaves_one_working_filter() {
    let s = Setup::new("ho-race");
    // A list long enough that an attach's install takes a while: the
    // second attach arrives while the first fills a directory the detach
    // removed and the first created again.
    let mut text = String::from(mxgate_tests::scenario::RANGES);
    for i in 0..20_000u32 {
        text.push_str(&format!(
            "{}\n",
            std::net::Ipv4Addr::from(0x0a00_0000 + 2 * i)
        ));
    }
    let ranges = s.write("long.txt", &text);
    let spawn = |args: &[&str]| {
        s.mx.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let attach = ["attach", "--iface", SERVER_IF, "--ranges", ranges.as_str()];
    for (round, stagger_ms) in [0u64, 5, 10, 20, 30, 50, 80, 120].into_iter().enumerate() {
        s.mx.ok(&attach);
        let detach = spawn(&["detach"]);
        let a = spawn(&attach);
        std::thread::sleep(Duration::from_millis(stagger_ms));
        let b = spawn(&attach);
        for (what, child) in [("detach", detach), ("attach", a), ("attach", b)] {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round} (+{stagger_ms} ms): {what} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Whatever order they ran in, the state is whole: attached (an
        // attach ran last) or nothing at all (the detach did).
        let status = s.mx.run(&["status", "--json"]);
        if status.status.success() {
            let v: Value = serde_json::from_slice(&status.stdout).unwrap();
            assert!(v["damage"].as_array().is_none_or(Vec::is_empty), "{v}");
            assert_eq!(v["interfaces"].as_array().map(Vec::len), Some(1), "{v}");
            s.assert_times_out(DENIED_V4, 25);
        } else {
            assert!(
                !s.mx.pin_dir().exists(),
                "round {round}: a half-removed filter"
            );
        }
    }
}

#[test]
fn attach_killed_at_any_point_leaves_a_state_the_next_attach_completes() {
    let s = Setup::new("ho-kill");
    let ranges = s.ranges();
    for delay_ms in [0u64, 2, 5, 10, 20, 40, 80] {
        s.mx.run(&["detach"]);
        let mut child =
            s.mx.command(&["attach", "--iface", SERVER_IF, "--ranges", &ranges])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let out =
            s.mx.ok(&["attach", "--iface", SERVER_IF, "--ranges", &ranges]);
        assert!(
            out.contains("attached to mx-mail"),
            "after a kill at {delay_ms} ms: {out}"
        );
        s.assert_times_out(DENIED_V4, 25);
        s.assert_connects(ALLOWED_V4, 25);
    }
}

// ---------------------------------------------------------------------
// Usage, exit codes and messages (cases 16–20).

#[test]
fn bad_input_is_exit_2_with_a_clear_message_and_changes_nothing() {
    let h = Host::new("ho-usage");
    let before = Live::of(h.mx());
    let ranges = h.s.ranges();
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().display().to_string();
    for (args, needle) in [
        (
            vec!["refresh", "--ranges", "m365:bogus"],
            "not a Microsoft 365 instance",
        ),
        (vec!["refresh", "--ranges", "spf:"], "spf: needs a domain"),
        (
            vec!["refresh", "--ranges", "http://example.test/l"],
            "only https:// URLs",
        ),
        (
            vec!["refresh", "--ranges", "htps://example.test/l"],
            "only https:// URLs",
        ),
        (
            vec![
                "refresh",
                "--ranges",
                "https://localhost:1/l",
                "--https-ca",
                "/nonexistent.pem",
                "--use-cache-on-failure",
                "--cache-dir",
                &cache_arg,
            ],
            "--https-ca: reading /nonexistent.pem",
        ),
        (
            vec!["refresh", "--ranges", &ranges, "--max-download", "0"],
            "--max-download",
        ),
        (
            vec!["run", "--interval", "18446744073709551615"],
            "--interval",
        ),
        (vec!["detach", "--iface", ""], "is not an interface name"),
        (
            vec!["detach", "--iface", "../../x"],
            "is not an interface name",
        ),
        (
            vec!["refresh", "--ranges", "/nonexistent/list.txt"],
            "reading /nonexistent/list.txt",
        ),
        (
            vec!["attach", "--iface", "lo", "--ranges", &ranges],
            "is the loopback interface",
        ),
        (vec!["lookup", "mail.example.com"], "invalid value"),
    ] {
        let out = h.expect(2, &args, needle);
        assert!(
            out.matches("(os error").count() <= 1,
            "the OS error once: {out}"
        );
    }
    assert_eq!(Live::of(h.mx()), before);
    h.protects();
}

#[test]
fn warnings_for_settings_that_do_not_do_what_was_asked() {
    let h = Host::new("ho-warn");
    let ranges = h.s.ranges();
    let out = h.expect(
        0,
        &[
            "attach", "--iface", SERVER_IF, "--ranges", &ranges, "--mode", "skb",
        ],
        "already attached in native mode; --mode skb is not applied",
    );
    assert!(out.contains("warning:"), "{out}");
    let out = h.expect(
        0,
        &[
            "attach",
            "--iface",
            SERVER_IF,
            "--ranges",
            &ranges,
            "--protect-dst",
            "192.0.2.200",
        ],
        "--protect-dst 192.0.2.200 is not an address of this host",
    );
    assert!(
        out.contains("protecting TCP port 25 on 192.0.2.200"),
        "{out}"
    );
}

#[test]
fn lookup_tells_what_happens_to_the_senders_syns() {
    let h = Host::new("ho-lookup");
    let ranges = h.s.ranges();
    h.expect(
        0,
        &["lookup", DENIED_V4],
        "its SYNs to TCP port 25 are dropped",
    );
    h.mx().ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "--ranges",
        &ranges,
        "--dry-run",
    ]);
    h.expect(
        0,
        &["lookup", DENIED_V4],
        "dry run: its SYNs to TCP port 25 are counted as would-drop",
    );
    let v: Value = serde_json::from_str(&h.mx().ok(&["lookup", "--json", DENIED_V4])).unwrap();
    assert_eq!(v["verdict"], "would_drop");
    h.mx().ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "--ranges",
        &ranges,
        "--protect-dst",
        "198.51.100.25",
    ]);
    h.expect(
        0,
        &["lookup", DENIED_V4],
        "to TCP port 25 on 198.51.100.25 are dropped",
    );
    h.mx().ok(&["open"]);
    h.expect(
        0,
        &["lookup", DENIED_V4],
        "pass only because the filter is open",
    );
}

#[test]
fn printing_commands_end_quietly_on_a_closed_pipe() {
    let h = Host::new("ho-pipe");
    for args in [
        &["status"][..],
        &["stats"],
        &["check", "--ranges", &h.s.ranges()],
    ] {
        let mut child = h
            .mx()
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before mxgate writes.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        // Killed by SIGPIPE, as `cat` would be, or done before it wrote:
        // never the exit code of a panic.
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
    }
}

#[test]
fn non_root_users_are_told_they_need_root() {
    let h = Host::new("ho-nonroot");
    let before = Live::of(h.mx());
    // nsenter needs root: nobody runs mxgate in the test's own namespace,
    // which is enough to reach the pin directory.
    let dir = h.mx().pin_dir().display().to_string();
    let ranges = h.s.ranges();
    for args in [
        &["status"][..],
        &["open"],
        &["stats"],
        &["lookup", DENIED_V4],
        &["refresh", "--ranges", &ranges],
        &["detach"],
    ] {
        let out = {
            let mut c = as_nobody(h.mx().binary().to_str().unwrap(), &["--pin-dir", &dir]);
            c.args(args);
            c.stdin(Stdio::null()).output().unwrap()
        };
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(text.contains("mxgate needs root"), "{args:?}: {text}");
        assert!(!text.contains("no filter is installed"), "{args:?}: {text}");
    }
    assert_eq!(Live::of(h.mx()), before);
}

// ---------------------------------------------------------------------
// Settings change in a safe order (case 7).

#[test]
fn a_settings_change_never_drops_a_syn_that_neither_setting_drops() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use filter_user::{
        filter::{Filter, Settings},
        pins::PinDir,
    };
    use mxgate_tests::{
        frames::Frame,
        kernel::LoadedFilter,
        reference::{DROP, Policy},
        scenario::{SERVER_V4, ip},
    };

    let name = unique_name("ho-order");
    let policy = Policy {
        allow: filter_user::allowlist::Allowlist::default(),
        ports: [25].into(),
        protect_dst: Default::default(),
        dry_run: false,
        open: false,
    };
    let loaded = LoadedFilter::new(&name, &policy).expect("loading the filter");
    // A SYN to 587 from a denied sender: enforcing on 25 only passes it,
    // dry run on 25 and 587 passes it; nothing in between may drop it.
    let to_587 = Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 587).bytes();
    // A SYN to an address neither destination set protects.
    let to_other = Frame::syn(ip(DENIED_V4), ip("198.51.100.99"), 25).bytes();
    let enforcing_25 = Settings {
        ports: [25].into(),
        ..Settings::default()
    };
    let dry_run_25_587 = Settings {
        ports: [25, 587].into(),
        dry_run: true,
        ..Settings::default()
    };
    let only_a = Settings {
        ports: [25].into(),
        protect_dst: [ip(SERVER_V4)].into(),
        ..Settings::default()
    };
    let only_b = Settings {
        ports: [25].into(),
        protect_dst: [ip("198.51.100.26")].into(),
        ..Settings::default()
    };
    for (from, to, frame) in [
        (&enforcing_25, &dry_run_25_587, &to_587),
        (&only_a, &only_b, &to_other),
    ] {
        let mut changer =
            Filter::open(&PinDir::new(format!("/sys/fs/bpf/{name}"))).expect("opening");
        changer.apply_settings(from).expect("the starting settings");
        let done = AtomicBool::new(false);
        let drops = std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                let mut drops = 0u64;
                let mut runs = 0u64;
                while !done.load(Ordering::Relaxed) || runs == 0 {
                    if loaded.verdict(frame).expect("BPF_PROG_TEST_RUN") == DROP {
                        drops += 1;
                    }
                    runs += 1;
                }
                drops
            });
            // Each change reads the whole PORTS array back: a few dozen
            // rounds give the watcher hundreds of thousands of frames.
            for _ in 0..40 {
                changer.apply_settings(to).expect("applying");
                changer.apply_settings(from).expect("applying back");
            }
            done.store(true, Ordering::Relaxed);
            watcher.join().expect("the watcher thread")
        });
        assert_eq!(drops, 0, "{from:?} ⇄ {to:?} dropped a SYN neither drops");
    }
}

#[test]
fn a_waiter_whose_directory_was_removed_meanwhile_starts_over() {
    use filter_user::pins::PinDir;

    let dir = bpffs_dir("ho-dead");
    let _cleanup = Cleanup(vec![dir.clone()]);
    let pins = PinDir::new(&dir);
    pins.prepare().expect("making the directory");
    let held = pins.lock().expect("locking").expect("the directory exists");
    let waiter = std::thread::spawn({
        let pins = pins.clone();
        move || pins.lock().map(|lock| lock.is_some())
    });
    // Wait until the waiter holds the directory open (and so waits for
    // its lock), then remove the directory under it, as detach does.
    let opened = || {
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target == &dir)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while opened() < 2 {
        assert!(
            Instant::now() < deadline,
            "the waiter never opened the directory"
        );
        std::thread::yield_now();
    }
    fs::remove_dir(&dir).unwrap();
    drop(held);
    let got = waiter.join().unwrap().expect("lock() must not fail");
    assert!(!got, "a lock on a removed directory is no lock");
    // The caller starts over: a new directory, a lock that holds.
    pins.prepare().unwrap();
    assert!(pins.lock().unwrap().is_some());
}

#[test]
fn status_reports_protected_destinations_only_while_their_flag_is_on() {
    use aya::maps::{Array, Map, MapData};
    use filter_common::{Config, FLAG_PROTECT_DST};

    let h = Host::new("ho-flag");
    h.mx().ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "--ranges",
        &h.s.ranges(),
        "--protect-dst",
        "198.51.100.25",
    ]);
    let v: Value = serde_json::from_str(&h.mx().ok(&["status", "--json"])).unwrap();
    assert_eq!(v["protect_dst"], serde_json::json!(["198.51.100.25"]));
    // The flag off with the address still in the set (as an interrupted
    // change of an older mxgate could leave it): every address is
    // protected, and status must say so.
    let data = MapData::from_pin(h.mx().pin_dir().join("CONFIG")).unwrap();
    let mut config: Array<MapData, Config> = Map::from_map_data(data).unwrap().try_into().unwrap();
    let mut c = config.get(&0, 0).unwrap();
    c.flags &= !FLAG_PROTECT_DST;
    config.set(0, &c, 0).unwrap();
    let v: Value = serde_json::from_str(&h.mx().ok(&["status", "--json"])).unwrap();
    assert_eq!(v["protect_dst"], serde_json::json!([]), "{v}");
    h.expect(
        0,
        &["status"],
        "protecting TCP port 25 on every local address",
    );
}
