//! What `mxgate top` shows, computed from two snapshots an interval apart,
//! and laid out as lines of segments: the plain-text output and the
//! terminal view draw the same lines, the terminal with colours.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use filter_common::Outcome;

use crate::{
    filter::Counters,
    metrics::Snapshot,
    refresh_record::RefreshResult,
    text::{human_time, printable},
};

/// What the filter does with SYNs from outside the list, for the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Attached and dropping them.
    Enforcing,
    /// Counting them as "would drop" and passing them.
    DryRun,
    /// The emergency switch is on: every SYN passes.
    Open,
    /// Attached to no interface: nothing is examined.
    NotAttached,
}

impl Mode {
    fn text(self) -> &'static str {
        match self {
            Mode::Enforcing => "ENFORCING",
            Mode::DryRun => "DRY RUN (not dropping)",
            Mode::Open => "OPEN (every SYN passes)",
            Mode::NotAttached => "NOT ATTACHED (protects nothing)",
        }
    }
}

/// SYNs per second of each outcome, indexed like [`Outcome::ALL`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates(pub [f64; Outcome::ALL.len()]);

impl Rates {
    fn between(
        now: &crate::filter::OutcomeCounts,
        before: &crate::filter::OutcomeCounts,
        seconds: f64,
    ) -> Self {
        let mut r = [0.0; Outcome::ALL.len()];
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            let (n, b) = (now.get(outcome), before.get(outcome));
            // A counter reset (a new filter) shows as the new count.
            let d = if n >= b { n - b } else { n };
            r[i] = d as f64 / seconds;
        }
        Rates(r)
    }

    fn add(&mut self, other: &Rates) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// Dropped SYNs per second (parsed and unparsed).
    pub fn dropped(&self) -> f64 {
        self.0[Outcome::Dropped as usize] + self.0[Outcome::DroppedUnparsed as usize]
    }
}

/// One interface's line.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceRow {
    /// Its name (escaped for the terminal).
    pub name: String,
    /// Its XDP mode; `None` when the filter's link attaches nothing.
    pub mode: Option<&'static str>,
    /// Both families' rates.
    pub rates: Rates,
}

/// A block of denied sources: a /24 or a /48.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// `a.b.c.0/24` or `x:y:z::/48`.
    pub prefix: String,
    /// Denied SYNs per second over the interval.
    pub rate: f64,
    /// Denied SYNs remembered in total.
    pub total: u64,
    /// Whether the counts are estimates (the table sampled them).
    pub sampled: bool,
}

/// One source's last refresh.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRow {
    /// Its name.
    pub name: String,
    /// Its last result.
    pub result: RefreshResult,
    /// When it was last read.
    pub last_attempt: SystemTime,
}

/// Everything on screen.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// When the later snapshot was taken.
    pub at: SystemTime,
    /// The interval the rates cover, in seconds.
    pub seconds: f64,
    /// The header's mode.
    pub mode: Mode,
    /// Each interface with a link or with counts.
    pub interfaces: Vec<InterfaceRow>,
    /// IPv4's and IPv6's rates over every interface.
    pub families: [Rates; 2],
    /// The busiest denied blocks.
    pub blocks: Vec<Block>,
    /// Entries per family.
    pub entries: (usize, usize),
    /// Time since a refresh last left its list live, when recorded.
    pub list_age: Option<Duration>,
    /// Whether the maps are in step with their record.
    pub in_step: Option<bool>,
    /// Each source's last result.
    pub sources: Vec<SourceRow>,
}

fn unix_time(seconds: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(seconds.max(0.0))
}

/// The /24 or /48 of `addr`.
fn block_of(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            let block = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{block}/48")
        }
    }
}

