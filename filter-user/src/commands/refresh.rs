//! `refresh` and `check`: a new list, validated, guarded, then applied;
//! and the maps checked against the list they record, drift repaired.

use anyhow::Context as _;
use serde_json::json;

use super::{CheckRequest, RefreshRequest, nonempty_list, open_locked, read_nonempty_list};
use crate::{
    apply::{
        ApplyMode, Change, RefreshOutcome, Verify, apply_list, keep_if_live, unchanged_counts,
    },
    error::{Refused, exit_status},
    fast_path,
    filter::{
        AllowMaps, ConfigMap,
        trie_reads::{Helped, SharedRead},
        trie_writes::WriteMode,
    },
    parallel,
    pins::PinDir,
    refresh_record, sources,
    text::printable,
};

/// What, besides the sources' bytes, decides the list a refresh applies
/// (and so whether the maps' record of the last one still describes it):
/// this mxgate (its parser and merge rules, the map layout) and the
/// `--allow` entries. Not the guards: they judge a change, and bytes that
/// made the live list make no change (a refresh that parses them finds the
/// record's list and meets no guard either). Ports and the like are no
/// part of the list.
fn shaping_options(request: &RefreshRequest) -> Vec<u8> {
    format!(
        "mxgate {} layout {}\0allow {:?}",
        env!("CARGO_PKG_VERSION"),
        filter_common::LAYOUT_VERSION,
        request.list.allow,
    )
    .into_bytes()
}

/// When the maps record `sources` as the digest of the bytes their list
/// was read from, and the cheap drift check finds them as recorded: the
/// outcome of a refresh that stops there. `None` otherwise.
fn unchanged_sources(
    allow: &AllowMaps,
    sources: Option<[u8; 32]>,
) -> anyhow::Result<Option<RefreshOutcome>> {
    let Some(sources) = sources else {
        return Ok(None);
    };
    if allow.fast.sources_digest()? != Some(sources) {
        return Ok(None);
    }
    let Some(record) = allow.record()? else {
        return Ok(None);
    };
    let seen = allow.counted_survey()?;
    if !record.drift(&seen).is_empty() {
        return Ok(None);
    }
    let mut outcome = unchanged_counts(record.entries[0] as usize, record.entries[1] as usize);
    outcome.sources_unchanged = true;
    outcome.counted_by_kernel = seen.trie_sums.is_none();
    Ok(Some(outcome))
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
    if request.list.options.verbose {
        if let Some(mode) = outcome.trie_writes {
            eprintln!("mxgate: trie writes: {}", describe_writes(mode));
        }
        if outcome.sources_unchanged {
            eprintln!(
                "mxgate: the sources delivered the bytes the live list was read from and the \
                 maps match their record: stopped before parsing"
            );
        }
        if outcome.counted_by_kernel {
            eprintln!(
                "mxgate: the tries were checked by the entry counts the kernel keeps, no key \
                 read back (`refresh --force` reads every key)"
            );
        }
    }
    match refused {
        Some(refused) => Err(refused.into()),
        None => Ok(()),
    }
}

/// How the tries were written, for `--verbose`.
fn describe_writes(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Batched => "batched (BPF_MAP_UPDATE_BATCH, BPF_MAP_DELETE_BATCH)",
        WriteMode::Single => "single (one bpf(2) call per prefix)",
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
    // Read (or fetched) once; parsed only when the bytes are not those of
    // the live list (DESIGN §6).
    let raw = request.list.read_raw()?;
    let shaping = shaping_options(request);
    // The digest (SHA-256, about 0.7 ms a megabyte) is taken on another
    // thread while this one takes the lock and opens the maps, which need
    // nothing of it.
    let (sources, opened) = parallel::both(
        || raw.digest(&shaping),
        || {
            let (lock, installed) = open_locked(pins)?;
            let allow = AllowMaps::open(&installed)?;
            anyhow::Ok((lock, installed, allow))
        },
    );
    let (_lock, installed, mut allow) = opened?;
    // --force means "apply this list as it is": always parsed and read back.
    if !request.guard.force
        && let Some(outcome) = unchanged_sources(&allow, sources)?
    {
        if !request.preview {
            // The texts are those kept when the list went live; kept again
            // in case the copies were removed since.
            sources::keep_last_good(&raw.fetched(&request.list.options));
        }
        return Ok(outcome);
    }
    // Parsing needs nothing of the maps, reading the live list back nothing
    // of the sources: the kernel walks the tries on another thread
    // meanwhile. If it is still walking once the list is parsed, this
    // thread plans the fast path (which needs the new list and the live
    // fast path, not the tries), then reads part of what is left of the
    // tries itself (`trie_reads`); otherwise the plan is left to overlap
    // the trie inserts (see `AllowMaps::apply`).
    let tries = allow.tries();
    let shared = SharedRead::default();
    let (parsed, plan, live) = std::thread::scope(|scope| {
        let reading = scope.spawn(|| tries.read_shared(&shared));
        let parsed = raw.parse(&request.list.allow, &request.list.options);
        let (plan, helped) = match &parsed {
            // SAFETY: this refresh holds the pin directory's lock, and
            // nothing is written before the plan is made.
            Ok(list) if !reading.is_finished() => (
                Some(unsafe { allow.plan(&list.allowlist) }),
                tries.help(&shared, &list.allowlist),
            ),
            _ => (None, Ok(Helped::Nothing)),
        };
        let live = reading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (
            parsed,
            plan,
            live.and_then(|live| Ok(helped?.complete(live))),
        )
    });
    let list = nonempty_list(&request.list, parsed?)?;
    let live = live?;
    // A plan made above is this list's, its digest taken beside its words.
    let digest = plan.as_ref().map_or_else(
        || fast_path::digest(&list.allowlist),
        |plan| plan.record.digest,
    );
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
        Change {
            live,
            new: &list.allowlist,
            digest,
            plan,
        },
        request.guard,
        mode,
        verify,
    )
    .context("refreshing the allowlist")?;
    if !request.preview {
        keep_if_live(&allow, &list, digest);
        if let Some(sources) = sources {
            record_sources_if_live(&mut allow, digest, sources)?;
        }
    }
    Ok(outcome)
}

/// Adds `sources`, the digest of the bytes a list was read from, to the
/// maps' record if, and only if, they now hold exactly that list (whose
/// digest is `list_digest`): the next refresh whose sources deliver the
/// same bytes may then stop before parsing them.
fn record_sources_if_live(
    allow: &mut AllowMaps,
    list_digest: [u8; 32],
    sources: [u8; 32],
) -> anyhow::Result<()> {
    if allow.digest()? == Some(list_digest) {
        allow
            .fast
            .set_sources_digest(sources)
            .context("recording the sources' digest")?;
    }
    Ok(())
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
