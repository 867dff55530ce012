//! The machine's apt configuration, read and never changed: the Debian
//! archive and security archive its sources name, and its proxy. The
//! package test's debootstrap and the kernel matrix take Debian from where
//! this machine takes it (an admin behind a mirror or an apt proxy gets
//! theirs); no host is written in xtask.
//!
//! Sources come in two formats: one-line (`deb [opts] URI SUITE COMP...`,
//! /etc/apt/sources.list and sources.list.d/*.list) and deb822 stanzas
//! (sources.list.d/*.sources). The proxy is `Acquire::http::Proxy` (and
//! `::https::`), read through `apt-config dump`, apt's own parser of
//! apt.conf and apt.conf.d.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::shell::{self, command};

/// The one-line sources file.
const SOURCES_LIST: &str = "/etc/apt/sources.list";
/// Where the `*.list` and `*.sources` files are.
const SOURCES_PARTS: &str = "/etc/apt/sources.list.d";

/// One `deb` entry (binary packages) of the sources: one URI and its suites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The archive's URI, without a trailing slash.
    pub uri: String,
    /// The suites it names (`bookworm`, `bookworm-security`).
    pub suites: Vec<String>,
    /// Its components (`main`).
    pub components: Vec<String>,
    /// A keyring file named by `signed-by` / `Signed-By:` (an inline key
    /// block is not kept).
    pub signed_by: Option<String>,
}

/// Where this machine takes Debian from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrors {
    /// The archive of the machine's release (`…/debian`), for every suite
    /// but the security ones.
    pub archive: Entry,
    /// The security archive (`…/debian-security`), if the sources name one.
    pub security: Option<Entry>,
    /// The machine's release, the suite the archive was found by.
    pub codename: String,
}

impl Mirrors {
    /// Finds the machine's Debian archive among `entries`: the first `deb`
    /// entry with `codename` and `main`; the security archive is the first
    /// with `{codename}-security`.
    pub fn find(entries: &[Entry], codename: &str) -> anyhow::Result<Self> {
        let with = |suite: &str| {
            entries
                .iter()
                .find(|e| {
                    e.suites.iter().any(|s| s == suite) && e.components.iter().any(|c| c == "main")
                })
                .cloned()
        };
        let Some(archive) = with(codename) else {
            bail!(
                "the machine's apt sources ({SOURCES_LIST}, {SOURCES_PARTS}/*.list, *.sources) \
                 name no `deb` entry for its release {codename} with component main; xtask \
                 takes the Debian mirror from there (debootstrap, the kernel matrix)"
            );
        };
        Ok(Self {
            archive,
            security: with(&format!("{codename}-security")),
            codename: codename.to_owned(),
        })
    }

    /// The entry to take `suite` from: the security archive for
    /// `*-security` suites, the archive for the others (another release's
    /// suites too: the same mirror carries every release).
    pub fn for_suite(&self, suite: &str) -> anyhow::Result<&Entry> {
        if suite.ends_with("-security") {
            self.security.as_ref().with_context(|| {
                format!(
                    "suite {suite} is on Debian's security archive, but the machine's apt \
                     sources name none (no `deb` entry for {}-security in {SOURCES_LIST} or \
                     {SOURCES_PARTS}): add the security archive your machine should use",
                    self.codename
                )
            })
        } else {
            Ok(&self.archive)
        }
    }
}

/// This machine's Debian mirrors, from its apt sources and os-release.
pub fn machine() -> anyhow::Result<Mirrors> {
    let os = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    let field = |name: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
    };
    if field("ID").as_deref() != Some("debian") {
        bail!(
            "xtask takes the Debian mirror from a Debian machine's apt sources; /etc/os-release \
             says ID={}",
            field("ID").unwrap_or_default()
        );
    }
    let codename = field("VERSION_CODENAME")
        .filter(|c| !c.is_empty())
        .context("/etc/os-release has no VERSION_CODENAME")?;
    let mut entries = Vec::new();
    for (path, text) in source_files()? {
        let parsed = if path.extension().is_some_and(|e| e == "sources") {
            parse_deb822(&text)
        } else {
            parse_one_line(&text)
        };
        entries.extend(parsed);
    }
    Mirrors::find(&entries, &codename)
}

