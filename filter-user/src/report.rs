//! Counters → report: totals, deltas between two readings, and the top
//! denied sources, rendered for people (`stats`) and for logs (`run`).

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, SystemTime},
};

use filter_common::{MAX_VLAN_TAGS, NO_IP_HEADER_LABEL, Outcome};
use serde::Serialize;
use serde_json::json;

use crate::{
    filter::{CounterRow, Counters, DeniedEntry, OutcomeCounts, RowCounters},
    logline::{Event, LogLine},
    text::{human_time, printable},
};

/// A denied source worth naming.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopSource {
    /// The source address.
    pub source: IpAddr,
    /// Denied SYNs in the period reported (all time for `stats`).
    pub count: u64,
    /// Denied SYNs since the filter was installed (or the map evicted it).
    pub total: u64,
    /// When the last one was seen, RFC 3339 (UTC).
    pub last_seen: String,
    /// The same time, for text output.
    #[serde(skip)]
    pub seen_at: Option<SystemTime>,
    /// When the counts are estimates, the longest sampling period (one SYN
    /// in N recorded) behind them; absent when they are exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled_one_in: Option<u64>,
}

/// The counters of one interface (or of the shared row of large ifindexes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// The interface's name in this namespace; `ifindex N` when no
    /// interface has that index here (gone, or in another namespace);
    /// [`OTHER_INTERFACES`] for the shared row.
    pub interface: String,
    /// Its ifindex; `None` for the shared row.
    pub ifindex: Option<u32>,
    /// Its counts.
    pub counters: Counters,
}

/// The name under which the shared row of the interfaces with an ifindex
/// of [`filter_common::COUNTER_ROWS`] or more is reported.
pub const OTHER_INTERFACES: &str = "other";

impl InterfaceCounters {
    /// Names the rows read from COUNTERS after the interfaces of this
    /// network namespace.
    pub fn named(rows: &[RowCounters]) -> Vec<Self> {
        rows.iter()
            .map(|r| match r.row {
                CounterRow::Interface(index) => InterfaceCounters {
                    interface: crate::interfaces::ifname(index)
                        .unwrap_or_else(|| format!("ifindex {index}")),
                    ifindex: Some(index),
                    counters: r.counters,
                },
                CounterRow::Other => InterfaceCounters {
                    interface: OTHER_INTERFACES.to_string(),
                    ifindex: None,
                    counters: r.counters,
                },
            })
            .collect()
    }
}

/// One reading of everything `stats` and `run` report.
#[derive(Clone, Debug)]
pub struct Reading {
    /// Counter totals.
    pub counters: Counters,
    /// The same counters per interface (those that counted something).
    pub interfaces: Vec<InterfaceCounters>,
    /// Denied sources with their totals.
    pub denied: Vec<DeniedEntry>,
    /// `CLOCK_MONOTONIC` at the reading, to age `last_seen_ns`.
    pub monotonic_ns: u64,
    /// Wall clock at the reading.
    pub wall: SystemTime,
}

impl Reading {
    /// The `n` sources with most denied SYNs since `earlier` (all time
    /// without it), busiest first; ties go to the most recent.
    pub fn top_sources(&self, earlier: Option<&Reading>, n: usize) -> Vec<TopSource> {
        let before: HashMap<IpAddr, u64> = earlier
            .map(|e| e.denied.iter().map(|d| (d.source, d.count)).collect())
            .unwrap_or_default();
        let mut top: Vec<(u64, &DeniedEntry)> = self
            .denied
            .iter()
            .map(|d| {
                let prior = before.get(&d.source).copied().unwrap_or(0);
                // A source evicted and seen again restarts from zero.
                let delta = if d.count >= prior {
                    d.count - prior
                } else {
                    d.count
                };
                (delta, d)
            })
            .filter(|(delta, _)| *delta > 0)
            .collect();
        top.sort_by(|(a, x), (b, y)| b.cmp(a).then(y.last_seen_ns.cmp(&x.last_seen_ns)));
        top.truncate(n);
        top.into_iter()
            .map(|(count, d)| TopSource {
                source: d.source,
                count,
                total: d.count,
                last_seen: humantime::format_rfc3339_seconds(self.wall_time_of(d.last_seen_ns))
                    .to_string(),
                seen_at: Some(self.wall_time_of(d.last_seen_ns)),
                sampled_one_in: (d.sampled > 1).then_some(d.sampled),
            })
            .collect()
    }

    fn wall_time_of(&self, monotonic_ns: u64) -> SystemTime {
        let age = Duration::from_nanos(self.monotonic_ns.saturating_sub(monotonic_ns));
        self.wall.checked_sub(age).unwrap_or(self.wall)
    }
}

