//! `doctor`: the service a domain's MX records point at and the sources to
//! use for it (see [`crate::doctor`]); optionally the proposed list
//! checked (`--check`) and the MTA's logs audited against it
//! (`--mta-log`), in the same run. Exit 3 when enforcing would refuse
//! real mail (no MX at a known service; this host preferred to the
//! service; a sender that delivered accepted mail outside the list),
//! 1 when DNS or a source does not answer, 2 for a domain that does not
//! exist.

use serde_json::json;

use super::{
    AuditRequest,
    audit::{self, check_stdin_once},
    read_nonempty_list,
};
use crate::{
    audit::{input::LogSource, report::DEFAULT_TOP, stamp::Since},
    doctor::{self, Diagnosis, LookupError, providers::Providers},
    error::{InvalidInput, Refused},
    sources::{ListSpec, Source, SourceOptions},
};

/// Diagnose domains.
#[derive(Clone, Debug)]
pub struct DoctorRequest {
    /// The domains the server receives mail for.
    pub domains: Vec<String>,
    /// Fetch and check the proposed sources.
    pub check: bool,
    /// MTA logs to audit against the proposed sources.
    pub logs: Vec<LogSource>,
    /// For the audit: leave out what happened before.
    pub since: Option<Since>,
    /// Extra entries merged with the proposed sources (a backup MX).
    pub allow: Vec<String>,
    /// DNS servers and how sources are fetched.
    pub options: SourceOptions,
    /// Print JSON.
    pub json: bool,
}

/// `mxgate doctor`.
pub fn command(request: &DoctorRequest) -> anyhow::Result<()> {
    let table = Providers::shipped()?;
    let local = doctor::local_addresses()
        .map_err(|e| anyhow::anyhow!("reading this host's addresses: {e}"))?;
    let mut domains = Vec::new();
    for domain in &request.domains {
        let records = doctor::lookup(domain, &request.options.spf).map_err(|e| match e {
            LookupError::NoSuchDomain(_) => anyhow::Error::from(InvalidInput(e.to_string())),
            LookupError::Failed { .. } => anyhow::Error::from(e),
        })?;
        domains.push(doctor::diagnose(domain, records, &local, &table));
    }
    let diagnosis = Diagnosis::new(domains);
    let list = (!diagnosis.sources.is_empty()).then(|| ListSpec {
        sources: diagnosis
            .sources
            .iter()
            .filter_map(|s| s.parse::<Source>().ok())
            .collect(),
        allow: request.allow.clone(),
        options: request.options.clone(),
    });
    let mut checked = None;
    let mut audited = None;
    if let Some(list) = &list {
        if request.check && request.logs.is_empty() {
            let parsed = read_nonempty_list(list)?;
            checked = Some(json!({
                "ok": true,
                "prefixes": { "v4": parsed.allowlist.v4.len(), "v6": parsed.allowlist.v6.len() },
                "warnings": parsed.warnings,
            }));
        }
        if !request.logs.is_empty() {
            check_stdin_once(&request.logs, &list.sources)?;
            let audit_request = AuditRequest {
                since: request.since,
                ..AuditRequest::new(request.logs.clone(), list.clone())
            };
            let report = audit::run(&audit_request)?;
            checked = request.check.then(|| {
                json!({
                    "ok": true,
                    "prefixes": { "v4": report.list.v4, "v6": report.list.v6 },
                })
            });
            audited = Some(report);
        }
    }
    if request.json {
        let value = json!({
            "domains": diagnosis.domains,
            "sources": diagnosis.sources,
            "check": checked,
            "audit": audited,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", diagnosis.text());
        if let Some(checked) = &checked {
            println!(
                "check: the sources give {} IPv4 and {} IPv6 prefixes",
                checked["prefixes"]["v4"], checked["prefixes"]["v6"]
            );
        }
        if let Some(report) = &audited {
            println!("\naudit of the logs against these sources:");
            print!("{}", report.text(DEFAULT_TOP));
        }
        if !diagnosis.sources.is_empty() && !diagnosis.has_problems() {
            next_steps(&diagnosis.sources, request);
        }
    }
    if diagnosis.has_problems() {
        let problems: Vec<&str> = diagnosis
            .domains
            .iter()
            .flat_map(|d| d.problems.iter().map(String::as_str))
            .collect();
        return Err(Refused(format!(
            "enforcing now would refuse real mail: {}",
            problems.join("; ")
        ))
        .into());
    }
    if let Some(report) = &audited {
        audit::verdict(report)?;
    }
    Ok(())
}

/// What to run next, in the order an administrator follows.
fn next_steps(sources: &[String], request: &DoctorRequest) {
    let ranges = sources.join(" ");
    println!("\nnext:");
    if !request.check {
        println!("  mxgate check --ranges {ranges}");
    }
    if request.logs.is_empty() {
        println!("  mxgate audit --mta-log /var/log/mail.log --ranges {ranges}");
    }
    println!("  mxgate attach --iface IFACE --ranges {ranges} --dry-run");
}
