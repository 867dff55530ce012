//! `https://…` sources (a plain-text range list) and `m365:` sources (the
//! Exchange Online entries for TCP 25 from Microsoft's endpoints web
//! service). TLS is always verified, and a redirect is followed only to
//! another `https://` URL; bodies have a size limit and the whole request a
//! timeout; only a `200 OK` whose end the server marks exactly is a list.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use serde::Deserialize;

use crate::{
    delivery::{DEFAULT_FETCH_TIMEOUT, Delivered, FetchError},
    files::{self, Links},
};
use ureq::{
    Agent, ResponseExt as _,
    tls::{Certificate, RootCerts, TlsConfig},
};

/// Largest download accepted unless `--max-download` says otherwise.
pub const DEFAULT_MAX_DOWNLOAD: u64 = 10 << 20;

/// Largest `--https-ca` file read: 4 MiB, some twenty times a whole system
/// CA bundle.
pub const MAX_CA_FILE: u64 = 4 << 20;

/// Most redirects one download follows (each only to `https://`).
pub const MAX_REDIRECTS: u32 = 5;

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
            timeout: DEFAULT_FETCH_TIMEOUT,
            max_bytes: DEFAULT_MAX_DOWNLOAD,
            ca_file: None,
        }
    }
}

/// The Microsoft 365 instances the endpoints web service knows.
pub const M365_INSTANCES: [&str; 4] = ["worldwide", "usgovdod", "usgovgcchigh", "china"];

/// A downloaded body and where it came from.
#[derive(Debug)]
pub struct Download {
    /// The body, whole.
    pub body: Vec<u8>,
    /// Where it came from, as the rest of a sentence after the URL asked
    /// for: "redirected to …, N bytes" or "N bytes".
    pub provenance: String,
}

/// Downloads `url` (which must be https) and returns its body. Redirects
/// are followed to `https://` URLs only: a list fetched in clear could be
/// anyone's. Only a `200 OK` is a list (a `206 Partial Content` is a part
/// of one), and only a body whose end the server marks exactly — a
/// Content-Length, or `Transfer-Encoding: chunked` and nothing else — is
/// read: a connection cut in the middle would look just like its end.
pub fn fetch(url: &str, options: &HttpsOptions) -> Result<Download, FetchError> {
    if !url.to_ascii_lowercase().starts_with("https://") {
        return Err(FetchError::Invalid(
            "only https:// URLs are fetched (TLS verified)".into(),
        ));
    }
    let agent = agent(options)?;
    let response = agent.get(url).call().map_err(|e| describe(&e, options))?;
    let status = response.status();
    if status != ureq::http::StatusCode::OK {
        return Err(FetchError::Failed(format!(
            "HTTP status {status}: only 200 OK delivers a whole list"
        )));
    }
    let headers = response.headers();
    let encodings: Vec<&str> = headers
        .get_all("transfer-encoding")
        .iter()
        .map(|v| v.to_str().unwrap_or("(not text)"))
        .collect();
    let chunked = match encodings.as_slice() {
        [] => false,
        [one] if one.trim().eq_ignore_ascii_case("chunked") => true,
        _ => {
            return Err(FetchError::Failed(format!(
                "the server sent Transfer-Encoding {:?}; only `chunked` alone is read (any other \
                 coding could hide where the list ends)",
                encodings.join(", ")
            )));
        }
    };
    if !chunked && headers.get("content-length").is_none() {
        return Err(FetchError::Failed(
            "the server did not say how long the body is (no Content-Length, not chunked), \
             so a cut-off download could not be told from a whole one"
                .into(),
        ));
    }
    let redirected = response
        .get_redirect_history()
        .and_then(|history| (history.len() > 1).then(|| response.get_uri().to_string()));
    let body = response
        .into_body()
        .with_config()
        .limit(options.max_bytes)
        .read_to_vec()
        .map_err(|e| describe(&e, options))?;
    let provenance = match redirected {
        Some(to) => format!("redirected to {to}, {} bytes", body.len()),
        None => format!("{} bytes", body.len()),
    };
    Ok(Download { body, provenance })
}

/// The Exchange Online prefixes for TCP 25 from the endpoints web service,
/// as range-list text. `target` is an instance name or an https URL of the
/// same JSON (a mirror).
pub fn fetch_m365(target: &str, options: &HttpsOptions) -> Result<Delivered, FetchError> {
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
    let download = fetch(&url, options)?;
    Ok(Delivered {
        text: m365_prefixes(&download.body)?,
        warnings: Vec::new(),
        provenance: download.provenance,
    })
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

/// The `ips` of every Exchange endpoint set whose TCP ports include 25,
/// one a line. Each must be a CIDR and nothing else: the JSON is not a
/// range list, so a line break, a range or SPF text in it is an error, not
/// another entry.
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
            let id = set.id.unwrap_or(0);
            for ip in &set.ips {
                let net = strict_cidr(ip)
                    .map_err(|why| format!("endpoint set {id}: {ip:?} is not a CIDR ({why})"))?;
                out.push_str(&format!("{net} # endpoint set {id}\n"));
            }
        }
    }
    if out.is_empty() {
        return Err("the endpoints JSON lists no Exchange addresses for TCP 25".into());
    }
    Ok(out)
}

