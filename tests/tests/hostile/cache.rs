//! The last good copies of remote sources: only a list the guards accepted
//! becomes one; their names hold no credentials; their directory is
//! private.

use std::sync::{Arc, Mutex};

use super::*;

/// An HTTPS list whose body the test changes as it goes (`None`: 503).
struct Served {
    body: Arc<Mutex<Option<&'static str>>>,
    server: Https,
}

impl Served {
    fn start(h: &Host, first: &'static str) -> Self {
        let body = Arc::new(Mutex::new(Some(first)));
        let shared = Arc::clone(&body);
        let server = Https::start(&h.s.wire.server, move |_| {
            match *shared.lock().expect("the served body") {
                Some(text) => Reply::Body(text.as_bytes().to_vec()),
                None => Reply::Status(503),
            }
        })
        .unwrap();
        Self { body, server }
    }

    fn serve(&self, body: Option<&'static str>) {
        *self.body.lock().unwrap() = body;
    }
}

/// The scenario's own list, as the service publishes it.
const GOOD: &str = "192.0.2.0/24\n2001:db8:5e::/48\n";

#[test]
fn only_an_accepted_list_becomes_the_last_good_copy() {
    let h = Host::new("ho-lastgood");
    let before = Live::of(h.mx());
    let served = Served::start(&h, GOOD);
    let url = served.server.url("/list.txt");
    let ca = ca_of(&served.server);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("c");
    let cache_arg = cache_dir.display().to_string();
    let source = [
        "--ranges",
        url.as_str(),
        "--https-ca",
        ca.as_str(),
        "--cache-dir",
        cache_arg.as_str(),
    ];
    let refresh = |extra: &[&'static str]| {
        let mut args = vec!["refresh"];
        args.extend_from_slice(&source);
        args.extend_from_slice(extra);
        args
    };
    h.expect(0, &refresh(&[]), "no change");
    let copy = filter_user::sources::cache_path(&cache_dir, &url);
    let good_copy = fs::read_to_string(&copy).expect("the good list is kept");
    assert_eq!(good_copy, GOOD);

    // Cut short: the shrink guard refuses it (refresh, attach and run);
    // the copy stays the good one.
    served.serve(Some("192.0.2.0/25\n"));
    h.expect(3, &refresh(&[]), "more than --max-shrink");
    let mut attach = vec!["attach", "--iface", SERVER_IF];
    attach.extend_from_slice(&source);
    h.expect(3, &attach, "more than --max-shrink");
    let mut run_args = vec!["run", "--iface", SERVER_IF, "--log-format", "json"];
    run_args.extend_from_slice(&source);
    let mut run = h.mx().start(&run_args);
    let (refused, _) = until_event(&mut run.lines(), "refresh_refused");
    assert_eq!(refused["level"], "warn", "{refused}");
    assert!(run.signal(libc::SIGTERM).success());
    assert_eq!(
        fs::read_to_string(&copy).unwrap(),
        good_copy,
        "after the guard"
    );

    // Nothing usable: an empty list, one covering everyone. The source
    // failed (exit 1); the copy stays.
    for (body, needle) in [
        ("# maintenance\n", "delivered no addresses"),
        (
            "0.0.0.0/1\n128.0.0.0/1\n2001:db8:5e::/48\n",
            "every IPv4 address",
        ),
    ] {
        served.serve(Some(body));
        h.expect(1, &refresh(&[]), needle);
        assert_eq!(fs::read_to_string(&copy).unwrap(), good_copy, "{body:?}");
        assert_eq!(Live::of(h.mx()), before, "{body:?}");
    }

    // At boot, no filter and the source down: the copy installs the good
    // list, not the one the guard refused.
    served.serve(None);
    h.mx().ok(&["detach"]);
    let mut boot = attach.clone();
    boot.push("--use-cache-on-failure");
    h.expect(0, &boot, "using its last good copy");
    assert_eq!(Live::of(h.mx()).allowlist, before.allowlist);
    h.protects();

    // Applied on purpose (--force), a list becomes the copy.
    served.serve(Some("192.0.2.0/25\n"));
    h.expect(0, &refresh(&["--force"]), "refreshed");
    assert_eq!(fs::read_to_string(&copy).unwrap(), "192.0.2.0/25\n");
}

#[test]
fn cache_names_hold_no_credentials_and_the_directory_is_private() {
    let h = Host::new("ho-cachename");
    let served = Served::start(&h, GOOD);
    let ca = ca_of(&served.server);
    let url = served
        .server
        .url("/list.txt")
        .replace("https://", "https://mxuser:s3cret-pw@");
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("c");
    let cache_arg = cache_dir.display().to_string();
    let args = [
        "refresh",
        "--ranges",
        url.as_str(),
        "--https-ca",
        ca.as_str(),
        "--cache-dir",
        cache_arg.as_str(),
    ];
    let out = h.expect(0, &args, "no change");
    assert!(!out.contains("s3cret-pw"), "{out}");
    let names = cached_copies(&cache_dir);
    assert_eq!(names.len(), 1, "{names:?}");
    // The refresh record names the source with its credentials hidden.
    let record = fs::read_to_string(cache_dir.join(filter_user::refresh_record::FILE_NAME))
        .expect("the refresh record");
    assert!(
        !record.contains("s3cret") && !record.contains("mxuser"),
        "{record}"
    );
    assert!(
        !names[0].contains("s3cret") && !names[0].contains("mxuser"),
        "{names:?}"
    );
    assert_eq!(
        fs::metadata(&cache_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // A cache directory made by someone else's umask (0755) is not used
    // as it is: no copy is written there, none is read from it.
    let loose = cache.path().join("loose");
    fs::create_dir(&loose).unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
    let loose_arg = loose.display().to_string();
    let good_url = served.server.url("/list.txt");
    let mut args = vec![
        "refresh",
        "--ranges",
        good_url.as_str(),
        "--https-ca",
        ca.as_str(),
        "--cache-dir",
        loose_arg.as_str(),
    ];
    let out = h.expect(0, &args, "no change");
    assert!(
        out.contains("could not keep a copy") && out.contains("mode 0755"),
        "{out}"
    );
    assert!(fs::read_dir(&loose).unwrap().next().is_none());
    // A copy planted there (root's, 0600) is not used either.
    let planted = filter_user::sources::cache_path(&loose, &good_url);
    fs::write(&planted, GOOD).unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o600)).unwrap();
    served.serve(None);
    args.push("--use-cache-on-failure");
    let out = h.expect(1, &args, "HTTP status 503");
    assert!(
        out.contains("not using the copy") && out.contains("mode 0755"),
        "{out}"
    );
    h.protects();
}
