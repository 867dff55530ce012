//! `mxgate audit`: which of the senders in the mail server's own logs a
//! list would refuse, before the filter refuses anyone.
//!
//! Data flows one way, one line at a time, so a log of any size takes the
//! same memory: [`input`] (files, rotated `.gz`, standard input) →
//! [`lines`] (each line's time and program) → the reader of the MTA that
//! wrote it ([`Mta`]: [`postfix`], [`exim`]) → [`Event`]s → [`tally`] (per
//! /24 and /48 of the senders the list would refuse) → [`report`] (for
//! people and `--json`). [`stamp`] reads the logs' times and `--since`.

pub mod exim;
pub mod input;
pub mod lines;
pub mod postfix;
pub mod report;
pub mod stamp;
pub mod tally;

use std::net::IpAddr;

use self::{
    input::{LineRead, LogInput, LogSource},
    lines::{Line, Prefixed, Program},
    postfix::Postfix,
    report::{ListSummary, LogSummary, Report, UNREADABLE_SHOWN, Unreadable},
    tally::Tally,
};
use crate::{allowlist::Allowlist, error::InvalidInput};

/// What a sender did, as one log line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// It connected.
    Connection,
    /// A message of its was accepted.
    Accepted,
    /// A recipient, command, message or connection of its was rejected.
    Rejected,
    /// A message of its began but was not seen to end.
    Incomplete,
}

/// One thing a sender did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When, in seconds since the epoch.
    pub time: i64,
    /// Its address (an IPv4-mapped IPv6 address as the IPv4 one: that is
    /// the packet the filter sees).
    pub addr: IpAddr,
    /// The MTA's name for it, if it gave one.
    pub name: Option<String>,
    /// What it did.
    pub kind: EventKind,
}

impl Event {
    /// An event.
    pub fn new(time: i64, addr: IpAddr, name: Option<String>, kind: EventKind) -> Self {
        Self {
            time,
            addr: addr.to_canonical(),
            name,
            kind,
        }
    }
}

/// What one line gave an MTA reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Something a sender did.
    Event(Event),
    /// Something a sender did on another port (submission): left out.
    OtherService,
    /// Nothing about a sender (a delivery, a daemon's own message).
    Nothing,
    /// A line that should name a sender but could not be read.
    Unreadable(String),
}

/// The MTA families whose logs audit reads; each line goes to the one
/// that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mta {
    /// Postfix: syslog names `postfix/…`, `postfix-INSTANCE/…`.
    Postfix,
    /// Exim: its own log, or syslog names `exim`, `exim4`.
    Exim,
}

impl Mta {
    /// The MTA that wrote a line of `program`, if it is one audit reads.
    pub fn of(program: Program<'_>) -> Option<Mta> {
        match program {
            Program::EximLog => Some(Mta::Exim),
            Program::Tag(tag) if Postfix::writes(tag) => Some(Mta::Postfix),
            Program::Tag(tag) if exim::writes(tag) => Some(Mta::Exim),
            Program::Tag(_) => None,
        }
    }
}

/// The readers of each MTA, with what they remember between lines.
#[derive(Debug, Default)]
struct Readers {
    postfix: Postfix,
}

impl Readers {
    fn read(&mut self, line: &Line<'_>, ended: &mut Vec<Event>) -> Reading {
        match (Mta::of(line.program), line.program) {
            (Some(Mta::Postfix), Program::Tag(tag)) => {
                self.postfix.read(tag, line.time, line.message, ended)
            }
            (Some(Mta::Exim), _) => exim::read(line.time, line.message),
            _ => Reading::Nothing,
        }
    }
}

/// What to audit and how.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Events before this time (seconds since the epoch) are left out.
    pub since: Option<i64>,
    /// The time the audit runs (for stamps without a year on standard
    /// input).
    pub now: i64,
    /// The list's sources, for the report.
    pub sources: String,
}

