//! No way around the gate, with the real kernel as the judge: crafted
//! frame sequences (fragments tiny, reversed and overlapping, IPv4 options,
//! every flag combination that carries SYN, IPv6 chains of 0 to 40
//! extension headers of each kind, a 1,200-byte options header, atomic and
//! tiny IPv6 fragments, priority-tagged VLAN stacks) are sent from an
//! unlisted and a listed sender to a real listener behind the filter, and
//! what counts is whether the kernel answers SYN-ACK.
//!
//! Every shape is sent twice: once with no filter attached — the baseline,
//! which shows the shape does reach the listener, so the test can see a
//! bypass — and once with mxgate attached. With the filter, an unlisted
//! sender must never be answered on the protected port (docs/DESIGN.md §2,
//! "fails closed"); a listed sender must be answered exactly as without
//! the filter, except for the shapes the contract drops whatever the
//! source (V2: more than eight VLAN tags; V4: an IPv4 fragment at offset
//! 1); and an unprotected port answers as before. Beside the fixed shapes,
//! a seeded generator mutates them (`MXGATE_GATE_SHAPES`, default 3,000;
//! `MXGATE_GATE_SEED` to replay).

use std::{
    collections::HashSet,
    net::IpAddr,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use mxgate_tests::{
    cli::Mxgate,
    env_u64,
    frames::{DST_MAC, Ext, Frame, Piece, TPID_8021AD, TPID_8021Q, flags},
    mutate::Rng,
    netns::{CLIENT_IF, SERVER_IF, Wire},
    packet::RawSocket,
    scenario::{ALLOWED_V4, ALLOWED_V6, DENIED_V4, DENIED_V6, SERVER_V4, SERVER_V6, ip},
    tcp::Server,
    unique_name,
};

/// The MAC the crafted frames come from; the client's interface gets it,
/// and the server's neighbour entries point at it.
const CLIENT_MAC: &str = "02:00:00:00:00:01";
/// An unprotected port with a listener: non-SMTP traffic must pass.
const OTHER_PORT: u16 = 2525;
/// Shapes between two sentinels.
const BATCH: usize = 200;

/// How a packet is cut into frames.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cut {
    /// One frame.
    Whole,
    /// Fragments of `size` bytes, sent in order or last first.
    Every { size: usize, reversed: bool },
    /// Fragments of `size` bytes in a shuffled order.
    Shuffled { size: usize, seed: u64 },
    /// IPv4, RFC 1858's overlap: a first fragment whose whole TCP header
    /// says ACK, then a fragment at offset 1 (byte 8) from the SYN that
    /// rewrites the flags; `reversed` sends the rewrite first.
    Overlap { reversed: bool },
}

/// One crafted packet shape, built for any source and marker port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shape {
    name: String,
    v6: bool,
    port: u16,
    flags: u8,
    data: usize,
    /// Priority tags (VLAN id 0), outermost first.
    tags: Vec<u16>,
    /// IPv4 option bytes.
    options: usize,
    /// IPv6 extension headers.
    ext: Vec<Ext>,
    cut: Cut,
}

impl Shape {
    fn syn(name: &str, v6: bool) -> Self {
        Self {
            name: name.to_owned(),
            v6,
            port: 25,
            flags: flags::SYN,
            data: 0,
            tags: Vec::new(),
            options: 0,
            ext: Vec::new(),
            cut: Cut::Whole,
        }
    }

    fn flags(mut self, bits: u8) -> Self {
        self.flags = bits;
        self
    }

    fn data(mut self, bytes: usize) -> Self {
        self.data = bytes;
        self
    }

    fn tags(mut self, tpids: &[u16]) -> Self {
        self.tags = tpids.to_vec();
        self
    }

    fn options(mut self, bytes: usize) -> Self {
        self.options = bytes;
        self
    }

    fn ext(mut self, chain: Vec<Ext>) -> Self {
        self.ext = chain;
        self
    }

