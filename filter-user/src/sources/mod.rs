//! Range sources: where each `--ranges SRC` comes from ([`Source`], parsed
//! at the command line's edge), read or fetched into range-list text for
//! [`crate::ranges`] to parse: [`bounded`] reads of local input, `remote.rs`
//! fetches with their fallback, [`cache`] the last good copies.
//!
//! - a file path, or `-` for standard input;
//! - `spf:DOMAIN`: the addresses the domain's SPF record authorises;
//! - `https://…`: a plain-text list;
//! - `m365:INSTANCE` (or `m365:https://…`): Microsoft 365's Exchange Online
//!   addresses for TCP 25 from the endpoints web service.
//!
//! A remote source that fails (DNS, HTTP, size, its list does not parse, or
//! it delivers nothing usable: no address, or every address of a family)
//! fails the whole read, so nothing is applied. The text of each remote
//! source is handed on with the list ([`ParsedList::fetched`]); once the
//! list is live, [`keep_last_good`] keeps it as the source's last good
//! copy, which `--use-cache-on-failure` falls back to.

pub mod bounded;
pub mod cache;
mod remote;

use std::{borrow::Cow, fmt, io, path::PathBuf, str::FromStr, time::Instant};

pub use self::cache::{cache_path, keep_last_good};
use self::remote::{fetch, remote};
use crate::{
    delivery::{Delivered, FetchError},
    files::{self, Links},
    https::{HttpsOptions, M365_INSTANCES},
    ranges::{Fetched, ListBuilder, ListError, ParsedList},
    spf::SpfOptions,
};

/// Where the last good copy of each remote source is kept unless
/// `--cache-dir` says otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/mxgate/cache";

/// Where a range list comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `-`: standard input.
    Stdin,
    /// A file.
    File(PathBuf),
    /// `spf:DOMAIN`: the domain's SPF policy.
    Spf(String),
    /// `https://…`: a plain-text list.
    Https(String),
    /// `m365:INSTANCE` or `m365:https://…`: Microsoft 365's endpoints.
    M365(String),
}

impl Source {
    /// True for the sources fetched over the network (and cached).
    pub fn is_remote(&self) -> bool {
        matches!(self, Source::Spf(_) | Source::Https(_) | Source::M365(_))
    }
}

/// Parses a `--ranges` value. Anything with a `scheme://` is a URL and must
/// be `https://`; `spf:` and `m365:` need their argument; the rest is a
/// file path (write `./spf:x` for a file called `spf:x`).
impl FromStr for Source {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err(
                "an empty source; give a file path, -, spf:DOMAIN, https://URL or m365:INSTANCE"
                    .into(),
            );
        }
        if text == "-" {
            return Ok(Source::Stdin);
        }
        if let Some(domain) = text.strip_prefix("spf:") {
            return check_domain(domain).map(|()| Source::Spf(domain.to_owned()));
        }
        if let Some(target) = text.strip_prefix("m365:") {
            if target.contains("://") {
                check_https(target)?;
                // The service's own names are case-blind; a mirror is an
                // https URL spelled as one, not a name that happens to work.
                if !target.starts_with("https://") {
                    return Err(format!(
                        "m365:{target}: write the mirror's scheme in lower case \
                         (m365:https://…)"
                    ));
                }
            } else if !M365_INSTANCES.contains(&target.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "m365:{target}: not a Microsoft 365 instance ({}) or an https:// mirror",
                    M365_INSTANCES.join(", ")
                ));
            }
            return Ok(Source::M365(target.to_owned()));
        }
        if text.contains("://") {
            check_https(text)?;
            return Ok(Source::Https(text.to_owned()));
        }
        Ok(Source::File(PathBuf::from(text)))
    }
}

/// The source as given, but with a URL's credentials (`user:password@`)
/// hidden: the name goes into messages, logs and cache file names.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Stdin => f.write_str("-"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Spf(domain) => write!(f, "spf:{domain}"),
            Source::Https(url) => f.write_str(&hide_userinfo(url)),
            Source::M365(target) => write!(f, "m365:{}", hide_userinfo(target)),
        }
    }
}

/// `url` with the userinfo of its authority (`user:password@`) replaced by
/// `***@`; anything else as it is.
fn hide_userinfo(url: &str) -> Cow<'_, str> {
    match userinfo_span(url) {
        Some((start, end)) => Cow::Owned(format!("{}***{}", &url[..start], &url[end..])),
        None => Cow::Borrowed(url),
    }
}

/// `text` with a URL's userinfo and its `@` removed.
pub(crate) fn strip_userinfo(text: &str) -> Cow<'_, str> {
    match userinfo_span(text) {
        Some((start, end)) => Cow::Owned(format!("{}{}", &text[..start], &text[end + 1..])),
        None => Cow::Borrowed(text),
    }
}

/// Where the userinfo of a URL's authority is: from after `://` to before
/// the last `@` of the authority (which ends at the first `/`, `?` or `#`).
fn userinfo_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let authority_len = url[start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - start);
    let at = url[start..start + authority_len].rfind('@')?;
    Some((start, start + at))
}

