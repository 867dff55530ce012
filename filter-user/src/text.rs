//! Text for people: names that come from outside (interfaces, pins,
//! errors) made safe to print ([`printable`]), and times that say their
//! zone ([`human_time`]). Every module that prints uses these.

use std::{fmt::Write as _, time::SystemTime};

/// `text` safe to print to a terminal: control characters (ESC, DEL, C1,
/// newlines) and the bidirectional overrides that reorder what is shown
/// are written as `\xHH` or `\u{HHHH}`, so that names from outside
/// (interfaces, pins) can neither move the cursor nor pass for other
/// lines.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if u32::from(c) < 0x100 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// A time for people: `2026-11-18 11:06:52 UTC`, saying its time zone.
pub fn human_time(at: SystemTime) -> String {
    let rfc = humantime::format_rfc3339_seconds(at).to_string();
    // 2026-11-18T11:06:52Z
    format!("{} UTC", rfc.trim_end_matches('Z').replacen('T', " ", 1))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn text_from_outside_cannot_move_the_cursor() {
        assert_eq!(printable("eth0"), "eth0");
        assert_eq!(printable("ev\u{1b}[2Jil"), "ev\\x1b[2Jil");
        assert_eq!(printable("a\nb\u{7f}\u{85}"), "a\\x0ab\\x7f\\x85");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(printable("café"), "café");
    }

    #[test]
    fn times_for_people_say_their_zone() {
        assert_eq!(
            human_time(UNIX_EPOCH + Duration::from_secs(1_795_000_012)),
            "2026-11-18 11:06:52 UTC"
        );
    }
}