/// Reads `logs` in order and counts what each sender did against
/// `allowlist`. A log that cannot be opened or read (a missing file, a
/// damaged gzip stream) is invalid input; a line that cannot be read is
/// counted and the first few are kept for the report.
pub fn audit(
    logs: &[LogSource],
    allowlist: &Allowlist,
    options: &AuditOptions,
) -> anyhow::Result<Report> {
    let mut tally = Tally::new(allowlist);
    let mut readers = Readers::default();
    let mut summaries = Vec::new();
    let mut unreadable = 0u64;
    let mut unreadable_lines = Vec::new();
    let mut before_since = 0u64;
    let mut other_services = 0u64;
    let mut ended = Vec::new();
    let mut buffer = Vec::new();
    for source in logs {
        let mut input = LogInput::open(source, options.now)?;
        loop {
            let read = input.next_line(&mut buffer).map_err(|e| {
                InvalidInput(format!(
                    "reading {} after line {}: {e}",
                    input.name, input.line_number
                ))
            })?;
            let Some(read) = read else { break };
            let text = String::from_utf8_lossy(&buffer);
            let mut unreadable_line = |reason: String| {
                unreadable += 1;
                if unreadable_lines.len() < UNREADABLE_SHOWN {
                    unreadable_lines.push(Unreadable::new(
                        &input.name,
                        input.line_number,
                        reason,
                        &text,
                    ));
                }
            };
            if let LineRead::TooLong = read {
                unreadable_line(format!("longer than {} bytes", input::MAX_LINE));
                continue;
            }
            if text.trim().is_empty() {
                continue;
            }
            let line = match lines::parse(&text, input.reference) {
                Ok(Prefixed::Line(line)) => line,
                Ok(Prefixed::Marker) => continue,
                Err(why) => {
                    unreadable_line(why.to_owned());
                    continue;
                }
            };
            if options.since.is_some_and(|since| line.time < since) {
                before_since += 1;
                continue;
            }
            match readers.read(&line, &mut ended) {
                Reading::Event(event) => tally.add(event),
                Reading::OtherService => other_services += 1,
                Reading::Nothing => {}
                Reading::Unreadable(why) => unreadable_line(why),
            }
            for event in ended.drain(..) {
                tally.add(event);
            }
        }
        summaries.push(LogSummary {
            name: input.name.clone(),
            lines: input.line_number,
        });
    }
    for event in readers.postfix.finish() {
        tally.add(event);
    }
    let refused = tally.refused();
    let (events, first, last, allowed, loopback) = (
        tally.events,
        tally.first,
        tally.last,
        tally.allowed,
        tally.loopback,
    );
    let blocks: Vec<report::BlockReport> =
        tally.refused_blocks().into_iter().map(Into::into).collect();
    Ok(Report {
        lines: summaries.iter().map(|s| s.lines).sum(),
        logs: summaries,
        since: options.since.map(stamp::format),
        before_since,
        events,
        first_event: first.map(stamp::format),
        last_event: last.map(stamp::format),
        other_services,
        unreadable,
        unreadable_lines,
        list: ListSummary {
            sources: options.sources.clone(),
            v4: allowlist.v4.len(),
            v6: allowlist.v6.len(),
        },
        allowed,
        loopback,
        refused,
        refused_with_accepted_mail: blocks.iter().filter(|b| b.counts.accepted > 0).count(),
        blocks,
    })
}

/// `NAME[ADDRESS]` (Postfix), `NAME (HELO) [ADDRESS]:PORT` or
/// `(HELO) [ADDRESS]` (Exim), `[ADDRESS]:PORT` (postscreen) at the start of
/// `text`: the address, the name (a HELO keeps its parentheses) and the
/// rest after the closing bracket. The address is the first bracketed one
/// outside parentheses, so a HELO cannot stand in for it.
pub fn parse_host_address(text: &str) -> Option<(IpAddr, Option<String>, &str)> {
    let mut depth = 0u32;
    let mut open = None;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '[' if depth == 0 => {
                open = Some(i);
                break;
            }
            _ => {}
        }
    }
    let open = open?;
    let inside = &text[open + 1..];
    let close = inside.find(']')?;
    let literal = &inside[..close];
    let literal = literal
        .strip_prefix("IPv6:")
        .or_else(|| literal.strip_prefix("ipv6:"))
        .unwrap_or(literal);
    // A link-local address's zone (fe80::1%eth0) is no part of it.
    let literal = literal.split('%').next().unwrap_or(literal);
    let addr: IpAddr = literal.parse().ok()?;
    let before = text[..open].trim();
    let name = match before.split_once(" (") {
        Some((verified, _)) => verified.trim(),
        None => before,
    };
    let name = (!name.is_empty()).then(|| name.to_owned());
    Some((addr, name, &inside[close + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_of_every_shape() {
        let parse =
            |t: &str| parse_host_address(t).map(|(a, n, r)| (a.to_string(), n, r.to_owned()));
        assert_eq!(
            parse("unknown[192.0.2.1]: 554 x"),
            Some(("192.0.2.1".into(), Some("unknown".into()), ": 554 x".into()))
        );
        assert_eq!(
            parse("mx.example[2001:db8::1], sasl_method=PLAIN"),
            Some((
                "2001:db8::1".into(),
                Some("mx.example".into()),
                ", sasl_method=PLAIN".into()
            ))
        );
        assert_eq!(
            parse("[2001:db8::1]:25123: 550"),
            Some(("2001:db8::1".into(), None, ":25123: 550".into()))
        );
        assert_eq!(
            parse("mx.example (helo.example) [192.0.2.1]:4000 P=esmtp"),
            Some((
                "192.0.2.1".into(),
                Some("mx.example".into()),
                ":4000 P=esmtp".into()
            ))
        );
        assert_eq!(
            parse("(evil [192.0.2.10]) [203.0.113.66] F=<a@b>"),
            Some((
                "203.0.113.66".into(),
                Some("(evil [192.0.2.10])".into()),
                " F=<a@b>".into()
            ))
        );
        assert_eq!(
            parse("x[IPv6:2001:db8::2]").map(|p| p.0),
            Some("2001:db8::2".into())
        );
        assert_eq!(
            parse("unknown[::ffff:192.0.2.7]").map(|p| p.0),
            Some("::ffff:192.0.2.7".into())
        );
        assert_eq!(
            Event::new(
                0,
                "::ffff:192.0.2.7".parse().unwrap(),
                None,
                EventKind::Connection
            )
            .addr,
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(parse("unknown[unknown]"), None);
        assert_eq!(parse("unknown[192.0.2.1"), None);
        assert_eq!(parse("no address"), None);
    }
}