    fn cut(mut self, cut: Cut) -> Self {
        self.cut = cut;
        self
    }

    fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Whether docs/DESIGN.md drops this shape whatever its source and
    /// port: behind more than eight tags (V2), or IPv4 with a fragment at
    /// offset 1 — which cutting every 8 bytes makes too (V4, RFC 1858).
    fn dropped_from_anyone(&self) -> bool {
        let offset_one = !self.v6
            && match self.cut {
                Cut::Overlap { .. } => true,
                Cut::Every { size, .. } | Cut::Shuffled { size, .. } => size == 8,
                Cut::Whole => false,
            };
        self.tags.len() > 8 || offset_one
    }

    /// The frames of this shape from `src`, marked by its source port.
    fn frames(&self, src: IpAddr, sport: u16, id: u32) -> Vec<Vec<u8>> {
        let dst = ip(if self.v6 { SERVER_V6 } else { SERVER_V4 });
        let data: Vec<u8> = (0..self.data).map(|i| b'a' + (i % 26) as u8).collect();
        let packet = |bits: u8| {
            let mut f = Frame::syn(src, dst, self.port)
                .sport(sport)
                .seq(u32::from(sport) << 8)
                .flags(bits)
                .payload(&data)
                .id(id)
                .ipv4_options(self.options)
                .ipv6_ext(&self.ext);
            if !self.tags.is_empty() {
                f = f.priority_tags(&self.tags);
            }
            f
        };
        let syn = packet(self.flags);
        let total = syn.fragmentable_len();
        match &self.cut {
            Cut::Whole => vec![syn.bytes()],
            Cut::Every { size, reversed } => {
                let mut frames = syn.fragments(&Piece::every(*size, total));
                if *reversed {
                    frames.reverse();
                }
                frames
            }
            Cut::Shuffled { size, seed } => {
                let mut frames = syn.fragments(&Piece::every(*size, total));
                let mut rng = Rng::new(*seed);
                for i in (1..frames.len()).rev() {
                    frames.swap(i, rng.below(i + 1));
                }
                frames
            }
            Cut::Overlap { reversed } => {
                // The ACK's whole TCP header (and the data) in the first
                // fragment; the SYN's bytes from 8 on at offset 1.
                let ack = packet(flags::ACK);
                let first = ack.fragments(&[Piece {
                    offset: 0,
                    len: 24,
                    more: true,
                }]);
                let rewrite = syn.fragments(&[Piece {
                    offset: 8,
                    len: total - 8,
                    more: false,
                }]);
                if *reversed {
                    [rewrite, first].concat()
                } else {
                    [first, rewrite].concat()
                }
            }
        }
    }
}

/// The `i`-th header of a chain of one kind.
type ChainLink = fn(usize) -> Ext;

