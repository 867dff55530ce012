//! Pin directories mxgate must not use, and other tools' objects beside its own.

use super::*;

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