fn check_https(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{url:?} is not a URL"));
    };
    if !scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "{url}: only https:// URLs are fetched (TLS verified), not {scheme}://"
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{url}: the URL names no host"));
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(())
    } else if domain.is_empty() {
        Err("spf: needs a domain (spf:DOMAIN)".into())
    } else {
        Err(format!("spf:{domain}: {domain:?} is not a domain name"))
    }
}

/// How to fetch remote sources and where to keep their last good copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceOptions {
    /// DNS, for `spf:` sources.
    pub spf: SpfOptions,
    /// HTTPS, for `https://` and `m365:` sources.
    pub https: HttpsOptions,
    /// Where last good copies are kept; `None` keeps none.
    pub cache_dir: Option<PathBuf>,
    /// On a failed remote source, use its last good copy.
    pub use_cache_on_failure: bool,
    /// Say on standard error what each remote source delivered and from
    /// where (the address a download ended at, after redirects).
    pub verbose: bool,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            spf: SpfOptions::default(),
            https: HttpsOptions::default(),
            cache_dir: Some(PathBuf::from(DEFAULT_CACHE_DIR)),
            use_cache_on_failure: false,
            verbose: false,
        }
    }
}

/// A whole list to read: its sources, the `--allow` entries, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListSpec {
    /// Range sources, merged.
    pub sources: Vec<Source>,
    /// Extra entries, merged.
    pub allow: Vec<String>,
    /// How remote sources are fetched.
    pub options: SourceOptions,
}

impl ListSpec {
    /// Reads every source and the `--allow` entries into one merged list.
    pub fn read(&self) -> anyhow::Result<ParsedList> {
        read_list(&self.sources, &self.allow, &self.options)
    }

    /// Reads (or fetches) every source, parsing nothing: see
    /// [`RawSources`].
    pub fn read_raw(&self) -> anyhow::Result<RawSources> {
        read_sources(&self.sources, &self.options)
    }

    /// The sources as given, for messages.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.sources.iter().map(ToString::to_string).collect();
        names.join(", ")
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

/// Reads every source and the `--allow` entries into one merged list. The
/// remote sources' texts come with it, to be kept once it is accepted.
pub fn read_list(
    sources: &[Source],
    allow: &[String],
    options: &SourceOptions,
) -> anyhow::Result<ParsedList> {
    read_sources(sources, options)?.parse(allow, options)
}

/// What one source delivered, not parsed yet.
enum Raw {
    /// A file's or standard input's bytes, under the source's name.
    Local(String, Vec<u8>),
    /// A remote source's fetch: what it delivered, or why it failed.
    Remote(Source, Result<Delivered, FetchError>),
}

/// The bytes every source delivered, in order, read (local) or fetched
/// (remote) but not parsed: what a refresh compares with the record of
/// the last list applied before it parses anything (DESIGN §6).
pub struct RawSources {
    parts: Vec<Raw>,
}

/// Reads every local source and fetches every remote one; parses nothing.
pub fn read_sources(sources: &[Source], options: &SourceOptions) -> anyhow::Result<RawSources> {
    let mut parts = Vec::with_capacity(sources.len());
    let mut stdin_used = false;
    for source in sources {
        match source {
            Source::Stdin => {
                if std::mem::replace(&mut stdin_used, true) {
                    return Err(ListError::StdinTwice.into());
                }
                let deadline = Instant::now() + options.https.timeout;
                let bytes = match bounded::read_stdin(options.https.max_bytes, deadline) {
                    Ok(bytes) => bytes,
                    // Input that does not end in time did not deliver, as
                    // a download that times out: a failed source.
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        return Err(SourceFailed {
                            source_name: "standard input (-)".into(),
                            reason: e.to_string(),
                        }
                        .into());
                    }
                    Err(error) => {
                        return Err(ListError::Read {
                            source_name: "-".into(),
                            error,
                        }
                        .into());
                    }
                };
                parts.push(Raw::Local("-".into(), bytes));
            }
            Source::File(path) => {
                let name = path.display().to_string();
                let (bytes, _) = files::read_regular(
                    path,
                    options.https.max_bytes,
                    "--max-download",
                    Links::Follow,
                )
                .map_err(|error| ListError::Read {
                    source_name: name.clone(),
                    error: not_a_list_file(error),
                })?;
                parts.push(Raw::Local(name, bytes));
            }
            remote_source => {
                parts.push(Raw::Remote(
                    remote_source.clone(),
                    fetch(remote_source, options),
                ));
            }
        }
    }
    Ok(RawSources { parts })
}

