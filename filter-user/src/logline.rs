//! Log lines: logfmt by default, one JSON object per line on request. Every
//! line carries a timestamp, a level and an event name (docs/DESIGN.md §8).

use std::{io::Write as _, sync::Mutex, time::SystemTime};

use serde_json::{Map, Value};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// logfmt: `key=value` pairs.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A line's severity, as the `level` key writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `trace`: only the program's own lines carry it.
    Trace,
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
}

impl Level {
    /// The name the `level` key writes.
    pub fn name(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl From<log::Level> for Level {
    fn from(level: log::Level) -> Self {
        match level {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warn,
            log::Level::Info => Level::Info,
            log::Level::Debug => Level::Debug,
            log::Level::Trace => Level::Trace,
        }
    }
}

/// Declares [`Event`] with each event's name written once.
macro_rules! events {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// What a log line reports: its `event` key (docs/DESIGN.md §8 lists
        /// them all; a unit test holds the two to each other).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Event {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Event {
            /// Every event, in the order docs/DESIGN.md §8 lists them.
            pub const ALL: &[Event] = &[$(Event::$variant,)*];

            /// The name the `event` key writes.
            pub fn name(self) -> &'static str {
                match self {
                    $(Event::$variant => $name,)*
                }
            }
        }
    };
}

events! {
    /// An interface was attached.
    Attached => "attached",
    /// run adopted an installed filter.
    Adopted => "adopted",
    /// The allowlist changed.
    Refreshed => "refreshed",
    /// run's list was refused by the guard.
    RefreshRefused => "refresh_refused",
    /// run's list could not be read.
    ListFailed => "list_failed",
    /// A lost object was pinned again, or drifted maps put back.
    Repaired => "repaired",
    /// Ports, destinations or dry run changed.
    Settings => "settings",
    /// The open switch went on.
    Opened => "opened",
    /// The open switch went off.
    Enforced => "enforced",
    /// An interface lost the filter (its link pin was removed).
    LinkRemoved => "link_removed",
    /// A link was detached from its interface from outside.
    LinkDetached => "link_detached",
    /// An attached interface was deleted.
    InterfaceGone => "interface_gone",
    /// The filter is attached to no interface.
    Unprotected => "unprotected",
    /// A pin was removed by hand or holds a foreign object.
    Damaged => "damaged",
    /// A setting does not do what was asked.
    Note => "note",
    /// Each interval's counters.
    Stats => "stats",
    /// One of the program's own log lines.
    Kernel => "kernel",
    /// How many kernel lines were over the budget.
    KernelLogSuppressed => "kernel_log_suppressed",
    /// run serves `GET /metrics` (`--metrics-listen`).
    MetricsListening => "metrics_listening",
    /// The `--prom-file` directory does not exist.
    MetricsUnavailable => "metrics_unavailable",
    /// The program's log buffer cannot be read.
    KernelLogUnavailable => "kernel_log_unavailable",
    /// The filter was removed; run stops.
    Detached => "detached",
    /// run fails.
    Error => "error",
    /// run stopped on a signal.
    Stopped => "stopped",
}

/// One log line being built.
#[derive(Clone, Debug)]
pub struct LogLine {
    level: Level,
    event: Event,
    /// Key, value, and the value's logfmt text when it is not `value`'s.
    fields: Vec<(String, Value, Option<String>)>,
}

impl LogLine {
    /// An `info` line for `event`.
    pub fn info(event: Event) -> Self {
        Self::new(Level::Info, event)
    }

    /// A line at `level` for `event`.
    pub fn new(level: Level, event: Event) -> Self {
        Self {
            level,
            event,
            fields: Vec::new(),
        }
    }

    /// Adds a field.
    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.push((key.to_owned(), value.into(), None));
        self
    }

    /// Adds a structured field that logfmt shows as `text` instead.
    pub fn field_as(mut self, key: &str, value: Value, text: String) -> Self {
        self.fields.push((key.to_owned(), value, Some(text)));
        self
    }

    /// Renders the line (without newline) at time `at`.
    pub fn render(&self, format: LogFormat, at: SystemTime) -> String {
        let ts = humantime::format_rfc3339_millis(at).to_string();
        match format {
            LogFormat::Json => {
                let mut object = Map::new();
                object.insert("ts".into(), ts.into());
                object.insert("level".into(), self.level.name().into());
                object.insert("event".into(), self.event.name().into());
                for (key, value, _) in &self.fields {
                    object.insert(key.clone(), value.clone());
                }
                escape_json_controls(&Value::Object(object).to_string())
            }
            LogFormat::Text => {
                let mut out = format!(
                    "ts={ts} level={} event={}",
                    self.level.name(),
                    self.event.name()
                );
                for (key, value, text) in &self.fields {
                    let value = match text {
                        Some(text) => Value::String(text.clone()),
                        None => value.clone(),
                    };
                    out.push(' ');
                    out.push_str(key);
                    out.push('=');
                    out.push_str(&logfmt_value(&value));
                }
                out
            }
        }
    }
}

/// Writes log lines to standard output, one whole line per call.
#[derive(Debug)]
pub struct LogSink {
    format: LogFormat,
    out: Mutex<std::io::Stdout>,
}

impl LogSink {
    /// A sink writing `format` lines to standard output.
    pub fn stdout(format: LogFormat) -> Self {
        Self {
            format,
            out: Mutex::new(std::io::stdout()),
        }
    }

