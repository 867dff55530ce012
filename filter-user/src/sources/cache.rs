//! The last good copy of each remote source: written once the list it
//! made is live, read back (and distrusted unless root's alone) when the
//! source fails and `--use-cache-on-failure` allows it.

use std::{
    io,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context as _, bail};

use crate::{
    files::{self, Links},
    ranges::Fetched,
};

/// The cache file of `source` in `dir`: readable, and unique by a hash.
/// Credentials in a URL (`user:password@`) are no part of it: neither the
/// name nor the hash may give them away in a directory listing.
pub fn cache_path(dir: &Path, source: &str) -> PathBuf {
    let source = super::strip_userinfo(source);
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

/// Keeps each text of `fetched` as its source's last good copy. Call it
/// only once the list the texts made is live: a copy is what a later
/// `--use-cache-on-failure` installs without a guard to ask. A copy that
/// cannot be written is a warning: the list is applied already.
pub fn keep_last_good(fetched: &Fetched) {
    let Some(dir) = &fetched.cache_dir else {
        return;
    };
    for (source, text) in &fetched.texts {
        if let Err(e) = save(dir, source, text) {
            eprintln!("mxgate: warning: could not keep a copy of {source}: {e:#}");
        }
    }
}

/// Writes the copy whole, readable by root only, in a directory of root's.
fn save(dir: &Path, source: &str, text: &str) -> anyhow::Result<()> {
    files::private_dir(dir)?;
    files::write_atomically(
        &cache_path(dir, source),
        text.as_bytes(),
        0o600,
        files::Durability::Synced,
    )
}

/// The copy of `source`, if there is one; an error if it is there but not
/// to be trusted (a symlink, another user's file, writable by others, in a
/// directory that is not private: whoever could write it could widen the
/// allowlist), or if it is not a regular file of at most `max_bytes`.
pub(super) fn load(
    dir: &Path,
    source: &str,
    max_bytes: u64,
) -> anyhow::Result<Option<(String, SystemTime)>> {
    let path = cache_path(dir, source);
    let dir_meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    if let Some(why) = files::distrust_private_dir(dir, &dir_meta) {
        bail!("{why}");
    }
    let read = files::read_regular(&path, max_bytes, "--max-download", Links::Refuse);
    let (bytes, meta) = match read {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if let Some(why) = files::distrust(&path, &meta) {
        bail!("{why}");
    }
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    let saved = meta
        .modified()
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Some((text, saved)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Source;

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
    fn cache_names_hold_no_credentials() {
        let dir = Path::new("/var/lib/mxgate/cache");
        let with = cache_path(dir, "https://user:s3cret@x.test/list");
        let hidden = cache_path(dir, "https://***@x.test/list");
        let without = cache_path(dir, "https://x.test/list");
        assert_eq!(with, without);
        assert_eq!(hidden, without);
        assert!(!with.display().to_string().contains("s3cret"));
        // An @ after the authority is not userinfo.
        assert_ne!(
            cache_path(dir, "https://x.test/a@b"),
            cache_path(dir, "https://x.test/b")
        );
        let source: Source = "https://user:s3cret@x.test/l@st".parse().unwrap();
        assert_eq!(source.to_string(), "https://***@x.test/l@st");
        let source: Source = "m365:https://u:p@m.test/e.json".parse().unwrap();
        assert_eq!(source.to_string(), "m365:https://***@m.test/e.json");
    }

    #[test]
    fn a_cached_copy_round_trips() {
        let dir = std::env::temp_dir().join(format!("mxgate-cache-test-{}", std::process::id()));
        let fetched = Fetched {
            cache_dir: Some(dir.clone()),
            texts: vec![("https://x.test/list".into(), "192.0.2.0/24\n".into())],
        };
        keep_last_good(&fetched);
        let (text, _) = load(&dir, "https://x.test/list", 100).unwrap().unwrap();
        assert_eq!(text, "192.0.2.0/24\n");
        assert!(load(&dir, "https://x.test/other", 100).unwrap().is_none());
        let e = load(&dir, "https://x.test/list", 12).unwrap_err();
        assert!(format!("{e:#}").contains("larger than 12 bytes"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
