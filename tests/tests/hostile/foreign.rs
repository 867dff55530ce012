//! Pins recognised by what they hold, not by their names: another
//! filter's link pinned as `link_IF`, another filter's map pinned in place
//! of one of this filter's. Each is named, never used, detached or
//! removed (exit 3, with what to do), also with only the capabilities the
//! systemd unit keeps (no CAP_SYS_ADMIN).

use std::{
    ffi::CString,
    os::{
        fd::{AsFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
};

use aya::maps::{LpmTrie, Map, MapData};

use super::*;

/// Pins at `to` the object pinned at `from`, as `bpftool link pin id N
/// TO` or `bpftool map pin id N TO` would.
fn repin(from: &Path, to: &Path) {
    #[repr(C)]
    struct ObjAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let path = CString::new(from.as_os_str().as_bytes()).unwrap();
    let attr = ObjAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    // SAFETY: BPF_OBJ_GET with a valid attr of its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            7,
            &attr as *const ObjAttr,
            size_of::<ObjAttr>(),
        )
    };
    assert!(fd >= 0, "BPF_OBJ_GET {}", from.display());
    // SAFETY: BPF_OBJ_GET returned a new descriptor that we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    filter_user::sys::pin_fd(fd.as_fd(), to).expect("pinning");
}

/// The prefixes in the IPv4 trie pinned at `path`.
fn v4_keys(path: &Path) -> Vec<(u32, [u8; 4])> {
    let trie: LpmTrie<MapData, [u8; 4], u8> =
        LpmTrie::try_from(Map::LpmTrie(MapData::from_pin(path).unwrap())).unwrap();
    let mut keys: Vec<(u32, [u8; 4])> = trie
        .keys()
        .map(|k| {
            let k = k.unwrap();
            (k.prefix_len(), k.data())
        })
        .collect();
    keys.sort();
    keys
}

/// `mxgate ARGS` in the test's namespace with the capabilities of the
/// systemd unit: no CAP_SYS_ADMIN.
fn without_sys_admin(h: &Host, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", h.s.wire.server.path().display()))
        .args(["setpriv", "--bounding-set=-sys_admin", "--"])
        .arg(h.mx().binary())
        .arg("--pin-dir")
        .arg(h.mx().pin_dir())
        .args(args);
    cmd
}

/// The commands of [`without_sys_admin`] really lack CAP_SYS_ADMIN.
fn assert_sys_admin_dropped() {
    let out = must({
        let mut c = Command::new("setpriv");
        c.args([
            "--bounding-set=-sys_admin",
            "--",
            "grep",
            "^CapEff:",
            "/proc/self/status",
        ]);
        c
    });
    let text = String::from_utf8_lossy(&out.stdout);
    let caps = u64::from_str_radix(text.trim_start_matches("CapEff:").trim(), 16).unwrap();
    assert_eq!(caps & (1 << 21), 0, "CAP_SYS_ADMIN still effective: {text}");
    assert_ne!(caps & (1 << 39), 0, "CAP_BPF kept: {text}");
}

#[test]
fn another_filters_link_pinned_as_ours_is_named_and_never_detached() {
    assert_sys_admin_dropped();
    let h = Host::new("ho-flink");
    h.s.wire.server.add_veth("mx-b").unwrap();
    let other = bpffs_dir("ho-flink-o");
    let _cleanup = Cleanup(vec![other.clone()]);
    check(
        h.mx().command_at(
            &other,
            &["attach", "--iface", "mx-b", "--ranges", &h.s.ranges()],
        ),
        0,
        "attached to mx-b",
    );
    let dir = h.mx().pin_dir().to_path_buf();
    // `bpftool link pin id N DIR/link_mx-b`: the other filter's link,
    // under one of this filter's names.
    repin(&other.join("link_mx-b"), &dir.join("link_mx-b"));
    let theirs = || filter_user::sys::pinned_xdp_link(&other.join("link_mx-b")).unwrap();
    let link = theirs();
    assert_ne!(link.ifindex, 0);

    for status in [
        check(h.mx().command(&["status"]), 0, "DAMAGED: "),
        check(without_sys_admin(&h, &["status"]), 0, "DAMAGED: "),
    ] {
        assert!(
            status.contains(&format!(
                "/link_mx-b holds link {} attaching program {} (not this filter's program",
                link.link_id, link.program_id
            )),
            "{status}"
        );
        assert!(
            status.contains("mxgate neither uses nor removes it"),
            "{status}"
        );
        assert!(!status.contains("attached to mx-b"), "{status}");
    }
    let json: Value = serde_json::from_str(&h.mx().ok(&["status", "--json"])).unwrap();
    assert_eq!(json["interfaces"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["foreign_pins"][0]["pin"], "link_mx-b", "{json}");

    // Never detached, with or without CAP_SYS_ADMIN.
    h.expect(
        3,
        &["detach", "--iface", "mx-b"],
        "mxgate neither uses nor removes it",
    );
    check(
        without_sys_admin(&h, &["detach", "--iface", "mx-b"]),
        3,
        "not this filter's program",
    );
    // Nor replaced by an attach.
    h.expect(
        3,
        &["attach", "--iface", "mx-b", "--ranges", &h.s.ranges()],
        "/link_mx-b holds link",
    );
    assert_eq!(theirs(), link, "the other filter's link is untouched");
    assert!(dir.join("link_mx-b").exists());
    h.protects();

    // Removing this filter leaves it, and says so.
    let out = h.expect(0, &["detach"], "detached from mx-mail");
    assert!(
        out.contains("left link_mx-b in place: it holds link"),
        "{out}"
    );
    assert_eq!(theirs(), link);
    let left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["link_mx-b"]);
    fs::remove_file(dir.join("link_mx-b")).unwrap();
    check(
        h.mx().command_at(&other, &["detach"]),
        0,
        "detached from mx-b",
    );
}

