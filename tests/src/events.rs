//! `mxgate run --log-format json`'s lines as a test reads them: waiting for
//! an event is reading up to it (a condition, never a sleep).

use std::io::{BufRead, Lines};

use serde_json::Value;

/// Reads run's JSON lines up to the first for which `wanted` holds;
/// returns it and the lines before it. Panics if run ends first or a line
/// is not JSON.
pub fn until<B: BufRead>(
    lines: &mut Lines<B>,
    wanted: impl Fn(&Value) -> bool,
) -> (Value, Vec<Value>) {
    let mut earlier = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("mxgate run ended early")
            .expect("reading mxgate run");
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line: {line}: {e}"));
        if wanted(&value) {
            return (value, earlier);
        }
        earlier.push(value);
    }
}

/// The next line of run for which `wanted` holds.
pub fn next_event<B: BufRead>(lines: &mut Lines<B>, wanted: impl Fn(&Value) -> bool) -> Value {
    until(lines, wanted).0
}

/// The first line whose event is `event`, and the event names of the
/// lines before it.
pub fn until_event<B: BufRead>(lines: &mut Lines<B>, event: &str) -> (Value, Vec<String>) {
    let (found, earlier) = until(lines, |v| v["event"] == event);
    let names = earlier
        .iter()
        .map(|v| v["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    (found, names)
}
