//! Crafted frames on a real wire: sent with AF_PACKET from the internet
//! namespace, captured behind the filter on the mail server's interface.
//! A frame the filter drops never reaches the capture.

use std::time::Duration;

use filter_user::allowlist::Allowlist;
use mxgate_tests::{
    cli::Mxgate,
    frames::{DST_MAC, Ext, Frame, Piece, TPID_8021AD, TPID_8021Q, flags},
    netns::{CLIENT_IF, SERVER_IF, Wire},
    packet::RawSocket,
    reference::{self, DROP, Policy},
    scenario::{ALLOWED_V4, DENIED_V4, DENIED_V6, SERVER_V4, SERVER_V6, ip, syn},
    unique_name,
};

/// Sequence numbers mark the frames: MARK + index, the sentinel SENTINEL.
const MARK: u32 = 0x4d58_0000;
const SENTINEL: u32 = 0x4d58_ffff;

/// Each frame class, and whether the filter drops it.
fn classes() -> Vec<(&'static str, Vec<u8>, bool)> {
    let truncated = {
        let bytes = syn(DENIED_V4).bytes();
        bytes[..bytes.len() - 8].to_vec()
    };
    // Fragments of 8 bytes: the first holds the ports, not the flags.
    let tiny_first_fragment = syn(DENIED_V4).fragments(&Piece::every(8, 20))[0].clone();
    let short_ihl = {
        let mut bytes = syn(DENIED_V4).bytes();
        bytes[14] = 0x44;
        bytes
    };
    vec![
        ("denied IPv4 SYN", syn(DENIED_V4).bytes(), true),
        ("allowed IPv4 SYN", syn(ALLOWED_V4).bytes(), false),
        ("denied IPv6 SYN", syn(DENIED_V6).bytes(), true),
        (
            "denied SYN, one 802.1Q tag",
            syn(DENIED_V4).vlans(&[TPID_8021Q]).bytes(),
            true,
        ),
        (
            "denied SYN, QinQ",
            syn(DENIED_V4).vlans(&[TPID_8021AD, TPID_8021Q]).bytes(),
            true,
        ),
        (
            "denied SYN, two 802.1Q tags",
            syn(DENIED_V6).vlans(&[TPID_8021Q, TPID_8021Q]).bytes(),
            true,
        ),
        (
            "denied SYN, three tags",
            syn(DENIED_V4)
                .vlans(&[TPID_8021AD, TPID_8021Q, TPID_8021Q])
                .bytes(),
            true,
        ),
        (
            "allowed SYN, eight tags",
            syn(ALLOWED_V4).vlans(&[TPID_8021Q; 8]).bytes(),
            false,
        ),
        (
            "allowed SYN, nine tags (no IP header found)",
            syn(ALLOWED_V4).vlans(&[TPID_8021Q; 9]).bytes(),
            true,
        ),
        (
            "denied SYN, 40 bytes of IPv4 options",
            syn(DENIED_V4).ipv4_options(40).bytes(),
            true,
        ),
        (
            "denied SYN, IPv4 first fragment",
            syn(DENIED_V4).ipv4_frag(0x2000).bytes(),
            true,
        ),
        (
            "IPv4 non-first fragment",
            syn(DENIED_V4).ipv4_frag(0x00b9).bytes(),
            false,
        ),
        (
            "allowed IPv4 fragment at offset 1",
            syn(ALLOWED_V4).ipv4_frag(0x2001).bytes(),
            true,
        ),
        (
            "denied SYN, tiny IPv4 first fragment",
            tiny_first_fragment.clone(),
            true,
        ),
        ("IPv4 IHL 4", short_ihl, false),
        (
            "denied SYN, IPv6 hop-by-hop, routing, destination options",
            syn(DENIED_V6)
                .ipv6_ext(&[Ext::HopByHop(0), Ext::Routing(2), Ext::DestOpts(1)])
                .bytes(),
            true,
        ),
        (
            "denied SYN, IPv6 first fragment and AH",
            syn(DENIED_V6)
                .ipv6_ext(&[
                    Ext::Fragment {
                        offset: 0,
                        more: true,
                    },
                    Ext::Auth(4),
                ])
                .bytes(),
            true,
        ),
        (
            "IPv6 non-first fragment",
            syn(DENIED_V6)
                .ipv6_ext(&[Ext::Fragment {
                    offset: 185,
                    more: false,
                }])
                .bytes(),
            false,
        ),
        (
            "denied SYN, IPv6 chain of 16",
            syn(DENIED_V6).ipv6_ext(&[Ext::DestOpts(0); 16]).bytes(),
            true,
        ),
        (
            "denied IPv6 chain longer than the walk",
            syn(DENIED_V6).ipv6_ext(&[Ext::DestOpts(0); 17]).bytes(),
            true,
        ),
        (
            "denied SYN-ACK",
            syn(DENIED_V4).flags(flags::SYN | flags::ACK).bytes(),
            false,
        ),
        (
            "denied RST",
            syn(DENIED_V6).flags(flags::RST).bytes(),
            false,
        ),
        (
            "denied SYN to port 2525",
            Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 2525).bytes(),
            false,
        ),
        ("denied SYN cut inside the TCP header", truncated, true),
    ]
}

