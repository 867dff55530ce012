//! Sources that are cut short or never end.

use super::*;

// ---------------------------------------------------------------------
// Downloads cut short (case 11).

#[test]
fn a_cut_off_download_is_a_failed_source_and_nothing_is_kept() {
    let h = Host::new("ho-cut");
    let before = Live::of(h.mx());
    let full = b"192.0.2.0/24\n198.51.100.0/24\n2001:db8:5e::/48\n".to_vec();
    let cut = full[..17].to_vec(); // "192.0.2.0/24\n198." — or worse:
    let server = Https::start(&h.s.wire.server, move |path| match path {
        "/unframed" => Reply::Unframed(b"192.0.2.0/24\n192.0.2.0/2".to_vec()),
        "/short" => Reply::CutShort {
            body: cut.clone(),
            claimed: full.len(),
        },
        "/hostbits" => Reply::Body(b"192.0.2.0/24\n192.0.2.0/2\n".to_vec()),
        _ => Reply::Status(404),
    })
    .unwrap();
    let ca = ca_of(&server);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("c");
    let cache_arg = cache_dir.display().to_string();
    for (path, needle) in [
        ("/unframed", "did not say how long the body is"),
        ("/short", "failed:"),
        ("/hostbits", "host bits set in a fetched list"),
    ] {
        let url = server.url(path);
        h.expect(
            1,
            &[
                "refresh",
                "--ranges",
                &url,
                "--https-ca",
                &ca,
                "--cache-dir",
                &cache_arg,
            ],
            needle,
        );
        h.expect(1, &["check", "--ranges", &url, "--https-ca", &ca], needle);
        assert!(
            cached_copies(&cache_dir).is_empty(),
            "{path}: nothing was cached"
        );
        assert_eq!(Live::of(h.mx()), before, "{path}");
    }
    h.protects();
}

#[test]
fn refresh_diff_writes_nothing_not_even_the_cache() {
    let h = Host::new("ho-diff");
    let before = Live::of(h.mx());
    let server = Https::start(&h.s.wire.server, |_| {
        // The live list plus one prefix: a change the guards accept (one
        // without the IPv6 prefix would take all of IPv6's addresses).
        Reply::Body(b"198.51.100.0/24\n192.0.2.0/24\n2001:db8:5e::/48\n".to_vec())
    })
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("c");
    h.expect(
        0,
        &[
            "refresh",
            "--diff",
            "--ranges",
            &server.url("/l"),
            "--https-ca",
            &ca_of(&server),
            "--cache-dir",
            &cache_dir.display().to_string(),
        ],
        "+ 198.51.100.0/24",
    );
    assert!(!cache_dir.exists());
    assert_eq!(Live::of(h.mx()), before);
}

// ---------------------------------------------------------------------
// Local sources that never end (case 13).

