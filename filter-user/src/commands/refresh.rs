//! `refresh` and `check`: a new list, validated, guarded, then applied;
//! and the maps checked against the list they record, drift repaired.

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;

use super::{CheckRequest, RefreshRequest, open_locked, read_nonempty_list};
use crate::{
    allowlist::Allowlist,
    diff::{Diff, FamilyDiff},
    error::{Refused, exit_status},
    fast_path,
    filter::{AllowMaps, ConfigMap},
    guard::{Guard, Judgement},
    pins::PinDir,
    ranges::ParsedList,
    refresh_record,
    report::printable,
    sources,
};

/// What a refresh did, or would do.
#[derive(Clone, Debug, Serialize)]
pub struct RefreshOutcome {
    /// The change from the live list.
    pub diff: Diff,
    /// True when the change (or a repair) was written to the maps.
    pub applied: bool,
    /// Prefixes live before.
    pub live_before: usize,
    /// Percent of a family's live addresses losing access (the larger of
    /// the two families).
    pub shrink_percent: f64,
    /// Why the guards would refuse, if they would.
    pub refusal: Option<String>,
    /// The guards' judgement: addresses per family and every refusal.
    pub guard: Judgement,
    /// IPv4 prefixes live after (or that would be).
    pub v4_after: usize,
    /// IPv6 prefixes live after (or that would be).
    pub v6_after: usize,
    /// How the maps had drifted from the list they record as applied,
    /// when that is the list applied now: repaired when `applied`.
    pub drift: Vec<String>,
    /// Fast-path words written.
    pub fast_path_writes: usize,
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

/// How far [`apply_list`] checks the maps when their record says they
/// hold the list it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Compare the tries' counts and checksums and the fast path's
    /// checksum with the record (a walk of the tries' keys and one read of
    /// the fast path); read everything back and repair only when they
    /// differ. What every refresh does.
    Cheap,
    /// Read everything back and repair any difference from the list,
    /// whatever the record says (`refresh --force`, `attach`).
    Full,
}

/// Compares `new` with the live allowlist and applies it as `mode` says:
/// nothing when they are equal; a refusal when `guard` refuses the change;
/// otherwise every insert, then every delete (see [`crate::fast_path`] for
/// the fast path's writes in between).
///
/// When the maps' record says they hold `new` already, the guards have
/// nothing to judge: the maps are checked as `verify` says, and whatever
/// drifted from `new` behind mxgate's back (a key added to a trie, a word
/// of the fast path changed) is put back.
pub fn apply_list(
    allow: &mut AllowMaps,
    config: &mut ConfigMap,
    new: &Allowlist,
    guard: Guard,
    mode: ApplyMode,
    verify: Verify,
) -> anyhow::Result<RefreshOutcome> {
    let record = allow
        .record()?
        .filter(|r| r.digest == fast_path::digest(new));
    let mut drift = Vec::new();
    if let Some(record) = record {
        drift = record.drift(&allow.survey()?);
        if drift.is_empty() && verify == Verify::Cheap {
            return Ok(unchanged(new));
        }
    }
    let live = allow.read()?;
    let diff = Diff::between(&live, new);
    let judgement = guard.judge(&live, new);
    // The list applied already: putting drifted maps back changes no list.
    let refusal = if record.is_some() {
        None
    } else {
        judgement.refusal_message()
    };
    let mut outcome = RefreshOutcome {
        applied: false,
        live_before: live.len(),
        shrink_percent: judgement.shrink_percent(),
        refusal: record.is_none().then(|| judgement.reason()).flatten(),
        guard: judgement,
        v4_after: new.v4.len(),
        v6_after: new.v6.len(),
        diff,
        drift,
        fast_path_writes: 0,
    };
    if mode == ApplyMode::Preview {
        return Ok(outcome);
    }
    if outcome.diff.is_empty() {
        // The tries hold the list, but the fast path or the record may not
        // (a refresh killed halfway, drift, another mxgate): bring them in
        // step.
        outcome.fast_path_writes = allow.apply(&live, &outcome.diff, new, config)?;
        outcome.applied = outcome.fast_path_writes > 0;
        return Ok(outcome);
    }
    if let Some(message) = refusal {
        if mode == ApplyMode::ApplyUnlessRefused {
            return Ok(outcome);
        }
        return Err(Refused(message).into());
    }
    outcome.fast_path_writes = allow.apply(&live, &outcome.diff, new, config)?;
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

/// The outcome of a refresh whose list the maps hold, checked.
fn unchanged(new: &Allowlist) -> RefreshOutcome {
    RefreshOutcome {
        applied: false,
        live_before: new.len(),
        shrink_percent: 0.0,
        refusal: None,
        guard: Judgement::default(),
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
        drift: Vec::new(),
        fast_path_writes: 0,
    }
}

/// `mxgate refresh`. With `--json`, a failure is printed as JSON too
/// (and still exits with its status); `--diff` of a list the guards refuse
/// prints the change, then exits 3 as the refresh would.
pub fn command(pins: &PinDir, request: &RefreshRequest) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let result = refresh(pins, request);
    // `--diff` writes nothing, the record included.
    if !request.preview {
        refresh_record::record(&request.list, started, result.as_ref().map(|_| ()));
    }
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            if request.json {
                print_json(&json!({ "ok": false, "applied": false }), &e)?;
            }
            return Err(e);
        }
    };
    let refused = if request.preview && outcome.refusal.is_some() {
        outcome.guard.refusal_message().map(Refused)
    } else {
        None
    };
    if request.json {
        let value = serde_json::to_value(&outcome)?;
        match refused {
            Some(refused) => {
                let e = anyhow::Error::new(refused);
                print_json(&value, &e)?;
                return Err(e);
            }
            None => {
                let mut value = value;
                value["ok"] = json!(true);
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
        }
        return Ok(());
    }
    print_outcome(&outcome, request.preview);
    match refused {
        Some(refused) => Err(refused.into()),
        None => Ok(()),
    }
}

