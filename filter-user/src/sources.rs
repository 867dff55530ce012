//! Range sources: where each `--ranges SRC` comes from, fetched into
//! range-list text for [`crate::ranges`] to parse.
//!
//! - a file path, or `-` for standard input;
//! - `spf:DOMAIN`: the addresses the domain's SPF record authorises;
//! - `https://…`: a plain-text list;
//! - `m365:INSTANCE` (or `m365:https://…`): Microsoft 365's Exchange Online
//!   addresses for TCP 25 from the endpoints web service.
//!
//! A remote source that fails (DNS, HTTP, size, or its list does not parse)
//! fails the whole read, so nothing is applied; with a state directory, the
//! last good text of each remote source is kept and
//! `--use-cache-on-failure` falls back to it.

use std::{
    io::Read as _,
    os::unix::fs::DirBuilderExt as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use crate::{
    https::{self, HttpsOptions},
    ranges::{ListBuilder, ListError, ParsedList},
    spf::{self, SpfOptions},
};

/// How to fetch remote sources and where to keep their last good copies.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// DNS, for `spf:` sources.
    pub spf: SpfOptions,
    /// HTTPS, for `https://` and `m365:` sources.
    pub https: HttpsOptions,
    /// Where last good copies are kept; `None` keeps none.
    pub cache_dir: Option<PathBuf>,
    /// On a failed remote source, use its last good copy.
    pub use_cache_on_failure: bool,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            spf: SpfOptions {
                servers: Vec::new(),
                query_timeout: Duration::from_secs(5),
                deadline: Duration::from_secs(60),
                lookup_limit: 10,
            },
            https: HttpsOptions {
                timeout: Duration::from_secs(30),
                max_bytes: 10 << 20,
                ca_file: None,
            },
            cache_dir: None,
            use_cache_on_failure: false,
        }
    }
}

/// A remote source failed and no cached copy was used. Exit status 1.
#[derive(Debug, thiserror::Error)]
#[error("{source_name} failed: {reason} (nothing changed)")]
pub struct SourceFailed {
    /// The source as given.
    pub source_name: String,
    /// What went wrong.
    pub reason: String,
}

/// Reads every source and the `--allow` entries into one merged list.
pub fn read_list(
    sources: &[String],
    allow: &[String],
    options: &SourceOptions,
) -> anyhow::Result<ParsedList> {
    let mut builder = ListBuilder::new();
    let mut stdin_used = false;
    for source in sources {
        if source == "-" {
            if std::mem::replace(&mut stdin_used, true) {
                return Err(ListError::StdinTwice.into());
            }
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|error| ListError::Read {
                    source_name: "-".into(),
                    error,
                })?;
            builder.add_text("-", &bytes)?;
        } else if is_remote(source) {
            builder.extend(remote(source, options)?);
        } else {
            let bytes = std::fs::read(source).map_err(|error| ListError::Read {
                source_name: source.clone(),
                error,
            })?;
            builder.add_text(source, &bytes)?;
        }
    }
    builder.add_allow_options(allow)?;
    Ok(builder.finish()?)
}

fn is_remote(source: &str) -> bool {
    source.starts_with("spf:") || source.starts_with("https://") || source.starts_with("m365:")
}

/// Fetches and parses one remote source; on failure, its cached copy if
/// allowed and present.
fn remote(source: &str, options: &SourceOptions) -> anyhow::Result<ListBuilder> {
    let fresh = fetch(source, options).and_then(|text| {
        let mut part = ListBuilder::new();
        part.add_text(source, text.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok((part, text))
    });
    match fresh {
        Ok((part, text)) => {
            if let Some(dir) = &options.cache_dir
                && let Err(e) = save(dir, source, &text)
            {
                eprintln!("mxgate: warning: could not keep a copy of {source}: {e}");
            }
            Ok(part)
        }
        Err(reason) => {
            let cached = options
                .use_cache_on_failure
                .then_some(options.cache_dir.as_deref())
                .flatten()
                .and_then(|dir| load(dir, source));
            let Some((text, saved)) = cached else {
                return Err(SourceFailed {
                    source_name: source.to_owned(),
                    reason,
                }
                .into());
            };
            eprintln!(
                "mxgate: warning: {source} failed ({reason}); using its last good copy, from {}",
                humantime::format_rfc3339_seconds(saved)
            );
            let mut part = ListBuilder::new();
            part.add_text(&format!("{source} (cached)"), text.as_bytes())?;
            Ok(part)
        }
    }
}

/// The range-list text of a remote source.
fn fetch(source: &str, options: &SourceOptions) -> Result<String, String> {
    if let Some(domain) = source.strip_prefix("spf:") {
        spf::fetch(domain, &options.spf)
    } else if let Some(target) = source.strip_prefix("m365:") {
        https::fetch_m365(target, &options.https)
    } else {
        let body = https::fetch(source, &options.https)?;
        String::from_utf8(body).map_err(|_| "the body is not UTF-8 text".to_owned())
    }
}

/// The cache file of `source`: readable, and unique by a hash.
fn cache_path(dir: &Path, source: &str) -> PathBuf {
    let readable: String = source
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    // FNV-1a: stable across runs and releases, unlike std's hasher.
    let hash = source.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    dir.join(format!("{readable}-{hash:016x}.txt"))
}

/// Writes the copy whole: a temporary file, then a rename.
fn save(dir: &Path, source: &str, text: &str) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let path = cache_path(dir, source);
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, &path)
}

fn load(dir: &Path, source: &str) -> Option<(String, SystemTime)> {
    let path = cache_path(dir, source);
    let text = std::fs::read_to_string(&path).ok()?;
    let saved = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    Some((text, saved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_are_readable_and_distinct() {
        let dir = Path::new("/var/lib/mxgate/cache");
        let a = cache_path(dir, "spf:_spf.google.com");
        let b = cache_path(dir, "spf:_spf_google.com");
        assert!(
            a.display()
                .to_string()
                .starts_with("/var/lib/mxgate/cache/spf__spf.google.com-")
        );
        assert_ne!(a, b);
    }

    #[test]
    fn a_cached_copy_round_trips() {
        let dir = std::env::temp_dir().join(format!("mxgate-cache-test-{}", std::process::id()));
        save(&dir, "https://x.test/list", "192.0.2.0/24\n").unwrap();
        let (text, _) = load(&dir, "https://x.test/list").unwrap();
        assert_eq!(text, "192.0.2.0/24\n");
        assert!(load(&dir, "https://x.test/other").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = read_list(
            &["/nonexistent/ranges.txt".into()],
            &[],
            &SourceOptions::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("reading /nonexistent/ranges.txt:"),
            "{e}"
        );
    }

    #[test]
    fn files_and_allow_entries_merge() {
        let path = std::env::temp_dir().join(format!("mxgate-src-test-{}.txt", std::process::id()));
        std::fs::write(&path, "192.0.2.0/25\n").unwrap();
        let list = read_list(
            &[path.display().to_string()],
            &["192.0.2.128/25".into()],
            &SourceOptions::default(),
        )
        .unwrap();
        assert_eq!(list.allowlist.v4, ["192.0.2.0/24".parse().unwrap()]);
        std::fs::remove_file(&path).unwrap();
    }
}
