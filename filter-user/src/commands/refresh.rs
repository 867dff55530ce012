//! `refresh` and `check`: a new list, validated, guarded, then applied.

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;

use super::{CheckRequest, RefreshRequest, open_locked, read_nonempty_list};
use crate::{
    allowlist::Allowlist,
    diff::{Diff, FamilyDiff, Guard},
    error::Refused,
    fast_path,
    filter::{AllowMaps, ConfigMap},
    pins::PinDir,
    ranges::ParsedList,
    sources,
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

/// What [`apply_list`] does with the change it computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyMode {
    /// Compute it, change nothing.
    Preview,
    /// Apply it; a refusal by the guard is an error (exit 3).
    Apply,
    /// Apply it unless the guard refuses; then keep the live list and
    /// report the refusal in the outcome.
    ApplyUnlessRefused,
}

/// Compares `new` with the live allowlist and applies it as `mode` says:
/// nothing when they are equal; a refusal when `guard` says the list
/// shrinks too much; otherwise every insert, then every delete (see
/// [`crate::fast_path`] for the fast path's writes in between). When the
/// maps' digest says they already hold `new`, nothing is read back.
pub fn apply_list(
    allow: &mut AllowMaps,
    config: &mut ConfigMap,
    new: &Allowlist,
    guard: Guard,
    mode: ApplyMode,
) -> anyhow::Result<RefreshOutcome> {
    if allow.digest()? == Some(fast_path::digest(new)) {
        return Ok(RefreshOutcome {
            applied: false,
            live_before: new.len(),
            shrink_percent: 0.0,
            refusal: None,
            v4_after: new.v4.len(),
            v6_after: new.v6.len(),
            diff: Diff {
                v4: FamilyDiff {
                    unchanged: new.v4.len(),
                    ..FamilyDiff::default()
                },
                v6: FamilyDiff {
                    unchanged: new.v6.len(),
                    ..FamilyDiff::default()
                },
            },
        });
    }
    let live = allow.read()?;
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
    if mode == ApplyMode::Preview {
        return Ok(outcome);
    }
    if outcome.diff.is_empty() {
        // The tries hold the list, but without its digest the fast path may
        // not (a refresh killed halfway, or another mxgate): bring it in step.
        outcome.applied = allow.apply(&live, &outcome.diff, new, config)? > 0;
        return Ok(outcome);
    }
    if let Some(reason) = &outcome.refusal {
        if mode == ApplyMode::ApplyUnlessRefused {
            return Ok(outcome);
        }
        return Err(Refused(format!(
            "{reason}; nothing changed. Check the list, or run again with --force              (or a larger --max-shrink)"
        ))
        .into());
    }
    allow.apply(&live, &outcome.diff, new, config)?;
    outcome.applied = true;
    Ok(outcome)
}

/// Keeps the texts `list` was read from as their sources' last good copies
/// if, and only if, the live maps now hold exactly `list` (their digest
/// says so). Whatever refused the list — the shrink guard, any other guard,
/// a failed write, `--diff` — left other maps behind, so a refused list
/// never becomes a copy that a later `--use-cache-on-failure` would install
/// without a guard to ask. The one place copies are written; every path
/// that applies a list (refresh, attach, run) ends here.
pub fn keep_if_live(allow: &AllowMaps, list: &ParsedList) {
    if list.fetched.texts.is_empty() {
        return;
    }
    match allow.digest() {
        Ok(Some(live)) if live == fast_path::digest(&list.allowlist) => {
            sources::keep_last_good(&list.fetched);
        }
        Ok(_) => {}
        Err(e) => eprintln!(
            "mxgate: warning: not keeping copies of the sources: reading the live list's \
             digest: {e:#}"
        ),
    }
}

/// `mxgate refresh`.
pub fn command(pins: &PinDir, request: &RefreshRequest) -> anyhow::Result<()> {
    let list = read_nonempty_list(&request.list)?;
    let (_lock, installed) = open_locked(pins)?;
    let mut allow = AllowMaps::open(&installed)?;
    let mut config = ConfigMap::open(&installed)?;
    let mode = if request.preview {
        ApplyMode::Preview
    } else {
        ApplyMode::Apply
    };
    let outcome = apply_list(
        &mut allow,
        &mut config,
        &list.allowlist,
        request.guard,
        mode,
    )
    .context("refreshing the allowlist")?;
    if !request.preview {
        keep_if_live(&allow, &list);
    }
    if request.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    let d = &outcome.diff;
    if d.is_empty() && outcome.applied {
        println!(
            "no change to the allowlist ({} IPv4 and {} IPv6 prefixes); its fast path was out of \
             step (a refresh interrupted?) and has been rewritten",
            outcome.v4_after, outcome.v6_after
        );
    } else if d.is_empty() {
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
