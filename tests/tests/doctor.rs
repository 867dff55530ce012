//! `mxgate doctor` against the tests' own DNS server (dnsmasq, in the
//! mail server's namespace, so this host's addresses are the scenario's
//! server addresses): the service of each domain's MX records, the source
//! to use and its documentation, this host as an MX, and what would
//! refuse real mail; the proposed sources checked and the logs audited in
//! the same run.

use mxgate_tests::{
    remote::{Dns, broken_dns},
    scenario::{SERVER_V4, SERVER_V6, Setup},
};
use serde_json::Value;

fn records() -> Vec<String> {
    [
        // Microsoft 365 first, this host after it: what doctor expects.
        "--mx-host=m365.svc.test,m365-svc-test.mail.protection.outlook.com,10",
        "--mx-host=m365.svc.test,mail.svc.test,20",
        "--host-record=m365-svc-test.mail.protection.outlook.com,192.0.2.1",
        // Google, with its SPF record served here (the list doctor checks).
        "--mx-host=google.svc.test,smtp.google.com,1",
        "--host-record=smtp.google.com,192.0.2.2",
        "--txt-record=_spf.google.com,v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:5e::/48 ~all",
        // Mimecast and a backup MX nobody knows.
        "--mx-host=mimecast.svc.test,eu-smtp-inbound-1.mimecast.com,10",
        "--mx-host=mimecast.svc.test,backup.isp.example,50",
        "--host-record=eu-smtp-inbound-1.mimecast.com,192.0.2.3",
        "--host-record=backup.isp.example,203.0.113.5",
        "--txt-record=_netblocks.mimecast.com,v=spf1 ip4:192.0.2.0/25 ~all",
        // Proofpoint on Demand: the customer's record from the MX.
        "--mx-host=pp.svc.test,mx0a-00123401.pphosted.com,10",
        "--host-record=mx0a-00123401.pphosted.com,192.0.2.4",
        "--txt-record=spf-00123401.pphosted.com,v=spf1 ip4:192.0.2.128/25 -all",
        // What would refuse real mail.
        "--mx-host=unknown.svc.test,mx.isp.example,10",
        "--host-record=mx.isp.example,203.0.113.6",
        "--mx-host=preferred.svc.test,mail.svc.test,5",
        "--mx-host=preferred.svc.test,smtp.google.com,10",
        "--host-record=nomx.svc.test,198.51.100.25",
    ]
    .iter()
    .map(|r| (*r).to_owned())
    .chain([format!(
        "--host-record=mail.svc.test,{SERVER_V4},{SERVER_V6}"
    )])
    .collect()
}

struct World {
    s: Setup,
    _dns: Dns,
}

impl World {
    fn new(tag: &str) -> Self {
        let s = Setup::with_listener_ports(tag, &[]);
        let dns = Dns::start(&s.wire.server, &records()).expect("dnsmasq");
        Self { s, _dns: dns }
    }

