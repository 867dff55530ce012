//! Refresh run unattended: serialised by the pin directory's lock, safe to
//! kill at any point, fine with 100,000 prefixes. The filter is loaded by
//! the library; the refreshes are the real `mxgate` binary.

use std::{
    collections::BTreeSet,
    fs::File,
    io::{BufRead as _, BufReader},
    os::fd::AsRawFd as _,
    path::Path,
    process::{Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use filter_user::{
    allowlist::Allowlist,
    sources::{Source, SourceOptions, read_list},
};
use ipnet::Ipv4Net;
use mxgate_tests::{
    cli::Mxgate, kernel::LoadedFilter, mutate::Rng, reference::Policy, unique_name,
};

/// `count` distinct random /24s, seeded.
fn random_list(rng: &mut Rng, count: usize) -> BTreeSet<Ipv4Net> {
    let mut set = BTreeSet::new();
    while set.len() < count {
        let a = 1 + rng.below(223) as u8;
        let net = Ipv4Net::new([a, rng.byte(), rng.byte(), 0].into(), 24).expect("a /24");
        set.insert(net);
    }
    set
}

fn write_list(dir: &Path, name: &str, nets: impl IntoIterator<Item = Ipv4Net>) -> String {
    let text: String = nets.into_iter().map(|n| format!("{n}\n")).collect();
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a list");
    path.display().to_string()
}

fn parsed(path: &str) -> Allowlist {
    read_list(&[Source::File(path.into())], &[], &SourceOptions::default())
        .expect("a valid list")
        .allowlist
}

fn policy(allow: Allowlist) -> Policy {
    Policy {
        allow,
        ports: [25].into(),
        ..Policy::default()
    }
}

/// Runs `mx ARGS` to the end, failing the test if it takes longer than
/// `limit` (a wedged lock would otherwise hang the test run).
fn finish_within(mx: &Mxgate, args: &[&str], limit: Duration) -> Output {
    let child = mx
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mxgate");
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("waiting for mxgate"),
        Err(_) => {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("mxgate {args:?} did not finish within {limit:?}");
        }
    }
}

#[test]
fn concurrent_refreshes_wait_for_each_other_and_both_succeed() {
    let name = unique_name("rf-lock");
    // Made before the filter: Mxgate clears the pin directory when made.
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(11);
    let base = random_list(&mut rng, 50);
    let base_path = write_list(dir.path(), "base.txt", base.iter().copied());
    let filter = LoadedFilter::new(&name, &policy(parsed(&base_path))).expect("loading");
    let one = write_list(
        dir.path(),
        "one.txt",
        base.iter()
            .copied()
            .chain(["203.0.113.0/24".parse().unwrap()]),
    );
    let two = write_list(
        dir.path(),
        "two.txt",
        base.iter()
            .copied()
            .chain(["198.51.100.0/24".parse().unwrap()]),
    );

    // Hold the lock as a running refresh would.
    let held = File::open(mx.pin_dir()).expect("opening the pin dir");
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let mut children = Vec::new();
    for list in [&one, &two] {
        let mut child = mx
            .command(&["refresh", "--ranges", list])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting mxgate refresh");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut line = String::new();
        stderr.read_line(&mut line).expect("reading stderr");
        assert!(line.contains("waiting for another mxgate"), "{line:?}");
        children.push(child);
    }
    drop(held);
    for child in children {
        let out = child.wait_with_output().expect("waiting for refresh");
        assert!(out.status.success(), "a refresh failed: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("refreshed"),
            "{out:?}"
        );
    }
    let live = filter.filter().allowlist().unwrap();
    assert!(
        live == parsed(&one) || live == parsed(&two),
        "the live list is one of the two"
    );
}

#[test]
fn a_refresh_that_changes_nothing_says_so() {
    let name = unique_name("rf-noop");
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), "list.txt", random_list(&mut Rng::new(3), 1000));
    let _filter = LoadedFilter::new(&name, &policy(parsed(&list))).expect("loading");
    let out = mx.ok(&["refresh", "--ranges", &list]);
    assert!(out.starts_with("no change:"), "{out}");
    assert!(out.contains("nothing written"), "{out}");
    let json = mx.ok(&["refresh", "--ranges", &list, "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["applied"], false);
    assert_eq!(value["diff"]["v4"]["unchanged"], 1000);
}

#[test]
fn a_list_of_100000_prefixes_parses_merges_and_loads() {
    let name = unique_name("rf-scale");
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let big = random_list(&mut Rng::new(5), 100_000);
    let path = write_list(dir.path(), "big.txt", big.iter().copied());
    let expected = parsed(&path);
    let filter = LoadedFilter::new(
        &name,
        &policy(parsed(&write_list(
            dir.path(),
            "small.txt",
            big.iter().copied().take(10),
        ))),
    )
    .expect("loading");
    let out = mx.ok(&["refresh", "--ranges", &path]);
    assert!(
        out.contains(&format!("live now {} IPv4", expected.v4.len())),
        "{out}"
    );
    assert_eq!(filter.filter().allowlist().unwrap(), expected);
    let sample = big.iter().nth(77_777).expect("a sample prefix");
    let probe = sample.hosts().next().expect("a host").to_string();
    let answer = mx.ok(&["lookup", &probe]);
    assert!(answer.contains("allowed by"), "{answer}");
}

#[test]
fn a_killed_refresh_leaves_the_live_set_between_old_and_new_and_the_next_converges() {
    let name = unique_name("rf-kill");
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x6b696c6c);
    // Two lists sharing half their prefixes: a refresh either way inserts
    // 50,000 and deletes 50,000, which makes the window to kill in wide.
    let shared = random_list(&mut rng, 50_000);
    let only_a: Vec<Ipv4Net> = random_list(&mut rng, 60_000)
        .difference(&shared)
        .copied()
        .take(50_000)
        .collect();
    let only_b: Vec<Ipv4Net> = random_list(&mut rng, 60_000)
        .difference(&shared)
        .filter(|n| !only_a.contains(n))
        .copied()
        .take(50_000)
        .collect();
    let a_path = write_list(dir.path(), "a.txt", shared.iter().chain(&only_a).copied());
    let b_path = write_list(dir.path(), "b.txt", shared.iter().chain(&only_b).copied());
    let (a, b) = (parsed(&a_path), parsed(&b_path));
    let filter = LoadedFilter::new(&name, &policy(a.clone())).expect("loading");
    let limit = Duration::from_secs(60);

    // How long a whole refresh takes here, to aim the kills inside it.
    let started = Instant::now();
    let out = finish_within(
        &mx,
        &["refresh", "--ranges", &b_path, "--max-shrink", "100"],
        limit,
    );
    assert!(out.status.success(), "{out:?}");
    let full = started.elapsed();
    let mut live_is = (&b, &b_path, &a, &a_path);

    let (mut mid_apply, mut rounds) = (0, 0);
    while mid_apply < 3 {
        rounds += 1;
        assert!(
            rounds <= 15,
            "only {mid_apply} of {rounds} kills landed mid-refresh"
        );
        let (old, _, new, new_path) = live_is;
        let mut child = mx
            .command(&["refresh", "--ranges", new_path, "--max-shrink", "100"])
            .stdout(Stdio::null())
            .spawn()
            .expect("starting mxgate refresh");
        // The kill point is what this test varies: a seeded fraction of a
        // whole refresh, between 30% and 95% of it (parsing and reading the
        // live list come first).
        let at = full.mul_f64(0.30 + 0.65 * (rng.below(1000) as f64 / 1000.0));
        std::thread::sleep(at);
        child.kill().expect("SIGKILL to mxgate refresh");
        child.wait().expect("reaping the killed refresh");

        let live = filter.filter().allowlist().unwrap();
        let set = |l: &Allowlist| l.v4.iter().copied().collect::<BTreeSet<_>>();
        let (live_set, old_set, new_set) = (set(&live), set(old), set(new));
        let both: BTreeSet<_> = old_set.intersection(&new_set).copied().collect();
        let either: BTreeSet<_> = old_set.union(&new_set).copied().collect();
        assert!(
            both.is_subset(&live_set),
            "round {rounds}: lost an entry in both lists"
        );
        assert!(
            live_set.is_subset(&either),
            "round {rounds}: an entry in neither list"
        );
        if live_set != old_set && live_set != new_set {
            mid_apply += 1;
        }
        // The next refresh is not wedged by the dead one's lock and converges.
        let out = finish_within(
            &mx,
            &["refresh", "--ranges", new_path, "--max-shrink", "100"],
            limit,
        );
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            &filter.filter().allowlist().unwrap(),
            new,
            "round {rounds}: did not converge"
        );
        live_is = (live_is.2, live_is.3, live_is.0, live_is.1);
    }
    println!("{mid_apply} of {rounds} kills landed mid-refresh (a full refresh took {full:?})");
}
