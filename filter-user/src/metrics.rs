//! The one Prometheus renderer: what `run --metrics-listen` serves, what
//! `run --prom-file` writes and what `stats --format prometheus` prints
//! (text format 0.0.4, also node_exporter's textfile format).
//!
//! Names follow Prometheus' conventions: the `mxgate_` prefix, counters
//! ending in `_total`, base units (seconds, addresses), `_info` gauges for
//! what is a label rather than a number, `_timestamp_seconds` for times.
//! The metrics are listed in README ("Watching it") and docs/DESIGN.md §4.

use std::fmt::Write as _;

use filter_common::MAX_VLAN_TAGS;

use crate::{
    refresh_record::{RefreshRecord, RefreshResult},
    report::{FilterState, Reading, label_value},
};

/// How a pinned link's interface looks, for metrics and `top`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceState {
    /// The interface's name now (the pin's name when it is gone).
    pub interface: String,
    /// Whether the link attaches the program to it.
    pub attached: bool,
    /// The mode the kernel reports (`native`, `skb`, `hw`), when attached.
    pub mode: Option<&'static str>,
    /// Whether its driver supports native XDP; `None` when the kernel
    /// cannot say (before 6.3; see [`crate::xdp_features`]).
    pub native_supported: Option<bool>,
}

/// Everything the metrics show, read at one time.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Counters and denied sources.
    pub reading: Reading,
    /// Switches and the allowlist's size.
    pub state: FilterState,
    /// Each pinned link's interface.
    pub interfaces: Vec<InterfaceState>,
    /// Whether the maps are in step with the list applied last (tries,
    /// fast path and their record); `None` when it could not be checked.
    pub in_step: Option<bool>,
    /// The last refreshes, when their record could be read.
    pub record: Option<RefreshRecord>,
    /// How many of the busiest denied sources to show.
    pub top: usize,
}

impl Snapshot {
    /// Whether the filter drops SYNs from outside the list somewhere: it
    /// is attached to an interface and neither open nor in dry run.
    pub fn enforcing(&self) -> bool {
        self.interfaces.iter().any(|i| i.attached) && !self.state.open && !self.state.dry_run
    }
}

