//! Maps edited behind mxgate's back, as `bpftool map update pinned …`
//! would: `status` names every difference with its repair, and `refresh`
//! (its cheap check), `refresh --force` and `attach` put the list back, so
//! the sender the edit let in is refused again.

use aya::maps::{Array, LpmTrie, Map, MapData, lpm_trie::Key};
use filter_common::fast_path::{BlockState, shift_of, summary_word_of, unit_of, v4_block, word_of};

use super::*;

/// The map pinned as `name` in `dir`, opened as any other tool would.
fn pinned(dir: &Path, name: &str) -> MapData {
    MapData::from_pin(dir.join(name)).unwrap_or_else(|e| panic!("opening {name}: {e}"))
}

/// Marks the IPv4 /24 holding `addr` covered in full in FAST_V4, with the
/// /16 and /20 summaries above it saying "look further": three
/// `bpftool map update` calls (BPF_MAP_UPDATE_ELEM), not the memory map.
fn mark_covered(dir: &Path, addr: [u8; 4]) {
    let mut fast: Array<MapData, u64> =
        Array::try_from(Map::Array(pinned(dir, "FAST_V4"))).expect("FAST_V4 is an array");
    let block = v4_block(&addr);
    let set = |fast: &mut Array<MapData, u64>, index: u32, unit: u32, state: BlockState| {
        let word = fast.get(&index, 0).expect("reading FAST_V4");
        let shift = shift_of(unit);
        let word = (word & !(3 << shift)) | ((state as u64) << shift);
        fast.set(index, &word, 0).expect("writing FAST_V4");
    };
    for level in [0, 1] {
        let unit = unit_of(level, block);
        set(
            &mut fast,
            summary_word_of(level, unit),
            unit,
            BlockState::Next,
        );
    }
    set(&mut fast, word_of(block), block, BlockState::Full);
}

/// ALLOW_V4, opened as any other tool would.
fn trie(dir: &Path) -> LpmTrie<MapData, [u8; 4], u8> {
    LpmTrie::try_from(Map::LpmTrie(pinned(dir, "ALLOW_V4"))).expect("ALLOW_V4 is a trie")
}

