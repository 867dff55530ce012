//! Times in MTA logs and in `--since`, as seconds since the Unix epoch.
//!
//! A stamp with an offset (`Z`, `+01:00`, `+0100`) is exact. One without
//! (a traditional syslog line, Exim's own log, journald's `short`) is in
//! the machine's local time zone, converted with mktime(3) as the syslog
//! daemon wrote it. A traditional syslog stamp has no year: it is the
//! year that puts the stamp at most a day after the reference time (the
//! log file's modification time, or now for standard input), so December
//! lines read in January belong to the year before.

use std::{
    cell::Cell,
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Month abbreviations as syslog writes them.
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A day: how far a stamp without a year may lie after the reference time
/// (clocks of the machines that wrote a log differ a little).
const YEAR_SLACK: i64 = 86_400;

/// An hour (year, month, day, hour) and when it starts in local time.
type HourStart = ((i64, u32, u32, u32), i64);

thread_local! {
    /// The last hour converted to local time.
    static LAST_HOUR: Cell<Option<HourStart>> = const { Cell::new(None) };
}

/// A civil date and time, as written in a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    /// The year.
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 60 (a leap second is read as the next second).
    pub second: u32,
}

impl Civil {
    fn valid(&self) -> bool {
        (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second <= 60
    }

    /// Seconds since the epoch of this time in UTC.
    pub fn utc(&self) -> Option<i64> {
        if !self.valid() {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        Some(
            days * 86_400
                + i64::from(self.hour) * 3600
                + i64::from(self.minute) * 60
                + i64::from(self.second),
        )
    }

    /// Seconds since the epoch of this time in the local time zone.
    pub fn local(&self) -> Option<i64> {
        if !self.valid() {
            return None;
        }
        // mktime for each line of a large log costs; the zone's offset is
        // the same within an hour, so the hour's start is remembered.
        let key = (self.year, self.month, self.day, self.hour);
        let within = i64::from(self.minute) * 60 + i64::from(self.second);
        if let Some((k, start)) = LAST_HOUR.with(Cell::get)
            && k == key
        {
            return Some(start + within);
        }
        let start = mktime(self.year, self.month, self.day, self.hour)?;
        LAST_HOUR.with(|c| c.set(Some((key, start))));
        Some(start + within)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian calendar).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The start of the given hour in the local time zone, through mktime(3).
fn mktime(year: i64, month: u32, day: u32, hour: u32) -> Option<i64> {
    let mut tm = libc::tm {
        tm_sec: 0,
        tm_min: 0,
        tm_hour: i32::try_from(hour).ok()?,
        tm_mday: i32::try_from(day).ok()?,
        tm_mon: i32::try_from(month).ok()? - 1,
        tm_year: i32::try_from(year - 1900).ok()?,
        tm_wday: 0,
        tm_yday: 0,
        // Let the zone's rules say whether summer time applies.
        tm_isdst: -1,
        tm_gmtoff: 0,
        tm_zone: std::ptr::null(),
    };
    // SAFETY: mktime reads and normalises the tm we own; it keeps no
    // pointer to it.
    let t = unsafe { libc::mktime(&mut tm) };
    (t != -1).then_some(t)
}

/// Seconds since the epoch of a system time (negative before 1970).
pub fn seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `secs` as RFC 3339 in UTC, for reports.
pub fn format(secs: i64) -> String {
    let time = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Reads `n` ASCII digits at the start of `text`.
fn digits(text: &str, n: usize) -> Option<u32> {
    let d = text.get(..n)?;
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    d.parse().ok()
}

/// Skips a fraction of a second (`.123456`) at the start of `text`.
fn skip_fraction(text: &str) -> &str {
    match text.strip_prefix(['.', ',']) {
        Some(rest) => rest.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => text,
    }
}

/// A UTC offset at the start of `text`: `Z`, `+01:00`, `+0100` (also after
/// one space, as Exim writes it with `log_timezone`), in seconds east.
fn offset(text: &str) -> Option<(i64, &str)> {
    let t = text
        .strip_prefix(' ')
        .filter(|t| t.starts_with(['+', '-']))
        .unwrap_or(text);
    if let Some(rest) = t.strip_prefix('Z') {
        return Some((0, rest));
    }
    let sign = match t.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours = digits(&t[1..], 2)?;
    let (minutes, rest) = match t[3..].strip_prefix(':') {
        Some(rest) => (digits(rest, 2)?, &rest[2..]),
        None => (digits(&t[3..], 2)?, &t[5..]),
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((sign * i64::from(hours * 3600 + minutes * 60), rest))
}

/// `HH:MM:SS` (or `HH:MM` if `seconds_optional`) at the start of `text`.
fn clock(text: &str, seconds_optional: bool) -> Option<(u32, u32, u32, &str)> {
    let hour = digits(text, 2)?;
    if text.get(2..3)? != ":" {
        return None;
    }
    let minute = digits(text.get(3..)?, 2)?;
    if text.get(5..6) == Some(":") {
        let second = digits(text.get(6..)?, 2)?;
        Some((hour, minute, second, &text[8..]))
    } else if seconds_optional {
        Some((hour, minute, 0, &text[5..]))
    } else {
        None
    }
}

/// An ISO 8601 / RFC 3339 stamp at the start of `text`: `YYYY-MM-DD`,
/// then `T` or `sep_space` a space, then `HH:MM:SS`, a fraction and an
/// offset (both optional). Returns the seconds and the rest. Without an
/// offset the time is local.
pub fn iso(text: &str, time_optional: bool) -> Option<(i64, &str)> {
    let year = digits(text, 4)?;
    if text.get(4..5)? != "-" || text.get(7..8)? != "-" {
        return None;
    }
    let month = digits(&text[5..], 2)?;
    let day = digits(&text[8..], 2)?;
    let mut civil = Civil {
        year: i64::from(year),
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
    };
    let rest = &text[10..];
    let rest = match rest.strip_prefix(['T', ' ']) {
        Some(t) if t.starts_with(|c: char| c.is_ascii_digit()) => {
            let (hour, minute, second, rest) = clock(t, time_optional)?;
            civil.hour = hour;
            civil.minute = minute;
            civil.second = second;
            skip_fraction(rest)
        }
        _ if time_optional => rest,
        _ => return None,
    };
    match offset(rest) {
        Some((east, rest)) => Some((civil.utc()? - east, rest)),
        None => Some((civil.local()?, rest)),
    }
}

/// A traditional syslog stamp at the start of `text`: `Mmm dd HH:MM:SS`
/// (the day padded with a space or a zero), an optional fraction, local
/// time, its year inferred from `reference`.
pub fn bsd(text: &str, reference: i64) -> Option<(i64, &str)> {
    let month = MONTHS.iter().position(|m| text.starts_with(m))?;
    let rest = text.get(3..)?.strip_prefix(' ')?;
    let (day, rest) = match rest.strip_prefix(' ') {
        Some(r) => (digits(r, 1)?, &r[1..]),
        None => (digits(rest, 2)?, &rest[2..]),
    };
    let rest = rest.strip_prefix(' ')?;
    let (hour, minute, second, rest) = clock(rest, false)?;
    let rest = skip_fraction(rest);
    let year_of_reference = civil_year(reference);
    let mut civil = Civil {
        year: year_of_reference,
        month: u32::try_from(month).ok()? + 1,
        day,
        hour,
        minute,
        second,
    };
    let mut secs = civil.local();
    if secs.is_none_or(|s| s > reference + YEAR_SLACK) {
        // Later than the log can be (or 29 February of a common year):
        // the year before.
        civil.year -= 1;
        secs = civil.local();
    }
    Some((secs?, rest))
}

/// The (UTC) year of `secs`.
fn civil_year(secs: i64) -> i64 {
    // Civil-from-days (the inverse of days_from_civil), year only.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let year = yoe + era * 400;
    if mp >= 10 { year + 1 } else { year }
}

/// Seconds with a fraction, as `journalctl -o short-unix` writes them.
pub fn unix(text: &str) -> Option<(i64, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if end == 0 || end > 12 {
        return None;
    }
    let secs = text[..end].parse().ok()?;
    Some((secs, skip_fraction(&text[end..])))
}

/// Where `--since` starts the window: a time (`2026-11-01`,
/// `2026-11-01 08:00`, `2026-11-01T08:00:00Z`; local time unless an
/// offset says otherwise) or an age (`7d`, `12h`, `2weeks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// From this time (seconds since the epoch).
    At(i64),
    /// From this long before the audit runs.
    Ago(Duration),
}

impl Since {
    /// The start of the window for an audit run at `now`.
    pub fn resolve(&self, now: i64) -> i64 {
        match self {
            Since::At(t) => *t,
            Since::Ago(d) => now.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        }
    }
}

impl FromStr for Since {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some((t, rest)) = iso(text, true)
            && rest.is_empty()
        {
            return Ok(Since::At(t));
        }
        if let Ok(d) = humantime::parse_duration(text) {
            return Ok(Since::Ago(d));
        }
        Err(format!(
            "{text:?} is neither a time (2026-11-01, 2026-11-01 08:00, 2026-11-01T08:00:00Z) \
             nor an age (7d, 12h)"
        ))
    }
}

#[cfg(test)]
unsafe extern "C" {
    /// tzset(3), which the libc crate does not declare.
    fn tzset();
}

/// Runs `f` with the local time zone set to `tz`: tests that read local
/// time take turns, since the zone is the process's.
#[cfg(test)]
pub(crate) fn in_zone<T>(tz: &str, f: impl FnOnce() -> T) -> T {
    static ZONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ZONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // SAFETY: every test that reads or sets the zone holds the lock.
    unsafe {
        std::env::set_var("TZ", tz);
        tzset();
    }
    LAST_HOUR.with(|c| c.set(None));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::audit::stamp::in_zone;

    #[test]
    fn utc_stamps_are_exact() {
        assert_eq!(iso("1970-01-01T00:00:00Z", false), Some((0, "")));
        assert_eq!(
            iso("2026-12-04T17:37:12.123456+01:00 host", false),
            Some((1_796_402_232, " host"))
        );
        assert_eq!(
            iso("2026-12-04T17:37:12+0100 host", false),
            Some((1_796_402_232, " host"))
        );
        assert_eq!(
            iso("2026-12-04 16:37:12 +0000 [12] x", false),
            Some((1_796_402_232, " [12] x"))
        );
        assert_eq!(iso("2026-02-30T00:00:00Z", false), None);
        assert_eq!(iso("2026-12-04X", false), None);
        assert_eq!(format(1_796_402_232), "2026-12-04T16:37:12Z");
        assert_eq!(civil_year(1_796_402_232), 2026);
        assert_eq!(civil_year(0), 1970);
        assert_eq!(civil_year(-1), 1969);
    }

    #[test]
    fn local_stamps_follow_the_zone_and_its_summer_time() {
        in_zone("CET-1CEST,M3.5.0,M10.5.0/3", || {
            // Winter: UTC+1; summer: UTC+2.
            assert_eq!(
                iso("2026-12-04 17:37:12 x", false),
                Some((1_796_402_232, " x"))
            );
            assert_eq!(
                iso("2026-07-01 12:00:00", false).map(|t| t.0),
                iso("2026-07-01T10:00:00Z", false).map(|t| t.0)
            );
            let reference = iso("2026-12-10T00:00:00Z", false).unwrap().0;
            assert_eq!(
                bsd("Dec  4 17:37:12 host", reference),
                Some((1_796_402_232, " host"))
            );
            assert_eq!(
                bsd("Dec 04 17:37:12.123456 host", reference),
                Some((1_796_402_232, " host"))
            );
        });
    }

    #[test]
    fn a_stamp_without_a_year_is_never_after_the_log() {
        in_zone("UTC", || {
            let january = iso("2027-01-02T00:00:00Z", false).unwrap().0;
            let (t, _) = bsd("Dec 31 23:59:59 h", january).unwrap();
            assert_eq!(format(t), "2026-12-31T23:59:59Z");
            let (t, _) = bsd("Jan  1 00:00:01 h", january).unwrap();
            assert_eq!(format(t), "2027-01-01T00:00:01Z");
            // A day of slack for clocks that run ahead.
            let (t, _) = bsd("Jan  2 12:00:00 h", january).unwrap();
            assert_eq!(format(t), "2027-01-02T12:00:00Z");
            assert_eq!(bsd("Dec 32 00:00:00 h", january), None);
            assert_eq!(bsd("Foo  1 00:00:00 h", january), None);
        });
    }

    #[test]
    fn since_takes_a_time_or_an_age() {
        in_zone("UTC", || {
            assert_eq!(
                "2026-12-04".parse(),
                Ok(Since::At(iso("2026-12-04T00:00:00Z", false).unwrap().0))
            );
            assert_eq!(
                "2026-12-04 17:37".parse(),
                Ok(Since::At(iso("2026-12-04T17:37:00Z", false).unwrap().0))
            );
            assert_eq!(
                "2026-12-04T16:37:12Z"
                    .parse::<Since>()
                    .map(|s| s.resolve(0)),
                Ok(1_796_402_232)
            );
            assert_eq!(
                "7d".parse(),
                Ok(Since::Ago(Duration::from_secs(7 * 86_400)))
            );
            assert_eq!(Since::Ago(Duration::from_secs(60)).resolve(1000), 940);
            let e = "last tuesday".parse::<Since>().unwrap_err();
            assert!(e.contains("neither a time"), "{e}");
        });
    }
}
