//! The one SPF record parser (RFC 7208 §4.5, §4.6, §5, §6 and §7's ABNF),
//! used by `spf:` walks and by `v=spf1` records pasted into range files.
//!
//! A record is `v=spf1`, then terms separated by spaces (and only spaces:
//! any other character between terms is a syntax error). Any syntax error
//! anywhere makes the whole record a permerror, before any term is
//! evaluated.

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
};

use ipnet::{Ipv4Net, Ipv6Net};

use super::macros::{DomainSpec, Letters, MacroString};

/// What a matching directive makes the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qualifier {
    /// `+` (the default): pass.
    Pass,
    /// `-`: fail.
    Fail,
    /// `~`: softfail.
    SoftFail,
    /// `?`: neutral.
    Neutral,
}

impl Qualifier {
    /// The qualifier as written: `+`, `-`, `~` or `?`.
    pub fn symbol(self) -> char {
        match self {
            Qualifier::Pass => '+',
            Qualifier::Fail => '-',
            Qualifier::SoftFail => '~',
            Qualifier::Neutral => '?',
        }
    }
}

/// Prefix lengths of `a` and `mx` (`/len4`, `//len6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DualCidr {
    /// IPv4 prefix length (32 when not given).
    pub v4: u8,
    /// IPv6 prefix length (128 when not given).
    pub v6: u8,
}

impl Default for DualCidr {
    fn default() -> Self {
        Self { v4: 32, v6: 128 }
    }
}

/// A mechanism (RFC 7208 §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// `all`.
    All,
    /// `include:domain-spec`.
    Include(DomainSpec),
    /// `a[:domain-spec][dual-cidr]`; no domain means the current one.
    A(Option<DomainSpec>, DualCidr),
    /// `mx[:domain-spec][dual-cidr]`.
    Mx(Option<DomainSpec>, DualCidr),
    /// `ptr[:domain-spec]`.
    Ptr(Option<DomainSpec>),
    /// `ip4:network[/len]`, host bits cleared.
    Ip4(Ipv4Net),
    /// `ip6:network[/len]`, host bits cleared.
    Ip6(Ipv6Net),
    /// `exists:domain-spec`.
    Exists(DomainSpec),
}

impl Mechanism {
    /// True for the mechanisms that query DNS and so count against the limit
    /// of 10 (RFC 7208 4.6.4).
    pub fn queries_dns(&self) -> bool {
        !matches!(self, Self::All | Self::Ip4(_) | Self::Ip6(_))
    }
}

/// A qualified mechanism, with its text as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// The qualifier (`+` when none is written).
    pub qualifier: Qualifier,
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The term as written in the record.
    pub text: String,
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A parsed record: its directives in order and the modifiers that matter.
/// Unknown modifiers are checked, then ignored (RFC 7208 §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The directives, in evaluation order.
    pub directives: Vec<Directive>,
    /// `redirect=`, at most one.
    pub redirect: Option<DomainSpec>,
    /// `exp=`, at most one; it explains a fail and never changes a result.
    pub explanation: Option<DomainSpec>,
}

/// A syntax error: the record is a permerror.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// The offending term (or the record's start).
    pub term: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SPF term {:?}: {}", self.term, self.reason)
    }
}

/// True when a TXT string is an SPF record: `v=spf1` (any case), then a
/// space or the end (RFC 7208 4.5).
pub fn is_spf_record(text: &str) -> bool {
    text.get(..6)
        .is_some_and(|v| v.eq_ignore_ascii_case("v=spf1"))
        && matches!(text.as_bytes().get(6), None | Some(b' '))
}

