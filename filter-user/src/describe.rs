//! Sentences for people about what the filter does with its settings:
//! `attach`, `status` and `run` print the same words.

use std::collections::BTreeSet;

use crate::filter::Settings;

/// The protected ports in words: `TCP port 25`, `TCP ports 25, 587`, or
/// `no TCP port (nothing is examined)`.
pub fn ports_text(ports: &BTreeSet<u16>) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    match list.len() {
        0 => "no TCP port (nothing is examined)".to_owned(),
        1 => format!("TCP port {}", list[0]),
        _ => format!("TCP ports {}", list.join(", ")),
    }
}

/// One line saying what the filter does with these settings.
pub fn describe_settings(settings: &Settings, open: bool) -> String {
    let ports = ports_text(&settings.ports);
    let where_ = if settings.protect_dst.is_empty() {
        "every local address".to_owned()
    } else {
        let addrs: Vec<String> = settings
            .protect_dst
            .iter()
            .map(ToString::to_string)
            .collect();
        addrs.join(", ")
    };
    let mode = if open {
        "OPEN: every SYN passes (run `mxgate enforce` to drop unlisted senders again)"
    } else if settings.dry_run {
        "dry run: SYNs from outside the allowlist are counted, not dropped"
    } else {
        "enforcing: SYNs from outside the allowlist are dropped"
    };
    format!("protecting {ports} on {where_}; {mode}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_read_as_words_even_when_there_are_none() {
        let text = |ports: &[u16]| ports_text(&ports.iter().copied().collect());
        assert_eq!(text(&[]), "no TCP port (nothing is examined)");
        assert_eq!(text(&[25]), "TCP port 25");
        assert_eq!(text(&[587, 25]), "TCP ports 25, 587");
    }
}
