//! SPF conformance: the zones and expected checker results of tests/spf/
//! (written in the style of the RFC 7208 test suite) served by a local DNS
//! server, each domain refreshed into a loaded filter with `mxgate refresh
//! --ranges spf:DOMAIN`. Every host a checker passes must be allowlisted, no
//! host it fails, softfails or finds neutral may be, and a domain whose
//! result is permerror, temperror or none must change nothing. A test's
//! `mxgate` key marks where mxgate departs from a checker by design:
//! "unlisted" (passed by a term no list can hold: not allowlisted, with a
//! warning), "refused" (the whole source is refused: nothing changes),
//! "nobody" (the policy passes no sender: the source delivers no usable
//! list, so it failed and nothing changes) and "family" (a permerror for the senders of one address family only, as
//! the void-lookup limit counted per family gives: no sender of that family
//! is allowlisted, with a warning; the other family's results stand).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use filter_user::allowlist::Allowlist;
use mxgate_tests::{
    cli::Mxgate,
    kernel::LoadedFilter,
    netns::Netns,
    reference::Policy,
    remote::{Dns, broken_dns},
    unique_name,
};
use serde::Deserialize;

/// The allowlist before each refresh.
const LIVE: &str = "198.18.0.0/15";
/// Given with `--allow` to each refresh, so an empty pass set still makes a
/// list (and shows the refresh was applied).
const SENTINEL: &str = "100.64.0.1/32";

#[derive(Deserialize)]
struct Suite {
    #[allow(dead_code)]
    description: String,
    zone: BTreeMap<String, Vec<String>>,
    tests: BTreeMap<String, Case>,
}

#[derive(Deserialize)]
struct Case {
    #[allow(dead_code)]
    spec: String,
    domain: String,
    host: String,
    result: String,
    mxgate: Option<String>,
}

fn suites() -> Vec<(String, Suite)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("spf");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/spf")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("a suite file");
            let suite: Suite =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, suite)
        })
        .collect()
}

/// dnsmasq options and a hosts file for the zones of every suite.
fn dnsmasq_args(
    zones: &BTreeMap<String, Vec<String>>,
    hosts: &Path,
    servfail: std::net::SocketAddr,
) -> Vec<String> {
    let mut args = vec![format!("--addn-hosts={}", hosts.display())];
    let mut host_lines = String::new();
    for (name, lines) in zones {
        for (i, line) in lines.iter().enumerate() {
            let (kind, data) = line.split_once(' ').unwrap_or((line, ""));
            match kind {
                "TXT" => {
                    // dnsmasq splits TXT strings at commas.
                    assert!(!data.contains(','), "{name}: a comma in {data:?}");
                    args.push(format!("--txt-record={name},{data}"));
                }
                "A" | "AAAA" => writeln!(host_lines, "{data} {name}").unwrap(),
                "MX" => args.push(format!("--mx-host={name},{data},{}", i + 1)),
                "CNAME" => args.push(format!("--cname={name},{data}")),
                "SERVFAIL" => args.push(format!(
                    "--server=/{name}/{}#{}",
                    servfail.ip(),
                    servfail.port()
                )),
                _ => panic!("{name}: unknown zone line {line:?}"),
            }
        }
    }
    std::fs::write(hosts, host_lines).expect("writing the hosts file");
    args
}

