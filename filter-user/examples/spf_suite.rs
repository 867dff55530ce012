//! Runs a YAML SPF test suite in the openspf format (such as the RFC 7208
//! suite shipped with pyspf) through mxgate's flattener, with each
//! scenario's zone in memory, and compares every test's expected checker
//! result with what the flattened allowlist does for the test's host.
//!
//! ```text
//! cargo run -p filter-user --example spf_suite -- SUITE.yml [--verbose]
//! ```
//!
//! Each test falls in one class:
//! - agree: the host is allowlisted exactly when a checker says `pass`, or
//!   the source fails (nothing changes) where a checker says permerror,
//!   temperror or none, or the host's family gets a permerror (the
//!   void-lookup limit, counted per family) and no sender of it is
//!   allowlisted, with a warning;
//! - unenumerable: the checker's `pass` comes from a term no list can hold
//!   (`ptr`, sender macros) and mxgate warned about it, or mxgate refused a
//!   term that names no addresses and could fail senders a later term
//!   passes;
//! - everything: mxgate refuses a passing `all` or `/0` by design;
//! - stricter: mxgate failed the source on an error that a checker,
//!   evaluating for this one host, never reached (it stopped at an earlier
//!   match), so the allowlist stays as it was;
//! - disagree: anything else; these are listed.

use std::{collections::BTreeMap, net::IpAddr, process::ExitCode};

use filter_user::spf::{
    dns::{Entry, MemoryDns},
    flatten::{ErrorKind, Limits, flatten},
};
use yaml_rust2::{Yaml, YamlLoader};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "--verbose" || a == "-v");
    let Some(path) = args.iter().find(|a| !a.starts_with('-')) else {
        eprintln!("usage: spf_suite SUITE.yml [--verbose]");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("reading {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let documents = match YamlLoader::load_from_str(&text) {
        Ok(documents) => documents,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut listed = Vec::new();
    for doc in &documents {
        let section = doc["description"].as_str().unwrap_or("?");
        let zone = load_zone(&doc["zonedata"]);
        let Some(tests) = doc["tests"].as_hash() else {
            continue;
        };
        for (name, test) in tests {
            let name = name.as_str().unwrap_or("?");
            let (class, detail) = judge(&zone, test);
            *counts.entry(class).or_default() += 1;
            let line = format!("{class:12} {section} / {name}: {detail}");
            if verbose || matches!(class, "disagree" | "stricter") {
                listed.push(line);
            }
        }
    }
    for line in &listed {
        println!("{line}");
    }
    let total: usize = counts.values().sum();
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("{total} tests: {}", summary.join(", "));
    if counts.contains_key("disagree") {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The zone of a scenario. As the suite's drivers do, an `SPF` entry also
/// serves as a TXT record unless the name has TXT entries of its own; PTR
/// records are left out (mxgate never queries them).
fn load_zone(data: &Yaml) -> MemoryDns {
    let mut zone = MemoryDns::new();
    let Some(names) = data.as_hash() else {
        return zone;
    };
    for (name, entries) in names {
        let name = name.as_str().unwrap_or_default();
        let entries = entries.as_vec().cloned().unwrap_or_default();
        let has_txt = entries.iter().any(|e| !e["TXT"].is_badvalue());
        let mut generated = Vec::new();
        for entry in &entries {
            if entry.as_str() == Some("TIMEOUT") {
                zone.add(name, Entry::Timeout);
                continue;
            }
            let Some(map) = entry.as_hash() else {
                continue;
            };
            for (kind, value) in map {
                let text = || match value {
                    Yaml::Array(parts) => parts.iter().filter_map(Yaml::as_str).collect(),
                    other => other.as_str().unwrap_or_default().to_owned(),
                };
                match kind.as_str().unwrap_or_default() {
                    "TXT" if value.as_str() != Some("NONE") => {
                        zone.add(name, Entry::Txt(text()));
                    }
                    "SPF" if !has_txt && value.as_str() != Some("NONE") => {
                        generated.push(text());
                    }
                    "A" => {
                        if let Some(a) = value.as_str().and_then(|v| v.parse().ok()) {
                            zone.add(name, Entry::A(a));
                        }
                    }
                    "AAAA" => {
                        if let Some(a) = value.as_str().and_then(|v| v.parse().ok()) {
                            zone.add(name, Entry::Aaaa(a));
                        }
                    }
                    "MX" => {
                        let host = value[1].as_str().unwrap_or_default();
                        zone.add(name, Entry::Mx(host.to_owned()));
                    }
                    "CNAME" => {
                        zone.add(
                            name,
                            Entry::Cname(value.as_str().unwrap_or_default().to_owned()),
                        );
                    }
                    _ => {}
                }
            }
        }
        for text in generated {
            zone.add(name, Entry::Txt(text));
        }
    }
    zone
}

/// The class of one test, and what happened.
fn judge(zone: &MemoryDns, test: &Yaml) -> (&'static str, String) {
    let expected: Vec<String> = match &test["result"] {
        Yaml::Array(results) => results
            .iter()
            .filter_map(Yaml::as_str)
            .map(str::to_owned)
            .collect(),
        one => one.as_str().map(str::to_owned).into_iter().collect(),
    };
    let host_text = test["host"].as_str().unwrap_or_default();
    let Ok(host) = host_text.parse::<IpAddr>() else {
        return ("disagree", format!("cannot read host {host_text:?}"));
    };
    let mailfrom = test["mailfrom"].as_str().unwrap_or_default();
    let domain = match mailfrom.rsplit_once('@') {
        Some((_, domain)) => domain.to_owned(),
        None if mailfrom.is_empty() => test["helo"].as_str().unwrap_or_default().to_owned(),
        None => mailfrom.to_owned(),
    };
    let expects = |r: &str| expected.iter().any(|e| e == r);
    let not_pass = expects("fail") || expects("softfail") || expects("neutral");
    let is_error = expects("permerror") || expects("temperror") || expects("none");
    let wanted = expected.join("|");
    match flatten(&mut zone.clone(), &domain, Limits::default()) {
        Ok(flat) => {
            let allowed = flat.pass.contains(host);
            let said = if allowed {
                "allowlisted"
            } else {
                "not allowlisted"
            };
            let detail = format!("{host} {said} for {domain}, checker: {wanted}");
            let family = if host.is_ipv4() { "IPv4" } else { "IPv6" };
            let family_permerror = flat.warnings.iter().any(|w| {
                w.what
                    .contains(&format!("returns permerror for every {family} sender"))
            });
            if (allowed && expects("pass")) || (!allowed && not_pass) {
                ("agree", detail)
            } else if !allowed && expects("permerror") && family_permerror {
                ("agree", format!("{detail}; a permerror for its family"))
            } else if !allowed && expects("pass") && !flat.warnings.is_empty() {
                let notes: Vec<String> = flat.warnings.iter().map(ToString::to_string).collect();
                (
                    "unenumerable",
                    format!("{detail}; warned: {}", notes.join("; ")),
                )
            } else {
                ("disagree", detail)
            }
        }
        Err(e) => {
            let detail = format!("{domain} refused: {e}; checker: {wanted}");
            match e.kind {
                _ if is_error => ("agree", detail),
                ErrorKind::Everything => ("everything", detail),
                ErrorKind::Unenumerable => ("unenumerable", detail),
                ErrorKind::PermError | ErrorKind::TempError | ErrorKind::NoRecord => {
                    ("stricter", detail)
                }
            }
        }
    }
}