/// One metric family being written: its HELP and TYPE lines come first.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
        Family { out, name }
    }

    /// A sample with `labels` (name, unescaped value).
    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{name}=\"{}\"", label_value(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn flag(on: bool) -> u8 {
    u8::from(on)
}

/// The snapshot in the Prometheus text format.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    Family::new(
        &mut out,
        "mxgate_build_info",
        "gauge",
        "Always 1; the running mxgate's version and map layout as labels.",
    )
    .sample(
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("layout", &filter_common::LAYOUT_VERSION.to_string()),
        ],
        1,
    );

    let mut f = Family::new(
        &mut out,
        "mxgate_syns_total",
        "counter",
        "TCP SYNs to protected ports examined, by ingress interface, family and outcome \
         (interface \"other\": every interface with an ifindex of 1024 or more).",
    );
    for i in &s.reading.interfaces {
        for (family, c) in [("ipv4", &i.counters.v4), ("ipv6", &i.counters.v6)] {
            for (outcome, value) in c.iter() {
                f.sample(
                    &[
                        ("interface", &i.interface),
                        ("family", family),
                        ("outcome", outcome.label()),
                    ],
                    value,
                );
            }
        }
    }
    let mut f = Family::new(
        &mut out,
        "mxgate_no_ip_header_frames_total",
        "counter",
        &format!(
            "Frames whose IP header lay behind more than {MAX_VLAN_TAGS} VLAN tags (dropped \
             unless dry run or open), by ingress interface."
        ),
    );
    for i in &s.reading.interfaces {
        f.sample(&[("interface", &i.interface)], i.counters.no_ip_header);
    }

    Family::new(
        &mut out,
        "mxgate_enforcing",
        "gauge",
        "1 while the filter drops SYNs from outside the list: attached somewhere, neither \
         open nor in dry run.",
    )
    .sample(&[], flag(s.enforcing()));
    Family::new(
        &mut out,
        "mxgate_open",
        "gauge",
        "1 while the emergency switch lets every SYN through.",
    )
    .sample(&[], flag(s.state.open));
    Family::new(
        &mut out,
        "mxgate_dry_run",
        "gauge",
        "1 while denied SYNs are counted, not dropped.",
    )
    .sample(&[], flag(s.state.dry_run));

    let mut f = Family::new(
        &mut out,
        "mxgate_interface_attached",
        "gauge",
        "1 while the filter's link attaches it to the interface, 0 once the link attaches \
         nothing.",
    );
    for i in &s.interfaces {
        f.sample(&[("interface", &i.interface)], flag(i.attached));
    }
    let mut f = Family::new(
        &mut out,
        "mxgate_interface_mode_info",
        "gauge",
        "Always 1; the XDP mode the kernel reports for each attached interface (native, skb: \
         generic and slow, hw: offloaded).",
    );
    for i in s.interfaces.iter().filter(|i| i.attached) {
        f.sample(
            &[
                ("interface", &i.interface),
                ("mode", i.mode.unwrap_or("unknown")),
            ],
            1,
        );
    }

    let mut f = Family::new(
        &mut out,
        "mxgate_interface_native_xdp_supported",
        "gauge",
        "1 when the interface's driver supports native XDP, 0 when it does not (absent where \
         the kernel cannot say: before Linux 6.3).",
    );
    for i in &s.interfaces {
        if let Some(native) = i.native_supported {
            f.sample(&[("interface", &i.interface)], flag(native));
        }
    }

    let mut f = Family::new(
        &mut out,
        "mxgate_allowlist_prefixes",
        "gauge",
        "Prefixes (entries) in the live allowlist, by family.",
    );
    f.sample(&[("family", "ipv4")], s.state.prefixes_v4);
    f.sample(&[("family", "ipv6")], s.state.prefixes_v6);
    let mut f = Family::new(
        &mut out,
        "mxgate_allowlist_addresses",
        "gauge",
        "Addresses the live allowlist allows, by family.",
    );
    // IPv6 counts pass 2^64: a float, as Prometheus keeps them anyway.
    f.sample(&[("family", "ipv4")], s.state.addresses_v4 as f64);
    f.sample(&[("family", "ipv6")], s.state.addresses_v6 as f64);
    if let Some(in_step) = s.in_step {
        Family::new(
            &mut out,
            "mxgate_maps_in_step",
            "gauge",
            "1 while the tries and the fast path match the record of the list applied last \
             (0: out of step, or a refresh is writing; `mxgate refresh --force` repairs).",
        )
        .sample(&[], flag(in_step));
    }

    if let Some(r) = &s.record {
        refresh_metrics(&mut out, r);
    }

    let mut f = Family::new(
        &mut out,
        "mxgate_denied_source_syns",
        "gauge",
        "Denied SYNs of the busiest denied sources still remembered (estimates while \
         sampled).",
    );
    for source in s.reading.top_sources(None, s.top) {
        f.sample(&[("source", &source.source.to_string())], source.count);
    }
    out
}

