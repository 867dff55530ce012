//! Remote range sources against real local servers: SPF chains over DNS
//! (dnsmasq), lists over HTTPS (a test CA), Microsoft 365's endpoints JSON.
//! Every failure leaves the live allowlist as it was.

use filter_user::allowlist::Allowlist;
use mxgate_tests::{
    cli::Mxgate,
    kernel::LoadedFilter,
    netns::Netns,
    reference::Policy,
    remote::{Dns, Https, Reply, broken_dns},
    unique_name,
};

const LIVE: &str = "198.18.0.0/15";

/// SPF records of the test zone.
fn records() -> Vec<String> {
    let mut r = vec![
        r#"--txt-record=_spf.svc.test,v=spf1 ip4:192.0.2.0/24 include:_inc.svc.test a:relay.svc.test mx:svc.test redirect=_red.svc.test"#.to_owned(),
        r#"--txt-record=_inc.svc.test,v=spf1 ip6:2001:db8:5e::/48 ?ip4:10.9.9.9 -all"#.to_owned(),
        r#"--txt-record=_red.svc.test,v=spf1 ip4:203.0.113.128/25 ~all"#.to_owned(),
        "--host-record=relay.svc.test,198.51.100.7,2001:db8:7::7".to_owned(),
        "--host-record=mx1.svc.test,198.51.100.8".to_owned(),
        "--mx-host=svc.test,mx1.svc.test,10".to_owned(),
        r#"--txt-record=_loop1.svc.test,v=spf1 ip4:192.0.2.1 include:_loop2.svc.test"#.to_owned(),
        r#"--txt-record=_loop2.svc.test,v=spf1 include:_loop1.svc.test"#.to_owned(),
        r#"--txt-record=_missing.svc.test,v=spf1 include:_nowhere.svc.test"#.to_owned(),
        r#"--txt-record=_diamond.svc.test,v=spf1 include:_inc.svc.test include:_inc2.svc.test"#.to_owned(),
        r#"--txt-record=_inc2.svc.test,v=spf1 include:_inc.svc.test"#.to_owned(),
        // Term order through include and redirect (see the test).
        r#"--txt-record=_order.svc.test,v=spf1 -ip4:192.0.2.66 include:_oinc.svc.test redirect=_ored.svc.test"#.to_owned(),
        r#"--txt-record=_oinc.svc.test,v=spf1 -ip4:192.0.2.1 ip4:192.0.2.0/24 ~all"#.to_owned(),
        r#"--txt-record=_ored.svc.test,v=spf1 -ip4:198.51.100.7 ip4:198.51.100.0/24 ip4:192.0.2.1 -all"#.to_owned(),
        // Terms that name no addresses, and records checkers reject.
        r#"--txt-record=_hidden.svc.test,v=spf1 -exists:%{i}.bl.svc.test ip4:192.0.2.0/24 -all"#.to_owned(),
        r#"--txt-record=_ptr.svc.test,v=spf1 ptr:svc.test ip4:192.0.2.0/24 -all"#.to_owned(),
        r#"--txt-record=_all.svc.test,v=spf1 ip4:192.0.2.0/24 +all"#.to_owned(),
        r#"--txt-record=_perm.svc.test,v=spf1 ip4:192.0.2.0/24 include:_bad.svc.test"#.to_owned(),
        r#"--txt-record=_bad.svc.test,v=spf1 ip4:198.51.100.0/024"#.to_owned(),
        r#"--txt-record=_mods.svc.test,v=spf1 moo.cow-far_out=man:dog/cat ip4:192.0.2.0/24 default=pass -all"#.to_owned(),
    ];
    // A record of 5,400 bytes (DNS carries up to 65,535), in strings of at
    // most 255 bytes as TXT holds them (dnsmasq makes one string of each
    // comma-separated part): 300 /24s that do not merge.
    let big: String = std::iter::once("v=spf1".to_owned())
        .chain(big_record_nets().map(|n| format!("ip4:{n}")))
        .chain(std::iter::once("-all".to_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(big.len() > 5000, "{}", big.len());
    let strings: Vec<String> = big
        .as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    r.push(format!("--txt-record=_big.svc.test,{}", strings.join(",")));
    // A chain of 12 includes: one past RFC 7208's limit of 10 (and 11).
    for i in 0..12 {
        let next = if i == 11 {
            String::new()
        } else {
            format!(" include:_d{}.svc.test", i + 1)
        };
        r.push(format!(
            "--txt-record=_d{i}.svc.test,v=spf1 ip4:10.{i}.0.0/16{next}"
        ));
    }
    r
}

/// The prefixes of the long record `_big.svc.test`.
fn big_record_nets() -> impl Iterator<Item = String> {
    (0..300u32).map(|i| format!("10.{}.{}.0/24", i / 128, (i % 128) * 2))
}

/// A temporary directory of mode 0700, as a cache directory must be.
fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

struct World {
    ns: Netns,
    _dns: Dns,
    https: Https,
    mx: Mxgate,
    filter: LoadedFilter,
    cache: tempfile::TempDir,
}

impl World {
    fn new(tag: &str) -> Self {
        let name = unique_name(tag);
        let ns = Netns::new(&name).expect("a namespace");
        let dns = Dns::start(&ns, &records()).expect("dnsmasq");
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let https = Https::start(&ns, move |path| match path {
            // Good once, then failing: for the last-good copy.
            "/flaky.txt" if served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 => {
                Reply::Body(b"192.0.2.0/24\n2001:db8:5e::/48\n".to_vec())
            }
            "/flaky.txt" => Reply::Status(503),
            "/list.txt" => Reply::Body(b"# relays\n192.0.2.0/24\n2001:db8:5e::/48\n".to_vec()),
            "/bad.txt" => Reply::Body(b"192.0.2.0/24\n192.0.2.300\n".to_vec()),
            "/500" => Reply::Status(500),
            "/slow" => Reply::Hang,
            "/big.txt" => Reply::Body("192.0.2.0/24\n".repeat(200_000).into_bytes()),
            "/inject.json" => Reply::Body(
                br#"[{"id": 9, "serviceArea": "Exchange", "tcpPorts": "25", "ips": ["40.92.0.0/15\n1.0.0.0/8"]}]"#.to_vec(),
            ),
            "/range.json" => Reply::Body(
                br#"[{"id": 9, "serviceArea": "Exchange", "tcpPorts": "25", "ips": ["40.92.0.0-40.93.255.255"]}]"#.to_vec(),
            ),
            "/spf.json" => Reply::Body(
                br#"[{"id": 9, "serviceArea": "Exchange", "tcpPorts": "25", "ips": ["v=spf1 ip4:1.0.0.0/8"]}]"#.to_vec(),
            ),
            "/endpoints.json" => Reply::Body(
                br#"[{"id": 1, "serviceArea": "Exchange", "tcpPorts": "443", "ips": ["13.107.6.152/31"]},
                    {"id": 9, "serviceArea": "Exchange", "tcpPorts": "25", "ips": ["40.92.0.0/15", "2a01:111:f400::/48"]}]"#
                    .to_vec(),
            ),
            _ => Reply::Status(404),
        })
        .expect("the HTTPS server");
        let mx = Mxgate::new(&ns, &name);
        let policy = Policy {
            allow: Allowlist::from_prefixes(vec![LIVE.parse().unwrap()], vec![]),
            ports: [25].into(),
            ..Policy::default()
        };
        let filter = LoadedFilter::new(&name, &policy).expect("loading the program");
        Self {
            ns,
            _dns: dns,
            https,
            mx,
            filter,
            cache: private_tempdir(),
        }
    }

    /// `mxgate refresh` of `sources` with the test servers and CA.
    fn refresh(&self, sources: &[&str], extra: &[&str]) -> std::process::Output {
        self.refresh_via("127.0.0.1", sources, extra)
    }

    /// As [`World::refresh`], asking the DNS server at `dns`.
    fn refresh_via(&self, dns: &str, sources: &[&str], extra: &[&str]) -> std::process::Output {
        let ca = self.https.ca_file.display().to_string();
        let cache = self.cache.path().display().to_string();
        // These tests are about sources, not the guards: any change passes.
        let mut args = vec!["refresh", "--max-shrink", "100", "--max-grow", "1000000"];
        args.extend(["--dns-server", dns]);
        args.extend(["--https-ca", &ca, "--cache-dir", &cache, "--ranges"]);
        args.extend_from_slice(sources);
        args.extend_from_slice(extra);
        self.mx.run(&args)
    }

    fn live(&self) -> Vec<String> {
        let list = self.filter.filter().allowlist().unwrap();
        list.v4
            .iter()
            .map(ToString::to_string)
            .chain(list.v6.iter().map(ToString::to_string))
            .collect()
    }

    /// Asserts `sources` fail with `fragment` and the live list stays.
    fn fails(&self, sources: &[&str], extra: &[&str], fragment: &str) {
        let out = self.refresh(sources, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{sources:?}: {stderr}");
        assert!(
            stderr.contains(fragment),
            "{sources:?}: missing {fragment:?} in {stderr}"
        );
        assert!(stderr.contains("nothing changed"), "{stderr}");
        assert_eq!(self.live(), [LIVE], "the live allowlist changed");
    }
}

#[test]
fn an_spf_chain_and_an_https_list_refresh_the_allowlist() {
    let w = World::new("src-ok");
    let list = w.https.url("/list.txt");
    let out = w.refresh(&["spf:_spf.svc.test", &list], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        w.live(),
        [
            "192.0.2.0/24",
            "198.51.100.7/32",
            "198.51.100.8/32",
            "203.0.113.128/25",
            "2001:db8:7::7/128",
            "2001:db8:5e::/48",
        ]
    );
}

#[test]
fn spf_terms_apply_in_order_through_include_and_redirect() {
    let w = World::new("src-order");
    let out = w.refresh(&["spf:_order.svc.test"], &[]);
    assert!(out.status.success(), "{out:?}");
    let live = w.filter.filter().allowlist().unwrap();
    for (host, allowed, why) in [
        ("192.0.2.66", false, "failed by the first term"),
        ("192.0.2.2", true, "passed by the include"),
        ("192.0.2.67", true, "passed by the include"),
        // The include fails .1, so it does not match: the redirect passes it.
        ("192.0.2.1", true, "passed by the redirect"),
        ("198.51.100.7", false, "failed by the redirect's record"),
        ("198.51.100.6", true, "passed by the redirect"),
        ("198.51.100.8", true, "passed by the redirect"),
        ("203.0.113.1", false, "matched by nothing"),
    ] {
        let addr = host.parse().unwrap();
        assert_eq!(live.lookup(addr).is_some(), allowed, "{host}: {why}");
    }
}

#[test]
fn unknown_modifiers_are_ignored() {
    let w = World::new("src-mods");
    let out = w.refresh(&["spf:_mods.svc.test"], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(w.live(), ["192.0.2.0/24"]);
}

#[test]
fn spf_records_checkers_reject_fail_and_change_nothing() {
    let w = World::new("src-perm");
    w.fails(
        &["spf:_perm.svc.test"],
        &[],
        "_bad.svc.test: SPF term \"ip4:198.51.100.0/024\": bad prefix length",
    );
    w.fails(
        &["spf:_all.svc.test"],
        &[],
        "`+all` in _all.svc.test passes every IPv4 address",
    );
}

#[test]
fn a_term_naming_no_addresses_is_reported_or_refused() {
    let w = World::new("src-unlisted");
    // It could pass senders the list cannot hold: a warning naming it.
    let out = w.refresh(&["spf:_ptr.svc.test"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "mxgate: warning: spf:_ptr.svc.test:3: SPF term in _ptr.svc.test matches senders by \
             their reverse DNS"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.matches("warning").count(), 1, "{stderr}");
    assert_eq!(w.live(), ["192.0.2.0/24"]);
    // It could fail senders a later term passes: refused, unless asked.
    let other = w.cache.path().join("other.txt");
    std::fs::write(&other, format!("{LIVE}\n")).unwrap();
    assert!(
        w.refresh(&[&other.display().to_string()], &[])
            .status
            .success()
    );
    w.fails(
        &["spf:_hidden.svc.test"],
        &[],
        "`-exists:%{i}.bl.svc.test` in _hidden.svc.test depends on the sender",
    );
    let out = w.refresh(&["spf:_hidden.svc.test"], &["--spf-allow-unenumerable"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("flattened past it"), "{stderr}");
    assert_eq!(w.live(), ["192.0.2.0/24"]);
}

#[test]
fn an_include_reached_twice_is_not_a_loop() {
    let w = World::new("src-diamond");
    let out = w.refresh(&["spf:_diamond.svc.test"], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(w.live(), ["2001:db8:5e::/48"]);
}

#[test]
fn an_spf_loop_fails_and_changes_nothing() {
    World::new("src-loop").fails(
        &["spf:_loop1.svc.test"],
        &[],
        "spf:_loop1.svc.test failed: loop: _loop1.svc.test → _loop2.svc.test → _loop1.svc.test",
    );
}

#[test]
fn an_spf_chain_over_the_lookup_limit_fails_unless_the_limit_is_raised() {
    let w = World::new("src-limit");
    w.fails(
        &["spf:_d0.svc.test"],
        &[],
        "more than 10 DNS-querying terms",
    );
    let out = w.refresh(&["spf:_d0.svc.test"], &["--spf-lookup-limit", "11"]);
    assert!(out.status.success(), "{out:?}");
    // 10.0.0.0/16 … 10.11.0.0/16, merged.
    assert_eq!(w.live(), ["10.0.0.0/13", "10.8.0.0/14"]);
}

#[test]
fn a_missing_domain_a_servfail_and_a_silent_server_fail_and_change_nothing() {
    let w = World::new("src-dnsfail");
    w.fails(
        &["spf:_missing.svc.test"],
        &[],
        "TXT _nowhere.svc.test: no such domain (NXDOMAIN)",
    );
    w.fails(&["spf:_nospf.svc.test"], &[], "no such domain");
    let servfail = broken_dns(&w.ns, false).unwrap().to_string();
    let silent = broken_dns(&w.ns, true).unwrap().to_string();
    for server in [servfail, silent] {
        let extra = ["--dns-timeout", "1", "--fetch-timeout", "3"];
        let out = w.refresh_via(&server, &["spf:_spf.svc.test"], &extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{server}: {stderr}");
        assert!(
            stderr.contains("spf:_spf.svc.test failed: TXT _spf.svc.test"),
            "{server}: {stderr}"
        );
        assert_eq!(w.live(), [LIVE], "the live allowlist changed");
    }
}

#[test]
fn https_failures_fail_and_change_nothing() {
    let w = World::new("src-https");
    w.fails(&[&w.https.url("/500")], &[], "HTTP status 500");
    w.fails(
        &[&w.https.url("/slow")],
        &["--fetch-timeout", "1"],
        "no complete answer within 1 s",
    );
    w.fails(
        &[&w.https.url("/big.txt")],
        &["--max-download", "1000000"],
        "larger than 1000000 bytes",
    );
    w.fails(
        &[&w.https.url("/bad.txt")],
        &[],
        "/bad.txt:2: not an IPv4 or IPv6 address",
    );
    // Without the test CA the certificate is not trusted.
    let out =
        w.mx.run(&["refresh", "--ranges", &w.https.url("/list.txt")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    assert_eq!(w.live(), [LIVE]);
}

#[test]
fn microsoft_365_endpoints_give_the_exchange_smtp_ranges() {
    let w = World::new("src-m365");
    let out = w.refresh(&[&format!("m365:{}", w.https.url("/endpoints.json"))], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(w.live(), ["40.92.0.0/15", "2a01:111:f400::/48"]);
}

#[test]
fn microsoft_365_ips_are_cidrs_and_nothing_else() {
    let w = World::new("src-m365strict");
    for (path, needle) in [
        ("/inject.json", r#""40.92.0.0/15\n1.0.0.0/8" is not a CIDR"#),
        ("/range.json", r#""40.92.0.0-40.93.255.255" is not a CIDR"#),
        ("/spf.json", r#""v=spf1 ip4:1.0.0.0/8" is not a CIDR"#),
    ] {
        w.fails(&[&format!("m365:{}", w.https.url(path))], &[], needle);
    }
}

#[test]
fn an_spf_record_longer_than_4_kb_is_evaluated_whole() {
    let w = World::new("src-bigspf");
    let out = w.refresh(&["spf:_big.svc.test"], &[]);
    assert!(out.status.success(), "{out:?}");
    let expected: Vec<String> = big_record_nets().collect();
    assert_eq!(w.live(), expected);
    // Its copy keeps the record, and a later failure falls back to it.
    let copy = filter_user::sources::cache_path(w.cache.path(), "spf:_big.svc.test");
    let text = std::fs::read_to_string(&copy).unwrap();
    assert!(
        text.contains("# _big.svc.test: v=spf1 ip4:10.0.0.0/24 ip4:10.0.2.0/24"),
        "{text}"
    );
    let other = w.cache.path().join("other.txt");
    std::fs::write(&other, format!("{LIVE}\n")).unwrap();
    assert!(
        w.refresh(&[&other.display().to_string()], &[])
            .status
            .success()
    );
    let servfail = broken_dns(&w.ns, false).unwrap().to_string();
    let out = w.refresh_via(
        &servfail,
        &["spf:_big.svc.test"],
        &["--use-cache-on-failure"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(w.live(), expected);
}

#[test]
fn the_last_good_copy_is_used_only_when_asked() {
    let w = World::new("src-cache");
    let flaky = w.https.url("/flaky.txt");
    let good = ["192.0.2.0/24", "2001:db8:5e::/48"];
    assert!(w.refresh(&[&flaky], &[]).status.success());
    assert_eq!(w.live(), good);
    // Back to another list, then the source fails.
    let other = w.cache.path().join("other.txt");
    std::fs::write(&other, format!("{LIVE}\n")).unwrap();
    assert!(
        w.refresh(&[&other.display().to_string()], &[])
            .status
            .success()
    );
    w.fails(&[&flaky], &[], "HTTP status 503");
    // Asked to, the refresh uses the copy kept from the good fetch.
    let out = w.refresh(&[&flaky], &["--use-cache-on-failure"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("failed (HTTP status 503); using its last good copy, from"),
        "{stderr}"
    );
    assert_eq!(w.live(), good);
}

#[test]
fn without_a_last_good_copy_the_failure_stands() {
    let w = World::new("src-nocache");
    w.fails(
        &[&w.https.url("/500")],
        &["--use-cache-on-failure"],
        "HTTP status 500",
    );
}