/// `later - earlier` for every counter (counters only grow; a reset
/// between readings shows as the new value).
pub fn delta(later: &Counters, earlier: &Counters) -> Counters {
    fn family(l: &OutcomeCounts, e: &OutcomeCounts) -> OutcomeCounts {
        let mut d = OutcomeCounts::default();
        for outcome in Outcome::ALL {
            let (l, e) = (l.get(outcome), e.get(outcome));
            d.set(outcome, if l >= e { l - e } else { l });
        }
        d
    }
    let (l, e) = (later.no_ip_header, earlier.no_ip_header);
    Counters {
        v4: family(&later.v4, &earlier.v4),
        v6: family(&later.v6, &earlier.v6),
        no_ip_header: if l >= e { l - e } else { l },
    }
}

/// The `stats` log line for the period from `earlier` to `later`.
pub fn stats_line(earlier: &Reading, later: &Reading, top: usize) -> LogLine {
    let d = delta(&later.counters, &earlier.counters);
    let seconds = later
        .wall
        .duration_since(earlier.wall)
        .unwrap_or_default()
        .as_secs_f64();
    let mut line = LogLine::info(Event::Stats).field("interval_s", (seconds * 10.0).round() / 10.0);
    for (prefix, counts) in [
        ("v4", &d.v4),
        ("v6", &d.v6),
        ("total_v4", &later.counters.v4),
        ("total_v6", &later.counters.v6),
    ] {
        line = add_counts(line, prefix, counts);
    }
    line = line.field(NO_IP_HEADER_LABEL, d.no_ip_header).field(
        &format!("total_{NO_IP_HEADER_LABEL}"),
        later.counters.no_ip_header,
    );
    let sources = later.top_sources(Some(earlier), top);
    // ip:count, IPv6 in brackets as in host:port, so the count stays apart.
    let text: Vec<String> = sources
        .iter()
        .map(|s| match s.source {
            IpAddr::V4(a) => format!("{a}:{}", s.count),
            IpAddr::V6(a) => format!("[{a}]:{}", s.count),
        })
        .collect();
    line.field_as("top_denied", json!(sources), text.join(","))
}

fn add_counts(line: LogLine, prefix: &str, c: &OutcomeCounts) -> LogLine {
    c.iter().fold(
        line.field(&format!("{prefix}_examined"), c.examined()),
        |line, (outcome, count)| line.field(&format!("{prefix}_{}", outcome.label()), count),
    )
}

/// The filter's state beside its counters, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterState {
    /// The emergency switch is on.
    pub open: bool,
    /// Denied SYNs are counted, not dropped.
    pub dry_run: bool,
    /// IPv4 prefixes in the allowlist.
    pub prefixes_v4: usize,
    /// IPv6 prefixes in the allowlist.
    pub prefixes_v6: usize,
    /// IPv4 addresses the allowlist allows.
    pub addresses_v4: u128,
    /// IPv6 addresses the allowlist allows.
    pub addresses_v6: u128,
}

