//! Remote sources that deliver nothing usable — an empty list, one that
//! covers everyone, an SPF policy that passes nobody — under `run` (the
//! service) and `refresh` (cron): a failed source, never bad input.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use mxgate_tests::remote::Dns;

use super::*;

#[test]
fn run_treats_an_unusable_remote_list_as_a_failed_source_and_keeps_running() {
    let h = Host::new("ho-unusable");
    let before = Live::of(h.mx());
    let _dns = Dns::start(
        &h.s.wire.server,
        &["--txt-record=nobody.svc.test,v=spf1 -all".to_owned()],
    )
    .unwrap();
    // Good until flipped, then empty.
    let flipped = Arc::new(AtomicBool::new(false));
    let flips = Arc::clone(&flipped);
    let server = Https::start(&h.s.wire.server, move |path| match path {
        "/flip.txt" if flips.load(Ordering::SeqCst) => Reply::Body(b"\n".to_vec()),
        "/flip.txt" => Reply::Body(b"192.0.2.0/24\n2001:db8:5e::/48\n".to_vec()),
        "/empty.txt" => Reply::Body(b"# nothing today\n".to_vec()),
        "/everyone.txt" => Reply::Body(b"0.0.0.0/1\n128.0.0.0/1\n".to_vec()),
        _ => Reply::Status(404),
    })
    .unwrap();
    let ca = ca_of(&server);
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().join("c").display().to_string();
    let sources = [
        (server.url("/empty.txt"), "delivered no addresses"),
        (server.url("/everyone.txt"), "every IPv4 address"),
        ("spf:nobody.svc.test".to_owned(), "delivered no addresses"),
    ];
    let with_source = |command: &[&'static str], source: &str| -> Vec<String> {
        let mut args: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
        for a in [
            "--ranges",
            source,
            "--https-ca",
            &ca,
            "--dns-server",
            "127.0.0.1",
            "--cache-dir",
            &cache_arg,
        ] {
            args.push(a.to_owned());
        }
        args
    };
    let run_cmd = ["run", "--iface", SERVER_IF, "--log-format", "json"];
    for (source, reason) in &sources {
        // cron's refresh: a failed source (1), not bad input (2).
        let args = with_source(&["refresh"], source);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = h.expect(1, &args, reason);
        assert!(
            out.contains("failed") && out.contains("nothing changed"),
            "{out}"
        );

        // The service: list_failed, the live list stays, run goes on.
        let args = with_source(&run_cmd, source);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut run = h.mx().start(&args);
        let mut lines = run.lines();
        let (failed, _) = until_event(&mut lines, "list_failed");
        assert_eq!(failed["level"], "warn", "{source}: {failed}");
        let message = failed["message"].as_str().unwrap();
        assert!(message.contains(reason), "{source}: {failed}");
        assert!(
            failed["action"]
                .as_str()
                .unwrap()
                .contains("kept the live allowlist"),
            "{failed}"
        );
        let (attached, _) = until_event(&mut lines, "attached");
        assert_eq!(attached["iface"], SERVER_IF, "{attached}");
        assert_eq!(Live::of(h.mx()).allowlist, before.allowlist, "{source}");
        h.protects();
        assert!(
            run.signal(libc::SIGTERM).success(),
            "{source}: run stopped early"
        );
    }

    // At startup with nothing installed, there is nothing to attach: run
    // says so and exits 1, which the unit restarts (Restart=on-failure)
    // until the source delivers; 2 would stop the service for good.
    let flip = server.url("/flip.txt");
    let mut attach: Vec<String> = vec!["attach".into(), "--iface".into(), SERVER_IF.into()];
    attach.extend(with_source(&[], &flip));
    let attach: Vec<&str> = attach.iter().map(String::as_str).collect();
    h.mx().ok(&attach); // a good list: its copy is kept
    h.mx().ok(&["detach"]);
    flipped.store(true, Ordering::SeqCst);
    let args = with_source(&run_cmd, &flip);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = check(h.mx().command(&args), 1, "delivered no addresses");
    let event = out
        .lines()
        .find(|l| l.contains("\"list_failed\""))
        .unwrap_or_else(|| panic!("no list_failed event: {out}"));
    let event: Value = serde_json::from_str(event).unwrap();
    assert_eq!(event["level"], "error", "{event}");
    assert!(
        event["action"]
            .as_str()
            .unwrap()
            .contains("nothing to attach"),
        "{event}"
    );
    assert!(
        !h.mx().pin_dir().join("prog").exists(),
        "run installed something"
    );
    let unit = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/mxgate.service"
    ))
    .expect("reading dist/mxgate.service");
    assert!(
        unit.lines().any(|l| l.trim() == "Restart=on-failure"),
        "{unit}"
    );

    // With --use-cache-on-failure, the same start attaches from the copy.
    args.push("--use-cache-on-failure");
    let mut run = h.mx().start(&args);
    let (attached, _) = until_event(&mut run.lines(), "attached");
    assert_eq!(attached["iface"], SERVER_IF, "{attached}");
    assert_eq!(Live::of(h.mx()).allowlist, before.allowlist);
    h.protects();
    assert!(run.signal(libc::SIGTERM).success());
}
