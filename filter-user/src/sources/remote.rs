//! Remote sources (`spf:`, `https://`, `m365:`): fetched, checked to be a
//! usable list on their own, and on failure replaced by their last good
//! copy when `--use-cache-on-failure` allows it.

use anyhow::bail;

use super::{Source, SourceFailed, SourceOptions, cache};
use crate::{
    delivery::{Delivered, FetchError},
    error::InvalidInput,
    https,
    ranges::ListBuilder,
    spf,
};

/// Parses what one remote source delivered (`delivered`, its [`fetch`]),
/// with its text to keep once the list is accepted; on failure, its cached copy (and no text to keep) if
/// allowed and present. A remote list must be exact: an entry with host
/// bits set (a cut-off `192.0.2.0/2`) fails it instead of being widened.
/// And it must be usable on its own: a source that delivers no address, or
/// every address of a family, has failed.
pub(super) fn remote(
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
        for warning in &delivered.warnings {
            part.add_warning(warning.clone());
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
                    let Some((text, saved)) = cache::load(dir, &name, options.https.max_bytes)?
                    else {
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

/// The range-list text of a remote source, and warnings about it.
pub(super) fn fetch(source: &Source, options: &SourceOptions) -> Result<Delivered, FetchError> {
    match source {
        Source::Spf(domain) => {
            spf::fetch(domain, &options.spf).map_err(|e| FetchError::Failed(e.to_string()))
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
