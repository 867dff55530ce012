//! Postfix's log: what its `smtpd` (port 25), `postscreen`, `cleanup` and
//! `qmgr` say about mail received over SMTP.
//!
//! - `connect from NAME[ADDR]` (smtpd): a connection;
//! - `QUEUEID: client=NAME[ADDR]` (smtpd): a message began — its
//!   recipients were accepted. It counts as accepted only once the queue
//!   manager takes it (`QUEUEID: from=<…>, size=…`) or cleanup holds or
//!   discards it: a client that quits before the end of DATA, or a
//!   message rejected at its end (`QUEUEID: reject: …`,
//!   `milter-reject: END-OF-MESSAGE …`), delivered nothing. A message
//!   still open when the logs end counts as incomplete;
//! - `reject: VERB from NAME[ADDR]: …` (`NOQUEUE:` or a queue id; smtpd,
//!   postscreen, cleanup), `milter-reject: …`: a rejection.
//!
//! Only the `smtp` service's daemons count (syslog names `postfix/smtpd`,
//! `postfix-INSTANCE/smtpd`); `postfix/submission/smtpd` and other
//! services listen on other ports, which mxgate does not filter.

use std::collections::{HashMap, VecDeque};

use super::{Event, EventKind, Reading, parse_host_address};

/// Most messages remembered between `client=` and their end; older ones
/// count as incomplete, so memory stays bounded on any log.
pub const MAX_OPEN_MESSAGES: usize = 100_000;

/// Ended messages' ids the order may hold beyond twice the open ones.
const SWEEP_SLACK: usize = 1024;

/// A message that began (`client=`) and has not ended yet.
#[derive(Clone, Debug)]
struct Open {
    event: Event,
}

/// Postfix's lines, read in order; remembers messages between their
/// `client=` line and their end.
#[derive(Debug, Default)]
pub struct Postfix {
    open: HashMap<String, Open>,
    order: VecDeque<String>,
}

impl Postfix {
    /// True when `tag` is a Postfix daemon's syslog name.
    pub fn writes(tag: &str) -> bool {
        tag.split('/')
            .next()
            .is_some_and(|s| s.starts_with("postfix"))
    }

    /// Reads one line of `tag` (a Postfix syslog name) logged at `time`.
    /// Messages pushed out of memory come back through `incomplete`.
    pub fn read(
        &mut self,
        tag: &str,
        time: i64,
        message: &str,
        incomplete: &mut Vec<Event>,
    ) -> Reading {
        let mut parts = tag.split('/');
        let _suite = parts.next();
        let rest: Vec<&str> = parts.collect();
        let Some((&daemon, service)) = rest.split_last() else {
            return Reading::Nothing;
        };
        let other_port = !service.is_empty();
        let reading = match daemon {
            "smtpd" => self.smtpd(time, message, other_port, incomplete),
            "postscreen" => postscreen(time, message),
            "cleanup" => self.cleanup(time, message),
            "qmgr" => self.qmgr(message),
            _ => Reading::Nothing,
        };
        match reading {
            Reading::Event(_) if other_port => Reading::OtherService,
            r => r,
        }
    }

    /// What is still open when the logs end: incomplete messages.
    pub fn finish(&mut self) -> Vec<Event> {
        self.order.clear();
        let mut left: Vec<Event> = self
            .open
            .drain()
            .map(|(_, open)| Event {
                kind: EventKind::Incomplete,
                ..open.event
            })
            .collect();
        left.sort_by_key(|e| e.time);
        left
    }

    fn smtpd(
        &mut self,
        time: i64,
        message: &str,
        other_port: bool,
        incomplete: &mut Vec<Event>,
    ) -> Reading {
        if let Some(client) = message.strip_prefix("connect from ") {
            return match parse_host_address(client) {
                Some((addr, name, _)) => {
                    Reading::Event(Event::new(time, addr, name, EventKind::Connection))
                }
                None => Reading::Unreadable("`connect from` without NAME[ADDRESS]".into()),
            };
        }
        let Some((queue_id, what)) = split_queue_id(message) else {
            return Reading::Nothing;
        };
        if let Some(client) = what.strip_prefix("client=") {
            let Some((addr, name, _)) = parse_host_address(client) else {
                return Reading::Unreadable("`client=` without NAME[ADDRESS]".into());
            };
            if !other_port && queue_id != "NOQUEUE" {
                let event = Event::new(time, addr, name, EventKind::Accepted);
                self.begin(queue_id, event, incomplete);
            }
            return Reading::Nothing;
        }
        self.rejection(time, queue_id, what, Client::AfterVerb)
    }

    fn cleanup(&mut self, time: i64, message: &str) -> Reading {
        let Some((queue_id, what)) = split_queue_id(message) else {
            return Reading::Nothing;
        };
        if what.starts_with("hold: ") || what.starts_with("discard: ") {
            // The client was told 250: the message was delivered to us.
            return self.end(queue_id).map_or(Reading::Nothing, Reading::Event);
        }
        self.rejection(time, queue_id, what, Client::BeforeSenderField)
    }

