//! `Glob`: the one pattern language of policy files, compiled once at load.
//!
//! `*` matches any run of characters except the separator (for paths and image
//! references `/`), `**` matches any run including it, `\*` and `\\` are literal.
//! Matching simulates the pattern as a small automaton over a 128-bit set of
//! positions: linear in the input, no allocation, no backtracking blow-up.

/// The longest pattern accepted, in characters after escapes.
const MAX_LEN: usize = 127;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Char(char),
    /// `*`: any run without the separator.
    Star,
    /// `**`: any run.
    AnyRun,
}

/// A compiled wildcard pattern.
#[derive(Clone, Debug)]
pub(crate) struct Glob {
    toks: Vec<Tok>,
    sep: Option<char>,
    /// Positions of stars, for the epsilon closure.
    stars: u128,
    literal: bool,
}

impl Glob {
    /// Compiles `pattern`; `sep` is the character a single `*` does not cross.
    pub(crate) fn new(pattern: &str, sep: Option<char>) -> Result<Self, String> {
        let mut toks = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e) => toks.push(Tok::Char(e)),
                    None => return Err(format!("pattern {pattern:?} ends with a lone `\\`")),
                },
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    toks.push(Tok::AnyRun);
                }
                '*' if sep.is_none() => toks.push(Tok::AnyRun),
                '*' => toks.push(Tok::Star),
                c => toks.push(Tok::Char(c)),
            }
        }
        if toks.len() > MAX_LEN {
            return Err(format!(
                "pattern {pattern:?} is longer than {MAX_LEN} characters"
            ));
        }
        let mut stars = 0u128;
        for (i, t) in toks.iter().enumerate() {
            if !matches!(t, Tok::Char(_)) {
                stars |= 1 << i;
            }
        }
        Ok(Self {
            literal: stars == 0,
            toks,
            sep,
            stars,
        })
    }

    /// Escapes `s` so that it matches only itself.
    pub(crate) fn escape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if c == '*' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    /// Whether `s` matches the whole pattern.
    pub(crate) fn matches(&self, s: &str) -> bool {
        if self.literal {
            let mut want = self.toks.iter();
            let mut got = s.chars();
            loop {
                match (want.next(), got.next()) {
                    (None, None) => return true,
                    (Some(Tok::Char(w)), Some(g)) if *w == g => {}
                    _ => return false,
                }
            }
        }
        let n = self.toks.len();
        let mut at = self.closure(1);
        for c in s.chars() {
            let mut next = 0u128;
            let mut live = at & !(1u128 << n);
            while live != 0 {
                let i = live.trailing_zeros() as usize;
                live &= live - 1;
                match self.toks[i] {
                    Tok::Char(w) if w == c => next |= 1 << (i + 1),
                    Tok::Char(_) => {}
                    Tok::Star if Some(c) == self.sep => {}
                    Tok::Star | Tok::AnyRun => next |= 1 << i,
                }
            }
            if next == 0 {
                return false;
            }
            at = self.closure(next);
        }
        at & (1u128 << n) != 0
    }

    /// Adds the positions reachable by letting stars match nothing.
    fn closure(&self, mut at: u128) -> u128 {
        let mut stars = self.stars;
        while stars != 0 {
            let i = stars.trailing_zeros();
            stars &= stars - 1;
            if at & (1 << i) != 0 {
                at |= 1 << (i + 1);
            }
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, sep: Option<char>, s: &str) -> bool {
        Glob::new(p, sep).unwrap().matches(s)
    }

    #[test]
    fn globs_match_by_segment_and_across() {
        let rows: &[(&str, Option<char>, &str, bool)] = &[
            ("/containers/json", Some('/'), "/containers/json", true),
            ("/containers/json", Some('/'), "/containers/jso", false),
            (
                "/containers/*/exec",
                Some('/'),
                "/containers/web/exec",
                true,
            ),
            (
                "/containers/*/exec",
                Some('/'),
                "/containers/web/db/exec",
                false,
            ),
            (
                "/containers/**/exec",
                Some('/'),
                "/containers/web/db/exec",
                true,
            ),
            ("/containers/**", Some('/'), "/containers/", true),
            ("/containers/**", Some('/'), "/containersx", false),
            ("*", Some('/'), "", true),
            ("*", Some('/'), "a/b", false),
            ("**", Some('/'), "a/b", true),
            ("a*b*c", None, "a/b/c", true),
            ("a*b*c", None, "abcabd", false),
            ("CN=ci-*, O=acme", None, "CN=ci-7, O=acme", true),
            ("x\\*", None, "x*", true),
            ("x\\*", None, "xy", false),
            ("net.ipv4.*", None, "net.ipv4.ip_forward", true),
            ("net.ipv4.*", None, "net.ipv6.x", false),
        ];
        for (p, sep, s, want) in rows {
            assert_eq!(m(p, *sep, s), *want, "{p:?} on {s:?}");
        }
    }

    #[test]
    fn many_stars_on_a_long_input_stay_linear() {
        let p = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let s = "a".repeat(100_000);
        assert!(!m(p, None, &s));
    }

    #[test]
    fn escaped_text_matches_only_itself() {
        let s = r"CN=a*\b";
        let g = Glob::new(&Glob::escape(s), None).unwrap();
        assert!(g.matches(s));
        assert!(!g.matches("CN=axx\\b"));
    }

    #[test]
    fn overlong_and_dangling_escape_patterns_are_refused() {
        assert!(Glob::new(&"a".repeat(200), None).is_err());
        assert!(Glob::new("a\\", None).is_err());
    }
}