/// Parses a whole record.
pub fn parse_record(text: &str) -> Result<Record, SyntaxError> {
    if !is_spf_record(text) {
        let start: String = text.chars().take(8).collect();
        return Err(SyntaxError {
            term: start,
            reason: "an SPF record starts with `v=spf1` and a space".into(),
        });
    }
    let mut record = Record {
        directives: Vec::new(),
        redirect: None,
        explanation: None,
    };
    for term in text[6..].split(' ').filter(|t| !t.is_empty()) {
        let error = |reason: String| SyntaxError {
            term: term.to_owned(),
            reason,
        };
        if let Some(c) = term.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(error(format!(
                "{c:?} is not allowed: terms are separated by spaces only and hold \
                 visible ASCII characters (RFC 7208 4.6.1)"
            )));
        }
        match modifier(term) {
            Some((name, value)) => {
                let lower = name.to_ascii_lowercase();
                let slot = match lower.as_str() {
                    "redirect" => &mut record.redirect,
                    "exp" => &mut record.explanation,
                    _ => {
                        // Unknown modifiers are ignored, but must be well formed.
                        MacroString::parse(value, Letters::Any).map_err(error)?;
                        continue;
                    }
                };
                if slot.is_some() {
                    return Err(error(format!(
                        "`{lower}=` appears more than once (RFC 7208 6)"
                    )));
                }
                *slot = Some(DomainSpec::parse(value).map_err(error)?);
            }
            None => record
                .directives
                .push(parse_directive(term).map_err(error)?),
        }
    }
    Ok(record)
}

/// `name=value` when `term` is a modifier: a name (`ALPHA *( ALPHA / DIGIT
/// / "-" / "_" / "." )`) directly followed by `=` (RFC 7208 4.6.1).
fn modifier(term: &str) -> Option<(&str, &str)> {
    let end = term
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(term.len());
    let name = &term[..end];
    let starts_alpha = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let value = term[end..].strip_prefix('=')?;
    starts_alpha.then_some((name, value))
}

/// A directive's qualifier (`+` when none is written) and the rest.
pub fn split_qualifier(term: &str) -> (Qualifier, &str) {
    match term.as_bytes().first() {
        Some(b'+') => (Qualifier::Pass, &term[1..]),
        Some(b'-') => (Qualifier::Fail, &term[1..]),
        Some(b'~') => (Qualifier::SoftFail, &term[1..]),
        Some(b'?') => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    }
}

/// Parses one directive (`[qualifier] mechanism`).
pub fn parse_directive(term: &str) -> Result<Directive, String> {
    let (qualifier, rest) = split_qualifier(term);
    let end = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, args) = (&rest[..end], &rest[end..]);
    let spec = |args: &str| -> Result<DomainSpec, String> {
        let value = args
            .strip_prefix(':')
            .ok_or_else(|| format!("`{name}` needs `:` and a domain"))?;
        DomainSpec::parse(value)
    };
    let mechanism = match name.to_ascii_lowercase().as_str() {
        "all" if args.is_empty() => Mechanism::All,
        "all" => return Err("`all` takes no argument (RFC 7208 5.1)".into()),
        "include" => Mechanism::Include(spec(args)?),
        "exists" => Mechanism::Exists(spec(args)?),
        "ptr" if args.is_empty() => Mechanism::Ptr(None),
        "ptr" => Mechanism::Ptr(Some(spec(args)?)),
        "a" => {
            let (domain, cidr) = domain_and_cidr(args)?;
            Mechanism::A(domain, cidr)
        }
        "mx" => {
            let (domain, cidr) = domain_and_cidr(args)?;
            Mechanism::Mx(domain, cidr)
        }
        "ip4" => {
            let (addr, len) = network(args, 32)?;
            let addr: Ipv4Addr = addr
                .parse()
                .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
            Mechanism::Ip4(Ipv4Net::new(addr, len).map_err(|e| e.to_string())?.trunc())
        }
        "ip6" => {
            let (addr, len) = network(args, 128)?;
            let addr: Ipv6Addr = addr
                .parse()
                .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
            Mechanism::Ip6(Ipv6Net::new(addr, len).map_err(|e| e.to_string())?.trunc())
        }
        "redirect" | "exp" => {
            return Err(format!("`{name}` is a modifier: `{name}=…` (RFC 7208 6)"));
        }
        _ => return Err(format!("unknown mechanism {name:?} (RFC 7208 5)")),
    };
    Ok(Directive {
        qualifier,
        mechanism,
        text: term.to_owned(),
    })
}

/// `:network[/len]` of `ip4`/`ip6`.
fn network(args: &str, max: u8) -> Result<(&str, u8), String> {
    let body = args
        .strip_prefix(':')
        .ok_or_else(|| "needs `:` and a network".to_owned())?;
    match body.split_once('/') {
        Some((addr, len)) => Ok((addr, cidr_length(len, max)?)),
        None => Ok((body, max)),
    }
}

