//! SPF macro-strings and domain-specs (RFC 7208 §7): their syntax, and the
//! expansion of the parts that do not depend on the sender.
//!
//! A flattener knows no sender, so only literals, the escapes `%%`, `%_`,
//! `%-` and the `d` letter (the domain whose record is evaluated) expand;
//! any other letter makes the domain-spec depend on the sender, and the
//! term cannot be enumerated.

use std::fmt;

/// One token of a macro-string.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// Visible characters other than `%`.
    Literal(String),
    /// `%%`, `%_` or `%-`: a `%`, a space, or `%20`.
    Escape(char),
    /// `%{…}`.
    Macro(Macro),
}

/// `%{ letter [digits] [r] [delimiters] }`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Macro {
    /// Lower-case macro letter.
    letter: char,
    /// Upper-case letter: the expansion is URL-escaped (RFC 7208 7.3).
    escape: bool,
    /// Keep this many right-hand parts (None: all).
    keep: Option<usize>,
    /// Reverse the parts first.
    reverse: bool,
    /// Split on these (none given: `.`).
    delimiters: String,
}

/// Where a macro-string appears decides which letters it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Letters {
    /// A domain-spec: `s l o d i p h v` (RFC 7208 7.1: `c r t` only in
    /// explanation text).
    Domain,
    /// The value of an unknown modifier: any macro letter of the ABNF.
    Any,
}

/// A checked macro-string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacroString {
    tokens: Vec<Token>,
}

impl MacroString {
    /// Checks `text` against RFC 7208's `macro-string` ABNF.
    pub fn parse(text: &str, letters: Letters) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                if !c.is_ascii_graphic() {
                    return Err(format!(
                        "{c:?} is not allowed (only visible ASCII characters)"
                    ));
                }
                literal.push(c);
                continue;
            }
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            match chars.next() {
                Some(e @ ('%' | '_' | '-')) => tokens.push(Token::Escape(e)),
                Some('{') => {
                    let mut body = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => body.push(c),
                            None => return Err("a macro `%{` is not closed by `}`".into()),
                        }
                    }
                    tokens.push(Token::Macro(parse_macro(&body, letters)?));
                }
                _ => {
                    return Err(
                        "`%` must be followed by `{`, `%`, `_` or `-` (RFC 7208 7.1)".into(),
                    );
                }
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(Self { tokens })
    }

    /// True when the string has `%{…}` macros (escapes do not count).
    pub fn has_macros(&self) -> bool {
        self.tokens.iter().any(|t| matches!(t, Token::Macro(_)))
    }

    /// The expansion for `domain` (the `d` letter), or `None` when another
    /// letter needs the sender.
    pub fn expand(&self, domain: &str) -> Option<String> {
        let mut out = String::new();
        for token in &self.tokens {
            match token {
                Token::Literal(text) => out.push_str(text),
                Token::Escape('%') => out.push('%'),
                Token::Escape('_') => out.push(' '),
                Token::Escape(_) => out.push_str("%20"),
                Token::Macro(m) if m.letter == 'd' => out.push_str(&m.apply(domain)),
                Token::Macro(_) => return None,
            }
        }
        Some(out)
    }

    /// The first `%{…}` macro whose letter is not `d`, as written.
    fn sender_letter(&self) -> Option<char> {
        self.tokens.iter().find_map(|t| match t {
            Token::Macro(m) if m.letter != 'd' => Some(m.letter),
            _ => None,
        })
    }

    /// True when the string ends with a macro or an escape (`domain-end`).
    fn ends_with_macro(&self) -> bool {
        matches!(self.tokens.last(), Some(Token::Macro(_) | Token::Escape(_)))
    }

    /// The literal characters after the last macro or escape.
    fn literal_tail(&self) -> &str {
        match self.tokens.last() {
            Some(Token::Literal(text)) => text,
            _ => "",
        }
    }
}

