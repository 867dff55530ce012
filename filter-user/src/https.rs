//! `https://…` sources (a plain-text range list) and `m365:` sources (the
//! Exchange Online entries for TCP 25 from Microsoft's endpoints web
//! service). TLS is always verified; bodies have a size limit and the whole
//! request a timeout.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::sources::FetchError;
use ureq::{
    Agent,
    tls::{Certificate, RootCerts, TlsConfig},
};

/// Largest download accepted unless `--max-download` says otherwise.
pub const DEFAULT_MAX_DOWNLOAD: u64 = 10 << 20;

/// Limits and trust for HTTPS sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsOptions {
    /// Timeout of a whole request, connect to last byte.
    pub timeout: Duration,
    /// Largest body accepted, in bytes.
    pub max_bytes: u64,
    /// PEM CA certificates to trust instead of the built-in roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for HttpsOptions {
    fn default() -> Self {
        Self {
            timeout: crate::sources::DEFAULT_FETCH_TIMEOUT,
            max_bytes: DEFAULT_MAX_DOWNLOAD,
            ca_file: None,
        }
    }
}

/// The Microsoft 365 instances the endpoints web service knows.
pub const M365_INSTANCES: [&str; 4] = ["worldwide", "usgovdod", "usgovgcchigh", "china"];

/// Downloads `url` (which must be https) and returns its body. A body whose
/// end the server does not mark (no Content-Length, not chunked) is
/// refused: a connection cut in the middle would look just like its end.
pub fn fetch(url: &str, options: &HttpsOptions) -> Result<Vec<u8>, FetchError> {
    if !url.to_ascii_lowercase().starts_with("https://") {
        return Err(FetchError::Invalid(
            "only https:// URLs are fetched (TLS verified)".into(),
        ));
    }
    let agent = agent(options)?;
    let response = agent.get(url).call().map_err(|e| describe(&e, options))?;
    let headers = response.headers();
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if !chunked && headers.get("content-length").is_none() {
        return Err(FetchError::Failed(
            "the server did not say how long the body is (no Content-Length, not chunked), \
             so a cut-off download could not be told from a whole one"
                .into(),
        ));
    }
    Ok(response
        .into_body()
        .with_config()
        .limit(options.max_bytes)
        .read_to_vec()
        .map_err(|e| describe(&e, options))?)
}

/// The Exchange Online prefixes for TCP 25 from the endpoints web service,
/// as range-list text. `target` is an instance name or an https URL of the
/// same JSON (a mirror).
pub fn fetch_m365(target: &str, options: &HttpsOptions) -> Result<String, FetchError> {
    let url = if target.starts_with("https://") {
        target.to_owned()
    } else if M365_INSTANCES.contains(&target.to_ascii_lowercase().as_str()) {
        // The service wants a request id; a fixed one identifies mxgate.
        format!(
            "https://endpoints.office.com/endpoints/{target}?ServiceAreas=Exchange&clientrequestid=6d786761-7465-4d58-8000-000000000025"
        )
    } else {
        return Err(FetchError::Invalid(format!(
            "{target:?} is neither an instance ({}) nor an https URL",
            M365_INSTANCES.join(", ")
        )));
    };
    let body = fetch(&url, options)?;
    Ok(m365_prefixes(&body)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointSet {
    id: Option<u64>,
    service_area: Option<String>,
    tcp_ports: Option<String>,
    #[serde(default)]
    ips: Vec<String>,
}

/// The `ips` of every Exchange endpoint set whose TCP ports include 25.
fn m365_prefixes(body: &[u8]) -> Result<String, String> {
    let sets: Vec<EndpointSet> =
        serde_json::from_slice(body).map_err(|e| format!("not the endpoints JSON: {e}"))?;
    let mut out = String::new();
    for set in &sets {
        let exchange = set.service_area.as_deref() == Some("Exchange");
        let smtp = set
            .tcp_ports
            .as_deref()
            .is_some_and(|ports| ports.split(',').any(|p| p.trim() == "25"));
        if exchange && smtp {
            for ip in &set.ips {
                out.push_str(&format!("{ip} # endpoint set {}\n", set.id.unwrap_or(0)));
            }
        }
    }
    if out.is_empty() {
        return Err("the endpoints JSON lists no Exchange addresses for TCP 25".into());
    }
    Ok(out)
}

fn agent(options: &HttpsOptions) -> Result<Agent, FetchError> {
    let mut tls = TlsConfig::builder();
    if let Some(path) = &options.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            FetchError::Invalid(format!("--https-ca: reading {}: {e}", path.display()))
        })?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(FetchError::Invalid(format!(
                "--https-ca: {} holds no PEM certificate",
                path.display()
            )));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let config = Agent::config_builder()
        .timeout_global(Some(options.timeout))
        .tls_config(tls.build())
        .build();
    Ok(config.into())
}

fn describe(e: &ureq::Error, options: &HttpsOptions) -> String {
    match e {
        ureq::Error::StatusCode(code) => format!("HTTP status {code}"),
        ureq::Error::Timeout(_) => {
            format!("no complete answer within {} s", options.timeout.as_secs())
        }
        ureq::Error::BodyExceedsLimit(limit) => format!("the body is larger than {limit} bytes"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m365_takes_exchange_smtp_sets_only() {
        let json = br#"[
          {"id": 1, "serviceArea": "Exchange", "tcpPorts": "80,443", "ips": ["13.107.6.152/31"]},
          {"id": 9, "serviceArea": "Exchange", "tcpPorts": "25", "ips": ["40.92.0.0/15", "2a01:111:f400::/48"]},
          {"id": 46, "serviceArea": "Common", "tcpPorts": "25", "ips": ["192.0.2.0/24"]},
          {"id": 10, "serviceArea": "Exchange", "tcpPorts": "25,587", "ips": ["104.47.0.0/17"]}
        ]"#;
        let text = m365_prefixes(json).unwrap();
        let entries: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            entries,
            ["40.92.0.0/15", "2a01:111:f400::/48", "104.47.0.0/17"]
        );
    }

    #[test]
    fn m365_needs_smtp_entries_and_valid_json() {
        assert!(
            m365_prefixes(b"[]")
                .unwrap_err()
                .contains("no Exchange addresses")
        );
        assert!(
            m365_prefixes(b"<html>")
                .unwrap_err()
                .contains("not the endpoints JSON")
        );
    }

    #[test]
    fn only_https_is_fetched() {
        let options = HttpsOptions {
            timeout: Duration::from_secs(1),
            max_bytes: 1024,
            ca_file: None,
        };
        assert!(matches!(
            fetch("http://example.test/list", &options),
            Err(FetchError::Invalid(e)) if e.contains("only https")
        ));
        assert!(matches!(
            fetch_m365("moon", &options),
            Err(FetchError::Invalid(e)) if e.contains("neither an instance")
        ));
    }
}