impl View {
    /// The view of the interval from `before` to `now`, with the `top`
    /// busiest blocks.
    pub fn between(before: &Snapshot, now: &Snapshot, top: usize) -> Self {
        let seconds = now
            .reading
            .wall
            .duration_since(before.reading.wall)
            .unwrap_or_default()
            .as_secs_f64()
            .max(0.001);
        let mode = if !now.interfaces.iter().any(|i| i.attached) {
            Mode::NotAttached
        } else if now.state.open {
            Mode::Open
        } else if now.state.dry_run {
            Mode::DryRun
        } else {
            Mode::Enforcing
        };
        let zero = Counters::default();
        let mut families = [Rates::default(); 2];
        let mut interfaces = Vec::new();
        for i in &now.reading.interfaces {
            let earlier = before
                .reading
                .interfaces
                .iter()
                .find(|b| b.interface == i.interface)
                .map_or(&zero, |b| &b.counters);
            let v4 = Rates::between(&i.counters.v4, &earlier.v4, seconds);
            let v6 = Rates::between(&i.counters.v6, &earlier.v6, seconds);
            families[0].add(&v4);
            families[1].add(&v6);
            let mut both = v4;
            both.add(&v6);
            let link = now.interfaces.iter().find(|l| l.interface == i.interface);
            // The shared row of large ifindexes is no one interface: its
            // modes are those of the interfaces it counts.
            let mode = if i.ifindex.is_none() {
                Some("shared")
            } else {
                link.filter(|l| l.attached)
                    .and_then(|l| l.mode.or(Some("?")))
            };
            interfaces.push(InterfaceRow {
                name: printable(&i.interface),
                mode,
                rates: both,
            });
        }
        // Blocks: sums of their sources, rates against the earlier table.
        let earlier: BTreeMap<IpAddr, u64> = before
            .reading
            .denied
            .iter()
            .map(|d| (d.source, d.count))
            .collect();
        let mut by_block: BTreeMap<String, (u64, u64, bool)> = BTreeMap::new();
        for d in &now.reading.denied {
            let prior = earlier.get(&d.source).copied().unwrap_or(0);
            let delta = if d.count >= prior {
                d.count - prior
            } else {
                d.count
            };
            let b = by_block.entry(block_of(d.source)).or_default();
            b.0 += delta;
            b.1 += d.count;
            b.2 |= d.sampled > 1;
        }
        let mut blocks: Vec<Block> = by_block
            .into_iter()
            .map(|(prefix, (delta, total, sampled))| Block {
                prefix,
                rate: delta as f64 / seconds,
                total,
                sampled,
            })
            .collect();
        blocks.sort_by(|a, b| b.rate.total_cmp(&a.rate).then(b.total.cmp(&a.total)));
        blocks.truncate(top);
        let record = now.record.as_ref();
        let list_age = record
            .and_then(|r| r.last_success)
            .and_then(|at| now.reading.wall.duration_since(unix_time(at)).ok());
        let sources = record
            .map(|r| {
                r.sources
                    .iter()
                    .map(|(name, s)| SourceRow {
                        name: printable(name),
                        result: s.result,
                        last_attempt: unix_time(s.last_attempt),
                    })
                    .collect()
            })
            .unwrap_or_default();
        View {
            at: now.reading.wall,
            seconds,
            mode,
            interfaces,
            families,
            blocks,
            entries: (now.state.prefixes_v4, now.state.prefixes_v6),
            list_age,
            in_step: now.in_step,
            sources,
        }
    }
}

/// How a segment is shown in the terminal view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emphasis {
    /// Plain.
    Plain,
    /// A heading.
    Heading,
    /// Something wrong: not enforcing, a failed source, out of step.
    Alert,
    /// Slow: generic (skb) mode.
    Slow,
    /// Fine: enforcing.
    Good,
}

/// A line of the view: segments of text, each with its emphasis.
pub type Line = Vec<(String, Emphasis)>;

/// A rate for a column: whole numbers from 100 up, one decimal below.
fn rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// `d` for people: 42s, 5m, 3h 20m, 2d 4h.
fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

const NAME: usize = 12;
const MODE: usize = 7;
const COLUMN: usize = 11;

fn rates_text(r: &Rates) -> String {
    let mut out = String::new();
    for v in r.0 {
        let _ = write!(out, " {:>COLUMN$}", rate(v));
    }
    out
}