fn parse_macro(body: &str, letters: Letters) -> Result<Macro, String> {
    let mut chars = body.chars().peekable();
    let written = chars
        .next()
        .ok_or_else(|| "an empty macro `%{}`".to_owned())?;
    let letter = written.to_ascii_lowercase();
    let allowed = match letters {
        Letters::Domain => "slodiphv",
        Letters::Any => "slodiphvcrt",
    };
    if !allowed.contains(letter) || !written.is_ascii_alphabetic() {
        let only_exp = if "crt".contains(letter) {
            " (c, r and t are only for explanation text)"
        } else {
            ""
        };
        return Err(format!(
            "`%{{{body}}}`: {written:?} is not a macro letter here{only_exp} (RFC 7208 7.1)"
        ));
    }
    let mut digits = String::new();
    while let Some(d) = chars.next_if(char::is_ascii_digit) {
        digits.push(d);
    }
    let keep = if digits.is_empty() {
        None
    } else {
        // Past 128 parts every name is whole; saturate rather than overflow.
        let n = digits.parse::<usize>().unwrap_or(usize::MAX);
        if n == 0 {
            return Err(format!(
                "`%{{{body}}}`: the number of parts must not be zero (RFC 7208 7.3)"
            ));
        }
        Some(n)
    };
    let reverse = chars.next_if(|c| c.eq_ignore_ascii_case(&'r')).is_some();
    let delimiters: String = chars.collect();
    if let Some(bad) = delimiters.chars().find(|c| !".-+,/_=".contains(*c)) {
        return Err(format!(
            "`%{{{body}}}`: {bad:?} is not a macro delimiter (RFC 7208 7.1)"
        ));
    }
    Ok(Macro {
        letter,
        escape: written.is_ascii_uppercase(),
        keep,
        reverse,
        delimiters,
    })
}

impl Macro {
    fn apply(&self, value: &str) -> String {
        let delimiters = if self.delimiters.is_empty() {
            "."
        } else {
            &self.delimiters
        };
        let mut parts: Vec<&str> = value.split(|c| delimiters.contains(c)).collect();
        if self.reverse {
            parts.reverse();
        }
        if let Some(keep) = self.keep
            && keep < parts.len()
        {
            parts.drain(..parts.len() - keep);
        }
        let joined = parts.join(".");
        if self.escape {
            url_escape(&joined)
        } else {
            joined
        }
    }
}

/// RFC 7208 7.3: upper-case macros are URL-escaped (RFC 3986 unreserved
/// characters stay).
fn url_escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A checked `domain-spec`: a macro-string that ends in a macro or in
/// `.toplabel` (RFC 7208 7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    text: String,
    macros: MacroString,
}

impl DomainSpec {
    /// Checks `text`; an empty domain-spec is an error.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the domain is empty".into());
        }
        let macros = MacroString::parse(text, Letters::Domain)?;
        if !macros.ends_with_macro() {
            let tail = macros.literal_tail();
            let tail = tail.strip_suffix('.').unwrap_or(tail);
            let Some((_, top)) = tail.rsplit_once('.') else {
                return Err(format!(
                    "{text:?} does not end in a macro or in `.` and a top-level label (RFC 7208 7.1)"
                ));
            };
            check_toplabel(top).map_err(|why| format!("{text:?}: {why}"))?;
        }
        Ok(Self {
            text: text.to_owned(),
            macros,
        })
    }

    /// The domain-spec as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name to query when evaluating `domain`'s record, or `None` when
    /// it depends on the sender.
    pub fn expand(&self, domain: &str) -> Option<String> {
        self.macros.expand(domain)
    }

    /// The sender-dependent macro letter that stops expansion, if any.
    pub fn sender_letter(&self) -> Option<char> {
        self.macros.sender_letter()
    }

    /// True when it has `%{…}` macros.
    pub fn has_macros(&self) -> bool {
        self.macros.has_macros()
    }
}

impl fmt::Display for DomainSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum
/// / "-" ) alphanum )`: letters, digits and inner dashes, not all digits.
fn check_toplabel(top: &str) -> Result<(), String> {
    let bytes = top.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err("the top-level label is empty".into());
    };
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    {
        return Err(format!(
            "the top-level label {top:?} may hold only letters, digits and dashes"
        ));
    }
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(format!(
            "the top-level label {top:?} must not start or end with a dash"
        ));
    }
    if !bytes.iter().any(|b| b.is_ascii_alphabetic() || *b == b'-') {
        return Err(format!(
            "the top-level label {top:?} is all digits (an address is not a domain)"
        ));
    }
    Ok(())
}

