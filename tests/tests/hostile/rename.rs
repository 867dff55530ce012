//! A renamed interface: the filter follows its ifindex. `status` names
//! the interface as it is called now (and what it was called), `detach`
//! under the old name is refused naming the new one, and `attach` under
//! the new name adopts the filter's own link.

use super::*;

/// `ip link set OLD name NEW` in the server's namespace (down and up
/// again, as renaming needs), then what the bounce cleared: the IPv6
/// address and the routes to the client's addresses.
fn rename(h: &Host, old: &str, new: &str) {
    let ns = &h.s.wire.server;
    ns.ip(&["link", "set", old, "down"]).unwrap();
    ns.ip(&["link", "set", old, "name", new]).unwrap();
    ns.ip(&["link", "set", new, "up"]).unwrap();
    let _ = ns.ip(&[
        "addr",
        "add",
        &format!("{}/128", mxgate_tests::scenario::SERVER_V6),
        "dev",
        new,
        "nodad",
    ]);
    for peer in [
        ALLOWED_V4,
        DENIED_V4,
        mxgate_tests::scenario::ALLOWED_V6,
        mxgate_tests::scenario::DENIED_V6,
    ] {
        let _ = ns.ip(&["route", "replace", peer, "dev", new]);
    }
}

#[test]
fn a_renamed_interface_is_followed_by_its_ifindex() {
    let h = Host::new("ho-rename");
    let ranges = h.s.ranges();
    let before: Value = serde_json::from_str(&h.mx().ok(&["status", "--json"])).unwrap();
    let link_id = before["interfaces"][0]["link_id"].clone();
    rename(&h, SERVER_IF, "mx-ren");
    h.protects();

    // status names it as it is called now.
    let status = h.expect(
        0,
        &["status"],
        "attached to mx-ren (renamed from mx-mail, its name when attached; native mode",
    );
    assert!(!status.contains("attached to mx-mail"), "{status}");
    let json: Value = serde_json::from_str(&h.mx().ok(&["status", "--json"])).unwrap();
    let iface = &json["interfaces"][0];
    assert_eq!(
        (
            iface["iface"].as_str(),
            iface["current_name"].as_str(),
            iface["state"].as_str()
        ),
        (Some(SERVER_IF), Some("mx-ren"), Some("renamed")),
        "{json}"
    );

    // The old name, which no interface has now: refused, naming the new.
    let out = h.expect(
        3,
        &["detach", "--iface", SERVER_IF],
        "mx-mail was renamed; nothing changed (`mxgate detach --iface mx-ren` detaches it)",
    );
    assert!(out.contains("attaches mx-ren"), "{out}");
    h.protects();
    // Nor does attach under the old name touch it.
    h.expect(
        2,
        &["attach", "--iface", SERVER_IF, "--ranges", &ranges],
        "there is no interface named \"mx-mail\"",
    );

    // The new name: this filter's own link, adopted and re-pinned.
    h.expect(
        0,
        &["attach", "--iface", "mx-ren", "--ranges", &ranges],
        "already attached to mx-ren (native mode, link",
    );
    let dir = h.mx().pin_dir().to_path_buf();
    assert!(dir.join("link_mx-ren").exists() && !dir.join("link_mx-mail").exists());
    let json: Value = serde_json::from_str(&h.mx().ok(&["status", "--json"])).unwrap();
    assert_eq!(json["interfaces"][0]["link_id"], link_id, "the same link");
    assert_eq!(json["interfaces"][0]["state"], "attached", "{json}");
    h.expect(0, &["status"], "attached to mx-ren (native mode");
    h.protects();

    // Renamed again, and a new interface takes the old name: neither
    // attach nor detach under that name touches the filter's link.
    rename(&h, "mx-ren", "mx-two");
    h.s.wire.server.add_veth("mx-ren").unwrap();
    h.expect(
        3,
        &["attach", "--iface", "mx-ren", "--ranges", &ranges],
        "(now called mx-two), not to the mx-ren there is now",
    );
    h.expect(
        3,
        &["detach", "--iface", "mx-ren"],
        "`mxgate detach --iface mx-two`",
    );
    h.protects();
    // The new name detaches it, whatever its pin is called.
    h.expect(
        0,
        &["detach", "--iface", "mx-two"],
        "detached from mx-two (its link was pinned as link_mx-ren, its name when attached)",
    );
    h.s.assert_connects(DENIED_V4, 25);
    assert!(!dir.join("link_mx-ren").exists());
}
