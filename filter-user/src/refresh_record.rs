//! The record of the last refreshes: when each source last delivered, the
//! last refresh's result and how long it took. `attach`, `refresh` and
//! `run` write it beside the sources' last good copies (the cache
//! directory); `run --metrics-listen`, `--prom-file` and `top` read it. A
//! refresh runs from cron in a process of its own: this file is how the
//! long-running `run` learns how it went.
//!
//! It holds no secret (sources are named as `status` names them, a URL's
//! credentials hidden) and decides nothing: a record that is missing or
//! unreadable only leaves those metrics out.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{
    error::exit_status,
    files,
    sources::{ListSpec, SourceFailed},
};

/// File name of the record in the cache directory (the sources' copies
/// end in `.txt`, so it cannot collide with one).
pub const FILE_NAME: &str = "refresh-record.json";

/// Largest record read: far more than any real list of sources writes.
const MAX_BYTES: u64 = 1 << 20;

/// How a refresh (or one source of it) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshResult {
    /// The list was read and is live (or was already).
    Ok,
    /// A source failed or delivered nothing usable (exit 1).
    Failed,
    /// A guard refused the list (exit 3): the live list was kept.
    Refused,
    /// The input was invalid (exit 2).
    Invalid,
}

impl RefreshResult {
    /// Every result, for metrics that show each as a label.
    pub const ALL: [RefreshResult; 4] = [
        RefreshResult::Ok,
        RefreshResult::Failed,
        RefreshResult::Refused,
        RefreshResult::Invalid,
    ];

    /// The result's name in metrics and JSON.
    pub const fn label(self) -> &'static str {
        match self {
            RefreshResult::Ok => "ok",
            RefreshResult::Failed => "failed",
            RefreshResult::Refused => "refused",
            RefreshResult::Invalid => "invalid",
        }
    }
}

/// The last outcome of one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Its last result.
    pub result: RefreshResult,
    /// When it was last read, Unix seconds.
    pub last_attempt: f64,
    /// When it last delivered a usable list, Unix seconds.
    pub last_success: Option<f64>,
}

/// The record kept in [`FILE_NAME`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// The last refresh's result.
    pub result: Option<RefreshResult>,
    /// When it started, Unix seconds.
    pub last_attempt: Option<f64>,
    /// When a refresh last ended with the list live, Unix seconds.
    pub last_success: Option<f64>,
    /// How long the last refresh took, seconds.
    pub duration_seconds: Option<f64>,
    /// Each source by its name, as `status` names it.
    pub sources: BTreeMap<String, SourceRecord>,
}

/// Unix seconds of `at`.
fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// What a refresh's error says about its result.
fn result_of(outcome: Result<(), &anyhow::Error>) -> RefreshResult {
    match outcome {
        Ok(()) => RefreshResult::Ok,
        Err(e) if exit_status(e) == 3 => RefreshResult::Refused,
        Err(e) if exit_status(e) == 2 => RefreshResult::Invalid,
        Err(_) => RefreshResult::Failed,
    }
}

impl RefreshRecord {
    /// The record after a refresh of `list` started at `started` ended with
    /// `outcome` (`Ok` once the list is live) at `ended`.
    pub fn updated(
        mut self,
        list: &ListSpec,
        started: SystemTime,
        ended: SystemTime,
        outcome: Result<(), &anyhow::Error>,
    ) -> Self {
        let result = result_of(outcome);
        let at = unix(started);
        self.result = Some(result);
        self.last_attempt = Some(at);
        self.duration_seconds = Some(
            ended
                .duration_since(started)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64(),
        );
        if result == RefreshResult::Ok {
            self.last_success = Some(at);
        }
        // The one source that failed, if one did: the sources before it
        // were read, the ones after it were not.
        let failed_name = outcome.err().and_then(|e| {
            e.chain()
                .find_map(|c| c.downcast_ref::<SourceFailed>())
                .map(|f| f.source_name.clone())
        });
        let names: Vec<String> = list.sources.iter().map(ToString::to_string).collect();
        let failed_at = failed_name
            .as_deref()
            .and_then(|f| names.iter().position(|n| n == f));
        for (i, name) in names.iter().enumerate() {
            let read_ok = match result {
                RefreshResult::Ok | RefreshResult::Refused => true,
                // Read before the one that failed; a failure that names
                // no single source tells nothing about each.
                RefreshResult::Failed => failed_at.is_some_and(|f| i < f),
                RefreshResult::Invalid => false,
            };
            let this = if failed_at == Some(i) {
                RefreshResult::Failed
            } else if read_ok {
                RefreshResult::Ok
            } else {
                continue;
            };
            let record = self.sources.entry(name.clone()).or_insert(SourceRecord {
                result: this,
                last_attempt: at,
                last_success: None,
            });
            record.result = this;
            record.last_attempt = at;
            if this == RefreshResult::Ok {
                record.last_success = Some(at);
            }
        }
        // Sources no longer given are no longer reported.
        self.sources.retain(|name, _| names.contains(name));
        self
    }
}