    fn qmgr(&mut self, message: &str) -> Reading {
        match split_queue_id(message) {
            Some((queue_id, what)) if what.starts_with("from=<") => {
                self.end(queue_id).map_or(Reading::Nothing, Reading::Event)
            }
            _ => Reading::Nothing,
        }
    }

    /// A `reject:` or `milter-reject:` line, or nothing.
    fn rejection(&mut self, time: i64, queue_id: &str, what: &str, client: Client) -> Reading {
        let Some(detail) = what
            .strip_prefix("reject: ")
            .or_else(|| what.strip_prefix("milter-reject: "))
        else {
            return Reading::Nothing;
        };
        let open = self.forget(queue_id);
        let parsed = client.find(detail).and_then(parse_host_address);
        match (parsed, open) {
            (Some((addr, name, _)), _) => {
                Reading::Event(Event::new(time, addr, name, EventKind::Rejected))
            }
            // The line's text is odd, but the message's client is known.
            (None, Some(open)) => Reading::Event(Event {
                time,
                kind: EventKind::Rejected,
                ..open.event
            }),
            (None, None) => Reading::Unreadable("a rejection without `from NAME[ADDRESS]`".into()),
        }
    }

    fn begin(&mut self, queue_id: &str, event: Event, incomplete: &mut Vec<Event>) {
        if self.open.len() >= MAX_OPEN_MESSAGES {
            while let Some(oldest) = self.order.pop_front() {
                if let Some(open) = self.open.remove(&oldest) {
                    incomplete.push(Event {
                        kind: EventKind::Incomplete,
                        ..open.event
                    });
                    break;
                }
            }
        }
        if self
            .open
            .insert(queue_id.to_owned(), Open { event })
            .is_none()
        {
            self.order.push_back(queue_id.to_owned());
        }
        // Ids of ended messages stay in the order until they reach its
        // front; sweep them once they are half of it, so the order stays
        // within twice what is open (amortised: a sweep per as many
        // messages as it keeps).
        if self.order.len() > 2 * self.open.len() + SWEEP_SLACK {
            let open = &self.open;
            self.order.retain(|id| open.contains_key(id));
        }
    }

    /// The accepted message `queue_id`, which has ended, if it was open.
    fn end(&mut self, queue_id: &str) -> Option<Event> {
        self.forget(queue_id).map(|open| open.event)
    }

    fn forget(&mut self, queue_id: &str) -> Option<Open> {
        self.open.remove(queue_id)
    }
}

/// Where the client is in a rejection's text.
#[derive(Clone, Copy)]
enum Client {
    /// smtpd and postscreen: `RCPT from NAME[ADDR]: 554 …` (the verb is
    /// Postfix's own word, so the first ` from ` is the client's).
    AfterVerb,
    /// cleanup: `header Subject: … from NAME[ADDR]; from=<…> …` (the
    /// header's text comes first, so the last ` from ` before `; from=<`).
    BeforeSenderField,
}

impl Client {
    fn find(self, detail: &str) -> Option<&str> {
        match self {
            Client::AfterVerb => detail.split_once(" from ").map(|(_, c)| c),
            Client::BeforeSenderField => {
                let end = detail.rfind("; from=<").unwrap_or(detail.len());
                let at = detail[..end].rfind(" from ")?;
                Some(&detail[at + " from ".len()..end])
            }
        }
    }
}

/// postscreen: `NOQUEUE: reject: RCPT from [ADDR]:PORT: 550 …`.
fn postscreen(time: i64, message: &str) -> Reading {
    let Some(detail) = message.strip_prefix("NOQUEUE: reject: ") else {
        return Reading::Nothing;
    };
    match Client::AfterVerb.find(detail).and_then(parse_host_address) {
        Some((addr, name, _)) => Reading::Event(Event::new(time, addr, name, EventKind::Rejected)),
        None => Reading::Unreadable("a rejection without `from [ADDRESS]`".into()),
    }
}

