//! What mxgate prints for people and logs: names from outside (interface
//! names can hold ESC, DEL, commas) escaped and unambiguous, times that
//! say their zone and do not move with the boot clock.

use super::*;

/// Interfaces whose names a terminal or a log reader could be fooled by.
const ESC: &str = "mx\u{1b}[2J";
const DEL: &str = "mx\u{7f}d";
const COMMA: &str = "mx,b";

fn no_controls(what: &str, text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{what} holds a control character: {text:?}"
    );
}

#[test]
fn names_from_outside_are_escaped_in_text_and_unambiguous_in_logs() {
    let h = Host::new("ho-escape");
    for name in [ESC, DEL, COMMA] {
        h.s.wire.server.add_veth(name).unwrap();
    }
    let out = h.expect(
        0,
        &[
            "attach",
            "--iface",
            ESC,
            DEL,
            COMMA,
            "--ranges",
            &h.s.ranges(),
        ],
        "attached to mx\\x1b[2J (",
    );
    no_controls("attach", &out);
    assert!(out.contains("attached to mx\\x7fd ("), "{out}");
    let status = h.expect(0, &["status"], "attached to mx\\x1b[2J (");
    no_controls("status", &status);
    for name in ["mx\\x7fd", COMMA, SERVER_IF] {
        assert!(
            status.contains(&format!("attached to {name} (")),
            "{status}"
        );
    }

    // run's logfmt: every name escaped, and the list of interfaces reads
    // back as the four names, one of which holds a comma.
    let mut run = h.mx().start(&["run"]);
    let adopted = run.lines().next().unwrap().unwrap();
    no_controls("run", &adopted);
    let value = adopted
        .split_once(" interfaces=")
        .map(|(_, v)| v)
        .expect("an interfaces field");
    let text: String = serde_json::from_str(value).expect("a quoted logfmt value");
    let names: Vec<String> = serde_json::from_str(&text).expect("a JSON list");
    assert_eq!(names, [ESC, COMMA, SERVER_IF, DEL], "{adopted}");
    assert!(run.signal(libc::SIGTERM).success());

    let out = h.expect(0, &["detach", "--iface", ESC], "detached from mx\\x1b[2J");
    no_controls("detach", &out);
    let err = h.expect(
        2,
        &[
            "attach",
            "--iface",
            "mx\u{1b}[31m",
            "--ranges",
            &h.s.ranges(),
        ],
        "there is no interface named",
    );
    no_controls("an error", &err);
}

#[test]
fn times_say_their_zone_and_the_load_time_stays_put() {
    let h = Host::new("ho-times");
    h.s.assert_times_out(DENIED_V4, 25);
    let status = h.expect(0, &["status"], " UTC)");
    let stamp = |line: &str, after: &str| -> bool {
        // `… AFTER 2026-11-28 10:00:00 UTC)`
        line.split_once(after).is_some_and(|(_, rest)| {
            rest.len() >= 24
                && rest.as_bytes()[4] == b'-'
                && rest.as_bytes()[10] == b' '
                && &rest[19..24] == " UTC)"
        })
    };
    assert!(
        status.lines().any(|l| stamp(l, "loaded ")),
        "the load time, with its zone: {status}"
    );
    assert!(
        status.lines().any(|l| stamp(l, "since ")),
        "the attach time, with its zone: {status}"
    );
    let stats = h.expect(0, &["stats"], " UTC");
    assert!(
        stats
            .lines()
            .any(|l| l.contains(DENIED_V4) && l.ends_with(" UTC")),
        "{stats}"
    );

    // The load time does not move with the boot clock: seen from a time
    // namespace whose boot clock is a day ahead (as after a VM pause or a
    // clock step between the clocks), it is the same.
    let loaded = |cmd: &mut Command| -> Value {
        let out = must({
            let mut c = Command::new(cmd.get_program());
            c.args(cmd.get_args());
            c
        });
        let v: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
        v["program"]["loaded_at"].clone()
    };
    let here = loaded(&mut h.mx().command(&["status", "--json"]));
    assert!(here.is_string(), "{here}");
    let plain = h.mx().command(&["status", "--json"]);
    let mut shifted = Command::new("unshare");
    shifted
        .args(["--time", "--boottime", "86400", "--"])
        .arg(plain.get_program())
        .args(plain.get_args());
    assert_eq!(loaded(&mut shifted), here);
}