/// The name an expanded domain-spec queries: without a trailing dot, cut
/// from the left to 253 characters (RFC 7208 7.3), lower-case; an empty or
/// over-long label is an error.
pub fn query_name(expanded: &str) -> Result<String, String> {
    let mut name = expanded.strip_suffix('.').unwrap_or(expanded);
    while name.len() > 253 {
        match name.split_once('.') {
            Some((_, rest)) => name = rest,
            None => break,
        }
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| !l.is_empty() && l.len() <= 63);
    if !valid {
        return Err(format!("{expanded:?} is not a valid domain name"));
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<DomainSpec, String> {
        DomainSpec::parse(text)
    }

    #[test]
    fn domain_specs_follow_the_abnf() {
        for good in [
            "example.com",
            "example.com.",
            "foo:bar/baz.example.com",
            "foo.example.xn--zckzah",
            "%{d}",
            "%{i}.bl.example",
            "_spf.%{d2}",
            "macro%%percent%_%_space%-url-space.example.com",
            "a.123-4",
            ".com",
        ] {
            assert!(spec(good).is_ok(), "{good}: {:?}", spec(good));
        }
        for (bad, why) in [
            ("", "empty"),
            ("museum", "does not end"),
            ("museum.", "does not end"),
            ("foo-bar", "does not end"),
            ("111.222.33.44", "all digits"),
            ("abc.123", "all digits"),
            ("example.com:8080", "only letters"),
            ("example.-com", "dash"),
            ("example.com-", "dash"),
            ("foo.example.com\0", "not allowed"),
            ("ctrl.example.com\rptr", "not allowed"),
            ("%{d}com", "does not end"),
        ] {
            let e = spec(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn macro_syntax_is_checked() {
        for (bad, why) in [
            ("%(ir).sbl.example.com", "must be followed"),
            ("foo%(ir).sbl.example.com", "must be followed"),
            ("foo%.sbl.example.com", "must be followed"),
            ("%{r}.example.com", "only for explanation"),
            ("%{a}.example.com", "not a macro letter"),
            ("%{d0}.example.com", "zero"),
            ("%{d2!}.example.com", "delimiter"),
            ("%{d.example.com", "not closed"),
            ("%{}.example.com", "empty macro"),
        ] {
            let e = spec(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(MacroString::parse("%{c} %{r} %{t}", Letters::Any).is_err());
        assert!(MacroString::parse("%{c}%{r}%{t}", Letters::Any).is_ok());
        assert!(MacroString::parse("%abc", Letters::Any).is_err());
    }

    #[test]
    fn only_the_domain_letter_expands() {
        let d = "mail.example.com";
        let expand = |text: &str| spec(text).unwrap().expand(d);
        assert_eq!(expand("%{d}").as_deref(), Some("mail.example.com"));
        assert_eq!(expand("x.%{d2}").as_deref(), Some("x.example.com"));
        assert_eq!(expand("x.%{dr}").as_deref(), Some("x.com.example.mail"));
        assert_eq!(expand("x.%{d1r}").as_deref(), Some("x.mail"));
        assert_eq!(expand("x.%{d9}").as_deref(), Some("x.mail.example.com"));
        assert_eq!(
            expand("a%%b%_c%-d.example.com").as_deref(),
            Some("a%b c%20d.example.com")
        );
        assert_eq!(expand("%{i}.bl.example"), None);
        assert_eq!(expand("%{o}.example"), None);
        assert_eq!(spec("%{i}.bl.example").unwrap().sender_letter(), Some('i'));
        let upper = spec("%{D}").unwrap().expand("foo:bar.example.com");
        assert_eq!(upper.as_deref(), Some("foo%3Abar.example.com"));
        let split = spec("%{d2r-}.x.example").unwrap().expand("a-b.c-d");
        // Split on `-` only, reversed, the rightmost two parts.
        assert_eq!(split.as_deref(), Some("b.c.a.x.example"));
    }

    #[test]
    fn query_names_are_checked_and_cut() {
        assert_eq!(
            query_name("O.Spf.Example.COM.").unwrap(),
            "o.spf.example.com"
        );
        assert!(query_name("mail.example...com").is_err());
        assert!(query_name(&format!("{}.example.com", "a".repeat(64))).is_err());
        let long = format!("{}example.com", "abcdefghi.".repeat(30));
        let cut = query_name(&long).unwrap();
        assert!(cut.len() <= 253 && cut.ends_with("abcdefghi.example.com"));
    }
}