/// The view as lines, at most 80 columns wide; `interactive` adds the key
/// hint to the header.
pub fn lines(v: &View, interactive: bool) -> Vec<Line> {
    use Emphasis::*;
    let mut out: Vec<Line> = Vec::new();
    let mode_emphasis = if v.mode == Mode::Enforcing {
        Good
    } else {
        Alert
    };
    let mut header = vec![
        ("mxgate top  ".to_owned(), Heading),
        (v.mode.text().to_owned(), mode_emphasis),
        (format!("  {}", human_time(v.at)), Plain),
    ];
    if interactive {
        header.push(("  q quits".to_owned(), Plain));
    }
    out.push(header);
    let mut columns = format!("{:<NAME$} {:<MODE$}", "SYNs/s", "mode");
    for outcome in Outcome::ALL {
        // dropped-unparsed would not fit its column.
        let label = match outcome {
            Outcome::DroppedUnparsed => "unparsed".to_owned(),
            o => o.label().replace('_', "-"),
        };
        let _ = write!(columns, " {label:>COLUMN$}");
    }
    out.push(vec![(columns, Heading)]);
    if v.interfaces.is_empty() {
        out.push(vec![(
            "(nothing counted on any interface yet)".to_owned(),
            Plain,
        )]);
    }
    for i in &v.interfaces {
        let name: String = i.name.chars().take(NAME).collect();
        let (mode, emphasis) = match i.mode {
            Some("skb") => ("skb!".to_owned(), Slow),
            Some(m) => (m.to_owned(), Plain),
            None => ("-".to_owned(), Alert),
        };
        out.push(vec![
            (format!("{name:<NAME$} "), Plain),
            (format!("{mode:<MODE$}"), emphasis),
            (rates_text(&i.rates), Plain),
        ]);
    }
    for (name, r) in [("IPv4", &v.families[0]), ("IPv6", &v.families[1])] {
        out.push(vec![(
            format!("{name:<NAME$} {:<MODE$}{}", "all", rates_text(r)),
            Plain,
        )]);
    }
    if v.interfaces.iter().any(|i| i.mode == Some("skb")) {
        out.push(vec![(
            "skb!: generic mode, far slower than native under a flood".to_owned(),
            Slow,
        )]);
    }
    out.push(vec![(
        format!(
            "{:<43} {:>12} {:>12}",
            "top denied blocks", "SYNs/s", "total"
        ),
        Heading,
    )]);
    if v.blocks.is_empty() {
        out.push(vec![("(no denied sources remembered)".to_owned(), Plain)]);
    }
    for b in &v.blocks {
        let mark = if b.sampled { "~" } else { "" };
        out.push(vec![(
            format!(
                "{:<43} {:>12} {:>12}",
                b.prefix,
                format!("{mark}{}", rate(b.rate)),
                format!("{mark}{}", b.total)
            ),
            Plain,
        )]);
    }
    if v.blocks.iter().any(|b| b.sampled) {
        out.push(vec![(
            "~: estimated (denied SYNs came fast; the table sampled them)".to_owned(),
            Plain,
        )]);
    }
    let mut list = vec![(
        format!(
            "list: {} IPv4 and {} IPv6 entries; ",
            v.entries.0, v.entries.1
        ),
        Plain,
    )];
    match v.list_age {
        Some(a) => list.push((format!("last refreshed {} ago; ", age(a)), Plain)),
        None => list.push(("no refresh recorded; ".to_owned(), Plain)),
    }
    match v.in_step {
        Some(true) => list.push(("maps in step".to_owned(), Plain)),
        Some(false) => list.push(("maps OUT OF STEP".to_owned(), Alert)),
        None => list.push(("maps not checked".to_owned(), Plain)),
    }
    out.push(list);
    for s in &v.sources {
        let emphasis = if s.result == RefreshResult::Ok {
            Plain
        } else {
            Alert
        };
        let name: String = s.name.chars().take(44).collect();
        out.push(vec![
            (format!("  {name:<44} "), Plain),
            (format!("{:<7}", s.result.label()), emphasis),
            (format!(" {}", human_time(s.last_attempt)), Plain),
        ]);
    }
    out
}