#[test]
fn endless_and_odd_local_sources_are_refused() {
    let h = Host::new("ho-endless");
    let before = Live::of(h.mx());
    let fifo = h.s.write("placeholder", "");
    let fifo = Path::new(&fifo).with_file_name("fifo");
    must({
        let mut c = Command::new("mkfifo");
        c.arg(&fifo);
        c
    });
    let dir = h.victim.path().display().to_string();
    for (source, needle) in [
        ("/dev/zero", "reading /dev/zero: not a regular file"),
        (fifo.to_str().unwrap(), "not a regular file"),
        (dir.as_str(), "not a regular file"),
    ] {
        h.expect(2, &["refresh", "--ranges", source], needle);
        h.expect(2, &["check", "--ranges", source], needle);
    }
    // A file larger than --max-download.
    let big = h.file("big.txt", &"192.0.2.0/24\n".repeat(1000));
    h.expect(
        2,
        &["check", "--ranges", &big, "--max-download", "1000"],
        "larger than 1000 bytes",
    );
    // Standard input without end: /dev/zero, and a pipe never closed.
    let zero = fs::File::open("/dev/zero").unwrap();
    let out = h
        .mx()
        .command(&["refresh", "--ranges", "-"])
        .stdin(zero)
        .output()
        .unwrap();
    judge(&out, 2, "reading -: larger than 10485760 bytes");
    let mut child = h
        .mx()
        .command(&["check", "--ranges", "-", "--fetch-timeout", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"192.0.2.0/24\n").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    // Input that does not end in time is a source that did not deliver
    // (1), like a download that times out; not bad input (2).
    judge(&out, 1, "no end of input within --fetch-timeout");
    assert_eq!(Live::of(h.mx()), before);
    h.protects();
}

// ---------------------------------------------------------------------
// HTTP framing: only a 200 with exact framing is a whole list.

#[test]
fn only_a_200_with_exact_framing_is_a_whole_list() {
    let h = Host::new("ho-framing");
    let before = Live::of(h.mx());
    // Each would shrink the list to 192.0.2.0/24 (50 %: the guard lets it).
    let chunked = b"d\r\n192.0.2.0/24\n\r\n0\r\n\r\n".to_vec();
    let server = Https::start(&h.s.wire.server, move |path| match path {
        "/xchunked" => Reply::Raw {
            head: "HTTP/1.1 200 OK\r\ntransfer-encoding: xchunkedx\r\nconnection: close\r\n".into(),
            body: chunked.clone(),
        },
        "/gzip-chunked" => Reply::Raw {
            head: "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\nconnection: close\r\n"
                .into(),
            body: chunked.clone(),
        },
        "/partial" => Reply::Raw {
            head: "HTTP/1.1 206 Partial Content\r\ncontent-length: 13\r\n\
                   content-range: bytes 0-12/31\r\nconnection: close\r\n"
                .into(),
            body: b"192.0.2.0/24\n".to_vec(),
        },
        "/chunked" => Reply::Raw {
            head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nconnection: close\r\n".into(),
            body: b"1e\r\n192.0.2.0/24\n2001:db8:5e::/48\n\r\n0\r\n\r\n".to_vec(),
        },
        _ => Reply::Status(404),
    })
    .unwrap();
    let ca = ca_of(&server);
    for (path, needle) in [
        ("/xchunked", "Transfer-Encoding \"xchunkedx\""),
        ("/gzip-chunked", "Transfer-Encoding \"gzip, chunked\""),
        ("/partial", "HTTP status 206"),
    ] {
        let url = server.url(path);
        for command in ["refresh", "check"] {
            let out = h.expect(1, &[command, "--ranges", &url, "--https-ca", &ca], needle);
            assert!(out.contains("failed"), "{path}: {out}");
        }
        assert_eq!(Live::of(h.mx()), before, "{path}");
    }
    // Exact `chunked` (any case) is a framed body.
    h.expect(
        0,
        &[
            "refresh",
            "--ranges",
            &server.url("/chunked"),
            "--https-ca",
            &ca,
        ],
        "no change",
    );
    h.protects();
}

// ---------------------------------------------------------------------
// Sources the command line can judge are judged there (exit 2).

#[test]
fn sources_and_servers_that_cannot_work_are_usage_errors() {
    let h = Host::new("ho-srcusage");
    let before = Live::of(h.mx());
    for (args, needle) in [
        (
            &[
                "refresh",
                "--ranges",
                "spf:x.test",
                "--dns-server",
                "127.0.0.1:0",
            ][..],
            "port 0",
        ),
        (
            &["check", "--ranges", "spf:x.test", "--dns-server", "[::1]:0"],
            "port 0",
        ),
        (
            &[
                "refresh",
                "--ranges",
                "m365:HTTPS://mirror.test/endpoints.json",
            ],
            "m365:https://",
        ),
        (
            &[
                "check",
                "--ranges",
                "m365:Https://mirror.test/endpoints.json",
            ],
            "m365:https://",
        ),
    ] {
        let out = h.expect(2, args, needle);
        assert!(
            out.contains("invalid value"),
            "{args:?}: caught by the command line: {out}"
        );
    }
    assert_eq!(Live::of(h.mx()), before);
}