#[test]
fn a_map_pin_swapped_for_another_filters_map_is_never_written() {
    assert_sys_admin_dropped();
    let h = Host::new("ho-fmap");
    h.s.wire.server.add_veth("mx-b").unwrap();
    let other = bpffs_dir("ho-fmap-o");
    let _cleanup = Cleanup(vec![other.clone()]);
    let theirs = h.file("theirs.txt", "198.51.100.0/24\n2001:db8:5e::/48\n");
    check(
        h.mx()
            .command_at(&other, &["attach", "--iface", "mx-b", "--ranges", &theirs]),
        0,
        "attached to mx-b",
    );
    let dir = h.mx().pin_dir().to_path_buf();
    let their_keys = v4_keys(&other.join("ALLOW_V4"));
    let more = h.file(
        "more.txt",
        "192.0.2.0/24\n203.0.113.0/24\n2001:db8:5e::/48\n",
    );

    for map in ["ALLOW_V4", "LIST_DIGEST"] {
        // `bpftool map pin id N DIR/MAP` over a removed pin.
        fs::remove_file(dir.join(map)).unwrap();
        repin(&other.join(map), &dir.join(map));
        let holds = if map == "ALLOW_V4" {
            "/ALLOW_V4 holds map"
        } else {
            "/LIST_DIGEST holds map"
        };
        for out in [
            check(h.mx().command(&["refresh", "--ranges", &more]), 3, holds),
            check(
                without_sys_admin(&h, &["refresh", "--ranges", &more]),
                3,
                holds,
            ),
        ] {
            assert!(out.contains("another filter's"), "{map}: {out}");
            assert!(out.contains("nothing changed"), "{map}: {out}");
        }
        assert_eq!(v4_keys(&other.join("ALLOW_V4")), their_keys, "{map}");
        h.expect(
            0,
            &["status"],
            &format!("DAMAGED: {}", dir.join(map).display()),
        );
        // attach neither uses it nor pins over it.
        h.expect(
            3,
            &["attach", "--iface", SERVER_IF, "--ranges", &more],
            holds,
        );
        assert_eq!(v4_keys(&other.join("ALLOW_V4")), their_keys, "{map}");
        // The emergency switch needs only CONFIG, which is this filter's.
        h.expect(0, &["open"], "filter OPEN");
        h.expect(0, &["enforce"], "enforcing");
        h.protects();
        // The way out the message gives: remove the pin, attach again.
        fs::remove_file(dir.join(map)).unwrap();
        h.expect(
            0,
            &["attach", "--iface", SERVER_IF, "--ranges", &h.s.ranges()],
            &format!("repaired: pinned {}", dir.join(map).display()),
        );
        h.expect(0, &["status"], "maps: in step");
    }
    h.expect(0, &["refresh", "--ranges", &more], "refreshed: IPv4 +1 -0");
    assert_eq!(v4_keys(&other.join("ALLOW_V4")), their_keys);
    h.s.assert_connects(DENIED_V4, 25);
    check(
        h.mx().command_at(&other, &["detach"]),
        0,
        "detached from mx-b",
    );
}