/// `ADDRESS/LENGTH` exactly: an address as the standard library reads one
/// (no leading zeros, no zone), a length in decimal without a sign or a
/// leading zero, within its family. Host bits are kept for the strict list
/// parser to refuse.
fn strict_cidr(text: &str) -> Result<IpNet, &'static str> {
    let (addr, len) = text.split_once('/').ok_or("no /length")?;
    let addr: IpAddr = addr.parse().map_err(|_| "not an address before the /")?;
    let digits_ok = !len.is_empty()
        && len.len() <= 3
        && len.bytes().all(|b| b.is_ascii_digit())
        && (len == "0" || !len.starts_with('0'));
    let len: u8 = digits_ok
        .then(|| len.parse().ok())
        .flatten()
        .ok_or("not a prefix length after the /")?;
    IpNet::new(addr, len).map_err(|_| "a prefix length longer than the address")
}

fn agent(options: &HttpsOptions) -> Result<Agent, FetchError> {
    let mut tls = TlsConfig::builder();
    if let Some(path) = &options.ca_file {
        let certs = ca_certificates(path).map_err(FetchError::Invalid)?;
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let config = Agent::config_builder()
        .timeout_global(Some(options.timeout))
        .tls_config(tls.build())
        // A redirect to http:// is an error, not a download in clear.
        .https_only(true)
        .max_redirects(MAX_REDIRECTS)
        .save_redirect_history(true)
        .build();
    Ok(config.into())
}

/// The certificates of the `--https-ca` file: a regular file of at most
/// [`MAX_CA_FILE`] bytes holding at least one PEM certificate.
fn ca_certificates(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let (pem, _) = files::read_regular(
        path,
        MAX_CA_FILE,
        "the most a CA file may hold",
        Links::Follow,
    )
    .map_err(|e| format!("--https-ca: reading {}: {e}", path.display()))?;
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!(
            "--https-ca: {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn describe(e: &ureq::Error, options: &HttpsOptions) -> String {
    match e {
        ureq::Error::StatusCode(code) => format!("HTTP status {code}"),
        ureq::Error::Timeout(_) => {
            format!("no complete answer within {} s", options.timeout.as_secs())
        }
        ureq::Error::BodyExceedsLimit(limit) => format!("the body is larger than {limit} bytes"),
        ureq::Error::RequireHttpsOnly(to) => format!(
            "redirected to {to}; only https:// is followed (a list fetched in clear could be \
             anyone's)"
        ),
        ureq::Error::TooManyRedirects => {
            format!("more than {MAX_REDIRECTS} redirects")
        }
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
    fn m365_ips_are_cidrs_and_nothing_else() {
        let with = |ip: &str| {
            let json = serde_json::json!([
                {"id": 9, "serviceArea": "Exchange", "tcpPorts": "25", "ips": [ip]}
            ]);
            m365_prefixes(json.to_string().as_bytes())
        };
        assert_eq!(
            with("40.92.0.0/15").unwrap(),
            "40.92.0.0/15 # endpoint set 9\n"
        );
        assert_eq!(
            with("2a01:111:f400::/48").unwrap(),
            "2a01:111:f400::/48 # endpoint set 9\n"
        );
        for bad in [
            "40.92.0.0/15\n1.0.0.0/8",
            "40.92.0.0/15 # x",
            "40.92.0.0-40.93.255.255",
            "v=spf1 ip4:1.0.0.0/8",
            "ip4:40.92.0.0/15",
            "40.92.0.1",
            "040.92.0.0/15",
            "40.92.0.0/015",
            "40.92.0.0/+15",
            "40.92.0.0/33",
            "fe80::1%eth0/64",
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.contains("is not a CIDR"), "{bad:?}: {e}");
        }
        // Host bits are left for the strict list parser to refuse.
        assert_eq!(
            with("40.92.0.1/15").unwrap(),
            "40.92.0.1/15 # endpoint set 9\n"
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

    #[test]
    fn the_ca_file_is_a_bounded_regular_file() {
        let e = ca_certificates(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            e,
            "--https-ca: reading /dev/zero: not a regular file (a device)"
        );
        let e = ca_certificates(Path::new("/etc")).unwrap_err();
        assert!(e.ends_with("not a regular file (a directory)"), "{e}");
    }
}
