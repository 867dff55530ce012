//! Applying a parsed list to the live maps: the change from the live
//! list, judged by the guards, written in the order that never drops a
//! sender both lists allow (DESIGN §6), or the drift behind a recorded
//! list repaired. `refresh`, `attach` and `run` all apply lists through
//! [`apply_list`], and keep the sources' texts through [`keep_if_live`].

use serde::Serialize;

use crate::{
    allowlist::Allowlist,
    diff::{Diff, FamilyDiff},
    error::Refused,
    fast_path::{Plan, Survey},
    filter::{AllowMaps, ConfigMap, trie_writes::WriteMode},
    guard::{Guard, Judgement},
    ranges::ParsedList,
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
    /// How the tries were written ("batched" or "single"), when they were.
    pub trie_writes: Option<WriteMode>,
    /// True when the sources delivered the very bytes (with the same
    /// options) the live list was read from, and the maps matched their
    /// record: the refresh stopped before parsing anything.
    pub sources_unchanged: bool,
    /// True when the refresh compared the tries with their record by the
    /// entry counts the kernel keeps, reading no key back (sources
    /// unchanged, Linux 6.4+).
    pub counted_by_kernel: bool,
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
    /// checksum with the record (from the tries as read back, and one read
    /// of the fast path); repair only when they differ. What every refresh
    /// does.
    Cheap,
    /// Read everything back and repair any difference from the list,
    /// whatever the record says (`refresh --force`, `attach`).
    Full,
}

/// The lists [`apply_list`] goes between.
pub struct Change<'a> {
    /// The list the tries hold, as the caller read it back under the lock
    /// ([`AllowMaps::read`]; a refresh reads it while it parses `new`).
    pub live: Allowlist,
    /// The list to apply.
    pub new: &'a Allowlist,
    /// `new`'s digest ([`crate::fast_path::digest`]), as the caller took
    /// it (a refresh, beside its plan): hashing 100,000 prefixes costs
    /// about a millisecond each time. Another list's digest would make the
    /// maps' record of that list pass for `new`'s; debug builds check it.
    pub digest: [u8; 32],
    /// `new`'s [`Plan`], when the caller made it already (see
    /// [`AllowMaps::apply`]).
    pub plan: Option<Plan>,
}

/// Compares `change.new` with the live allowlist and applies it as `mode`
/// says: nothing when they are equal; a refusal when `guard` refuses the
/// change; otherwise every insert, then every delete (see
/// [`crate::fast_path`] for the fast path's writes in between).
///
/// When the maps' record says they hold `new` already, the guards have
/// nothing to judge: the maps are checked as `verify` says, and whatever
/// drifted from `new` behind mxgate's back (a key added to a trie, a word
/// of the fast path changed) is put back.
pub fn apply_list(
    allow: &mut AllowMaps,
    config: &mut ConfigMap,
    change: Change<'_>,
    guard: Guard,
    mode: ApplyMode,
    verify: Verify,
) -> anyhow::Result<RefreshOutcome> {
    let Change {
        live,
        new,
        digest,
        plan,
    } = change;
    debug_assert_eq!(digest, crate::fast_path::digest(new), "Change::digest");
    // A plan made for another list is no plan for this one.
    let plan = plan.filter(|p| p.record.digest == digest);
    let record = allow.record()?.filter(|r| r.digest == digest);
    let mut drift = Vec::new();
    if let Some(record) = record {
        // What `allow.survey()` finds, from the tries as read already.
        drift = record.drift(&Survey::of(&live, allow.fast.live_sum()));
        if drift.is_empty() && verify == Verify::Cheap {
            return Ok(unchanged(new));
        }
    }
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
        trie_writes: None,
        sources_unchanged: false,
        counted_by_kernel: false,
    };
    if mode == ApplyMode::Preview {
        return Ok(outcome);
    }
    if outcome.diff.is_empty() {
        // The tries hold the list, but the fast path or the record may not
        // (a refresh killed halfway, drift, another mxgate): bring them in
        // step.
        outcome.fast_path_writes = allow.apply(&live, &outcome.diff, new, plan, config)?;
        outcome.applied = outcome.fast_path_writes > 0;
        return Ok(outcome);
    }
    if let Some(message) = refusal {
        if mode == ApplyMode::ApplyUnlessRefused {
            return Ok(outcome);
        }
        return Err(Refused(message).into());
    }
    outcome.fast_path_writes = allow.apply(&live, &outcome.diff, new, plan, config)?;
    outcome.applied = true;
    outcome.trie_writes = Some(allow.write_mode());
    Ok(outcome)
}

/// Keeps the texts `list` was read from as their sources' last good copies
/// if, and only if, the live maps now hold exactly `list` (their digest
/// is `digest`, the list's). Whatever refused the list — the shrink guard, any other guard,
/// a failed write, `--diff` — left other maps behind, so a refused list
/// never becomes a copy that a later `--use-cache-on-failure` would install
/// without a guard to ask. The one place copies are written; every path
/// that applies a list (refresh, attach, run) ends here.
pub fn keep_if_live(allow: &AllowMaps, list: &ParsedList, digest: [u8; 32]) {
    if list.fetched.texts.is_empty() {
        return;
    }
    match allow.digest() {
        Ok(Some(live)) if live == digest => {
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
pub(crate) fn unchanged(new: &Allowlist) -> RefreshOutcome {
    unchanged_counts(new.v4.len(), new.v6.len())
}

/// The outcome of a refresh whose list, of `v4` and `v6` prefixes, the
/// maps hold, checked.
pub(crate) fn unchanged_counts(v4: usize, v6: usize) -> RefreshOutcome {
    RefreshOutcome {
        applied: false,
        live_before: v4 + v6,
        shrink_percent: 0.0,
        refusal: None,
        guard: Judgement::default(),
        v4_after: v4,
        v6_after: v6,
        diff: Diff {
            v4: FamilyDiff {
                unchanged: v4,
                ..FamilyDiff::default()
            },
            v6: FamilyDiff {
                unchanged: v6,
                ..FamilyDiff::default()
            },
        },
        drift: Vec::new(),
        fast_path_writes: 0,
        trie_writes: None,
        sources_unchanged: false,
        counted_by_kernel: false,
    }
}
