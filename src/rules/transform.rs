//! Transforms applied to a field before rules match it, so one pattern sees through the usual
//! evasions: repeated URL encoding, `%uXXXX`, HTML entities, case, whitespace runs, SQL and
//! HTML comments, NUL bytes, `/./` and `\` in paths, base64.

use std::borrow::Cow;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// Percent-decoding (and `+` as space), repeated until stable (at most 4 rounds).
    UrlDecode,
    /// `%u0027` (IIS-style) escapes.
    UnicodeDecode,
    HtmlEntityDecode,
    Lowercase,
    CompressWhitespace,
    RemoveComments,
    RemoveNulls,
    NormalizePath,
    Base64Decode,
}

impl Transform {
    /// Whether two texts that differ only in the case of ASCII letters are still that after
    /// this transform. Percent escapes are hex, either case; `%u` escapes, entity names and
    /// base64 are not.
    pub(crate) fn maps_case_variants_alike(self) -> bool {
        matches!(
            self,
            Transform::UrlDecode
                | Transform::Lowercase
                | Transform::CompressWhitespace
                | Transform::RemoveComments
                | Transform::RemoveNulls
                | Transform::NormalizePath
        )
    }

    /// Every transform, in the order they are declared (for tests and fuzzing).
    pub const ALL: [Transform; 9] = [
        Transform::UrlDecode,
        Transform::UnicodeDecode,
        Transform::HtmlEntityDecode,
        Transform::Lowercase,
        Transform::CompressWhitespace,
        Transform::RemoveComments,
        Transform::RemoveNulls,
        Transform::NormalizePath,
        Transform::Base64Decode,
    ];
}

/// Applies `transforms` in order. Each step leaves the text borrowed when it has nothing to
/// change, which is the common case for clean traffic, so most fields cost no allocation.
pub fn apply<'a>(input: &'a str, transforms: &[Transform]) -> Cow<'a, str> {
    let mut s = Cow::Borrowed(input);
    for t in transforms {
        if let Some(changed) = step(&s, *t) {
            s = Cow::Owned(changed);
        }
    }
    s
}

/// A set of transforms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Transforms(u16);

impl Transforms {
    pub(crate) fn contains(self, t: Transform) -> bool {
        self.0 & (1 << t as u16) != 0
    }

    pub(crate) fn with(self, t: Transform) -> Self {
        Self(self.0 | (1 << t as u16))
    }

    pub(crate) fn without(self, t: Transform) -> Self {
        Self(self.0 & !(1 << t as u16))
    }

    pub(crate) fn meets(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

impl FromIterator<Transform> for Transforms {
    fn from_iter<I: IntoIterator<Item = Transform>>(iter: I) -> Self {
        iter.into_iter().fold(Self::default(), Self::with)
    }
}

// The bytes the transforms act on, one bit per kind.
const PERCENT: u16 = 1;
const PLUS: u16 = 1 << 1;
const AMP: u16 = 1 << 2;
const UPPER: u16 = 1 << 3;
/// `\t`, `\n`, vertical tab, form feed, `\r`.
const CONTROL_SPACE: u16 = 1 << 4;
const SPACE: u16 = 1 << 5;
const STAR_OR_BANG: u16 = 1 << 6;
const NUL: u16 = 1 << 7;
const BACKSLASH: u16 = 1 << 8;
const SLASH: u16 = 1 << 9;
const NON_ASCII: u16 = 1 << 10;

/// Byte -> its kind.
const KINDS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            b'%' => PERCENT,
            b'+' => PLUS,
            b'&' => AMP,
            b'A'..=b'Z' => UPPER,
            b'\t'..=b'\r' => CONTROL_SPACE,
            b' ' => SPACE,
            b'*' | b'!' => STAR_OR_BANG,
            0 => NUL,
            b'\\' => BACKSLASH,
            b'/' => SLASH,
            0x80.. => NON_ASCII,
            _ => 0,
        };
        c += 1;
    }
    t
};

/// The transforms that may change `s`: one left out would leave it as it is. Read in one pass
/// over the bytes (this runs over every field of every request), and conservative: being in
/// the set only means "maybe". `Base64Decode` always is.
///
/// Apart from `Lowercase` and `Base64Decode` the answer does not depend on the case of ASCII
/// letters, so it is the same for a text and its lowercase form: the rules' gate (see
/// `RuleSet::scan`) relies on that.
pub(crate) fn may_change(s: &str) -> Transforms {
    read(s).changes
}

/// What one pass over the bytes of a text says of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    /// The transforms that may change it (see `may_change`).
    pub changes: Transforms,
    /// Whether it is all ASCII: known from the same pass, rather than read again.
    pub ascii: bool,
}

