//! Settings change in a safe order; status shows what is in force.

use super::*;

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
