//! The audit's result, and the one place it is written out: for people
//! ([`Report::text`]) and for tools (`--json`, [`Report::json`]).

use std::fmt::Write as _;

use serde::Serialize;

use super::{
    stamp,
    tally::{Block, Counts},
};

/// Refused blocks without accepted mail the text report lists unless
/// `--top` says otherwise (`--json` lists all).
pub const DEFAULT_TOP: usize = 20;
/// Unreadable lines shown (all are counted).
pub const UNREADABLE_SHOWN: usize = 5;
/// Longest part of an unreadable line shown.
const UNREADABLE_TEXT: usize = 160;

/// A log read.
#[derive(Clone, Debug, Serialize)]
pub struct LogSummary {
    /// As given (`-` for standard input).
    pub name: String,
    /// Lines read.
    pub lines: u64,
}

/// A line that could not be read, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Unreadable {
    /// The log.
    pub log: String,
    /// Its line number.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
    /// The line's start.
    pub text: String,
}

impl Unreadable {
    /// An unreadable line, its text cut to a readable length.
    pub fn new(log: &str, line: u64, reason: String, text: &str) -> Self {
        let mut end = text.len().min(UNREADABLE_TEXT);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            log: log.to_owned(),
            line,
            reason,
            text: text[..end].to_owned(),
        }
    }
}

/// The list the senders were checked against.
#[derive(Clone, Debug, Serialize)]
pub struct ListSummary {
    /// Its sources, as given.
    pub sources: String,
    /// IPv4 prefixes after merging.
    pub v4: usize,
    /// IPv6 prefixes after merging.
    pub v6: usize,
}

/// One refused /24 or /48, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct BlockReport {
    /// The /24 or /48.
    pub prefix: String,
    /// What its senders did.
    #[serde(flatten)]
    pub counts: Counts,
    /// First event (RFC 3339, UTC).
    pub first_seen: String,
    /// Last event.
    pub last_seen: String,
    /// Its senders' addresses.
    pub addresses: Vec<String>,
    /// True when there were more than listed.
    pub more_addresses: bool,
    /// The MTA's names for its hosts (a name in parentheses is the
    /// client's HELO, as Exim writes it).
    pub names: Vec<String>,
    /// True when there were more than listed.
    pub more_names: bool,
}

impl From<Block> for BlockReport {
    fn from(b: Block) -> Self {
        Self {
            prefix: b.prefix.to_string(),
            counts: b.counts,
            first_seen: stamp::format(b.first_seen),
            last_seen: stamp::format(b.last_seen),
            addresses: b.addresses.iter().map(ToString::to_string).collect(),
            more_addresses: b.more_addresses,
            names: b.names.into_iter().collect(),
            more_names: b.more_names,
        }
    }
}

/// What an audit found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The logs, in the order read.
    pub logs: Vec<LogSummary>,
    /// Lines read in all.
    pub lines: u64,
    /// Start of the window (`--since`), if any.
    pub since: Option<String>,
    /// Lines before the window, left out.
    pub before_since: u64,
    /// Events counted (connections, messages, rejections).
    pub events: u64,
    /// First event counted.
    pub first_event: Option<String>,
    /// Last event counted.
    pub last_event: Option<String>,
    /// Events of other SMTP services (submission, smtps: other ports),
    /// left out.
    pub other_services: u64,
    /// Lines that could not be read.
    pub unreadable: u64,
    /// The first of them.
    pub unreadable_lines: Vec<Unreadable>,
    /// The list checked against.
    pub list: ListSummary,
    /// What the senders the list allows did.
    pub allowed: Counts,
    /// What loopback senders did (local programs: the filter never sees
    /// them).
    pub loopback: Counts,
    /// What the senders the list would refuse did, together.
    pub refused: Counts,
    /// Refused blocks that delivered accepted mail: each one is mail the
    /// filter would have refused.
    pub refused_with_accepted_mail: usize,
    /// Every refused /24 and /48, those that delivered accepted mail first.
    pub blocks: Vec<BlockReport>,
}

impl Report {
    /// True when a sender that delivered accepted mail would be refused.
    pub fn would_refuse_accepted_mail(&self) -> bool {
        self.refused_with_accepted_mail > 0
    }