/// The shapes docs/DESIGN.md §2 names, each on its own, and the known
/// bypasses of the verdict before it failed closed.
fn fixed_shapes() -> Vec<Shape> {
    let mut shapes = Vec::new();
    for v6 in [false, true] {
        let fam = if v6 { "IPv6" } else { "IPv4" };
        let syn = |what: &str| Shape::syn(&format!("{fam} {what}"), v6);
        shapes.push(syn("SYN"));
        shapes.push(syn("SYN to an unprotected port").port(OTHER_PORT));
        for (what, bits) in [
            ("SYN+ECE+CWR", flags::SYN | flags::ECE | flags::CWR),
            ("SYN+PSH", flags::SYN | flags::PSH),
            ("SYN+URG", flags::SYN | flags::URG),
            ("SYN+FIN", flags::SYN | flags::FIN),
            ("SYN+RST", flags::SYN | flags::RST),
        ] {
            shapes.push(syn(what).flags(bits));
        }
        shapes.push(syn("SYN with 64 bytes of data").data(64));
        for size in [8, 16] {
            for reversed in [false, true] {
                let order = if reversed { ", last first" } else { "" };
                shapes.push(
                    syn(&format!("SYN in fragments of {size} bytes{order}"))
                        .cut(Cut::Every { size, reversed }),
                );
                shapes.push(
                    syn(&format!(
                        "SYN with data in fragments of {size} bytes{order}"
                    ))
                    .data(24)
                    .cut(Cut::Every { size, reversed }),
                );
            }
        }
        shapes.push(
            syn("SYN in fragments of 8 bytes, shuffled")
                .data(40)
                .cut(Cut::Shuffled { size: 8, seed: 7 }),
        );
        shapes.push(
            syn("SYN to an unprotected port in fragments of 8 bytes")
                .port(OTHER_PORT)
                .cut(Cut::Every {
                    size: 8,
                    reversed: false,
                }),
        );
        for count in [1, 2, 3, 4, 8, 9, 12] {
            let tags: Vec<u16> = (0..count)
                .map(|i| if i % 2 == 0 { TPID_8021AD } else { TPID_8021Q })
                .collect();
            shapes.push(syn(&format!("SYN behind {count} priority tags")).tags(&tags));
        }
        shapes.push(
            syn("SYN behind 2 priority tags in fragments of 8 bytes")
                .tags(&[TPID_8021AD, TPID_8021Q])
                .cut(Cut::Every {
                    size: 8,
                    reversed: true,
                }),
        );
        shapes.push(
            syn("SYN behind 3 priority tags in fragments of 8 bytes")
                .tags(&[TPID_8021Q; 3])
                .cut(Cut::Every {
                    size: 8,
                    reversed: false,
                }),
        );
    }
    for options in [4, 20, 40] {
        for size in [8, 16] {
            shapes.push(
                Shape::syn(
                    &format!("IPv4 SYN with {options} bytes of options in fragments of {size}"),
                    false,
                )
                .options(options)
                .cut(Cut::Every {
                    size,
                    reversed: size == 16,
                }),
            );
        }
    }
    for reversed in [false, true] {
        let order = if reversed { ", rewrite first" } else { "" };
        shapes.push(
            Shape::syn(
                &format!("IPv4 ACK overlapped at offset 1 by a SYN{order}"),
                false,
            )
            .data(16)
            .cut(Cut::Overlap { reversed }),
        );
    }
    let kinds: [(&str, ChainLink); 5] = [
        ("destination options", |_| Ext::DestOpts(0)),
        ("routing", |_| Ext::Routing(0)),
        ("atomic fragment", |_| Ext::Fragment {
            offset: 0,
            more: false,
        }),
        ("AH", |_| Ext::Auth(1)),
        ("mixed", |i| match i % 4 {
            0 => Ext::DestOpts(1),
            1 => Ext::Routing(0),
            2 => Ext::Fragment {
                offset: 0,
                more: false,
            },
            _ => Ext::DestOpts(0),
        }),
    ];
    for (kind, make) in kinds {
        for count in 0..=40 {
            let chain: Vec<Ext> = (0..count).map(make).collect();
            shapes.push(
                Shape::syn(&format!("IPv6 SYN behind {count} {kind} headers"), true).ext(chain),
            );
        }
    }
    for count in [1, 2, 8] {
        let mut chain = vec![Ext::HopByHop(0)];
        chain.extend((1..count).map(|_| Ext::DestOpts(0)));
        shapes.push(
            Shape::syn(
                &format!("IPv6 SYN behind hop-by-hop and {} more", count - 1),
                true,
            )
            .ext(chain),
        );
    }
    shapes.push(
        Shape::syn(
            "IPv6 SYN behind a 1,200-byte destination options header",
            true,
        )
        .ext(vec![Ext::DestOpts(149)]),
    );
    shapes.push(
        Shape::syn("IPv6 SYN behind hop-by-hop of 1,200 bytes", true).ext(vec![Ext::HopByHop(149)]),
    );
    for kind in [135, 139, 140, 253, 254] {
        shapes.push(
            Shape::syn(
                &format!("IPv6 SYN behind extension header type {kind}"),
                true,
            )
            .ext(vec![Ext::Other { kind, len: 0 }]),
        );
    }
    for count in [7, 12, 20] {
        shapes.push(
            Shape::syn(
                &format!("IPv6 SYN behind {count} destination options, in fragments of 8"),
                true,
            )
            .ext(vec![Ext::DestOpts(0); count])
            .cut(Cut::Every {
                size: 8,
                reversed: false,
            }),
        );
    }
    shapes.push(
        Shape::syn(
            "IPv6 SYN behind 12 destination options and 3 priority tags",
            true,
        )
        .ext(vec![Ext::DestOpts(0); 12])
        .tags(&[TPID_8021Q; 3]),
    );
    shapes
}