/// `QUEUEID: rest` (or `NOQUEUE: rest`): a queue id is letters and digits.
fn split_queue_id(message: &str) -> Option<(&str, &str)> {
    let (id, rest) = message.split_once(": ")?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some((id, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(lines: &[(&str, &str)]) -> Vec<Reading> {
        let mut postfix = Postfix::default();
        let mut incomplete = Vec::new();
        let mut out: Vec<Reading> = lines
            .iter()
            .enumerate()
            .map(|(i, (tag, message))| postfix.read(tag, i as i64, message, &mut incomplete))
            .filter(|r| *r != Reading::Nothing)
            .collect();
        out.extend(incomplete.into_iter().map(Reading::Event));
        out.extend(postfix.finish().into_iter().map(Reading::Event));
        out
    }

    fn event(time: i64, addr: &str, name: &str, kind: EventKind) -> Reading {
        Reading::Event(Event::new(
            time,
            addr.parse().unwrap(),
            Some(name.into()),
            kind,
        ))
    }

    #[test]
    fn a_message_counts_as_accepted_when_the_queue_manager_takes_it() {
        let lines = [
            ("postfix/smtpd", "connect from mx1.example[192.0.2.10]"),
            (
                "postfix/smtpd",
                "74F0C99012F: client=mx1.example[192.0.2.10]",
            ),
            ("postfix/cleanup", "74F0C99012F: message-id=<a@b>"),
            (
                "postfix/qmgr",
                "74F0C99012F: from=<a@b>, size=432, nrcpt=1 (queue active)",
            ),
            ("postfix/qmgr", "74F0C99012F: removed"),
        ];
        assert_eq!(
            read_all(&lines),
            [
                event(0, "192.0.2.10", "mx1.example", EventKind::Connection),
                event(1, "192.0.2.10", "mx1.example", EventKind::Accepted),
            ]
        );
    }

    #[test]
    fn a_message_rejected_at_its_end_or_abandoned_is_not_accepted() {
        let lines = [
            ("postfix/smtpd", "B644B99012F: client=unknown[203.0.113.66]"),
            (
                "postfix/cleanup",
                "B644B99012F: reject: header Subject: x from y[192.0.2.1] from unknown[203.0.113.66]; \
                 from=<a@b> to=<c@d> proto=ESMTP helo=<vm>: 5.7.1 no",
            ),
            ("postfix/smtpd", "C1: client=unknown[2001:db8:bad::66]"),
            (
                "postfix/smtpd",
                "disconnect from unknown[2001:db8:bad::66] ehlo=1 mail=1 rcpt=1 quit=1 commands=4",
            ),
            ("postfix/smtpd", "D1: client=unknown[203.0.113.7]"),
            (
                "postfix/cleanup",
                "D1: milter-reject: END-OF-MESSAGE from unknown[203.0.113.7]: 5.7.1 virus; \
                 from=<a@b> to=<c@d> proto=ESMTP helo=<x>",
            ),
        ];
        assert_eq!(
            read_all(&lines),
            [
                event(1, "203.0.113.66", "unknown", EventKind::Rejected),
                event(5, "203.0.113.7", "unknown", EventKind::Rejected),
                event(2, "2001:db8:bad::66", "unknown", EventKind::Incomplete),
            ]
        );
    }

    #[test]
    fn rejections_of_smtpd_and_postscreen() {
        let lines = [
            (
                "postfix/smtpd",
                "NOQUEUE: reject: RCPT from unknown[203.0.113.66]: 554 5.7.1 <x@y>: Relay access \
                 denied; from=<a@b> to=<x@y> proto=ESMTP helo=<vm>",
            ),
            (
                "postfix/postscreen",
                "NOQUEUE: reject: RCPT from [2001:db8::1]:41234: 550 5.7.1 Service unavailable; \
                 client [2001:db8::1] blocked using zen.example",
            ),
            (
                "postfix/smtpd",
                "NOQUEUE: reject_warning: RCPT from unknown[203.0.113.66]: 554 would reject",
            ),
            ("postfix/smtpd", "NOQUEUE: reject: RCPT from nowhere: 554 x"),
        ];
        let out = read_all(&lines);
        assert_eq!(
            out[..2],
            [
                event(0, "203.0.113.66", "unknown", EventKind::Rejected),
                Reading::Event(Event::new(
                    1,
                    "2001:db8::1".parse().unwrap(),
                    None,
                    EventKind::Rejected
                )),
            ]
        );
        assert!(matches!(&out[2], Reading::Unreadable(why) if why.contains("without")));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn other_services_are_other_ports() {
        let lines = [
            ("postfix/submission/smtpd", "connect from a[192.0.2.1]"),
            (
                "postfix/submission/smtpd",
                "E1: client=a[192.0.2.1], sasl_method=PLAIN",
            ),
            (
                "postfix/qmgr",
                "E1: from=<a@b>, size=1, nrcpt=1 (queue active)",
            ),
            ("postfix-out/smtpd", "connect from b[192.0.2.2]"),
        ];
        assert_eq!(
            read_all(&lines),
            [
                Reading::OtherService,
                event(3, "192.0.2.2", "b", EventKind::Connection),
            ]
        );
    }

    #[test]
    fn memory_of_open_messages_is_bounded() {
        let mut postfix = Postfix::default();
        let mut incomplete = Vec::new();
        for i in 0..MAX_OPEN_MESSAGES + 5 {
            postfix.read(
                "postfix/smtpd",
                0,
                &format!("Q{i}: client=unknown[192.0.2.1]"),
                &mut incomplete,
            );
        }
        assert_eq!(incomplete.len(), 5);
        assert_eq!(postfix.open.len(), MAX_OPEN_MESSAGES);
        assert_eq!(postfix.finish().len(), MAX_OPEN_MESSAGES);
    }
}