/// The lines as plain text, one per line.
pub fn text(v: &View) -> String {
    let mut out = String::new();
    for line in lines(v, false) {
        for (segment, _) in line {
            out.push_str(&segment);
        }
        // Columns padded at the end are no use in a file.
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        filter::{DeniedEntry, OutcomeCounts},
        metrics::InterfaceState,
        report::{FilterState, InterfaceCounters, Reading},
    };

    fn snap(dropped: u64, denied: &[(&str, u64, u64)], at_s: u64) -> Snapshot {
        let counters = Counters {
            v4: OutcomeCounts::with(&[(Outcome::Dropped, dropped)]),
            ..Default::default()
        };
        Snapshot {
            reading: Reading {
                counters,
                interfaces: vec![InterfaceCounters {
                    interface: "eth0".into(),
                    ifindex: Some(2),
                    counters,
                }],
                denied: denied
                    .iter()
                    .map(|(ip, count, sampled)| DeniedEntry {
                        source: ip.parse().unwrap(),
                        count: *count,
                        last_seen_ns: 0,
                        sampled: *sampled,
                    })
                    .collect(),
                monotonic_ns: 0,
                wall: UNIX_EPOCH + Duration::from_secs(1_795_000_000 + at_s),
            },
            state: FilterState {
                prefixes_v4: 3,
                ..Default::default()
            },
            interfaces: vec![InterfaceState {
                interface: "eth0".into(),
                attached: true,
                mode: Some("skb"),
                native_supported: None,
            }],
            in_step: Some(true),
            record: None,
            top: 5,
        }
    }

    #[test]
    fn rates_are_per_second_and_blocks_aggregate_their_sources() {
        let before = snap(100, &[("192.0.2.1", 10, 0), ("2001:db8:1:2::5", 4, 0)], 0);
        let now = snap(
            300,
            &[
                ("192.0.2.1", 60, 0),
                ("192.0.2.200", 40, 8),
                ("2001:db8:1:3::5", 6, 0),
                ("2001:db8:1:2::5", 4, 0),
            ],
            2,
        );
        let v = View::between(&before, &now, 5);
        assert_eq!(v.mode, Mode::Enforcing);
        assert_eq!(v.interfaces[0].rates.dropped(), 100.0);
        assert_eq!(v.families[0].dropped(), 100.0);
        assert_eq!(v.blocks[0].prefix, "192.0.2.0/24");
        // 50 + 40 new in 2 s; 100 remembered; one source sampled.
        assert_eq!(
            (v.blocks[0].rate, v.blocks[0].total, v.blocks[0].sampled),
            (45.0, 100, true)
        );
        assert_eq!(v.blocks[1].prefix, "2001:db8:1::/48");
        assert_eq!((v.blocks[1].rate, v.blocks[1].total), (3.0, 10));
    }

    #[test]
    fn the_text_fits_80_columns_and_marks_what_matters() {
        let mut now = snap(300, &[("192.0.2.200", 40, 8)], 1);
        now.state.dry_run = true;
        let v = View::between(&snap(0, &[], 0), &now, 5);
        let t = text(&v);
        assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
        assert!(t.starts_with("mxgate top  DRY RUN"), "{t}");
        assert!(t.contains("\neth0         skb!"), "{t}");
        assert!(t.contains("~40"), "{t}");
        assert!(t.contains("maps in step"), "{t}");
        let alert = lines(&v, true)[0]
            .iter()
            .any(|(s, e)| s.starts_with("DRY RUN") && *e == Emphasis::Alert);
        assert!(alert);
    }

    #[test]
    fn no_attached_interface_is_said_in_the_header() {
        let mut now = snap(0, &[], 1);
        now.interfaces[0].attached = false;
        let v = View::between(&snap(0, &[], 0), &now, 5);
        assert_eq!(v.mode, Mode::NotAttached);
        assert!(text(&v).contains("NOT ATTACHED"));
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(Duration::from_secs(42)), "42s");
        assert_eq!(age(Duration::from_secs(300)), "5m");
        assert_eq!(age(Duration::from_secs(12_000)), "3h 20m");
        assert_eq!(age(Duration::from_secs(187_200)), "2d 4h");
    }
}
