//! Exim's main log (Debian's default MTA): its own file
//! (`/var/log/exim4/mainlog`) or its syslog lines (tag `exim`, `exim4`).
//!
//! - `SMTP connection from HOST [ADDR] (TCP/IP connection count = N)`: a
//!   connection (logged with `log_selector = +smtp_connection`; without
//!   it connections are not counted, messages and rejections are);
//! - `ID <= SENDER H=HOST [ADDR] … P=esmtp …`: a message accepted from the
//!   network (a `<=` without `H=` was submitted locally);
//! - `H=HOST [ADDR] … rejected …` (with or without a message id: `rejected
//!   RCPT`, `rejected after DATA`, `rejected connection in "connect" ACL`),
//!   `rejected connection from H=[ADDR]`, `Connection from [ADDR]
//!   refused`: a rejection.
//!
//! HOST is the name Exim verified (`mx.example.net`), or the client's HELO
//! in parentheses (`(helo.example)`), or both. An `I=[ADDR]:PORT` field
//! (`+incoming_interface`) naming a port other than 25 is another service
//! (submission), which mxgate does not filter.

use filter_common::DEFAULT_PORT;

use super::{Event, EventKind, Reading, parse_host_address};

/// True when `tag` is Exim's syslog name (`exim`, `exim4`).
pub fn writes(tag: &str) -> bool {
    tag.starts_with("exim")
}

/// Reads one line Exim logged at `time`.
pub fn read(time: i64, message: &str) -> Reading {
    let (has_id, rest) = match split_message_id(message) {
        Some(rest) => (true, rest),
        None => (false, message),
    };
    let reading = if let Some(received) = rest.strip_prefix("<= ") {
        accepted(time, received)
    } else if let Some(from) = rest.strip_prefix("SMTP connection from ") {
        if from.contains("(TCP/IP connection count") {
            event(
                time,
                from,
                EventKind::Connection,
                "`SMTP connection from` without [ADDRESS]",
            )
        } else {
            Reading::Nothing
        }
    } else if let Some(host) = rest.strip_prefix("H=")
        && (rest.contains(" rejected ") || rest.contains(" rejected:"))
    {
        event(
            time,
            host,
            EventKind::Rejected,
            "a rejection with an unreadable H= field",
        )
    } else if !has_id && let Some((_, host)) = rest.split_once("rejected connection from H=") {
        event(
            time,
            host,
            EventKind::Rejected,
            "a rejection with an unreadable H= field",
        )
    } else if !has_id
        && let Some(from) = rest.strip_prefix("Connection from ")
        && from.contains(" refused")
    {
        event(
            time,
            from,
            EventKind::Rejected,
            "`Connection from` without [ADDRESS]",
        )
    } else {
        Reading::Nothing
    };
    match reading {
        Reading::Event(_) if other_port(rest) => Reading::OtherService,
        r => r,
    }
}

/// The event of `kind` for the host spec at the start of `host`.
fn event(time: i64, host: &str, kind: EventKind, unreadable: &str) -> Reading {
    match parse_host_address(host) {
        Some((addr, name, _)) => Reading::Event(Event::new(time, addr, name, kind)),
        None => Reading::Unreadable(unreadable.into()),
    }
}

/// `<= SENDER H=… [ADDR] …` after the message id.
fn accepted(time: i64, received: &str) -> Reading {
    let fields = skip_sender(received);
    // Exim's own fields (R=, U=) may come before H=; P= always follows the
    // host spec, and after it come the client's texts (id=<Message-ID>).
    let head = &fields[..fields.find(" P=").unwrap_or(fields.len())];
    let Some(at) = head
        .strip_prefix("H=")
        .map(|_| 2)
        .or_else(|| head.find(" H=").map(|i| i + 3))
    else {
        // Submitted on this host (`U=user P=local`): no SMTP client.
        return Reading::Nothing;
    };
    event(
        time,
        &fields[at..],
        EventKind::Accepted,
        "`<=` with an unreadable H= field",
    )
}

/// The text after the sender address of a `<=` line (which may be quoted
/// and hold spaces: `"a b"@example.net`).
fn skip_sender(received: &str) -> &str {
    if let Some(quoted) = received.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    let after = &quoted[i + 1..];
                    return after.split_once(' ').map_or("", |(_, rest)| rest);
                }
                _ => {}
            }
        }
        return "";
    }
    received.split_once(' ').map_or("", |(_, rest)| rest)
}

/// A message id at the start (`1tABcd-000123-AB`, or Exim 4.97's longer
/// `1tABcd-0000012345-ABCD`), and the rest after it.
fn split_message_id(message: &str) -> Option<&str> {
    let (id, rest) = message.split_once(' ')?;
    let mut parts = id.split('-');
    let ok = [parts.next(), parts.next(), parts.next()]
        .iter()
        .zip([6..=6, 6..=11, 2..=4])
        .all(|(part, lengths)| {
            part.is_some_and(|p| {
                lengths.contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric())
            })
        })
        && parts.next().is_none();
    ok.then_some(rest)
}

