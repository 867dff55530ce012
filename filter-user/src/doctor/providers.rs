//! The provider table (`providers.toml`, kept in the repository): MX host
//! patterns → the hosted service → the range source its documentation
//! publishes. Data, read at start; see the file for its format.

use serde::Deserialize;

/// The table as shipped.
const TABLE: &str = include_str!("providers.toml");

/// One hosted mail service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Its name.
    pub name: String,
    /// Patterns of its MX hosts.
    pub mx: Vec<String>,
    /// The `--ranges` source its documentation publishes, with `{id}` for
    /// the id the MX host carries; none when the MX does not tell.
    pub source: Option<String>,
    /// Where it documents this: title and address, or title alone.
    pub docs: Vec<String>,
    /// What else an administrator needs to know.
    pub note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    provider: Vec<Provider>,
}

/// A service an MX host belongs to, and the source to use for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match<'a> {
    /// The service.
    pub provider: &'a Provider,
    /// Its source for this MX (the `{id}` filled in), if it has one.
    pub source: Option<String>,
}

impl PartialEq for Provider {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.mx == other.mx
    }
}

impl Eq for Provider {}

/// The provider table.
#[derive(Clone, Debug)]
pub struct Providers {
    providers: Vec<Provider>,
}

impl Providers {
    /// The table shipped with mxgate.
    pub fn shipped() -> anyhow::Result<Self> {
        Self::parse(TABLE)
    }

    /// A table from TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: File = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("the provider table does not parse: {e}"))?;
        for p in &file.provider {
            for pattern in &p.mx {
                check_pattern(pattern)
                    .map_err(|e| anyhow::anyhow!("{}: MX pattern {pattern:?}: {e}", p.name))?;
            }
            if p.docs.is_empty() {
                anyhow::bail!("{}: no documentation cited", p.name);
            }
        }
        Ok(Self {
            providers: file.provider,
        })
    }

    /// Every row.
    pub fn all(&self) -> &[Provider] {
        &self.providers
    }

    /// The service the MX host `host` belongs to: the first row one of
    /// whose patterns matches it.
    pub fn find(&self, host: &str) -> Option<Match<'_>> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        for provider in &self.providers {
            for pattern in &provider.mx {
                if let Some(id) = matches(pattern, &host) {
                    let source = provider
                        .source
                        .as_ref()
                        .map(|s| s.replace("{id}", id.unwrap_or_default()));
                    return Some(Match { provider, source });
                }
            }
        }
        None
    }
}

fn check_pattern(pattern: &str) -> Result<(), &'static str> {
    let labels: Vec<&str> = pattern.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err("an empty label");
    }
    if labels.iter().skip(1).any(|l| l.contains('*')) || labels[0].contains('*') && labels[0] != "*"
    {
        return Err("`*` stands only as the whole first label");
    }
    if labels.len() < 2 || labels.len() == 2 && labels[0] == "*" {
        return Err("too wide: a pattern names at least a registered domain");
    }
    if pattern.matches("{id}").count() > 1 {
        return Err("at most one {id}");
    }
    if pattern != pattern.to_ascii_lowercase() {
        return Err("write it in lower case");
    }
    Ok(())
}

