//! `audit`: the senders in the mail server's logs that a list would refuse
//! (see [`crate::audit`]). Exit 3 when one of them delivered accepted
//! mail: the same "refused, here is why" as the guards, so a rollout
//! script stops there.

use std::time::SystemTime;

use super::read_nonempty_list;
use crate::{
    audit::{
        self, AuditOptions,
        input::LogSource,
        report::{DEFAULT_TOP, Report},
        stamp::{self, Since},
    },
    error::{InvalidInput, Refused},
    sources::{ListSpec, Source},
};

/// Audit MTA logs against a list.
#[derive(Clone, Debug)]
pub struct AuditRequest {
    /// The MTA's logs, in order.
    pub logs: Vec<LogSource>,
    /// The list.
    pub list: ListSpec,
    /// Leave out what happened before.
    pub since: Option<Since>,
    /// Refused blocks without accepted mail listed in the text report.
    pub top: usize,
    /// Print JSON.
    pub json: bool,
}

impl AuditRequest {
    /// A request with the defaults for what the command line leaves out.
    pub fn new(logs: Vec<LogSource>, list: ListSpec) -> Self {
        Self {
            logs,
            list,
            since: None,
            top: DEFAULT_TOP,
            json: false,
        }
    }
}

/// `mxgate audit`.
pub fn command(request: &AuditRequest) -> anyhow::Result<()> {
    check_stdin_once(&request.logs, &request.list.sources)?;
    let report = run(request)?;
    print(&report, request.json, request.top)?;
    verdict(&report)
}

/// Standard input is one stream: it can be a list or a log, once.
pub fn check_stdin_once(logs: &[LogSource], sources: &[Source]) -> anyhow::Result<()> {
    let stdin_logs = logs.iter().filter(|l| **l == LogSource::Stdin).count();
    let stdin_list = sources.contains(&Source::Stdin);
    if stdin_logs > 1 || (stdin_logs == 1 && stdin_list) {
        return Err(InvalidInput(
            "standard input (-) can be read once: give it to --ranges or to --mta-log, once".into(),
        )
        .into());
    }
    Ok(())
}

/// Reads the list, then the logs; fails when the logs hold nothing an
/// MTA wrote about SMTP (the wrong file, or a format mxgate cannot read).
pub fn run(request: &AuditRequest) -> anyhow::Result<Report> {
    let list = read_nonempty_list(&request.list)?;
    let now = stamp::seconds(SystemTime::now());
    let options = AuditOptions {
        since: request.since.map(|s| s.resolve(now)),
        now,
        sources: request.list.describe(),
    };
    let report = audit::audit(&request.logs, &list.allowlist, &options)?;
    if report.events == 0 && report.before_since == 0 && report.other_services == 0 {
        let logs: Vec<String> = request.logs.iter().map(ToString::to_string).collect();
        let first = report
            .unreadable_lines
            .first()
            .map(|u| {
                format!(
                    "; the first unreadable line, {}:{}: {}",
                    u.log, u.line, u.reason
                )
            })
            .unwrap_or_default();
        return Err(InvalidInput(format!(
            "{}: no line of Postfix or Exim about an SMTP client ({} lines read, {} unreadable{first}); \
             give the MTA's log (/var/log/mail.log, /var/log/exim4/mainlog) or pipe \
             `journalctl -u postfix -o short-iso` into --mta-log -",
            logs.join(", "),
            report.lines,
            report.unreadable
        ))
        .into());
    }
    Ok(report)
}

/// Prints the report for people or as JSON.
pub fn print(report: &Report, json: bool, top: usize) -> anyhow::Result<()> {
    if json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.text(top));
    }
    Ok(())
}

/// Exit 3 when a sender that delivered accepted mail would be refused.
pub fn verdict(report: &Report) -> anyhow::Result<()> {
    if !report.would_refuse_accepted_mail() {
        return Ok(());
    }
    let first = report
        .blocks
        .first()
        .map(|b| {
            format!(
                " (the first: {}, {} accepted message(s), last on {})",
                b.prefix, b.counts.accepted, b.last_seen
            )
        })
        .unwrap_or_default();
    Err(Refused(format!(
        "the list would refuse {} sender block(s) that delivered accepted mail{first}; \
         enforcing it now would lose their mail",
        report.refused_with_accepted_mail
    ))
    .into())
}
