//! Range sources: where each `--ranges SRC` comes from ([`Source`], parsed
//! at the command line's edge), fetched into range-list text for
//! [`crate::ranges`] to parse.
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

use std::{
    borrow::Cow,
    fmt,
    io::{self, Read},
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
    str::FromStr,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};

use crate::{
    error::InvalidInput,
    files::{self, Links},
    https::{self, HttpsOptions, M365_INSTANCES},
    ranges::{Fetched, ListBuilder, ListError, ParsedList},
    spf::{self, SpfOptions},
};

/// How long fetching one source may take unless `--fetch-timeout` says.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
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
fn strip_userinfo(text: &str) -> Cow<'_, str> {
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

/// What a remote source delivered: range-list text, warnings about it, and
/// where it came from (for `--verbose`).
#[derive(Debug)]
pub struct Delivered {
    /// Range-list text.
    pub text: String,
    /// Warnings: the line of `text` concerned, the text, the message.
    pub warnings: Warnings,
    /// Where it came from, as the rest of a sentence after the source's
    /// name ("redirected to …, 1234 bytes").
    pub provenance: String,
}

/// Why fetching a remote source failed.
#[derive(Debug)]
pub enum FetchError {
    /// The fetch cannot work as configured (an unreadable `--https-ca`):
    /// invalid input, exit 2, and no fallback to a cached copy.
    Invalid(String),
    /// The source did not deliver (DNS, HTTP, TLS, size, a cut-off body).
    Failed(String),
}

impl From<String> for FetchError {
    fn from(reason: String) -> Self {
        FetchError::Failed(reason)
    }
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
                let bytes = match read_stdin(options) {
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

/// Standard input, whole, within the source size and time limits.
fn read_stdin(options: &SourceOptions) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + options.https.timeout;
    read_bounded(io::stdin().lock(), options.https.max_bytes, deadline)
}

/// Everything `reader` gives until end of file: at most `max_bytes`,
/// waiting for more (a pipe, a FIFO, a terminal) only until `deadline`.
fn read_bounded(
    mut reader: impl Read + AsRawFd,
    max_bytes: u64,
    deadline: Instant,
) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        wait_readable(reader.as_raw_fd(), deadline)?;
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if bytes.len() as u64 + n as u64 > max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {max_bytes} bytes (--max-download)"),
            ));
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// Waits until `fd` is readable (or at end of file), failing at `deadline`.
fn wait_readable(fd: RawFd, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd, for the length we pass.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        match ready {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no end of input within --fetch-timeout",
                ));
            }
            n if n > 0 => return Ok(()),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// Parses what one remote source delivered (`delivered`, its fetch), with
/// its text to keep once the list is accepted; on failure, its cached copy (and no text to keep) if
/// allowed and present. A remote list must be exact: an entry with host
/// bits set (a cut-off `192.0.2.0/2`) fails it instead of being widened.
/// And it must be usable on its own: a source that delivers no address, or
/// every address of a family, has failed.
fn remote(
    source: &Source,
    delivered: Result<Delivered, FetchError>,
    options: &SourceOptions,
) -> anyhow::Result<(ListBuilder, Option<String>)> {
    let name = source.to_string();
    let fresh = delivered.and_then(|delivered| {
        let mut part = ListBuilder::strict();
        part.add_text(&name, delivered.text.as_bytes())
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        if let Some(why) = part.unusable() {
            return Err(FetchError::Failed(why));
        }
        for (line, term, message) in &delivered.warnings {
            part.add_warning(&name, *line, term, message);
        }
        if options.verbose {
            eprintln!("mxgate: {name}: {}", delivered.provenance);
        }
        Ok((part, delivered.text))
    });
    match fresh {
        Ok((part, text)) => Ok((part, Some(text))),
        Err(FetchError::Invalid(reason)) => {
            Err(InvalidInput(format!("{name}: {reason} (nothing changed)")).into())
        }
        Err(FetchError::Failed(reason)) => {
            let dir = options
                .use_cache_on_failure
                .then_some(options.cache_dir.as_deref())
                .flatten();
            // A copy that cannot be trusted, that does not parse as mxgate
            // wrote it (host bits, a cut line) or that is no usable list is
            // not used: the source stays failed and nothing changes.
            let copy = dir
                .map(|dir| -> anyhow::Result<_> {
                    let Some((text, saved)) = load(dir, &name, options.https.max_bytes)? else {
                        return Ok(None);
                    };
                    let mut part = ListBuilder::strict();
                    let cached = format!("{name} (cached)");
                    part.add_text(&cached, text.as_bytes())?;
                    if let Some(why) = part.unusable() {
                        bail!("{cached}: {why}");
                    }
                    Ok(Some((part, saved)))
                })
                .transpose();
            let copy = match copy {
                Ok(copy) => copy.flatten(),
                Err(e) => {
                    eprintln!("mxgate: warning: not using the copy of {source}: {e:#}");
                    None
                }
            };
            let Some((part, saved)) = copy else {
                return Err(SourceFailed {
                    source_name: name,
                    reason,
                }
                .into());
            };
            eprintln!(
                "mxgate: warning: {source} failed ({reason}); using its last good copy, from {}",
                humantime::format_rfc3339_seconds(saved)
            );
            Ok((part, None))
        }
    }
}

/// Warnings about a fetched text: line, the text concerned, the message.
pub type Warnings = Vec<(usize, String, String)>;

/// The range-list text of a remote source, and warnings about it.
fn fetch(source: &Source, options: &SourceOptions) -> Result<Delivered, FetchError> {
    match source {
        Source::Spf(domain) => {
            let fetched = spf::fetch(domain, &options.spf)?;
            Ok(Delivered {
                text: fetched.text,
                warnings: fetched.warnings,
                provenance: fetched.provenance,
            })
        }
        Source::M365(target) => https::fetch_m365(target, &options.https),
        Source::Https(url) => {
            let download = https::fetch(url, &options.https)?;
            let text = String::from_utf8(download.body)
                .map_err(|_| FetchError::Failed("the body is not UTF-8 text".to_owned()))?;
            Ok(Delivered {
                text,
                warnings: Vec::new(),
                provenance: download.provenance,
            })
        }
        Source::Stdin | Source::File(_) => Err(FetchError::Invalid(format!(
            "{source} is not a remote source"
        ))),
    }
}

/// The cache file of `source` in `dir`: readable, and unique by a hash.
/// Credentials in a URL (`user:password@`) are no part of it: neither the
/// name nor the hash may give them away in a directory listing.
pub fn cache_path(dir: &Path, source: &str) -> PathBuf {
    let source = strip_userinfo(source);
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
    files::write_atomically(&cache_path(dir, source), text.as_bytes(), 0o600)
}

/// The copy of `source`, if there is one; an error if it is there but not
/// to be trusted (a symlink, another user's file, writable by others, in a
/// directory that is not private: whoever could write it could widen the
/// allowlist), or if it is not a regular file of at most `max_bytes`.
fn load(dir: &Path, source: &str, max_bytes: u64) -> anyhow::Result<Option<(String, SystemTime)>> {
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