/// True when the line's `I=[ADDR]:PORT` names a port other than 25.
fn other_port(fields: &str) -> bool {
    let Some(at) = fields.find(" I=[") else {
        return false;
    };
    let interface = &fields[at + 4..];
    let Some(close) = interface.find(']') else {
        return false;
    };
    let port: String = interface[close + 1..]
        .strip_prefix(':')
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    port.parse::<u16>().is_ok_and(|p| p != DEFAULT_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(addr: &str, name: Option<&str>, kind: EventKind) -> Reading {
        Reading::Event(Event::new(
            7,
            addr.parse().unwrap(),
            name.map(Into::into),
            kind,
        ))
    }

    #[test]
    fn what_exim_4_96_writes() {
        for (line, expected) in [
            (
                "SMTP connection from [192.0.2.10] (TCP/IP connection count = 1)",
                ev("192.0.2.10", None, EventKind::Connection),
            ),
            (
                "SMTP connection from [2001:db8:5e::10]:41234 I=[2001:db8:25::25]:25 (TCP/IP connection count = 1)",
                ev("2001:db8:5e::10", None, EventKind::Connection),
            ),
            (
                "1xZXI7-0005IH-03 <= relay@service.example H=(vm) [192.0.2.10] P=esmtp S=458 id=x@vm",
                ev("192.0.2.10", Some("(vm)"), EventKind::Accepted),
            ),
            (
                "1xZXI7-00000005IH-0003 <= <> H=mx.example.net (helo.example) [2001:db8:5e::10]:25123 P=esmtps S=1",
                ev(
                    "2001:db8:5e::10",
                    Some("mx.example.net"),
                    EventKind::Accepted,
                ),
            ),
            (
                "1xZXI7-0005IH-03 <= \"a H=[192.0.2.1] b\"@x.example H=(vm) [203.0.113.5] P=esmtp S=1",
                ev("203.0.113.5", Some("(vm)"), EventKind::Accepted),
            ),
            (
                "H=(vm) [203.0.113.66] F=<spam@spam.example> rejected RCPT <user@example.test>: sender refused",
                ev("203.0.113.66", Some("(vm)"), EventKind::Rejected),
            ),
            (
                "1xZXI7-0005IH-03 H=(vm) [203.0.113.66] F=<a@b> rejected after DATA: spam",
                ev("203.0.113.66", Some("(vm)"), EventKind::Rejected),
            ),
            (
                "H=[203.0.113.9] rejected connection in \"connect\" ACL",
                ev("203.0.113.9", None, EventKind::Rejected),
            ),
            (
                "SMTP protocol synchronization error (input sent without waiting for greeting): \
                 rejected connection from H=[203.0.113.8] input=\"EHLO x\"",
                ev("203.0.113.8", None, EventKind::Rejected),
            ),
            (
                "H=(vm) [203.0.113.66] F=<a@b> temporarily rejected RCPT <c@d>: greylisted",
                ev("203.0.113.66", Some("(vm)"), EventKind::Rejected),
            ),
        ] {
            assert_eq!(read(7, line), expected, "{line}");
        }
    }

    #[test]
    fn deliveries_closes_and_local_mail_are_nothing() {
        for line in [
            "SMTP connection from (vm) [192.0.2.10] closed by QUIT",
            "SMTP connection from (vm) [192.0.2.10] lost D=1s",
            "1xZXI7-0005IH-03 => user <user@example.test> R=blackhole",
            "1xZXI7-0005IH-03 Completed",
            "1xZXI7-0005IH-03 <= root@mail.example.test U=root P=local S=300",
            "1xZXI7-0005IH-03 <= root@mail.example.test U=root P=local S=3 id=<x H=[192.0.2.1]>",
            "exim 4.96 daemon started: pid=20351, no queue runs, listening for SMTP on port 25",
            "H=(vm) [192.0.2.10] incomplete transaction (QUIT) from <a@b>",
        ] {
            assert_eq!(read(7, line), Reading::Nothing, "{line}");
        }
    }

    #[test]
    fn submission_is_another_port_and_garbage_is_named() {
        assert_eq!(
            read(
                7,
                "1xZXI7-0005IH-03 <= a@b H=(x) [192.0.2.1]:5000 I=[198.51.100.25]:587 P=esmtpsa A=plain:a S=1"
            ),
            Reading::OtherService
        );
        let Reading::Unreadable(why) = read(7, "1xZXI7-0005IH-03 <= a@b H=nowhere P=esmtp") else {
            panic!("readable")
        };
        assert!(why.contains("H="), "{why}");
    }
}
