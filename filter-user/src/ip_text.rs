//! Address text, read exactly as `std` reads it (RFC 4291 section 2.2
//! forms, no zone, no brackets), with IPv6 read directly: `std`'s parser
//! tries an embedded IPv4 address at every group of an IPv6 one, which
//! made up a fifth of the time it took to read a list of IPv6 prefixes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `text` as an address, or `None` where `IpAddr::from_str` would refuse
/// it. IPv4 text holds no `:`, IPv6 text at least one.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    if text.contains(':') {
        parse_ipv6(text).map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// `text` as an IPv6 address, or `None` where `Ipv6Addr::from_str` would
/// refuse it: up to 8 groups of 1 to 4 hex digits, one `::` standing for
/// at least one group of zeros. Text with a `.` (an embedded IPv4 address,
/// `::ffff:192.0.2.1`) is left to `std`.
pub fn parse_ipv6(text: &str) -> Option<Ipv6Addr> {
    if text.contains('.') {
        return text.parse().ok();
    }
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut groups = [0u16; 8];
    let head = read_groups(bytes, &mut at, &mut groups);
    if head < groups.len() {
        if bytes.get(at..at + 2) != Some(b"::".as_slice()) {
            return None;
        }
        at += 2;
        // `::` stands for one group at least.
        let mut tail = [0u16; 7];
        let tail_len = read_groups(bytes, &mut at, &mut tail[..7 - head]);
        groups[8 - tail_len..].copy_from_slice(&tail[..tail_len]);
    }
    (at == bytes.len()).then(|| Ipv6Addr::from(groups))
}

/// Reads `:`-separated groups from `bytes[*at..]` into `out` until one is
/// missing or `out` is full; returns how many. `*at` ends after the last
/// group read (a `:` not followed by a group is left unread).
fn read_groups(bytes: &[u8], at: &mut usize, out: &mut [u16]) -> usize {
    for (i, slot) in out.iter_mut().enumerate() {
        let start = if i == 0 {
            *at
        } else if bytes.get(*at) == Some(&b':') {
            *at + 1
        } else {
            return i;
        };
        match read_group(bytes, start) {
            Some((value, end)) => {
                *slot = value;
                *at = end;
            }
            None => return i,
        }
    }
    out.len()
}

/// The group of 1 to 4 hex digits at `bytes[start..]` and where it ends;
/// `None` if there is none, or if a fifth digit follows (as `std`, which
/// then refuses the whole address).
fn read_group(bytes: &[u8], start: usize) -> Option<(u16, usize)> {
    let mut value = 0u16;
    let mut end = start;
    while let Some(digit) = bytes.get(end).and_then(|b| char::from(*b).to_digit(16)) {
        if end - start == 4 {
            return None;
        }
        // Four hex digits fit in 16 bits: no overflow.
        value = (value << 4) | digit as u16;
        end += 1;
    }
    (end > start).then_some((value, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64, for seeded random text.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n
        }
    }

    fn agrees(text: &str) {
        assert_eq!(
            parse_ip(text),
            text.parse::<IpAddr>().ok(),
            "{text:?} read otherwise than std reads it"
        );
    }

    #[test]
    fn the_forms_of_rfc_4291_read_as_std_reads_them() {
        for text in [
            "::",
            "::1",
            "1::",
            "2001:db8::",
            "2001:DB8::8:800:200C:417A",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1::8",
            "0:0:0:0:0:0:0:0",
            "ffff::ffff",
            "::ffff:192.0.2.1",
            "::192.0.2.1",
            "1:2:3:4:5:6:192.0.2.1",
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
        ] {
            assert!(parse_ip(text).is_some(), "{text}");
            agrees(text);
        }
    }

    #[test]
    fn what_std_refuses_is_refused() {
        for text in [
            "",
            ":",
            ":::",
            "1:::2",
            "1::2::3",
            ":1::",
            "::1:",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7:8::",
            "::1:2:3:4:5:6:7:8",
            "1::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::8",
            "12345::",
            "::12345",
            "1:12345::",
            "1:2:3:4:5:6:7:12345",
            "g::",
            "::g",
            "1 ::",
            ":: ",
            "fe80::1%eth0",
            "[::1]",
            "1:2:3:4:5:6:7",
            "::ffff:192.0.2",
            "::ffff:1.2.3.4.5",
            "+1::",
            "0x1::",
            "１::",
            "192.0.2",
            "192.0.2.256",
            "01.2.3.4",
        ] {
            assert!(parse_ip(text).is_none(), "{text:?} read");
            agrees(text);
        }
    }

    #[test]
    fn random_text_reads_as_std_reads_it() {
        // Mostly near-addresses: groups of 0 to 5 hex digits, one or two
        // colons, now and then another character.
        let alphabet = b"0123456789abcdefABCDEF:::::.g% ";
        let mut rng = Rng(0x6970_7465_7874);
        let mut accepted = 0;
        for _ in 0..200_000 {
            let len = rng.below(24) as usize;
            let text: String = (0..len)
                .map(|_| char::from(alphabet[rng.below(alphabet.len() as u64) as usize]))
                .collect();
            agrees(&text);
            let groups = rng.below(9);
            let text: Vec<String> = (0..groups)
                .map(|_| {
                    let digits = rng.below(6) as usize;
                    (0..digits)
                        .map(|_| char::from(alphabet[rng.below(22) as usize]))
                        .collect()
                })
                .collect();
            let text = text.join(if rng.below(4) == 0 { "::" } else { ":" });
            agrees(&text);
            accepted += usize::from(parse_ip(&text).is_some());
        }
        // The structured half must reach the accepting paths too.
        assert!(accepted > 5_000, "only {accepted} random addresses read");
    }
}
