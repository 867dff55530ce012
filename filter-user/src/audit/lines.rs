//! One log line's prefix: when it was written and by which program, in the
//! forms MTA logs come in:
//!
//! - traditional syslog (`Dec  4 17:37:12 host postfix/smtpd[123]: …`),
//!   also as journald's `short` and `short-precise` and Postfix's own
//!   `maillog_file` write it;
//! - RFC 3339 stamps (`2026-12-04T17:37:12.123456+01:00 host tag[pid]: …`:
//!   rsyslog's high-precision format, journald's `short-iso`);
//! - journald's `short-unix` (`1796402232.123456 host tag[pid]: …`);
//! - RFC 5424 (`<22>1 2026-12-04T17:37:12Z host postfix/smtpd 123 - - …`),
//!   with or without the priority;
//! - Exim's own log (`2026-12-04 17:37:12 [123] 1tAB…`), which names no
//!   program;
//! - a `<PRI>` before a traditional line (a network syslog capture).
//!
//! journald's markers (`-- Boot … --`, `-- No entries --`) are no lines of
//! anyone's.

use super::stamp;

/// Who wrote a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program<'a> {
    /// A syslog tag, without the pid: `postfix/smtpd`, `exim4`.
    Tag(&'a str),
    /// Exim's own log file (mainlog), which has no tag.
    EximLog,
}

/// A line's prefix read, and the message after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// When, in seconds since the epoch.
    pub time: i64,
    /// Who wrote it.
    pub program: Program<'a>,
    /// The rest of the line: what the program logged.
    pub message: &'a str,
}

/// What a line is, read up to its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefixed<'a> {
    /// A log line.
    Line(Line<'a>),
    /// A journald marker (`-- Boot … --`): no program wrote it.
    Marker,
}

/// Reads the prefix of `text`; `reference` is the time a stamp without a
/// year may be at most a day after (the log's modification time). The
/// error says what is missing.
pub fn parse(text: &str, reference: i64) -> Result<Prefixed<'_>, &'static str> {
    let text = text.trim_end_matches(['\r', '\n']);
    if text.starts_with("-- ") && text.ends_with(" --") || text == "-- No entries --" {
        return Ok(Prefixed::Marker);
    }
    let (priority, rest) = strip_priority(text);
    if priority && let Some(rfc5424) = rest.strip_prefix("1 ") {
        return syslog_5424(rfc5424).map(Prefixed::Line);
    }
    let bytes = rest.as_bytes();
    let (time, after) = if bytes.first().is_some_and(u8::is_ascii_alphabetic) {
        stamp::bsd(rest, reference).ok_or("not a syslog time (Mmm dd HH:MM:SS)")?
    } else if bytes.get(4) == Some(&b'-') && bytes.get(10) == Some(&b' ') && !priority {
        let (time, after) =
            stamp::iso(rest, false).ok_or("not an Exim log time (YYYY-MM-DD HH:MM:SS)")?;
        return Ok(Prefixed::Line(Line {
            time,
            program: Program::EximLog,
            message: exim_message(after),
        }));
    } else if bytes.get(4) == Some(&b'-') {
        stamp::iso(rest, false).ok_or("not an RFC 3339 time")?
    } else if bytes.first().is_some_and(u8::is_ascii_digit) {
        stamp::unix(rest).ok_or("not a time in seconds")?
    } else {
        return Err("no time at the start (not a syslog, journal or Exim log line)");
    };
    tagged(after).map(|(program, message)| {
        Prefixed::Line(Line {
            time,
            program: Program::Tag(program),
            message,
        })
    })
}

/// A `<PRI>` at the start, if any.
fn strip_priority(text: &str) -> (bool, &str) {
    if let Some(rest) = text.strip_prefix('<')
        && let Some(end) = rest.find('>')
        && (1..=3).contains(&end)
        && rest[..end].bytes().all(|b| b.is_ascii_digit())
    {
        return (true, &rest[end + 1..]);
    }
    (false, text)
}

/// ` host tag[pid]: message` after a stamp.
fn tagged(after: &str) -> Result<(&str, &str), &'static str> {
    let rest = after
        .strip_prefix(' ')
        .ok_or("no space after the time")?
        .trim_start_matches(' ');
    let (_host, rest) = rest.split_once(' ').ok_or("no program after the host")?;
    let end = rest
        .find([':', '[', ' '])
        .ok_or("no program name (TAG: ) after the host")?;
    let tag = &rest[..end];
    let mut rest = &rest[end..];
    if let Some(pid) = rest.strip_prefix('[') {
        let close = pid.find(']').ok_or("an unclosed [pid] after the program")?;
        rest = &pid[close + 1..];
    }
    let message = rest
        .strip_prefix(':')
        .ok_or("no colon after the program name")?;
    if tag.is_empty() {
        return Err("an empty program name");
    }
    Ok((tag, message.strip_prefix(' ').unwrap_or(message)))
}

