//! A real MTA end to end: Postfix in the mail server's namespace, swaks in
//! the internet's, mxgate between them.

use mxgate_tests::{
    postfix::{Postfix, swaks},
    scenario::{ALLOWED_V4, ALLOWED_V6, DENIED_V4, SERVER_V4, SERVER_V6, Setup},
};
use serde_json::Value;

#[test]
fn postfix_takes_mail_from_the_service_never_sees_the_spammer_and_open_lets_it_in() {
    let s = Setup::with_listener_ports("mta", &[]);
    let postfix = Postfix::start(&s.wire.server).expect("starting Postfix");
    s.attach();
    let mut run =
        s.mx.start(&["run", "--interval", "1", "--log-format", "json"]);
    let mut lines = run.lines();

    // The service's relays deliver, over IPv4 and IPv6.
    for (src, server) in [(ALLOWED_V4, SERVER_V4), (ALLOWED_V6, SERVER_V6)] {
        let out = swaks(&s.wire.client, src, server, 10);
        assert!(
            out.status.success(),
            "{src}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    postfix.wait_delivered(2).unwrap();

    // The spammer's connection times out; Postfix never hears of it.
    let out = swaks(&s.wire.client, DENIED_V4, SERVER_V4, 2);
    assert!(
        !out.status.success(),
        "the spammer got through: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connect: timeout"),
        "{out:?}"
    );
    assert_eq!((postfix.delivered(), postfix.queued()), (2, 0));
    assert!(
        !postfix.log().contains(DENIED_V4),
        "Postfix saw the spammer:\n{}",
        postfix.log()
    );

    // mxgate's log names the spammer.
    let stats = loop {
        let line = lines
            .next()
            .expect("mxgate run ended early")
            .expect("reading mxgate run");
        let value: Value = serde_json::from_str(&line).expect("a JSON line");
        if value["event"] == "stats" && value["total_v4_dropped"].as_u64() >= Some(1) {
            break value;
        }
    };
    assert!(stats.to_string().contains(DENIED_V4), "{stats}");

    // The emergency switch: the spammer's message is taken too.
    s.mx.ok(&["open"]);
    let out = swaks(&s.wire.client, DENIED_V4, SERVER_V4, 10);
    assert!(
        out.status.success(),
        "open: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    postfix.wait_delivered(3).unwrap();

    // And enforce shuts it out again.
    s.mx.ok(&["enforce"]);
    let out = swaks(&s.wire.client, DENIED_V4, SERVER_V4, 2);
    assert!(
        !out.status.success(),
        "enforce: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(postfix.delivered(), 3);
    run.signal(libc::SIGTERM);
}