    /// Writes `line` stamped with the current time.
    pub fn emit(&self, line: &LogLine) {
        let text = line.render(self.format, SystemTime::now());
        let mut out = match self.out.lock() {
            Ok(out) => out,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A closed stdout (a gone pipe reader) must not stop the filter.
        let _ = writeln!(out, "{text}").and_then(|()| out.flush());
    }
}

/// A logfmt value: bare when it is one plain word, else a quoted string
/// with JSON's escapes. A list is its items joined by commas when each is
/// a plain word without commas or brackets, else its JSON text quoted, so
/// an item holding a comma (interface names may) never reads as two.
fn logfmt_value(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => {
            let words: Option<Vec<&str>> = items
                .iter()
                .map(|item| item.as_str().filter(|w| is_list_word(w)))
                .collect();
            match words {
                Some(words) => words.join(","),
                None => value.to_string(),
            }
        }
        Value::Object(_) => value.to_string(),
        other => return other.to_string(),
    };
    if is_plain(&text) {
        text
    } else {
        escape_json_controls(&Value::String(text).to_string())
    }
}

/// One word logfmt can show bare.
fn is_plain(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_whitespace() && c != '"' && c != '=' && c != '\\' && !c.is_control())
}

/// An item a list can show bare among commas.
fn is_list_word(text: &str) -> bool {
    is_plain(text) && !text.contains([',', '[', ']'])
}

/// JSON text with DEL and the C1 controls escaped too: serde_json leaves
/// them raw (JSON allows that), and a terminal acts on some of them.
fn escape_json_controls(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_000_000_123)
    }

    #[test]
    fn logfmt_quotes_only_what_needs_it() {
        let line = LogLine::info(Event::Attached)
            .field("iface", "eth0")
            .field("note", "two words")
            .field("count", 3)
            .field("empty", "");
        assert_eq!(
            line.render(LogFormat::Text, at()),
            "ts=2026-11-18T11:06:40.123Z level=info event=attached \
             iface=eth0 note=\"two words\" count=3 empty=\"\""
        );
    }

    #[test]
    fn control_characters_and_del_are_escaped_in_both_formats() {
        let line = LogLine::info(Event::Attached).field("iface", "ev\u{1b}[31mil\u{7f}\u{85}");
        let text = line.render(LogFormat::Text, at());
        assert!(
            text.ends_with(r#"iface="ev\u001b[31mil\u007f\u0085""#),
            "{text}"
        );
        assert!(!text.chars().any(char::is_control), "{text:?}");
        let json = line.render(LogFormat::Json, at());
        assert!(!json.chars().any(char::is_control), "{json:?}");
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["iface"], "ev\u{1b}[31mil\u{7f}\u{85}");
    }

    #[test]
    fn lists_read_back_as_the_items_they_hold() {
        let plain = LogLine::info(Event::Adopted).field("interfaces", vec!["eth0", "eth1"]);
        assert!(
            plain
                .render(LogFormat::Text, at())
                .ends_with(" interfaces=eth0,eth1"),
        );
        // One interface called "a,b" is not two called a and b.
        let comma = LogLine::info(Event::Adopted).field("interfaces", vec!["a,b"]);
        let two = LogLine::info(Event::Adopted).field("interfaces", vec!["a", "b"]);
        let (comma, two) = (
            comma.render(LogFormat::Text, at()),
            two.render(LogFormat::Text, at()),
        );
        assert_ne!(comma, two);
        assert!(comma.ends_with(r#" interfaces="[\"a,b\"]""#), "{comma}");
        let empty = LogLine::info(Event::Adopted).field("interfaces", Vec::<String>::new());
        assert!(
            empty
                .render(LogFormat::Text, at())
                .ends_with(r#" interfaces="""#),
            "{}",
            empty.render(LogFormat::Text, at())
        );
    }

    #[test]
    fn json_is_one_object_with_the_common_keys() {
        let line = LogLine::new(Level::Warn, Event::Error).field("message", "a \"quoted\" thing");
        let text = line.render(LogFormat::Json, at());
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["ts"], "2026-11-18T11:06:40.123Z");
        assert_eq!(value["level"], "warn");
        assert_eq!(value["event"], "error");
        assert_eq!(value["message"], "a \"quoted\" thing");
        assert!(!text.contains('\n'));
    }

    /// The events of docs/DESIGN.md §8's table, in its order.
    fn design_events() -> Vec<String> {
        let design = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/DESIGN.md"));
        let start = design
            .find("\n## 8. Log lines")
            .expect("docs/DESIGN.md has its §8");
        let section = &design[start + 1..];
        let end = section.find("\n## ").unwrap_or(section.len());
        section[..end]
            .lines()
            .filter_map(|row| row.strip_prefix("| `"))
            .filter_map(|row| row.split_once('`'))
            .map(|(event, _)| event.to_owned())
            .collect()
    }

    #[test]
    fn the_events_are_those_of_design_section_8() {
        let design = design_events();
        let code: Vec<String> = Event::ALL.iter().map(|e| e.name().to_owned()).collect();
        for event in &design {
            assert!(
                code.contains(event),
                "docs/DESIGN.md §8 lists `{event}`, which logline::Event lacks"
            );
        }
        for event in &code {
            assert!(
                design.contains(event),
                "logline::Event has `{event}`, which docs/DESIGN.md §8 does not list"
            );
        }
        assert_eq!(code, design, "the same events, in the same order");
    }
}