/// `may_change` and whether the text is ASCII, in one pass.
pub(crate) fn read(s: &str) -> Reading {
    use Transform::*;
    let b = s.as_bytes();
    let seen = b.iter().fold(0, |seen, c| seen | KINDS[*c as usize]);
    let mut out = Transforms::default().with(Base64Decode);
    let has = |kind: u16| seen & kind != 0;
    if has(PERCENT | PLUS) {
        out = out.with(UrlDecode);
    }
    // Any `%`, not only `%u`: `%U` becomes `%u` once lowercased.
    if has(PERCENT) || (has(NON_ASCII) && s.chars().any(|c| ('\u{ff01}'..='\u{ff5e}').contains(&c))) {
        out = out.with(UnicodeDecode);
    }
    // An entity is `&`, a name or number of at most ten bytes, and `;`.
    if has(AMP) && memchr::memchr_iter(b'&', b).any(|i| b[i + 1..].iter().take(11).any(|c| *c == b';')) {
        out = out.with(HtmlEntityDecode);
    }
    if has(UPPER) || (has(NON_ASCII) && s.chars().any(char::is_uppercase)) {
        out = out.with(Lowercase);
    }
    let spaced = || pairs(b, |x, y| (x == b' ') & (y == b' ')) || b.first() == Some(&b' ') || b.last() == Some(&b' ');
    if has(CONTROL_SPACE) || (has(SPACE) && spaced()) {
        out = out.with(CompressWhitespace);
    }
    if has(STAR_OR_BANG) && (s.contains("/*") || s.contains("<!--")) {
        out = out.with(RemoveComments);
    }
    if has(NUL) {
        out = out.with(RemoveNulls);
    }
    // `/./` is looked for as `/.` and `./` anywhere.
    let odd_path = || {
        pairs(b, |x, y| (x == b'/') & (y == b'/'))
            || pairs(b, |x, y| (x == b'/') & (y == b'.')) && pairs(b, |x, y| (x == b'.') & (y == b'/'))
    };
    if has(BACKSLASH) || (has(SLASH) && odd_path()) {
        out = out.with(NormalizePath);
    }
    Reading { changes: out, ascii: !has(NON_ASCII) }
}

/// Whether `hit` holds for any two adjacent bytes. Without a branch per byte, so the compiler
/// can compare many pairs at once.
fn pairs(b: &[u8], hit: impl Fn(u8, u8) -> bool) -> bool {
    b.iter().zip(b.iter().skip(1)).fold(false, |any, (x, y)| any | hit(*x, *y))
}

/// One transform, or `None` when it would not change `s`.
pub(crate) fn step(s: &str, t: Transform) -> Option<String> {
    if may_change(s).contains(t) { transform(s, t) } else { None }
}