/// Whether `host` (lower case, no final dot) matches `pattern`; if so, the
/// `{id}` it carries, if the pattern has one.
fn matches<'h>(pattern: &str, host: &'h str) -> Option<Option<&'h str>> {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        let rest = host.strip_suffix(suffix)?.strip_suffix('.')?;
        return (!rest.is_empty()).then_some(None);
    }
    let pattern_labels: Vec<&str> = pattern.split('.').collect();
    let host_labels: Vec<&str> = host.split('.').collect();
    if pattern_labels.len() != host_labels.len() {
        return None;
    }
    let mut id = None;
    for (p, h) in pattern_labels.iter().zip(&host_labels) {
        match p.split_once("{id}") {
            Some((before, after)) => {
                let middle = h.strip_prefix(before)?.strip_suffix(after)?;
                if middle.is_empty() || !middle.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return None;
                }
                id = Some(middle);
            }
            None if p == h => {}
            None => return None,
        }
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Source;

    #[test]
    fn the_shipped_table_reads_and_every_row_is_usable() {
        let table = Providers::shipped().unwrap();
        assert!(table.all().len() >= 4);
        for p in table.all() {
            assert!(!p.mx.is_empty(), "{}", p.name);
            assert!(!p.docs.is_empty(), "{}: cite the documentation", p.name);
            for doc in &p.docs {
                // A cited page is named by its title; an address, where
                // given, is the provider's own https page.
                assert!(doc.len() > 20, "{}: {doc}", p.name);
                if let Some(at) = doc.find("://") {
                    assert!(doc[..at].ends_with("https"), "{}: {doc}", p.name);
                }
            }
            match &p.source {
                Some(source) => {
                    let filled = source.replace("{id}", "00123401");
                    let parsed: Source = filled.parse().unwrap();
                    assert!(parsed.is_remote(), "{}: {source}", p.name);
                }
                None => assert!(
                    p.note.is_some(),
                    "{}: a row without a source says what to do",
                    p.name
                ),
            }
        }
    }

    #[test]
    fn the_issue_s_examples() {
        let table = Providers::shipped().unwrap();
        let source = |host: &str| {
            table
                .find(host)
                .map(|m| (m.provider.name.clone(), m.source))
        };
        for (host, provider, expected) in [
            (
                "contoso-com.mail.protection.outlook.com",
                "Microsoft 365 (Exchange Online)",
                Some("m365:worldwide"),
            ),
            (
                "contoso-com.a-v1.mx.microsoft.",
                "Microsoft 365 (Exchange Online)",
                Some("m365:worldwide"),
            ),
            (
                "ASPMX.L.GOOGLE.COM",
                "Google Workspace",
                Some("spf:_spf.google.com"),
            ),
            (
                "alt1.aspmx.l.google.com",
                "Google Workspace",
                Some("spf:_spf.google.com"),
            ),
            (
                "smtp.google.com",
                "Google Workspace",
                Some("spf:_spf.google.com"),
            ),
            (
                "eu-smtp-inbound-1.mimecast.com",
                "Mimecast",
                Some("spf:_netblocks.mimecast.com"),
            ),
            (
                "mx0a-00123401.pphosted.com",
                "Proofpoint on Demand",
                Some("spf:spf-00123401.pphosted.com"),
            ),
            ("mx1-us1.ppe-hosted.com", "Proofpoint", None),
        ] {
            assert_eq!(
                source(host),
                Some((provider.to_owned(), expected.map(ToOwned::to_owned))),
                "{host}"
            );
        }
        for host in [
            "mail.example.com",
            "mail.protection.outlook.com",
            "x.mail.protection.outlook.com.attacker.example",
            "evilmail.protection.outlook.com",
            "google.com",
            "mx0a-.pphosted.com.evil",
        ] {
            assert_eq!(source(host), None, "{host}");
        }
    }

    #[test]
    fn bad_tables_are_refused() {
        for (text, why) in [
            (
                "[[provider]]\nname='x'\nmx=['*.com']\nsource='spf:a.b'\ndocs=['a page about it, x']",
                "too wide",
            ),
            (
                "[[provider]]\nname='x'\nmx=['a.*.com']\ndocs=['a page about it, x']",
                "whole first label",
            ),
            (
                "[[provider]]\nname='x'\nmx=['a.b.com']\ndocs=[]",
                "no documentation",
            ),
            (
                "[[provider]]\nname='x'\nmx=['A.b.com']\ndocs=['a page about it, x']",
                "lower case",
            ),
            (
                "[[provider]]\nname='x'\nmx=['a.b.com']\ndocs=['d']\nurl='u'",
                "unknown field",
            ),
        ] {
            let e = Providers::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