/// `text` as a Prometheus label value: backslash, double quote and line
/// feed escaped, as the text format requires.
pub fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The `stats` command's text: counters per family and the top sources.
pub fn stats_text(reading: &Reading, top: usize) -> String {
    let mut out = format!("{:<5} {:>12}", "", "examined");
    for outcome in Outcome::ALL {
        let _ = write!(out, " {:>12}", outcome.label().replace('_', "-"));
    }
    out.push('\n');
    for (name, c) in [
        ("IPv4", &reading.counters.v4),
        ("IPv6", &reading.counters.v6),
    ] {
        let _ = write!(out, "{name:<5} {:>12}", c.examined());
        for (_, count) in c.iter() {
            let _ = write!(out, " {count:>12}");
        }
        out.push('\n');
    }
    if !reading.interfaces.is_empty() {
        out.push_str("per interface:\n");
        for i in &reading.interfaces {
            let name = printable(&i.interface);
            let name = match i.ifindex {
                Some(_) => name,
                None => format!(
                    "{name} (every interface with ifindex {} or more)",
                    filter_common::COUNTER_ROWS
                ),
            };
            let _ = writeln!(out, "{name}");
            for (family, c) in [("IPv4", &i.counters.v4), ("IPv6", &i.counters.v6)] {
                if c.examined() == 0 {
                    continue;
                }
                let _ = write!(out, "{family:<5} {:>12}", c.examined());
                for (_, count) in c.iter() {
                    let _ = write!(out, " {count:>12}");
                }
                out.push('\n');
            }
            if i.counters.no_ip_header > 0 {
                let _ = writeln!(
                    out,
                    "      {} {NO_IP_HEADER_LABEL}",
                    i.counters.no_ip_header
                );
            }
        }
    }
    if reading.counters.no_ip_header > 0 {
        let _ = writeln!(
            out,
            "{} frames had their IP header behind more than {MAX_VLAN_TAGS} VLAN tags ({NO_IP_HEADER_LABEL}: dropped unless dry run or open)",
            reading.counters.no_ip_header
        );
    }
    let sources = reading.top_sources(None, top);
    if sources.is_empty() {
        out.push_str("no denied sources seen\n");
    } else {
        out.push_str("top denied sources:\n");
        let sampled = sources.iter().filter_map(|s| s.sampled_one_in).max();
        for s in sources {
            let approx = if s.sampled_one_in.is_some() { "~" } else { "" };
            let _ = writeln!(
                out,
                "  {:<39} {:>10} SYNs  last {}",
                s.source,
                format!("{approx}{}", s.count),
                s.seen_at.map_or_else(|| s.last_seen.clone(), human_time)
            );
        }
        if let Some(n) = sampled {
            let _ = writeln!(
                out,
                "(~: estimated; while denied SYNs came fast, one in up to {n} was recorded)"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn reading(counts: &[(&str, u64, u64)], dropped_v4: u64, at_s: u64) -> Reading {
        let counters = Counters {
            v4: {
                let mut c = OutcomeCounts::default();
                c.set(Outcome::Dropped, dropped_v4);
                c
            },
            v6: OutcomeCounts::default(),
            no_ip_header: dropped_v4 / 2,
        };
        Reading {
            counters,
            interfaces: vec![InterfaceCounters {
                interface: "eth0".into(),
                ifindex: Some(2),
                counters,
            }],
            denied: counts
                .iter()
                .map(|(ip, count, seen)| DeniedEntry {
                    source: ip.parse().unwrap(),
                    count: *count,
                    last_seen_ns: seen * 1_000_000_000,
                    sampled: 0,
                })
                .collect(),
            monotonic_ns: at_s * 1_000_000_000,
            wall: UNIX_EPOCH + Duration::from_secs(1_795_000_000 + at_s),
        }
    }

    #[test]
    fn top_sources_rank_by_count_in_the_period() {
        let before = reading(&[("192.0.2.1", 100, 5), ("192.0.2.2", 1, 5)], 101, 10);
        let after = reading(
            &[
                ("192.0.2.1", 101, 12),
                ("192.0.2.2", 9, 19),
                ("2001:db8::1", 3, 20),
            ],
            113,
            20,
        );
        let top = after.top_sources(Some(&before), 2);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].source.to_string(), "192.0.2.2");
        assert_eq!((top[0].count, top[0].total), (8, 9));
        assert_eq!(top[1].source.to_string(), "2001:db8::1");
        // All time: the busiest overall first.
        let all = after.top_sources(None, 1);
        assert_eq!(all[0].source.to_string(), "192.0.2.1");
        assert_eq!(all[0].last_seen, "2026-11-18T11:06:52Z");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("eth0"), "eth0");
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn stats_text_shows_each_interface() {
        let r = reading(&[], 4, 20);
        let text = stats_text(&r, 5);
        assert!(text.contains("per interface:\neth0\nIPv4 "), "{text}");
    }

    #[test]
    fn delta_subtracts_and_survives_a_reset() {
        let a = reading(&[], 10, 0).counters;
        let b = reading(&[], 15, 1).counters;
        assert_eq!(delta(&b, &a).v4.get(Outcome::Dropped), 5);
        assert_eq!(delta(&a, &b).v4.get(Outcome::Dropped), 10);
    }

    #[test]
    fn stats_line_has_deltas_totals_and_top() {
        let before = reading(&[("192.0.2.1", 1, 5)], 1, 10);
        let after = reading(&[("192.0.2.1", 4, 19), ("2001:db8::1", 1, 19)], 4, 20);
        let line =
            stats_line(&before, &after, 5).render(crate::logline::LogFormat::Text, after.wall);
        assert!(line.contains("event=stats interval_s=10.0 "), "{line}");
        assert!(line.contains(" v4_dropped=3 "), "{line}");
        assert!(line.contains(" total_v4_dropped=4 "), "{line}");
        assert!(
            line.contains(" no_ip_header=2 total_no_ip_header=2 "),
            "{line}"
        );
        assert!(
            line.contains(" top_denied=192.0.2.1:3,[2001:db8::1]:1"),
            "{line}"
        );
    }
}