/// One transform, without first looking whether it has anything to do (see `may_change`).
/// `None`, or the same text, when it changed nothing.
pub(crate) fn transform(s: &str, t: Transform) -> Option<String> {
    match t {
        Transform::UrlDecode => {
            // `+` means a space only in the text as sent; after one decoding it is a plus.
            let mut cur = url_decode(s, true)?;
            for _ in 1..4 {
                match url_decode(&cur, false) {
                    Some(d) => cur = d,
                    None => break,
                }
            }
            Some(cur)
        }
        Transform::UnicodeDecode => {
            let fullwidth = !s.is_ascii() && s.chars().any(|c| ('\u{ff01}'..='\u{ff5e}').contains(&c));
            (fullwidth || s.contains("%u")).then(|| fullwidth_to_ascii(&unicode_decode(s)))
        }
        Transform::HtmlEntityDecode => Some(html_decode(s)),
        Transform::Lowercase if s.is_ascii() => Some(s.to_ascii_lowercase()),
        Transform::Lowercase => Some(s.to_lowercase()),
        Transform::CompressWhitespace => Some(compress_whitespace(s)),
        Transform::RemoveComments => Some(remove_comments(s)),
        Transform::RemoveNulls => Some(s.replace('\0', "")),
        Transform::NormalizePath => Some(normalize_path(s)),
        Transform::Base64Decode => base64_decode(s),
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// One round of percent-decoding, or `None` when the text has nothing to decode. Copies the
/// runs between escapes whole, and allocates only once it has decoded something.
fn url_decode(s: &str, plus_as_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    // `b[..done]` is in `out`, or is left as it is.
    let mut done = 0;
    let mut from = 0;
    // Overlong UTF-8 forms of `/`, `\` and `.` that old servers accepted. Their first byte is
    // never in UTF-8 text, so only a decoded escape can give one.
    let mut overlong = false;
    while let Some(at) = memchr::memchr2(b'%', b'+', &b[from..]).map(|i| from + i) {
        let decoded = match b[at] {
            b'+' if plus_as_space => Some((b' ', 1)),
            b'%' if at + 2 < b.len() => hex(b[at + 1]).zip(hex(b[at + 2])).map(|(h, l)| (h * 16 + l, 3)),
            _ => None,
        };
        from = at + 1;
        if let Some((byte, used)) = decoded {
            // Decoding never lengthens the text: one allocation, at the first escape.
            if out.capacity() == 0 {
                out.reserve_exact(b.len());
            }
            out.extend_from_slice(&b[done..at]);
            out.push(byte);
            overlong |= matches!(byte, 0xc0 | 0xc1);
            done = at + used;
            from = done;
        }
    }
    if done == 0 {
        return None;
    }
    out.extend_from_slice(&b[done..]);
    if overlong {
        out = overlong_forms_undone(&out);
    }
    Some(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

fn overlong_forms_undone(b: &[u8]) -> Vec<u8> {
    let mut fixed = Vec::with_capacity(b.len());
    let mut j = 0;
    while j < b.len() {
        match (b[j], b.get(j + 1)) {
            (0xc0, Some(0xaf)) => fixed.push(b'/'),
            (0xc1, Some(0x9c)) => fixed.push(b'\\'),
            (0xc0, Some(0xae)) => fixed.push(b'.'),
            (c, _) => {
                fixed.push(c);
                j += 1;
                continue;
            }
        }
        j += 2;
    }
    fixed
}

/// Runs of whitespace as one space, none at either end: `split_whitespace` joined by spaces,
/// without the vector of words between.
fn compress_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn unicode_decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("%u") {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 2..i + 6).and_then(|h| u32::from_str_radix(h, 16).ok()).and_then(char::from_u32);
        match code {
            Some(c) => {
                out.push(c);
                rest = &rest[i + 6..];
            }
            None => {
                out.push_str("%u");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Fullwidth forms (`＜script＞`) to their ASCII letters, as some back ends normalise them.
fn fullwidth_to_ascii(s: &str) -> String {
    s.chars()
        .map(
            |c| if ('\u{ff01}'..='\u{ff5e}').contains(&c) { char::from_u32(c as u32 - 0xfee0).unwrap_or(c) } else { c },
        )
        .collect()
}

fn html_decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let name = &after[..e];
            let c = match name {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "amp" => Some('&'),
                "colon" => Some(':'),
                "lpar" => Some('('),
                "rpar" => Some(')'),
                "sol" => Some('/'),
                "tab" => Some('\t'),
                "newline" => Some('\n'),
                n if n.starts_with("#x") || n.starts_with("#X") => {
                    u32::from_str_radix(&n[2..], 16).ok().and_then(char::from_u32)
                }
                n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn remove_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let next = [("/*", "*/"), ("<!--", "-->")].iter().filter_map(|(o, c)| rest.find(o).map(|i| (i, *o, *c))).min();
        let Some((i, open, close)) = next else { break };
        out.push_str(&rest[..i]);
        out.push(' ');
        rest = match rest[i + open.len()..].find(close) {
            Some(j) => &rest[i + open.len() + j + close.len()..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// `\` as `/`, then `/./` as `/` and runs of `/` as one, in one pass (each used to be a
/// `replace` until nothing changed: a copy of the text each).
fn normalize_path(s: &str) -> String {
    let b = s.as_bytes();
    let is_slash = |c: Option<&u8>| matches!(c, Some(b'/' | b'\\'));
    let mut out = Vec::with_capacity(b.len());
    let mut from = 0;
    // The text between separators is copied whole; at each separator, what follows it up to
    // the next part that stays is dropped.
    while let Some(at) = memchr::memchr2(b'/', b'\\', &b[from..]).map(|i| from + i) {
        // Never empty but at the start: the loop below stops only before a byte that stays.
        out.extend_from_slice(&b[from..at]);
        out.push(b'/');
        from = at + 1;
        loop {
            if is_slash(b.get(from)) {
                from += 1;
            } else if b.get(from) == Some(&b'.') && is_slash(b.get(from + 1)) {
                from += 2;
            } else {
                break;
            }
        }
    }
    out.extend_from_slice(&b[from..]);
    // Only ASCII bytes were dropped or changed, so the rest is the text's own UTF-8.
    String::from_utf8(out).expect("whole characters only")
}

fn base64_decode(s: &str) -> Option<String> {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in clean {
        let c = if c == b'-' {
            b'+'
        } else if c == b'_' {
            b'/'
        } else {
            c
        };
        let v = ALPHA.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use Transform::*;

    /// Values with the bytes the transforms act on, in both cases.
    fn value() -> impl Strategy<Value = String> {
        proptest::string::string_regex(r"([a-zA-Z0-9 ;#&%+*!<>/\\.=\-\t\x00]|%[uU]00[0-9a-fA-F]{2}|&(lt|#x3C|#60|amp|newline|#x000003C);|/\*|<!--|//|/\./|  |＜){0,24}")
            .expect("a valid strategy")
    }

    /// `normalize_path` as it was written first: each rewrite repeated until nothing changes.
    fn normalize_path_by_rewrites(s: &str) -> String {
        let mut p = s.replace('\\', "/");
        while p.contains("/./") {
            p = p.replace("/./", "/");
        }
        while p.contains("//") {
            p = p.replace("//", "/");
        }
        p
    }

    /// URL decoding as it was written first: a byte loop per round, into a new string, until a
    /// round changed nothing.
    fn url_decode_by_bytes(s: &str) -> Option<String> {
        let round = |s: &str, plus_as_space: bool| {
            let b = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
                    (b'%', Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 3;
                        continue;
                    }
                    (b'+', ..) if plus_as_space => out.push(b' '),
                    (c, ..) => out.push(c),
                }
                i += 1;
            }
            String::from_utf8_lossy(&overlong_forms_undone(&out)).into_owned()
        };
        let mut cur = s.to_string();
        for r in 0..4 {
            let d = round(&cur, r == 0);
            if d == cur {
                break;
            }
            cur = d;
        }
        (cur != s).then_some(cur)
    }

    proptest! {
        #[test]
        fn one_pass_normalizes_paths_as_the_rewrites_did(s in r"[a./\\é]{0,16}") {
            prop_assert_eq!(normalize_path(&s), normalize_path_by_rewrites(&s));
        }

        #[test]
        fn url_decoding_copies_runs_as_the_byte_loop_did(s in r"([a-z+é%/.]|%[0-9a-fA-F]{2}|%25[0-9a-fA-F]{2}|%[cC][01]%[aA9][fFeEcC]){0,12}") {
            prop_assert_eq!(transform(&s, UrlDecode), url_decode_by_bytes(&s));
        }

        #[test]
        fn whitespace_is_compressed_as_split_and_join_did(s in r"[a \t\n\x0b\r\u{a0}\u{3000}é]{0,16}") {
            prop_assert_eq!(compress_whitespace(&s), s.split_whitespace().collect::<Vec<_>>().join(" "));
        }

        /// `may_change` may only err towards yes: a transform it rules out changes nothing.
        #[test]
        fn what_may_not_change_does_not(s in value()) {
            for t in Transform::ALL {
                let out = transform(&s, t);
                prop_assert!(may_change(&s).contains(t) || out.as_deref().is_none_or(|o| o == s), "{t:?} changed {s:?} to {out:?}");
            }
        }

        /// The rules' gate skips `Lowercase` on ASCII values, which holds only while the other
        /// transforms see the same thing in a value and in its lowercase form.
        #[test]
        fn may_change_is_blind_to_ascii_case(s in value()) {
            let lower = s.to_ascii_lowercase();
            prop_assert_eq!(may_change(&s).without(Lowercase), may_change(&lower).without(Lowercase));
        }

        /// What `maps_case_variants_alike` promises: a text and its lowercase and uppercase
        /// forms give texts that differ only in case. The rules' gate leaves lowercasing out
        /// before these transforms.
        #[test]
        fn case_variants_map_alike(s in value()) {
            let folded = |x: &str, t| step(x, t).unwrap_or_else(|| x.to_string()).to_ascii_lowercase();
            for t in Transform::ALL.into_iter().filter(|t| t.maps_case_variants_alike()) {
                let want = folded(&s, t);
                prop_assert_eq!(&folded(&s.to_ascii_lowercase(), t), &want, "{:?} on {:?}", t, s);
                prop_assert_eq!(&folded(&s.to_ascii_uppercase(), t), &want, "{:?} on {:?}", t, s);
            }
        }
    }

    #[test]
    fn evasions_are_undone() {
        assert_eq!(apply("%2527%2520OR%25201%253D1", &[UrlDecode]), "' OR 1=1");
        assert_eq!(apply("%u0027or", &[UnicodeDecode]), "'or");
        assert_eq!(apply("＜script＞", &[UnicodeDecode]), "<script>");
        assert_eq!(apply("&#x3C;script&#62;&lt;", &[HtmlEntityDecode]), "<script><");
        assert_eq!(apply("UNION/**/SELECT", &[RemoveComments, Lowercase, CompressWhitespace]), "union select");
        assert_eq!(apply("a\0b", &[RemoveNulls]), "ab");
        assert_eq!(apply("..\\..\\.//etc", &[NormalizePath]), "../../etc");
        assert_eq!(apply("Y2F0IC9ldGMvcGFzc3dk", &[Base64Decode]), "cat /etc/passwd");
        assert_eq!(apply("100%", &[UrlDecode]), "100%");
        assert_eq!(apply("a+b%2Bc", &[UrlDecode]), "a b+c");
    }
}