fn refresh_metrics(out: &mut String, r: &RefreshRecord) {
    if let Some(at) = r.last_attempt {
        Family::new(
            out,
            "mxgate_refresh_last_attempt_timestamp_seconds",
            "gauge",
            "When the last refresh (attach, refresh, run) started, Unix time.",
        )
        .sample(&[], at);
    }
    if let Some(at) = r.last_success {
        Family::new(
            out,
            "mxgate_refresh_last_success_timestamp_seconds",
            "gauge",
            "When a refresh last ended with its list live, Unix time: the list's age is \
             time() minus this.",
        )
        .sample(&[], at);
    }
    if let Some(d) = r.duration_seconds {
        Family::new(
            out,
            "mxgate_refresh_duration_seconds",
            "gauge",
            "How long the last refresh took.",
        )
        .sample(&[], d);
    }
    if let Some(result) = r.result {
        let mut f = Family::new(
            out,
            "mxgate_refresh_result",
            "gauge",
            "1 for the last refresh's result, 0 for the others.",
        );
        for each in RefreshResult::ALL {
            f.sample(&[("result", each.label())], flag(each == result));
        }
    }
    let mut f = Family::new(
        out,
        "mxgate_source_result",
        "gauge",
        "1 for each source's last result (ok or failed), 0 for the other.",
    );
    for (name, source) in &r.sources {
        for each in [RefreshResult::Ok, RefreshResult::Failed] {
            f.sample(
                &[("source", name), ("result", each.label())],
                flag(each == source.result),
            );
        }
    }
    let mut f = Family::new(
        out,
        "mxgate_source_last_success_timestamp_seconds",
        "gauge",
        "When each source last delivered a usable list, Unix time.",
    );
    for (name, source) in &r.sources {
        if let Some(at) = source.last_success {
            f.sample(&[("source", name)], at);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        time::{Duration, UNIX_EPOCH},
    };

    use filter_common::Outcome;

    use super::*;
    use crate::{
        filter::{Counters, DeniedEntry, OutcomeCounts},
        refresh_record::SourceRecord,
        report::InterfaceCounters,
    };

    pub(crate) fn snapshot() -> Snapshot {
        let counters = Counters {
            v4: OutcomeCounts::with(&[(Outcome::Dropped, 4), (Outcome::Allowed, 9)]),
            v6: OutcomeCounts::default(),
            no_ip_header: 2,
        };
        Snapshot {
            reading: Reading {
                counters,
                interfaces: vec![InterfaceCounters {
                    interface: "eth\"0".into(),
                    ifindex: Some(2),
                    counters,
                }],
                denied: vec![DeniedEntry {
                    source: "192.0.2.1".parse().unwrap(),
                    count: 4,
                    last_seen_ns: 19_000_000_000,
                    sampled: 0,
                }],
                monotonic_ns: 20_000_000_000,
                wall: UNIX_EPOCH + Duration::from_secs(1_795_000_020),
            },
            state: FilterState {
                prefixes_v4: 21,
                addresses_v4: 512,
                prefixes_v6: 1,
                addresses_v6: 1 << 96,
                ..Default::default()
            },
            interfaces: vec![InterfaceState {
                interface: "eth\"0".into(),
                attached: true,
                mode: Some("skb"),
                native_supported: Some(true),
            }],
            in_step: Some(true),
            record: Some(RefreshRecord {
                result: Some(RefreshResult::Failed),
                last_attempt: Some(1_795_000_000.5),
                last_success: Some(1_794_990_000.0),
                duration_seconds: Some(0.25),
                sources: BTreeMap::from([(
                    "https://a.example/x".to_string(),
                    SourceRecord {
                        result: RefreshResult::Failed,
                        last_attempt: 1_795_000_000.5,
                        last_success: Some(1_794_990_000.0),
                    },
                )]),
            }),
            top: 5,
        }
    }

    #[test]
    fn the_metrics_name_interfaces_families_outcomes_and_state() {
        let text = render(&snapshot());
        for line in [
            "# TYPE mxgate_syns_total counter",
            "mxgate_syns_total{interface=\"eth\\\"0\",family=\"ipv4\",outcome=\"dropped\"} 4",
            "mxgate_syns_total{interface=\"eth\\\"0\",family=\"ipv6\",outcome=\"allowed\"} 0",
            "mxgate_no_ip_header_frames_total{interface=\"eth\\\"0\"} 2",
            "mxgate_enforcing 1",
            "mxgate_open 0",
            "mxgate_interface_attached{interface=\"eth\\\"0\"} 1",
            "mxgate_interface_mode_info{interface=\"eth\\\"0\",mode=\"skb\"} 1",
            "mxgate_interface_native_xdp_supported{interface=\"eth\\\"0\"} 1",
            "mxgate_allowlist_prefixes{family=\"ipv4\"} 21",
            "mxgate_allowlist_addresses{family=\"ipv4\"} 512",
            "mxgate_allowlist_addresses{family=\"ipv6\"} 79228162514264340000000000000",
            "mxgate_maps_in_step 1",
            "mxgate_refresh_last_success_timestamp_seconds 1794990000",
            "mxgate_refresh_duration_seconds 0.25",
            "mxgate_refresh_result{result=\"failed\"} 1",
            "mxgate_refresh_result{result=\"ok\"} 0",
            "mxgate_source_result{source=\"https://a.example/x\",result=\"failed\"} 1",
            "mxgate_source_last_success_timestamp_seconds{source=\"https://a.example/x\"} 1794990000",
            "mxgate_denied_source_syns{source=\"192.0.2.1\"} 4",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with("mxgate_build_info{version="))
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn not_attached_or_open_is_not_enforcing() {
        let mut s = snapshot();
        s.state.open = true;
        assert!(!s.enforcing());
        let mut s = snapshot();
        s.interfaces[0].attached = false;
        assert!(!s.enforcing());
        assert!(render(&s).lines().any(|l| l == "mxgate_enforcing 0"));
    }
}