/// `[:domain-spec][/len4][//len6]` of `a`/`mx`. The lengths are the last
/// `/…` parts, so a domain-spec may hold `/` and `:` itself.
fn domain_and_cidr(args: &str) -> Result<(Option<DomainSpec>, DualCidr), String> {
    let mut rest = args;
    let mut cidr = DualCidr::default();
    if let Some((before, len)) = digits_suffix(rest, "//") {
        cidr.v6 = cidr_length(len, 128)?;
        rest = before;
    }
    if let Some((before, len)) = digits_suffix(rest, "/")
        && !before.ends_with('/')
    {
        cidr.v4 = cidr_length(len, 32)?;
        rest = before;
    }
    if rest.is_empty() {
        return Ok((None, cidr));
    }
    let value = rest
        .strip_prefix(':')
        .ok_or_else(|| format!("{args:?} is neither `:domain` nor a prefix length"))?;
    Ok((Some(DomainSpec::parse(value)?), cidr))
}

/// `text` = `before` + `sep` + digits, when it ends so.
fn digits_suffix<'a>(text: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    let start = text.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let digits = &text[start..];
    let before = text[..start].strip_suffix(sep)?;
    (!digits.is_empty()).then_some((before, digits))
}

/// A prefix length: decimal without leading zeros, at most `max`.
fn cidr_length(text: &str, max: u8) -> Result<u8, String> {
    let valid = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    let len = text
        .parse::<u8>()
        .ok()
        .filter(|l| valid && *l <= max)
        .ok_or_else(|| format!("bad prefix length {text:?} (0 to {max}, without leading zeros)"))?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(record: &str) -> String {
        match parse_record(record) {
            Ok(r) => panic!("{record:?} parsed as {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn mechanisms(record: &str) -> Vec<Mechanism> {
        parse_record(record)
            .unwrap()
            .directives
            .into_iter()
            .map(|d| d.mechanism)
            .collect()
    }

    #[test]
    fn terms_are_separated_by_spaces_only() {
        assert!(error("v=spf1 a:ctrl.example.com\rptr -all").contains("'\\r' is not allowed"));
        assert!(error("v=spf1 ip4:192.0.2.5\n include:x.example.com ~all").contains("'\\n'"));
        assert!(error("v=spf1\tip4:192.0.2.5").contains("starts with `v=spf1`"));
        assert!(error("v=spf1 \u{80}a:example.net -all").contains("not allowed"));
        // Several spaces, and trailing ones, are fine.
        assert_eq!(mechanisms("v=spf1 a  -all ").len(), 2);
        assert!(parse_record("v=spf1").unwrap().directives.is_empty());
        assert!(parse_record("V=SpF1 ~all").is_ok());
        assert!(!is_spf_record("v=spf10"));
        assert!(!is_spf_record("v=spf1\tmx"));
    }

    #[test]
    fn prefix_lengths_have_no_leading_zeros_and_stay_in_range() {
        assert!(error("v=spf1 ip4:1.2.3.4/032 -all").contains("bad prefix length \"032\""));
        assert!(error("v=spf1 ip4:1.2.3.4/33").contains("bad prefix length"));
        assert!(error("v=spf1 ip6:::1.1.1.1/129").contains("bad prefix length"));
        assert!(error("v=spf1 ip4:1.2.3.4//32").contains("bad prefix length"));
        assert!(error("v=spf1 ip6:::1.1.1.1//33").contains("bad prefix length"));
        assert!(error("v=spf1 a/33").contains("bad prefix length"));
        assert!(error("v=spf1 a//129").contains("bad prefix length"));
        assert!(error("v=spf1 a/24/64").contains("bad prefix length \"64\""));
        assert!(error("v=spf1 mx/024").contains("leading zeros"));
        assert_eq!(
            mechanisms("v=spf1 ip4:192.0.2.77/24 ip6:Cafe:Babe:8000::/33 ip4:1.1.1.1/0"),
            [
                Mechanism::Ip4("192.0.2.0/24".parse().unwrap()),
                Mechanism::Ip6("cafe:babe:8000::/33".parse().unwrap()),
                Mechanism::Ip4("0.0.0.0/0".parse().unwrap()),
            ]
        );
        assert_eq!(
            mechanisms("v=spf1 a/24//64 mx//0 a")[..2],
            [
                Mechanism::A(None, DualCidr { v4: 24, v6: 64 }),
                Mechanism::Mx(None, DualCidr { v4: 32, v6: 0 }),
            ]
        );
    }

    #[test]
    fn addresses_are_checked() {
        for bad in [
            "v=spf1 ip4",
            "v=spf1 ip4:1.2.3",
            "v=spf1 ip4:1.2.3.4:8080",
            "v=spf1 ip4:010.0.0.1",
            "v=spf1 -all ip6",
            "v=spf1 ip6::CAFE::BABE",
            "v=spf1 ip4:2001:db8::1",
            "v=spf1 ip6:192.0.2.1",
        ] {
            assert!(parse_record(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_modifiers_are_ignored_but_checked() {
        let r = parse_record("v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 default=pass -all")
            .unwrap();
        assert_eq!(r.directives.len(), 2);
        assert!(parse_record("v=spf1 default=+").is_ok());
        assert!(error("v=spf1 -all foo=%abc").contains("must be followed"));
        // `/` or `:` before `=`: a mechanism, and an unknown one.
        assert!(error("v=spf1 moo.cow/far_out=man:dog/cat").contains("unknown mechanism"));
        assert!(error("v=spf1 moo.cow:far_out=man:dog/cat").contains("unknown mechanism"));
        assert!(error("v=spf1 1up=foo").contains("unknown mechanism"));
        assert!(error("v=spf1 =all").contains("unknown mechanism"));
        assert!(error("v=spf1 ip4:1.2.3.4 -all moo").contains("unknown mechanism"));
    }

    #[test]
    fn redirect_and_exp_appear_at_most_once_with_a_domain() {
        let r = parse_record("v=spf1 exp=exp.example.com Redirect=_spf.example.com").unwrap();
        assert_eq!(r.redirect.unwrap().as_str(), "_spf.example.com");
        assert!(
            error("v=spf1 exp=a.example.com -all exp=b.example.com").contains("more than once")
        );
        assert!(
            error("v=spf1 redirect=a.example.com -all redirect=a.example.com")
                .contains("more than once")
        );
        assert!(error("v=spf1 exp= -all").contains("empty"));
        assert!(error("v=spf1 ?all redirect=").contains("empty"));
        assert!(error("v=spf1 exp=-all").contains("does not end"));
        assert!(error("v=spf1 redirect=-all ?all").contains("does not end"));
        assert!(error("v=spf1 ip4:1.2.3.4 redirect:t2.example.com").contains("is a modifier"));
        assert!(error("v=spf1 -all exp=%{r}.example.com").contains("explanation"));
    }

    #[test]
    fn mechanism_arguments_follow_the_abnf() {
        for (bad, why) in [
            ("v=spf1 -all.", "unknown mechanism"),
            ("v=spf1 -all:foobar", "takes no argument"),
            ("v=spf1 -all/8", "takes no argument"),
            ("v=spf1 ptr/0 -all", "needs `:`"),
            ("v=spf1 ptr:", "empty"),
            ("v=spf1 a:", "empty"),
            ("v=spf1 mx: -all", "empty"),
            ("v=spf1 include: -all", "empty"),
            ("v=spf1 include -all", "needs `:`"),
            ("v=spf1 exists:", "empty"),
            ("v=spf1 exists", "needs `:`"),
            ("v=spf1 exists:mail.example.com/24", "top-level label"),
            ("v=spf1 include:ip5.example.com/24 -all", "top-level label"),
            ("v=spf1 a:foo-bar -all", "does not end"),
            ("v=spf1 a:111.222.33.44", "all digits"),
            ("v=spf1 mx:abc.123", "all digits"),
            ("v=spf1 a:example.com:8080", "only letters"),
            ("v=spf1 a:museum.", "does not end"),
            ("v=spf1 a:%{H}.bar%{", "not closed"),
        ] {
            let e = error(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
        let colon = DomainSpec::parse("foo:bar/baz.example.com").unwrap();
        assert_eq!(
            mechanisms("v=spf1 a:foo:bar/baz.example.com mx:foo:bar/baz.example.com/24"),
            [
                Mechanism::A(Some(colon.clone()), DualCidr::default()),
                Mechanism::Mx(Some(colon), DualCidr { v4: 24, v6: 128 }),
            ]
        );
        let d = parse_record("v=spf1 ~Include:_spf.example.com")
            .unwrap()
            .directives;
        assert_eq!(d[0].qualifier, Qualifier::SoftFail);
        assert_eq!(d[0].text, "~Include:_spf.example.com");
    }
}
