//! Remote sources sent elsewhere: a redirect from https:// to http://
//! (a downgrade to clear text), for a list and for a Microsoft 365 mirror.

use mxgate_tests::remote::PlainHttp;

use super::*;

/// The list the clear-text server would hand out: it would open the gate
/// to the spammer's 203.0.113.0/24.
const CLEAR_LIST: &[u8] = b"203.0.113.0/24\n192.0.2.0/24\n2001:db8:5e::/48\n";

#[test]
fn a_redirect_to_http_is_refused_and_nothing_is_fetched_in_clear() {
    let h = Host::new("ho-down");
    let before = Live::of(h.mx());
    let clear = PlainHttp::start(&h.s.wire.server, CLEAR_LIST).unwrap();
    let (to_list, to_json) = (clear.url("/list"), clear.url("/endpoints.json"));
    let server = Https::start(&h.s.wire.server, move |path| match path {
        "/list" => Reply::Redirect(to_list.clone()),
        "/endpoints.json" => Reply::Redirect(to_json.clone()),
        // Moved within https: followed, and said where with --verbose.
        "/moved" => Reply::Redirect("/new".into()),
        "/new" => Reply::Body(b"192.0.2.0/24\n2001:db8:5e::/48\n".to_vec()),
        _ => Reply::Status(404),
    })
    .unwrap();
    let ca = ca_of(&server);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("c");
    let cache_arg = cache_dir.display().to_string();
    let sources = [
        server.url("/list"),
        format!("m365:{}", server.url("/endpoints.json")),
    ];
    for (source, target) in sources
        .iter()
        .zip([clear.url("/list"), clear.url("/endpoints.json")])
    {
        let refresh = [
            "refresh",
            "--ranges",
            source,
            "--https-ca",
            &ca,
            "--cache-dir",
            &cache_arg,
        ];
        let out = h.expect(1, &refresh, "nothing changed");
        assert!(
            out.contains(&format!("redirected to {target}")) && out.contains("only https://"),
            "{source}: {out}"
        );
        h.expect(
            1,
            &["check", "--ranges", source, "--https-ca", &ca],
            "only https://",
        );
        // The boot path does not take it either.
        let mut attach = vec!["attach", "--iface", SERVER_IF];
        attach.extend_from_slice(&refresh[1..]);
        h.expect(1, &attach, "only https://");
        assert_eq!(clear.hits(), 0, "{source}: the clear-text server was asked");
        assert!(
            cached_copies(&cache_dir).is_empty(),
            "{source}: a copy was kept"
        );
        assert_eq!(Live::of(h.mx()), before, "{source}");
    }

    // A redirect within https is followed; --verbose says where it went.
    let moved = server.url("/moved");
    let out = h.expect(
        0,
        &[
            "refresh",
            "--ranges",
            &moved,
            "--https-ca",
            &ca,
            "--cache-dir",
            &cache_arg,
            "--verbose",
        ],
        "no change",
    );
    assert!(
        out.contains(&format!("{moved}: redirected to {}", server.url("/new"))),
        "{out}"
    );
    let quiet = h.expect(
        0,
        &["check", "--ranges", &moved, "--https-ca", &ca],
        "list OK",
    );
    assert!(
        !quiet.contains("redirected"),
        "only --verbose says it: {quiet}"
    );
    assert_eq!(clear.hits(), 0);
    h.protects();
}