    /// `mxgate doctor --dns-server 127.0.0.1 ARGS` in the server's namespace.
    fn doctor(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["doctor", "--dns-server", "127.0.0.1", "--dns-timeout", "2"];
        all.extend_from_slice(args);
        self.s.mx.run(&all)
    }
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_service_behind_each_mx_its_source_and_this_host() {
    let w = World::new("doc-ok");
    let out = w.doctor(&["--domain", "m365.svc.test", "google.svc.test"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    for line in [
        "m365.svc.test:",
        "  MX  10 m365-svc-test.mail.protection.outlook.com (192.0.2.1) → Microsoft 365 \
         (Exchange Online): m365:worldwide",
        &format!("  MX  20 mail.svc.test ({SERVER_V4}, {SERVER_V6}) → this host"),
        "  note: this host is MX 20 (mail.svc.test), after the service: the path spammers \
         take around the service, which mxgate closes",
        "google.svc.test:",
        "  MX   1 smtp.google.com (192.0.2.2) → Google Workspace: spf:_spf.google.com",
        "sources: m365:worldwide spf:_spf.google.com",
        "    documented in: Microsoft 365 URLs and IP address ranges (Exchange Online, TCP port \
         25), https://learn.microsoft.com/en-us/microsoft-365/enterprise/urls-and-ip-address-ranges",
        "    documented in: Google Workspace Admin Help: Google IP address ranges for outbound \
         mail servers (the _spf.google.com record), https://support.google.com/a/answer/60764",
        "  mxgate check --ranges m365:worldwide spf:_spf.google.com",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    let out = w.doctor(&["--domain", "m365.svc.test", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sources"], serde_json::json!(["m365:worldwide"]));
    assert_eq!(v["domains"][0]["mx"][1]["role"]["kind"], "this_host");
    assert_eq!(v["domains"][0]["problems"], serde_json::json!([]));
}

#[test]
fn the_proposed_sources_are_checked_and_the_logs_audited_in_the_same_run() {
    let w = World::new("doc-check");
    let out = w.doctor(&[
        "--domain",
        "google.svc.test",
        "mimecast.svc.test",
        "pp.svc.test",
        "--check",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "sources: spf:_spf.google.com spf:_netblocks.mimecast.com spf:spf-00123401.pphosted.com"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("check: the sources give 1 IPv4 and 1 IPv6 prefixes"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("warning: MX 50 backup.isp.example is neither a known service nor this host"),
        "{stdout}"
    );
    // The logs of a server whose senders the list holds: exit 0.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mta-logs");
    let good = corpus.join("postfix-rfc5424.log").display().to_string();
    let out = w.doctor(&["--domain", "google.svc.test", "--mta-log", &good]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("audit of the logs against these sources:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("result: every sender that delivered accepted mail is in the list"),
        "{stdout}"
    );
    // A partner delivering from outside the list: exit 3, the audit says who.
    let bad = corpus.join("exim-mainlog").display().to_string();
    let out = w.doctor(&["--domain", "google.svc.test", "--mta-log", &bad, "--json"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["audit"]["blocks"][0]["prefix"], "2001:db8:bad::/48");
    assert_eq!(v["check"]["prefixes"], Value::Null);
    assert!(
        stderr.contains("would refuse 1 sender block(s) that delivered accepted mail"),
        "{stderr}"
    );
    // --allow merges with the proposed sources.
    let out = w.doctor(&[
        "--domain",
        "google.svc.test",
        "--mta-log",
        &bad,
        "--allow",
        "2001:db8:bad::/48",
        "--check",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("check: the sources give 1 IPv4 and 2 IPv6 prefixes"),
        "{stdout}"
    );
}

#[test]
fn what_would_refuse_real_mail_exits_3_and_says_why() {
    let w = World::new("doc-refuse");
    for (domain, problem) in [
        (
            "unknown.svc.test",
            "no MX of unknown.svc.test points at a service mxgate knows",
        ),
        (
            "preferred.svc.test",
            "this host is MX 5 (mail.svc.test), preferred to the service's MX 10 or equal to it",
        ),
        (
            "nomx.svc.test",
            "nomx.svc.test has no MX record: senders deliver to its own address",
        ),
    ] {
        let out = w.doctor(&["--domain", domain]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{domain}: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("PROBLEM: {problem}")),
            "{domain}: {stdout}"
        );
        assert!(
            stderr.contains(&format!(
                "mxgate: error: enforcing now would refuse real mail: {problem}"
            )),
            "{domain}: {stderr}"
        );
        assert!(!stdout.contains("next:"), "{domain}: {stdout}");
    }
    // One domain with a problem among good ones still exits 3.
    let out = w.doctor(&["--domain", "google.svc.test", "unknown.svc.test"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

#[test]
fn a_missing_domain_a_bad_name_and_a_silent_dns_server() {
    let w = World::new("doc-fail");
    let stderr = w.s.mx.fails(
        2,
        &[
            "doctor",
            "--dns-server",
            "127.0.0.1",
            "--domain",
            "missing.svc.test",
        ],
    );
    assert!(
        stderr.contains("missing.svc.test does not exist (NXDOMAIN)"),
        "{stderr}"
    );
    let stderr = w.s.mx.fails(2, &["doctor", "--domain", "not a domain"]);
    assert!(
        stderr.contains("\"not a domain\" is not a domain name"),
        "{stderr}"
    );
    let stderr = w.s.mx.fails(
        2,
        &[
            "doctor",
            "--domain",
            "x.svc.test",
            "--dns-server",
            "127.0.0.1:0",
        ],
    );
    assert!(stderr.contains("port 0 reaches no server"), "{stderr}");
    let silent = broken_dns(&w.s.wire.server, true).unwrap().to_string();
    let stderr = w.s.mx.fails(
        1,
        &[
            "doctor",
            "--dns-server",
            &silent,
            "--dns-timeout",
            "1",
            "--fetch-timeout",
            "2",
            "--domain",
            "google.svc.test",
        ],
    );
    assert!(stderr.contains("MX google.svc.test:"), "{stderr}");
}