/// Seeded random mixes of the fixed shapes' ingredients.
fn random_shapes(seed: u64, count: usize) -> Vec<Shape> {
    let mut rng = Rng::new(seed);
    let syn_flags = [
        flags::SYN,
        flags::SYN | flags::ECE | flags::CWR,
        flags::SYN | flags::PSH,
        flags::SYN | flags::URG,
        flags::SYN | flags::FIN,
        flags::SYN | flags::PSH | flags::URG | flags::ECE,
    ];
    (0..count)
        .map(|n| {
            let v6 = rng.chance(50);
            let mut s = Shape::syn(&format!("random #{n} (seed {seed:#x})"), v6)
                .flags(rng.pick(&syn_flags))
                .data(rng.pick(&[0, 0, 8, 24, 100]));
            if rng.chance(5) {
                s = s.port(OTHER_PORT);
            }
            if rng.chance(25) {
                let count = rng.pick(&[1, 2, 3, 5, 8, 9, 11]);
                let tags: Vec<u16> = (0..count)
                    .map(|_| rng.pick(&[TPID_8021Q, TPID_8021AD]))
                    .collect();
                s = s.tags(&tags);
            }
            if v6 {
                if rng.chance(70) {
                    let count = rng.below(30);
                    let chain = (0..count)
                        .map(|_| match rng.below(12) {
                            0..=4 => Ext::DestOpts(rng.pick(&[0, 0, 1, 2])),
                            5..=7 => Ext::Routing(rng.pick(&[0, 1])),
                            8..=9 => Ext::Fragment {
                                offset: 0,
                                more: false,
                            },
                            10 => Ext::Auth(1),
                            _ => Ext::Other {
                                kind: rng.pick(&[135, 139, 140, 253]),
                                len: 0,
                            },
                        })
                        .collect();
                    s = s.ext(chain);
                }
            } else if rng.chance(40) {
                s = s.options(4 * rng.below(11));
            }
            let size = rng.pick(&[8, 8, 16, 24]);
            s.cut(match rng.below(10) {
                0..=3 => Cut::Whole,
                4..=5 => Cut::Every {
                    size,
                    reversed: false,
                },
                6..=7 => Cut::Every {
                    size,
                    reversed: true,
                },
                8 => Cut::Shuffled {
                    size,
                    seed: rng.next_u64(),
                },
                _ if !v6 => Cut::Overlap {
                    reversed: rng.chance(50),
                },
                _ => Cut::Whole,
            })
        })
        .collect()
}

/// SYN-ACKs seen on the internet side, by (the sender they answer, its
/// port); shared with the capture thread.
#[derive(Default)]
struct Answers {
    seen: Mutex<HashSet<(IpAddr, u16)>>,
    arrived: Condvar,
}

impl Answers {
    fn wait_for(&self, key: (IpAddr, u16), timeout: Duration) -> bool {
        let seen = self.seen.lock().expect("answers lock");
        let (seen, _) = self
            .arrived
            .wait_timeout_while(seen, timeout, |s| !s.contains(&key))
            .expect("answers lock");
        seen.contains(&key)
    }

