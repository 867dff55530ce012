//! Locks held by another user, held for long, racing a detach.

use super::*;

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