/// Rewrites the TCP sequence number of a built frame: finds the original
/// marker (0x01020304) and replaces it. A frame without it could never be
/// found behind the filter, so its class would always read "dropped".
fn mark(mut bytes: Vec<u8>, seq: u32, name: &str) -> Vec<u8> {
    let original = 0x0102_0304u32.to_be_bytes();
    let at = bytes
        .windows(4)
        .position(|w| w == original)
        .unwrap_or_else(|| panic!("{name}: the frame has no sequence number to mark"));
    bytes[at..at + 4].copy_from_slice(&seq.to_be_bytes());
    bytes
}

fn carries(frame: &[u8], seq: u32) -> bool {
    frame.windows(4).any(|w| w == seq.to_be_bytes())
}

#[test]
fn crafted_frames_arrive_behind_the_filter_exactly_when_the_verdict_passes_them() {
    let name = unique_name("wire");
    let wire = Wire::new(
        &name,
        &[ALLOWED_V4, DENIED_V4, DENIED_V6],
        &[SERVER_V4, SERVER_V6],
    )
    .expect("making the namespaces");
    let mac = DST_MAC.map(|b| format!("{b:02x}")).join(":");
    wire.server
        .ip(&["link", "set", SERVER_IF, "address", &mac])
        .expect("setting the server's MAC");
    let mx = Mxgate::new(&wire.server, &name);
    let dir = tempfile::tempdir().unwrap();
    let ranges = dir.path().join("ranges.txt");
    std::fs::write(&ranges, "192.0.2.0/24\n2001:db8:5e::/48\n").unwrap();
    mx.ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "--ranges",
        &ranges.display().to_string(),
    ]);

    let policy = Policy {
        allow: Allowlist::from_prefixes(
            vec!["192.0.2.0/24".parse().unwrap()],
            vec!["2001:db8:5e::/48".parse().unwrap()],
        ),
        ports: [25].into(),
        ..Policy::default()
    };
    let capture = RawSocket::open(&wire.server, SERVER_IF).expect("capture socket");
    let sender = RawSocket::open(&wire.client, CLIENT_IF).expect("sender socket");
    let classes = classes();
    for (i, (name, bytes, dropped)) in classes.iter().enumerate() {
        let bytes = mark(bytes.clone(), MARK + i as u32, name);
        assert_eq!(
            reference::verdict(&bytes, &policy) == DROP,
            *dropped,
            "the reference disagrees with this table about {name}"
        );
        sender
            .send(&bytes)
            .unwrap_or_else(|e| panic!("sending {name}: {e}"));
    }
    // Frames on one veth arrive in order: once the sentinel (a plain ACK,
    // which passes) is captured, every frame before it has been judged.
    let sentinel = mark(
        syn(DENIED_V4).flags(flags::ACK).bytes(),
        SENTINEL,
        "sentinel",
    );
    sender.send(&sentinel).expect("sending the sentinel");
    let mut arrived = vec![false; classes.len()];
    loop {
        let frame = capture
            .recv(Duration::from_secs(5))
            .expect("capturing")
            .expect("the sentinel frame never arrived");
        if carries(&frame, SENTINEL) {
            break;
        }
        for (i, seen) in arrived.iter_mut().enumerate() {
            *seen |= carries(&frame, MARK + i as u32);
        }
    }
    let wrong: Vec<String> = classes
        .iter()
        .zip(&arrived)
        .filter(|((_, _, dropped), arrived)| **arrived == *dropped)
        .map(|((name, _, dropped), _)| {
            format!(
                "{name}: {}",
                if *dropped {
                    "arrived, should be dropped"
                } else {
                    "dropped, should arrive"
                }
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let stats: serde_json::Value =
        serde_json::from_str(&mx.ok(&["stats", "--json"])).expect("stats --json is JSON");
    assert_eq!(stats["v4"]["counts"]["dropped"], 6, "{stats}");
    assert_eq!(stats["v4"]["counts"]["dropped_unparsed"], 3, "{stats}");
    assert_eq!(stats["v6"]["counts"]["dropped"], 5, "{stats}");
    assert_eq!(stats["v6"]["counts"]["dropped_unparsed"], 1, "{stats}");
    assert_eq!(stats["no_ip_header"], 1, "{stats}");
}