impl RawSources {
    /// SHA-256 of every source's name and bytes, in order, and of
    /// `shaping` (whatever else decides the list the bytes make); `None`
    /// when a remote source failed: what stands in for it (a cached copy)
    /// is only known once parsed.
    pub fn digest(&self, shaping: &[u8]) -> Option<[u8; 32]> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"mxgate sources\0");
        ctx.update(&(shaping.len() as u64).to_le_bytes());
        ctx.update(shaping);
        for part in &self.parts {
            let (name, bytes) = match part {
                Raw::Local(name, bytes) => (name.clone(), bytes.as_slice()),
                Raw::Remote(source, Ok(delivered)) => {
                    (source.to_string(), delivered.text.as_bytes())
                }
                Raw::Remote(_, Err(_)) => return None,
            };
            for piece in [name.as_bytes(), bytes] {
                ctx.update(&(piece.len() as u64).to_le_bytes());
                ctx.update(piece);
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Some(out)
    }

    /// The remote sources' texts, as [`ParsedList::fetched`] would hold
    /// them, without parsing anything.
    pub fn fetched(&self, options: &SourceOptions) -> Fetched {
        Fetched {
            cache_dir: options.cache_dir.clone(),
            texts: self
                .parts
                .iter()
                .filter_map(|part| match part {
                    Raw::Remote(source, Ok(delivered)) => {
                        Some((source.to_string(), delivered.text.clone()))
                    }
                    _ => None,
                })
                .collect(),
        }
    }

    /// Parses and merges what the sources delivered, with the `--allow`
    /// entries, into one list.
    pub fn parse(self, allow: &[String], options: &SourceOptions) -> anyhow::Result<ParsedList> {
        let mut builder = ListBuilder::new();
        let mut fetched = Fetched {
            cache_dir: options.cache_dir.clone(),
            texts: Vec::new(),
        };
        let mut remote_names = Vec::new();
        for part in self.parts {
            match part {
                Raw::Local(name, bytes) => builder.add_text(&name, &bytes)?,
                Raw::Remote(source, delivered) => {
                    let (part, text) = remote(&source, delivered, options)?;
                    builder.extend(part);
                    let name = source.to_string();
                    if let Some(text) = text {
                        fetched.texts.push((name.clone(), text));
                    }
                    remote_names.push(name);
                }
            }
        }
        builder.add_allow_options(allow)?;
        let mut list = match builder.finish() {
            Ok(list) => list,
            // Each remote list is usable alone, yet together with the rest
            // they cover everyone: what the sources deliver is not usable,
            // which is no input of the administrator's to fix.
            Err(e @ ListError::CoversEverything { .. }) if !remote_names.is_empty() => {
                return Err(SourceFailed {
                    source_name: remote_names.join(", "),
                    reason: e.to_string(),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        list.fetched = fetched;
        Ok(list)
    }
}

/// A read error of a list file, with the way out when it is not one.
fn not_a_list_file(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::InvalidInput {
        io::Error::new(
            error.kind(),
            format!("{error} (give a list file, or - for standard input)"),
        )
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_by_kind() {
        let parse = |t: &str| t.parse::<Source>();
        assert_eq!(parse("-"), Ok(Source::Stdin));
        assert_eq!(parse("/etc/r.txt"), Ok(Source::File("/etc/r.txt".into())));
        assert_eq!(parse("./spf:x"), Ok(Source::File("./spf:x".into())));
        assert_eq!(
            parse("spf:_spf.google.com"),
            Ok(Source::Spf("_spf.google.com".into()))
        );
        assert_eq!(
            parse("https://x.test/l.txt"),
            Ok(Source::Https("https://x.test/l.txt".into()))
        );
        assert_eq!(
            parse("m365:Worldwide"),
            Ok(Source::M365("Worldwide".into()))
        );
        assert_eq!(
            parse("m365:https://mirror.test/e.json"),
            Ok(Source::M365("https://mirror.test/e.json".into()))
        );
        for text in [
            "spf:_spf.google.com",
            "https://x.test/l",
            "m365:china",
            "-",
            "a.txt",
        ] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn bad_sources_say_why() {
        let error = |t: &str| t.parse::<Source>().unwrap_err();
        assert!(error("").contains("empty source"));
        assert!(error("spf:").contains("spf: needs a domain"));
        assert!(error("spf:bad..name").contains("not a domain name"));
        assert!(error("http://x.test/l").contains("only https://"));
        assert!(error("htps://x.test/l").contains("only https://"));
        assert!(error("https:///l").contains("names no host"));
        assert!(error("m365:bogus").contains("not a Microsoft 365 instance"));
        assert!(error("m365:http://x.test").contains("only https://"));
        assert!(error("m365:HTTPS://x.test/e.json").contains("(m365:https://…)"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = read_list(
            &[Source::File("/nonexistent/ranges.txt".into())],
            &[],
            &SourceOptions::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("reading /nonexistent/ranges.txt:"),
            "{e}"
        );
        let e = read_list(
            &[Source::File("/dev/zero".into())],
            &[],
            &SourceOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "reading /dev/zero: not a regular file (a device) (give a list file, or - for \
             standard input)"
        );
    }

    #[test]
    fn files_and_allow_entries_merge() {
        let path = std::env::temp_dir().join(format!("mxgate-src-test-{}.txt", std::process::id()));
        std::fs::write(&path, "192.0.2.0/25\n").unwrap();
        let list = read_list(
            &[Source::File(path.clone())],
            &["192.0.2.128/25".into()],
            &SourceOptions::default(),
        )
        .unwrap();
        assert_eq!(list.allowlist.v4, ["192.0.2.0/24".parse().unwrap()]);
        std::fs::remove_file(&path).unwrap();
    }
}