/// RFC 5424 after `<PRI>1 `: `TIMESTAMP HOST APP PROCID MSGID SD [MSG]`.
fn syslog_5424(text: &str) -> Result<Line<'_>, &'static str> {
    let (time, rest) = stamp::iso(text, false).ok_or("not an RFC 5424 time")?;
    let mut fields = rest.strip_prefix(' ').ok_or("no host (RFC 5424)")?;
    let mut next = || -> Result<&str, &'static str> {
        let (field, rest) = fields.split_once(' ').unwrap_or((fields, ""));
        fields = rest;
        if field.is_empty() {
            Err("a missing field (RFC 5424: HOST APP PROCID MSGID)")
        } else {
            Ok(field)
        }
    };
    let _host = next()?;
    let app = next()?;
    let _procid = next()?;
    let _msgid = next()?;
    let message = skip_structured_data(fields)?;
    let message = message.strip_prefix('\u{feff}').unwrap_or(message);
    Ok(Line {
        time,
        program: Program::Tag(app),
        message,
    })
}

/// The message after RFC 5424 structured data (`-` or `[id k="v"]…`).
fn skip_structured_data(text: &str) -> Result<&str, &'static str> {
    if let Some(rest) = text.strip_prefix('-') {
        return Ok(rest.strip_prefix(' ').unwrap_or(rest));
    }
    let mut rest = text;
    while rest.starts_with('[') {
        let mut quoted = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in rest.char_indices().skip(1) {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ']' if !quoted => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or("unclosed structured data (RFC 5424)")?;
        rest = &rest[end + 1..];
    }
    if rest.len() == text.len() {
        return Err("no structured data (RFC 5424: - or [...])");
    }
    Ok(rest.strip_prefix(' ').unwrap_or(rest))
}

/// Exim's message after its stamp: an optional ` [pid]` (`+pid`) first.
fn exim_message(after: &str) -> &str {
    let rest = after.strip_prefix(' ').unwrap_or(after);
    if let Some(pid) = rest.strip_prefix('[')
        && let Some(close) = pid.find(']')
        && pid[..close].bytes().all(|b| b.is_ascii_digit())
    {
        return pid[close + 1..]
            .strip_prefix(' ')
            .unwrap_or(&pid[close + 1..]);
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::stamp::in_zone;

    fn line(text: &str) -> Line<'_> {
        match parse(text, 1_800_000_000) {
            Ok(Prefixed::Line(l)) => l,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn every_prefix_gives_the_same_time_and_program() {
        in_zone("UTC", || {
            let expected = 1_796_402_232;
            for text in [
                "Dec  4 16:37:12 mail postfix/smtpd[123]: connect from unknown[192.0.2.1]",
                "Dec 04 16:37:12 mail postfix/smtpd[123]: connect from unknown[192.0.2.1]",
                "Dec 04 16:37:12.123456 mail postfix/smtpd[123]: connect from unknown[192.0.2.1]",
                "2026-12-04T17:37:12.123456+01:00 mail postfix/smtpd[123]: connect from unknown[192.0.2.1]",
                "2026-12-04T16:37:12+0000 mail postfix/smtpd[123]: connect from unknown[192.0.2.1]",
                "1796402232.654321 mail postfix/smtpd[123]: connect from unknown[192.0.2.1]",
                "<22>1 2026-12-04T16:37:12.000Z mail postfix/smtpd 123 - - connect from unknown[192.0.2.1]",
                "<22>1 2026-12-04T16:37:12Z mail postfix/smtpd 123 ID47 [x@1 a=\"b]\\\"c\"][y@2] connect from unknown[192.0.2.1]",
                "<22>Dec  4 16:37:12 mail postfix/smtpd[123]: connect from unknown[192.0.2.1]",
                "Dec  4 16:37:12 mail postfix/smtpd: connect from unknown[192.0.2.1]",
            ] {
                let l = line(text);
                assert_eq!(l.time, expected, "{text}");
                assert_eq!(l.program, Program::Tag("postfix/smtpd"), "{text}");
                assert_eq!(l.message, "connect from unknown[192.0.2.1]", "{text}");
            }
        });
    }

    #[test]
    fn exim_own_log_has_no_program() {
        in_zone("UTC", || {
            for text in [
                "2026-12-04 16:37:12 SMTP connection from [192.0.2.1]",
                "2026-12-04 16:37:12.123 SMTP connection from [192.0.2.1]",
                "2026-12-04 17:37:12 +0100 SMTP connection from [192.0.2.1]",
                "2026-12-04 16:37:12 [4711] SMTP connection from [192.0.2.1]",
            ] {
                let l = line(text);
                assert_eq!(
                    (l.time, l.program, l.message),
                    (
                        1_796_402_232,
                        Program::EximLog,
                        "SMTP connection from [192.0.2.1]"
                    ),
                    "{text}"
                );
            }
        });
    }

    #[test]
    fn markers_and_garbage() {
        assert_eq!(parse("-- Boot 0123abc --", 0), Ok(Prefixed::Marker));
        assert_eq!(parse("-- No entries --", 0), Ok(Prefixed::Marker));
        for (text, why) in [
            ("", "no time"),
            ("hello world", "not a syslog time"),
            ("Dec  4 16:37:12", "no space after the time"),
            ("Dec  4 16:37:12 mail", "no program after the host"),
            ("Dec  4 16:37:12 mail postfix", "no program name"),
            ("Dec  4 16:37:12 mail postfix/smtpd[12 x", "unclosed [pid]"),
            (
                "<22>1 2026-12-04T16:37:12Z mail app 1 - [x",
                "unclosed structured",
            ),
            ("<22>1 2026-12-04T16:37:12Z mail app", "a missing field"),
            ("[ 1234.5678] mail x: y", "no time at the start"),
        ] {
            let e = parse(text, 0).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }
}
