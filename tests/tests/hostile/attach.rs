//! An attach that fails, or is killed, changes nothing a next attach cannot complete.

use super::*;

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