    fn contains(&self, key: (IpAddr, u16)) -> bool {
        self.seen.lock().expect("answers lock").contains(&key)
    }
}

/// The (destination, destination port) of a SYN-ACK from port 25 or
/// [`OTHER_PORT`] in an untagged Ethernet frame, if `frame` is one.
fn syn_ack(frame: &[u8]) -> Option<(IpAddr, u16)> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (dst, tcp): (IpAddr, &[u8]) = match ethertype {
        0x0800 => {
            let ip = frame.get(14..34)?;
            if ip[9] != 6 {
                return None;
            }
            let hlen = usize::from(ip[0] & 0x0f) * 4;
            let dst: [u8; 4] = ip[16..20].try_into().ok()?;
            (dst.into(), frame.get(14 + hlen..14 + hlen + 20)?)
        }
        0x86dd => {
            let ip = frame.get(14..54)?;
            if ip[6] != 6 {
                return None;
            }
            let dst: [u8; 16] = ip[24..40].try_into().ok()?;
            (dst.into(), frame.get(54..74)?)
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    let answered = tcp[13] & (flags::SYN | flags::ACK) == flags::SYN | flags::ACK;
    (answered && (sport == 25 || sport == OTHER_PORT)).then_some((dst, dport))
}

/// Whether each shape was answered, from the listed and the unlisted
/// sender.
struct Round {
    listed: Vec<bool>,
    unlisted: Vec<bool>,
}

/// Sends every shape from both senders (the unlisted one first) and reads
/// which were answered. `round` keeps ports and fragment ids apart from
/// other rounds, so no state the kernel kept from one round answers in
/// another. Every [`BATCH`] shapes a plain SYN from the listed sender is
/// the sentinel: frames on the veth are handled in order, so once its
/// SYN-ACK is in, every answer to what was sent before it is in too.
fn probe(wire: &Wire, shapes: &[Shape], round: u16) -> Round {
    let capture = RawSocket::open(&wire.client, CLIENT_IF).expect("a capture socket");
    capture
        .receive_buffer(32 << 20)
        .expect("growing the capture buffer");
    let sender = RawSocket::open(&wire.client, CLIENT_IF).expect("a sender socket");
    let answers = Arc::new(Answers::default());
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (answers, stop) = (Arc::clone(&answers), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match capture.recv(Duration::from_millis(200)) {
                    Ok(Some(frame)) => {
                        if let Some(key) = syn_ack(&frame) {
                            answers.seen.lock().expect("answers lock").insert(key);
                            answers.arrived.notify_all();
                        }
                    }
                    Ok(None) => {}
                    Err(e) => panic!("capturing: {e}"),
                }
            }
        })
    };
    let base = 1024 + u32::from(round) * 30_000;
    let port = |i: usize| u16::try_from(base as usize + i).expect("fewer than 30,000 shapes");
    let senders = |s: &Shape| {
        if s.v6 {
            (ip(DENIED_V6), ip(ALLOWED_V6))
        } else {
            (ip(DENIED_V4), ip(ALLOWED_V4))
        }
    };
    for (batch, chunk) in shapes.chunks(BATCH).enumerate() {
        for (j, shape) in chunk.iter().enumerate() {
            let i = batch * BATCH + j;
            let id = u32::from(round) << 16 | i as u32;
            let (unlisted, listed) = senders(shape);
            for src in [unlisted, listed] {
                for frame in shape.frames(src, port(i), id) {
                    sender
                        .send(&frame)
                        .unwrap_or_else(|e| panic!("sending {}: {e}", shape.name));
                }
            }
        }
        let sentinel_port = 61_000 + round * 1_000 + batch as u16;
        let sentinel = Frame::syn(ip(ALLOWED_V4), ip(SERVER_V4), 25)
            .sport(sentinel_port)
            .bytes();
        sender.send(&sentinel).expect("sending the sentinel");
        assert!(
            answers.wait_for((ip(ALLOWED_V4), sentinel_port), Duration::from_secs(30)),
            "the listener never answered the sentinel SYN of batch {batch} (round {round})"
        );
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("the capture thread");
    let mut result = Round {
        listed: Vec::new(),
        unlisted: Vec::new(),
    };
    for (i, shape) in shapes.iter().enumerate() {
        let (unlisted, listed) = senders(shape);
        result.listed.push(answers.contains((listed, port(i))));
        result.unlisted.push(answers.contains((unlisted, port(i))));
    }
    result
}