#[test]
fn every_checker_result_is_what_the_allowlist_does() {
    let suites = suites();
    assert!(suites.len() >= 4, "{} suite files", suites.len());
    let mut zones = BTreeMap::new();
    let mut by_domain: BTreeMap<String, Vec<(String, &Case)>> = BTreeMap::new();
    for (file, suite) in &suites {
        for (name, lines) in &suite.zone {
            let clash = zones.insert(name.clone(), lines.clone());
            assert!(clash.is_none(), "{file}: {name} is in two files");
        }
        for (test, case) in &suite.tests {
            by_domain
                .entry(case.domain.clone())
                .or_default()
                .push((format!("{file} {test}"), case));
        }
    }

    let name = unique_name("spfconf");
    let ns = Netns::new(&name).expect("a namespace");
    let dir = tempfile::tempdir().unwrap();
    let servfail = broken_dns(&ns, false).expect("a failing DNS server");
    let args = dnsmasq_args(&zones, &dir.path().join("hosts"), servfail);
    let _dns = Dns::start(&ns, &args).expect("dnsmasq");
    let policy = Policy {
        allow: Allowlist::from_prefixes(vec![LIVE.parse().unwrap()], vec![]),
        ports: [25].into(),
        ..Policy::default()
    };
    let mx = Mxgate::new(&ns, &name);
    let filter = LoadedFilter::new(&name, &policy).expect("loading the program");
    let reset = dir.path().join("live.txt");
    std::fs::write(&reset, format!("{LIVE}\n")).unwrap();
    let cache = dir.path().join("cache").display().to_string();
    let refresh = |sources: &[&str]| {
        // About the SPF results, not the guards: any change passes.
        let mut args = vec!["refresh", "--max-shrink", "100", "--max-grow", "1000000"];
        args.extend(["--cache-dir", &cache]);
        args.extend(["--dns-server", "127.0.0.1", "--dns-timeout", "2"]);
        args.extend(["--allow", SENTINEL, "--ranges"]);
        args.extend_from_slice(sources);
        mx.run(&args)
    };
    let live = || -> Vec<String> {
        let list = filter.filter().allowlist().unwrap();
        list.v4
            .iter()
            .map(ToString::to_string)
            .chain(list.v6.iter().map(ToString::to_string))
            .collect()
    };

    let mut failures = Vec::new();
    let mut checked = 0;
    for (domain, cases) in &by_domain {
        let out = refresh(&[&reset.display().to_string()]);
        assert!(out.status.success(), "resetting: {out:?}");
        assert!(live().contains(&LIVE.to_owned()));

        let out = refresh(&[&format!("spf:{domain}")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let fails_whole = |c: &Case| {
            (matches!(c.result.as_str(), "permerror" | "temperror" | "none")
                && c.mxgate.as_deref() != Some("family"))
                || matches!(c.mxgate.as_deref(), Some("refused" | "nobody"))
        };
        if cases.iter().any(|(_, c)| fails_whole(c)) {
            for (test, case) in cases {
                assert!(
                    fails_whole(case),
                    "{test}: {domain} mixes errors and results"
                );
            }
            checked += cases.len();
            let unchanged = live() == [LIVE, SENTINEL].map(str::to_owned)
                || live() == [SENTINEL, LIVE].map(str::to_owned)
                || live() == [LIVE.to_owned()];
            if out.status.code() != Some(1) || !stderr.contains("nothing changed") || !unchanged {
                let tests: Vec<&str> = cases.iter().map(|(t, _)| t.as_str()).collect();
                failures.push(format!(
                    "{tests:?}: spf:{domain} should fail and change nothing: exit {:?}, live {:?}: {stderr}",
                    out.status.code(),
                    live()
                ));
            }
            continue;
        }
        if !out.status.success() {
            failures.push(format!("spf:{domain} failed: {stderr}"));
            continue;
        }
        let list = filter.filter().allowlist().unwrap();
        assert!(
            list.lookup(SENTINEL.trim_end_matches("/32").parse().unwrap())
                .is_some()
                && !live().contains(&LIVE.to_owned()),
            "spf:{domain} was not applied: {:?}",
            live()
        );
        for (test, case) in cases {
            checked += 1;
            let host = case.host.parse().expect("a host address");
            let allowed = list.lookup(host).is_some();
            let ok = match (case.result.as_str(), case.mxgate.as_deref()) {
                ("pass", None) => allowed,
                ("pass", Some("unlisted")) => !allowed && stderr.contains("warning"),
                ("fail" | "softfail" | "neutral", None) => !allowed,
                ("permerror", Some("family")) => !allowed && stderr.contains("warning"),
                other => panic!("{test}: unknown expectation {other:?}"),
            };
            if !ok {
                failures.push(format!(
                    "{test}: {} for {domain} is {}allowlisted, the checker says {} ({:?}); live {:?}; {stderr}",
                    case.host,
                    if allowed { "" } else { "not " },
                    case.result,
                    case.mxgate,
                    live()
                ));
            }
        }
    }
    assert!(checked >= 60, "only {checked} tests");
    assert!(
        failures.is_empty(),
        "{} of {checked} tests:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