    /// The report as JSON.
    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// The report for people: every refused block that delivered accepted
    /// mail, and the `top` busiest others.
    pub fn text(&self, top: usize) -> String {
        let mut out = String::new();
        let logs: Vec<String> = self
            .logs
            .iter()
            .map(|l| format!("{} ({} lines)", l.name, l.lines))
            .collect();
        let _ = writeln!(out, "read: {}", logs.join(", "));
        match (&self.first_event, &self.last_event) {
            (Some(first), Some(last)) => {
                let _ = writeln!(out, "events: {} from {first} to {last}", self.events);
            }
            _ => {
                let _ = writeln!(out, "events: none");
            }
        }
        if let Some(since) = &self.since {
            let _ = writeln!(
                out,
                "window: since {since} ({} earlier lines left out)",
                self.before_since
            );
        }
        let _ = writeln!(
            out,
            "list: {} IPv4 and {} IPv6 prefixes from {}",
            self.list.v4, self.list.v6, self.list.sources
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "allowed by the list:  {}", counts_text(&self.allowed));
        let _ = writeln!(
            out,
            "would be refused:     {} ({} /24 and /48 blocks)",
            counts_text(&self.refused),
            self.blocks.len()
        );
        if self.loopback != Counts::default() {
            let _ = writeln!(out, "loopback (no filter): {}", counts_text(&self.loopback));
        }
        if self.other_services > 0 {
            let _ = writeln!(
                out,
                "other ports:          {} events of other SMTP services (submission, smtps) left \
                 out: mxgate filters port 25",
                self.other_services
            );
        }
        let (delivering, others): (Vec<&BlockReport>, Vec<&BlockReport>) =
            self.blocks.iter().partition(|b| b.counts.accepted > 0);
        if !delivering.is_empty() {
            let _ = writeln!(
                out,
                "\nWOULD REFUSE senders that delivered accepted mail ({}):",
                delivering.len()
            );
            table(&mut out, &delivering);
        }
        if !others.is_empty() {
            let shown = others.len().min(top);
            let _ = writeln!(
                out,
                "\nwould refuse, no accepted mail ({}{}):",
                others.len(),
                if shown < others.len() {
                    format!(", the {shown} busiest shown; --json lists all")
                } else {
                    String::new()
                }
            );
            table(&mut out, &others[..shown]);
        }
        if self.unreadable > 0 {
            let _ = writeln!(
                out,
                "\nunreadable lines: {} (the first {} below)",
                self.unreadable,
                self.unreadable_lines.len()
            );
            for u in &self.unreadable_lines {
                let _ = writeln!(out, "  {}:{}: {}: {:?}", u.log, u.line, u.reason, u.text);
            }
        }
        let _ = writeln!(out);
        if self.would_refuse_accepted_mail() {
            let _ = writeln!(
                out,
                "result: the list would refuse {} sender block(s) that delivered accepted mail; \
                 add what is yours with --allow (a backup MX, a partner, an application), or \
                 check that the list is the one of your service",
                self.refused_with_accepted_mail
            );
        } else {
            let _ = writeln!(
                out,
                "result: every sender that delivered accepted mail is in the list"
            );
        }
        out
    }
}

fn counts_text(c: &Counts) -> String {
    let mut text = format!(
        "{} connections, {} accepted messages, {} rejections",
        c.connections, c.accepted, c.rejected
    );
    if c.incomplete > 0 {
        let _ = write!(text, ", {} incomplete messages", c.incomplete);
    }
    text
}

fn table(out: &mut String, blocks: &[&BlockReport]) {
    let _ = writeln!(
        out,
        "  {:<20} {:>6} {:>8} {:>9} {:>8}  {:<20}  {:<20}  hosts",
        "block", "conns", "accepted", "rejected", "incompl", "first seen", "last seen"
    );
    for b in blocks {
        let mut hosts: Vec<String> = b.addresses.iter().take(3).cloned().collect();
        if b.addresses.len() > 3 || b.more_addresses {
            hosts.push(format!(
                "+{}{} more",
                b.addresses.len().saturating_sub(3),
                if b.more_addresses { "+" } else { "" }
            ));
        }
        let mut names: Vec<String> = b.names.iter().take(3).cloned().collect();
        if b.names.len() > 3 || b.more_names {
            names.push("…".into());
        }
        let _ = writeln!(
            out,
            "  {:<20} {:>6} {:>8} {:>9} {:>8}  {:<20}  {:<20}  {}{}",
            b.prefix,
            b.counts.connections,
            b.counts.accepted,
            b.counts.rejected,
            b.counts.incomplete,
            b.first_seen,
            b.last_seen,
            hosts.join(" "),
            if names.is_empty() {
                String::new()
            } else {
                format!("  {}", names.join(", "))
            }
        );
    }
}
