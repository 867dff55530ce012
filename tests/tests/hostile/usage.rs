//! Usage, exit codes and messages.

use super::*;

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

#[test]
fn refresh_json_is_json_on_failure_and_diff_exits_as_the_refresh_would() {
    let h = Host::new("ho-json");
    let before = Live::of(h.mx());
    let other = h.file("other.txt", "198.51.100.0/24\n");
    let json_of = |args: &[&str], code: i32| -> Value {
        let out = h.mx().run(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        serde_json::from_str(&String::from_utf8_lossy(&out.stdout))
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {out:?}"))
    };
    // A source that fails, a list the guard refuses: JSON on stdout, the
    // error on stderr, the exit status in both.
    for (args, code, needle) in [
        (
            vec!["refresh", "--json", "--ranges", "/nonexistent/list.txt"],
            2,
            "reading /nonexistent/list.txt",
        ),
        (
            vec!["refresh", "--json", "--ranges", &other],
            3,
            "more than --max-shrink 50%",
        ),
    ] {
        let v = json_of(&args, code);
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["exit_status"], code, "{v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(needle),
            "{v}"
        );
    }
    // --diff of a refused list: the change, the refusal, and exit 3.
    let v = json_of(&["refresh", "--json", "--diff", "--ranges", &other], 3);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["applied"], false, "{v}");
    assert!(
        v["refusal"]
            .as_str()
            .unwrap_or_default()
            .contains("more than --max-shrink 50%"),
        "{v}"
    );
    assert_eq!(v["guard"]["refusals"][0]["guard"], "shrink", "{v}");
    let out = h.expect(
        3,
        &["refresh", "--diff", "--ranges", &other],
        "refresh would refuse: the new list takes access from 256 of the 256 live IPv4 addresses",
    );
    assert!(out.contains("+ 198.51.100.0/24"), "{out}");
    // An accepted --diff still exits 0.
    let v = json_of(
        &["refresh", "--json", "--diff", "--ranges", &h.s.ranges()],
        0,
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(Live::of(h.mx()), before);
    h.protects();
}