/// The record's path for a refresh with this cache directory.
pub fn path_in(cache_dir: &Path) -> PathBuf {
    cache_dir.join(FILE_NAME)
}

/// The record in `cache_dir`; `None` when there is none or it cannot be
/// read or trusted (the metrics then leave it out).
pub fn load(cache_dir: &Path) -> Option<RefreshRecord> {
    let (bytes, _) = files::read_regular(
        &path_in(cache_dir),
        MAX_BYTES,
        "the refresh record's size bound",
        files::Links::Refuse,
    )
    .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Records how the refresh of `list` started at `started` ended; a record
/// that cannot be written is a warning on stderr: the refresh itself is
/// done. Nothing is written when the list has no cache directory.
pub fn record(list: &ListSpec, started: SystemTime, outcome: Result<(), &anyhow::Error>) {
    let Some(dir) = &list.options.cache_dir else {
        return;
    };
    let updated = load(dir)
        .unwrap_or_default()
        .updated(list, started, SystemTime::now(), outcome);
    let written = serde_json::to_vec_pretty(&updated)
        .map_err(anyhow::Error::from)
        .and_then(|text| {
            files::private_dir(dir)?;
            files::write_atomically(&path_in(dir), &text, 0o600, files::Durability::Unsynced)
        });
    if let Err(e) = written {
        eprintln!(
            "mxgate: warning: could not write the refresh record in {}: {e:#}",
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        error::Refused,
        sources::{Source, SourceOptions},
    };

    fn spec(sources: &[&str]) -> ListSpec {
        ListSpec {
            sources: sources
                .iter()
                .map(|s| Source::Https((*s).to_string()))
                .collect(),
            allow: Vec::new(),
            options: SourceOptions::default(),
        }
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn a_success_stamps_every_source() {
        let list = spec(&["https://a.example/x", "https://u:p@b.example/y"]);
        let r = RefreshRecord::default().updated(&list, at(100), at(102), Ok(()));
        assert_eq!(r.result, Some(RefreshResult::Ok));
        assert_eq!(r.last_success, Some(100.0));
        assert_eq!(r.duration_seconds, Some(2.0));
        assert_eq!(r.sources.len(), 2);
        // Credentials never reach the record.
        assert!(r.sources.keys().all(|k| !k.contains("u:p")), "{r:?}");
        assert!(r.sources.values().all(|s| s.last_success == Some(100.0)));
    }

    #[test]
    fn a_failed_source_keeps_its_last_success_and_the_others_theirs() {
        let list = spec(&[
            "https://a.example/x",
            "https://b.example/y",
            "https://c.example/z",
        ]);
        let first = RefreshRecord::default().updated(&list, at(100), at(101), Ok(()));
        let failed = anyhow::Error::new(SourceFailed {
            source_name: "https://b.example/y".into(),
            reason: "timed out".into(),
        })
        .context("reading the list");
        let r = first.updated(&list, at(200), at(201), Err(&failed));
        assert_eq!(r.result, Some(RefreshResult::Failed));
        assert_eq!(r.last_success, Some(100.0));
        let a = &r.sources["https://a.example/x"];
        let b = &r.sources["https://b.example/y"];
        let c = &r.sources["https://c.example/z"];
        assert_eq!((a.result, a.last_success), (RefreshResult::Ok, Some(200.0)));
        assert_eq!(
            (b.result, b.last_success),
            (RefreshResult::Failed, Some(100.0))
        );
        assert_eq!(b.last_attempt, 200.0);
        // Not read after the failure: unchanged.
        assert_eq!((c.result, c.last_attempt), (RefreshResult::Ok, 100.0));
    }

    #[test]
    fn a_refusal_is_no_success_but_its_sources_delivered() {
        let list = spec(&["https://a.example/x"]);
        let refused = anyhow::Error::new(Refused("shrink".into()));
        let r = RefreshRecord::default().updated(&list, at(100), at(101), Err(&refused));
        assert_eq!(r.result, Some(RefreshResult::Refused));
        assert_eq!(r.last_success, None);
        assert_eq!(r.sources["https://a.example/x"].result, RefreshResult::Ok);
    }

    #[test]
    fn the_record_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("mxgate-record-{}", std::process::id()));
        let mut list = spec(&["https://a.example/x"]);
        list.options.cache_dir = Some(dir.clone());
        record(&list, at(100), Ok(()));
        let r = load(&dir).expect("the record just written");
        assert_eq!(r.last_success, Some(100.0));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(load(&dir).is_none());
    }
}
