//! `refresh` and `check`: a new list, validated, guarded, then applied.

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;

use super::{CheckRequest, RefreshRequest, open_locked, read_nonempty_list};
use crate::{
    allowlist::Allowlist,
    diff::{Diff, Guard},
    error::Refused,
    filter::Filter,
    pins::PinDir,
};

/// What a refresh did, or would do.
#[derive(Clone, Debug, Serialize)]
pub struct RefreshOutcome {
    /// The change from the live list.
    pub diff: Diff,
    /// True when the change was written to the maps.
    pub applied: bool,
    /// Prefixes live before.
    pub live_before: usize,
    /// Percent of live entries losing access.
    pub shrink_percent: f64,
    /// Why the guard would refuse, if it would.
    pub refusal: Option<String>,
    /// IPv4 prefixes live after (or that would be).
    pub v4_after: usize,
    /// IPv6 prefixes live after (or that would be).
    pub v6_after: usize,
}

/// Compares `new` with the live allowlist and, unless `preview`, applies
/// it: nothing when they are equal; a refusal when `guard` says the list
/// shrinks too much; otherwise every insert, then every delete.
pub fn apply_list(
    filter: &mut Filter,
    new: &Allowlist,
    guard: Guard,
    preview: bool,
) -> anyhow::Result<RefreshOutcome> {
    let live = filter.allowlist()?;
    let diff = Diff::between(&live, new);
    let shrink_percent = diff.shrink_percent(new, live.len());
    let refusal = (shrink_percent > guard.max_shrink && !guard.force).then(|| {
        format!(
            "the new list takes access from {} of the {} live entries ({shrink_percent:.1}%), \
             more than --max-shrink {}%",
            diff.lost_entries(new),
            live.len(),
            guard.max_shrink
        )
    });
    let mut outcome = RefreshOutcome {
        applied: false,
        live_before: live.len(),
        shrink_percent,
        refusal,
        v4_after: new.v4.len(),
        v6_after: new.v6.len(),
        diff,
    };
    if preview || outcome.diff.is_empty() {
        return Ok(outcome);
    }
    if let Some(reason) = &outcome.refusal {
        return Err(Refused(format!(
            "{reason}; nothing changed. Check the list, or run again with --force"
        ))
        .into());
    }
    filter.apply(&outcome.diff)?;
    outcome.applied = true;
    Ok(outcome)
}

/// `mxgate refresh`.
pub fn command(pins: &PinDir, request: &RefreshRequest) -> anyhow::Result<()> {
    let list = read_nonempty_list(&request.list)?;
    let (_lock, mut filter) = open_locked(pins)?;
    let outcome = apply_list(&mut filter, &list.allowlist, request.guard, request.preview)
        .context("refreshing the allowlist")?;
    if request.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    let d = &outcome.diff;
    if d.is_empty() {
        println!(
            "no change: the live allowlist already holds these {} IPv4 and {} IPv6 prefixes; \
             nothing written",
            outcome.v4_after, outcome.v6_after
        );
    } else if request.preview {
        for line in d.lines() {
            println!("{line}");
        }
        println!(
            "would add {}, remove {} and keep {} prefixes (nothing applied)",
            d.added(),
            d.removed(),
            d.unchanged()
        );
        if let Some(reason) = &outcome.refusal {
            println!("refresh would refuse: {reason} (use --force to apply anyway)");
        }
    } else {
        println!(
            "refreshed: IPv4 +{} -{}, IPv6 +{} -{}, {} unchanged; live now {} IPv4 and {} IPv6 prefixes",
            d.v4.added.len(),
            d.v4.removed.len(),
            d.v6.added.len(),
            d.v6.removed.len(),
            d.unchanged(),
            outcome.v4_after,
            outcome.v6_after
        );
    }
    Ok(())
}

/// `mxgate check`: validates and summarises a list; no kernel needed.
pub fn check(request: &CheckRequest) -> anyhow::Result<()> {
    let list = read_nonempty_list(&request.list)?;
    if request.json {
        let summary = json!({
            "ok": true,
            "entries": { "v4": list.entries_v4, "v6": list.entries_v6 },
            "prefixes": { "v4": list.allowlist.v4.len(), "v6": list.allowlist.v6.len() },
            "allowlist": { "v4": list.allowlist.v4, "v6": list.allowlist.v6 },
            "warnings": list.warnings,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "list OK: {} IPv4 and {} IPv6 entries read; {} IPv4 and {} IPv6 prefixes after merging; {} warning(s)",
            list.entries_v4,
            list.entries_v6,
            list.allowlist.v4.len(),
            list.allowlist.v6.len(),
            list.warnings.len()
        );
    }
    Ok(())
}