/// sources.list, then sources.list.d's `*.list` and `*.sources` in name
/// order (apt's order), with their text.
fn source_files() -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut paths = vec![PathBuf::from(SOURCES_LIST)];
    if let Ok(dir) = std::fs::read_dir(SOURCES_PARTS) {
        let mut parts: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        parts.sort();
        paths.extend(parts);
    }
    let mut files = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((path, text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(files)
}

/// The `deb` entries of a one-line sources file.
pub fn parse_one_line(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some(rest) = line.strip_prefix("deb") else {
            continue;
        };
        // `deb-src` and words that merely start with "deb".
        if !rest.starts_with([' ', '\t']) {
            continue;
        }
        let rest = rest.trim_start();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(inner) => match inner.split_once(']') {
                Some((options, rest)) => (options, rest),
                None => continue,
            },
            None => ("", rest),
        };
        let signed_by = options
            .split_whitespace()
            .find_map(|o| o.strip_prefix("signed-by="))
            .map(str::to_owned);
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        entries.push(Entry {
            uri: uri.trim_end_matches('/').to_owned(),
            suites: vec![suite.to_owned()],
            components: words.map(str::to_owned).collect(),
            signed_by,
        });
    }
    entries
}

/// The `deb` entries of a deb822 `.sources` file (one per URI).
pub fn parse_deb822(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut stanza: Vec<(String, String)> = Vec::new();
    let mut flush = |stanza: &mut Vec<(String, String)>| {
        let get = |name: &str| {
            stanza
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let words = |name: &str| -> Vec<String> {
            get(name)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        let enabled = get("Enabled").is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        if enabled && words("Types").iter().any(|t| t == "deb") {
            let signed_by = get("Signed-By")
                .map(str::trim)
                .filter(|v| v.starts_with('/') && !v.contains('\n'))
                .map(str::to_owned);
            for uri in words("URIs") {
                entries.push(Entry {
                    uri: uri.trim_end_matches('/').to_owned(),
                    suites: words("Suites"),
                    components: words("Components"),
                    signed_by: signed_by.clone(),
                });
            }
        }
        stanza.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut stanza);
        } else if line.starts_with([' ', '\t']) {
            // A continuation line (a multi-line Signed-By key block).
            if let Some((_, value)) = stanza.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    flush(&mut stanza);
    entries
}

/// The machine's apt proxy for `scheme` (`http`, `https`), from
/// `apt-config dump`; `None` when it sets none (or `DIRECT`).
pub fn proxy(scheme: &str) -> Option<String> {
    let dump = shell::output(command("apt-config", &["dump"]))?;
    parse_proxy(&dump, scheme)
}

/// `Acquire::SCHEME::Proxy "URL";` from `apt-config dump`'s output.
pub fn parse_proxy(dump: &str, scheme: &str) -> Option<String> {
    let key = format!("Acquire::{scheme}::Proxy");
    dump.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        if !name.eq_ignore_ascii_case(&key) {
            return None;
        }
        let value = value.trim().trim_end_matches(';').trim_matches('"');
        let none = value.is_empty()
            || value.eq_ignore_ascii_case("DIRECT")
            || value.eq_ignore_ascii_case("false");
        (!none).then(|| value.to_owned())
    })
}