/// `mxgate status` says the maps are out of step, names `difference`, and
/// says what repairs it.
fn status_names(h: &Host, difference: &str) {
    let status = h.expect(
        0,
        &["status"],
        "maps: OUT OF STEP with the list applied last:",
    );
    assert!(status.contains(difference), "{difference:?} in:\n{status}");
    assert!(
        status.contains("`mxgate refresh --force` and `mxgate attach` read every map back"),
        "{status}"
    );
    let json: Value = serde_json::from_str(&h.mx().ok(&["status", "--json"])).unwrap();
    assert_eq!(json["maps"]["in_step"], false, "{json}");
    assert!(
        json["maps"]["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap_or_default().contains(difference)),
        "{json}"
    );
}

fn status_in_step(h: &Host) {
    h.expect(0, &["status"], "maps: in step with the list applied last");
}

/// Runs `repair`, which must say `said` and show the IPv4 trie's change
/// `change` ("+0 -1"): after "IPv4" in a refresh's summary, in brackets in
/// attach's. The filter then protects again, its maps in step.
fn repairs(h: &Host, repair: &[&str], said: &str, change: &str) {
    let out = h.expect(0, repair, said);
    let shown = if repair[0] == "refresh" {
        format!("IPv4 {change}")
    } else {
        format!("({change})")
    };
    assert!(out.contains(&shown), "{repair:?}: {out}");
    h.protects();
    status_in_step(h);
}

#[test]
fn a_fast_path_word_edited_behind_mxgates_back_is_named_and_repaired() {
    let h = Host::new("ho-driftf");
    let dir = h.mx().pin_dir().to_path_buf();
    let ranges = h.s.ranges();
    h.protects();
    status_in_step(&h);
    for repair in [
        &["refresh", "--ranges", &ranges][..],
        &["refresh", "--ranges", &ranges, "--force"],
        &["attach", "--iface", SERVER_IF, "--ranges", &ranges],
    ] {
        mark_covered(&dir, [203, 0, 113, 0]);
        // The edit lets the spammer in: the fast path answers for the trie.
        h.s.assert_connects(DENIED_V4, 25);
        status_names(
            &h,
            "fast path: 203.0.113.0/24 is covered in full in the bitmap, not covered by the list",
        );
        h.expect(
            0,
            repair,
            "repaired drift: the maps had drifted from the list applied last (the fast path's \
             maps (FAST_V4, FAST_V6, MIDS_V6, BLOCKS_V6) are not those of the list applied \
             last)",
        );
        h.protects();
        status_in_step(&h);
    }
    // And a plain refresh now finds nothing to do.
    h.expect(0, &["refresh", "--ranges", &ranges], "no change:");
}

#[test]
fn a_prefix_added_to_a_trie_behind_mxgates_back_is_named_and_repaired() {
    let h = Host::new("ho-driftt");
    let dir = h.mx().pin_dir().to_path_buf();
    // 203.0.113.0/24 covered in part: the trie decides for DENIED_V4
    // (203.0.113.66), which the list leaves out.
    let list = h.file(
        "part.txt",
        "192.0.2.0/24\n203.0.113.0/26\n2001:db8:5e::/48\n",
    );
    h.mx().ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "--ranges",
        &list,
        "--max-shrink",
        "100",
    ]);
    h.protects();
    status_in_step(&h);
    let added = Key::new(26, [203, 0, 113, 64]);
    for repair in [
        &["refresh", "--ranges", &list][..],
        &["refresh", "--ranges", &list, "--force"],
        &["attach", "--iface", SERVER_IF, "--ranges", &list],
    ] {
        trie(&dir)
            .insert(&added, &26, 0)
            .expect("inserting behind mxgate's back");
        h.s.assert_connects(DENIED_V4, 25);
        status_names(
            &h,
            "the IPv4 trie holds 3 prefixes, the list applied last 2",
        );
        repairs(
            &h,
            repair,
            "repaired drift: the maps had drifted from the list applied last (the IPv4 trie \
             holds 3 prefixes, the list applied last 2",
            "+0 -1",
        );
    }

    // One prefix swapped for another: as many entries, other ones.
    // `status`, `refresh --force`, `attach` and a refresh that parses read
    // every key, and their checksum sees it. (A refresh of the very bytes
    // applied last may trust the kernel's entry count instead: DESIGN §6.)
    let swap = || {
        let mut t = trie(&dir);
        t.remove(&Key::new(26, [203, 0, 113, 0])).expect("removing");
        t.insert(&added, &26, 0).expect("inserting");
        h.s.assert_connects(DENIED_V4, 25);
        status_names(
            &h,
            "the IPv4 trie holds other prefixes than the list applied last (as many, 2",
        );
    };
    // The same list in other bytes: parsed, so every key is read back.
    let reworded = h.file(
        "part-reworded.txt",
        "# the same list, other bytes\n192.0.2.0/24\n203.0.113.0/26\n2001:db8:5e::/48\n",
    );
    for repair in [
        &["refresh", "--ranges", &reworded][..],
        &["refresh", "--ranges", &list, "--force"],
        &["attach", "--iface", SERVER_IF, "--ranges", &list],
    ] {
        swap();
        repairs(&h, repair, "repaired drift", "+1 -1");
    }
}

#[test]
fn a_refresh_diff_shows_the_repair_and_changes_nothing() {
    let h = Host::new("ho-driftd");
    let dir = h.mx().pin_dir().to_path_buf();
    mark_covered(&dir, [203, 0, 113, 0]);
    let out = h.expect(
        0,
        &["refresh", "--ranges", &h.s.ranges(), "--diff"],
        "the maps have drifted from the list applied last",
    );
    assert!(out.contains("fast path"), "{out}");
    // Nothing written: the spammer still gets in until a real refresh.
    h.s.assert_connects(DENIED_V4, 25);
    h.expect(0, &["refresh", "--ranges", &h.s.ranges()], "repaired drift");
    h.protects();
}