/// The namespaces: both senders' addresses on the internet side, the
/// listener on 25 and [`OTHER_PORT`], static neighbours (so no answer
/// waits for address resolution and overtakes a later one), and room for
/// the fragment queues the filter leaves incomplete.
fn setup(name: &str) -> (Wire, Server) {
    let wire = Wire::new(
        name,
        &[ALLOWED_V4, DENIED_V4, ALLOWED_V6, DENIED_V6],
        &[SERVER_V4, SERVER_V6],
    )
    .expect("making the namespaces");
    let server_mac = DST_MAC.map(|b| format!("{b:02x}")).join(":");
    wire.server
        .ip(&["link", "set", SERVER_IF, "address", &server_mac])
        .expect("setting the server's MAC");
    wire.client
        .ip(&["link", "set", CLIENT_IF, "address", CLIENT_MAC])
        .expect("setting the client's MAC");
    for addr in [ALLOWED_V4, DENIED_V4, ALLOWED_V6, DENIED_V6] {
        wire.server
            .ip(&[
                "neigh",
                "replace",
                addr,
                "lladdr",
                CLIENT_MAC,
                "dev",
                SERVER_IF,
                "nud",
                "permanent",
            ])
            .expect("a static neighbour");
    }
    for (key, value) in [
        ("net.ipv4.ipfrag_high_thresh", "268435456"),
        ("net.ipv6.ip6frag_high_thresh", "268435456"),
    ] {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", wire.server.name(), "sysctl", "-qw"])
            .arg(format!("{key}={value}"))
            .output()
            .expect("running sysctl");
        assert!(
            out.status.success(),
            "sysctl {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let server = Server::start(&wire.server, &[25, OTHER_PORT]).expect("starting the listener");
    (wire, server)
}

#[test]
fn no_crafted_frame_gets_an_unlisted_senders_syn_answered_on_the_protected_port() {
    let seed = env_u64("MXGATE_GATE_SEED", 0x6761_7465_0001);
    let count = env_u64("MXGATE_GATE_SHAPES", 3000) as usize;
    let mut shapes = fixed_shapes();
    let fixed = shapes.len();
    shapes.extend(random_shapes(seed, count));
    let name = unique_name("gate");
    let (wire, server) = setup(&name);

    let baseline = probe(&wire, &shapes, 0);

    let mx = Mxgate::new(&wire.server, &name);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ranges = dir.path().join("ranges.txt");
    std::fs::write(&ranges, "192.0.2.0/24\n2001:db8:5e::/48\n").expect("writing the list");
    mx.ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "--ranges",
        &ranges.display().to_string(),
    ]);
    let filtered = probe(&wire, &shapes, 1);

    let mut bypasses = Vec::new();
    let mut refused = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        if shape.port == OTHER_PORT {
            let expected = |answered: bool| answered && !shape.dropped_from_anyone();
            if filtered.unlisted[i] != expected(baseline.unlisted[i])
                || filtered.listed[i] != expected(baseline.listed[i])
            {
                refused.push(format!(
                    "{}: the unprotected port answered differently",
                    shape.name
                ));
            }
            continue;
        }
        if filtered.unlisted[i] {
            bypasses.push(format!("{}: {shape:?}", shape.name));
        }
        let expected = baseline.listed[i] && !shape.dropped_from_anyone();
        if filtered.listed[i] != expected {
            refused.push(format!(
                "{}: the listed sender was {} (without the filter: {})",
                shape.name,
                if filtered.listed[i] {
                    "answered"
                } else {
                    "not answered"
                },
                if baseline.listed[i] {
                    "answered"
                } else {
                    "not answered"
                },
            ));
        }
    }
    // The shapes that were bypasses of the old verdict must reach the
    // listener without the filter, or this test could not see them. How
    // long a chain a kernel accepts differs (Debian's 5.10, 6.1 and 6.12
    // take 40 destination options headers; a 6.18 build stops at 12), so
    // the chains named here are those the bypass report found (7 and 12);
    // longer ones are still sent, and must never be answered filtered.
    let must_reach = [
        "IPv4 SYN in fragments of 8 bytes",
        "IPv4 SYN in fragments of 8 bytes, last first",
        "IPv4 SYN with 20 bytes of options in fragments of 8",
        "IPv6 SYN behind 7 destination options headers",
        "IPv6 SYN behind 12 destination options headers",
        "IPv4 SYN behind 3 priority tags",
        "IPv6 SYN behind 8 priority tags",
        "IPv6 SYN behind hop-by-hop and 7 more",
        "IPv6 SYN behind 7 routing headers",
        "IPv6 SYN behind a 1,200-byte destination options header",
    ];
    let unseen: Vec<&str> = must_reach
        .iter()
        .copied()
        .filter(|name| {
            let i = shapes[..fixed]
                .iter()
                .position(|s| s.name == *name)
                .unwrap_or_else(|| panic!("no shape named {name:?}"));
            !baseline.listed[i]
        })
        .collect();
    if std::env::var_os("MXGATE_GATE_TABLE").is_some() {
        for (i, shape) in shapes[..fixed].iter().enumerate() {
            eprintln!(
                "{:<70} baseline {}/{}  filtered listed {} unlisted {}",
                shape.name,
                baseline.listed[i],
                baseline.unlisted[i],
                filtered.listed[i],
                filtered.unlisted[i]
            );
        }
    }
    let protected = |answers: &[bool]| {
        shapes
            .iter()
            .zip(answers)
            .filter(|(s, a)| s.port != OTHER_PORT && **a)
            .count()
    };
    eprintln!(
        "{} shapes ({fixed} fixed, {count} random from seed {seed:#x}); on the protected port \
         the listener answered {} without the filter; with it, the unlisted sender {} times, the \
         listed sender {}",
        shapes.len(),
        protected(&baseline.listed),
        protected(&filtered.unlisted),
        protected(&filtered.listed),
    );
    assert!(
        unseen.is_empty(),
        "without the filter the listener did not answer these shapes, so the test cannot see \
         a bypass through them:\n{}",
        unseen.join("\n")
    );
    assert!(
        bypasses.is_empty(),
        "{} shapes got an unlisted sender's SYN answered through the filter:\n{}",
        bypasses.len(),
        bypasses.join("\n")
    );
    assert!(
        refused.is_empty(),
        "{} shapes were answered differently than without the filter:\n{}",
        refused.len(),
        refused.join("\n")
    );
    assert_eq!(server.accepted(), 0, "a crafted handshake was completed");

    let stats: serde_json::Value =
        serde_json::from_str(&mx.ok(&["stats", "--json"])).expect("stats --json is JSON");
    for family in ["v4", "v6"] {
        let unparsed = &stats[family]["counts"]["dropped_unparsed"];
        assert!(
            unparsed.as_u64().is_some_and(|n| n > 0),
            "{family}: no dropped_unparsed count in {stats}"
        );
    }
    assert!(
        stats["no_ip_header"].as_u64().is_some_and(|n| n > 0),
        "no no_ip_header count in {stats}"
    );
}