/// Prints `value` with `ok: false`, the error and its exit status.
fn print_json(value: &serde_json::Value, e: &anyhow::Error) -> anyhow::Result<()> {
    let mut value = value.clone();
    value["ok"] = json!(false);
    value["error"] = json!(format!("{e:#}"));
    value["exit_status"] = json!(exit_status(e));
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

fn refresh(pins: &PinDir, request: &RefreshRequest) -> anyhow::Result<RefreshOutcome> {
    let list = read_nonempty_list(&request.list)?;
    let (_lock, installed) = open_locked(pins)?;
    let mut allow = AllowMaps::open(&installed)?;
    let mut config = ConfigMap::open(&installed)?;
    let mode = if request.preview {
        ApplyMode::Preview
    } else {
        ApplyMode::Apply
    };
    // --force means "apply this list as it is": the maps are read back
    // whatever their record says.
    let verify = if request.guard.force {
        Verify::Full
    } else {
        Verify::Cheap
    };
    let outcome = apply_list(
        &mut allow,
        &mut config,
        &list.allowlist,
        request.guard,
        mode,
        verify,
    )
    .context("refreshing the allowlist")?;
    if !request.preview {
        keep_if_live(&allow, &list);
    }
    Ok(outcome)
}

fn print_outcome(outcome: &RefreshOutcome, preview: bool) {
    let d = &outcome.diff;
    if !outcome.drift.is_empty() {
        let drift = printable(&outcome.drift.join("; "));
        if preview {
            println!(
                "the maps have drifted from the list applied last ({drift}); a refresh repairs that"
            );
        } else {
            println!("repaired drift: the maps had drifted from the list applied last ({drift})");
        }
    }
    if d.is_empty() && outcome.applied {
        println!(
            "no change to the allowlist ({} IPv4 and {} IPv6 prefixes); its fast path was out of \
             step and has been rewritten ({} words)",
            outcome.v4_after, outcome.v6_after, outcome.fast_path_writes
        );
    } else if d.is_empty() {
        println!(
            "no change: the live allowlist already holds these {} IPv4 and {} IPv6 prefixes; \
             nothing written",
            outcome.v4_after, outcome.v6_after
        );
    } else if preview {
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
            println!("refresh would refuse: {reason}");
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