/// `cmd` with the machine's apt proxy in its environment as `http_proxy`
/// and `https_proxy` (for debootstrap, which reads those), unless the
/// environment already sets them.
pub fn with_proxy(mut cmd: std::process::Command) -> std::process::Command {
    for scheme in ["http", "https"] {
        let var = format!("{scheme}_proxy");
        if std::env::var_os(&var).is_some() {
            continue;
        }
        if let Some(url) = proxy(scheme) {
            cmd.env(&var, url);
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test machine's /etc/apt/sources.list.d/debian.sources.
    const DEBIAN_SOURCES: &str = "\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn deb822_stanzas_give_one_entry_per_uri_and_skip_comments() {
        let entries = parse_deb822(DEBIAN_SOURCES);
        assert_eq!(
            entries,
            [
                Entry {
                    uri: "http://deb.debian.org/debian".into(),
                    suites: vec!["bookworm".into(), "bookworm-updates".into()],
                    components: vec!["main".into()],
                    signed_by: Some("/usr/share/keyrings/debian-archive-keyring.gpg".into()),
                },
                Entry {
                    uri: "http://deb.debian.org/debian-security".into(),
                    suites: vec!["bookworm-security".into()],
                    components: vec!["main".into()],
                    signed_by: Some("/usr/share/keyrings/debian-archive-keyring.gpg".into()),
                },
            ]
        );
    }

    #[test]
    fn deb822_disabled_source_only_and_inline_keys_are_handled() {
        let text = "\
Types: deb-src
URIs: http://mirror.example/debian
Suites: trixie
Components: main

Types: deb
URIs: http://off.example/debian
Suites: trixie
Components: main
Enabled: no

types: deb deb-src
uris: https://mirror.example/debian/ http://second.example/debian
suites: trixie
components: main contrib
signed-by:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBF...
 -----END PGP PUBLIC KEY BLOCK-----
";
        let entries = parse_deb822(text);
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(entries[0].uri, "https://mirror.example/debian");
        assert_eq!(entries[1].uri, "http://second.example/debian");
        assert_eq!(entries[0].suites, ["trixie"]);
        assert_eq!(entries[0].components, ["main", "contrib"]);
        assert_eq!(entries[0].signed_by, None, "an inline key is no file");
    }

    #[test]
    fn one_line_entries_with_options_and_comments() {
        let text = "\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/etc/apt/keyrings/corp.gpg] http://apt.corp.example/debian/ bookworm main non-free-firmware # the corporate mirror
deb\thttp://security.corp.example/debian-security bookworm-security main
debian http://not-an-entry.example bookworm main
deb [broken http://unclosed.example bookworm main
deb http://short.example
";
        assert_eq!(
            parse_one_line(text),
            [
                Entry {
                    uri: "http://apt.corp.example/debian".into(),
                    suites: vec!["bookworm".into()],
                    components: vec!["main".into(), "non-free-firmware".into()],
                    signed_by: Some("/etc/apt/keyrings/corp.gpg".into()),
                },
                Entry {
                    uri: "http://security.corp.example/debian-security".into(),
                    suites: vec!["bookworm-security".into()],
                    components: vec!["main".into()],
                    signed_by: None,
                },
            ]
        );
    }

    #[test]
    fn other_releases_suites_come_from_the_machines_mirror() {
        let mut entries = parse_one_line(
            "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n\
             deb http://apt.corp.example/debian bookworm-backports main\n",
        );
        entries.extend(parse_deb822(
            &DEBIAN_SOURCES.replace("deb.debian.org", "apt.corp.example"),
        ));
        let mirrors = Mirrors::find(&entries, "bookworm").unwrap();
        for (suite, uri) in [
            ("bookworm", "http://apt.corp.example/debian"),
            ("bullseye", "http://apt.corp.example/debian"),
            ("trixie", "http://apt.corp.example/debian"),
            (
                "bullseye-security",
                "http://apt.corp.example/debian-security",
            ),
            ("trixie-security", "http://apt.corp.example/debian-security"),
        ] {
            assert_eq!(mirrors.for_suite(suite).unwrap().uri, uri, "{suite}");
        }
    }

    #[test]
    fn a_machine_without_its_release_or_security_archive_is_named() {
        let entries =
            parse_one_line("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n");
        let e = Mirrors::find(&entries, "bookworm").unwrap_err().to_string();
        assert!(e.contains("no `deb` entry for its release bookworm"), "{e}");
        let mirrors = Mirrors::find(
            &parse_one_line("deb http://apt.corp.example/debian bookworm main\n"),
            "bookworm",
        )
        .unwrap();
        let e = mirrors
            .for_suite("bullseye-security")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("suite bullseye-security") && e.contains("bookworm-security"),
            "{e}"
        );
    }

    #[test]
    fn the_proxy_comes_from_apt_config_dump() {
        let dump = "Acquire \"\";\n\
            Acquire::Check-Valid-Until \"false\";\n\
            Acquire::http::Proxy \"http://10.0.0.2:3142/\";\n\
            Acquire::http::Proxy::deb.debian.org \"DIRECT\";\n\
            Acquire::https::Proxy \"DIRECT\";\n";
        assert_eq!(
            parse_proxy(dump, "http").as_deref(),
            Some("http://10.0.0.2:3142/")
        );
        assert_eq!(parse_proxy(dump, "https"), None);
        assert_eq!(parse_proxy("Acquire::Retries \"3\";\n", "http"), None);
        assert_eq!(
            parse_proxy("acquire::HTTP::proxy \"http://p.example:8080\";\n", "http").as_deref(),
            Some("http://p.example:8080")
        );
    }

    #[test]
    fn no_debian_host_is_written_in_xtask() {
        let src = crate::shell::root().join("xtask/src");
        let mut files = vec![src.clone()];
        let mut offenders = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Hosts may appear as test data.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            if code.contains("debian.org") {
                offenders.push(path.display().to_string());
            }
        }
        assert!(
            offenders.is_empty(),
            "a Debian host is written in {offenders:?}: take it from the machine's apt sources"
        );
    }
}
