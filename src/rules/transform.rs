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

/// One transform, or `None` when it would not change `s`.
pub(crate) fn step(s: &str, t: Transform) -> Option<String> {
    match t {
        Transform::UrlDecode => {
            memchr::memchr2(b'%', b'+', s.as_bytes())?;
            let mut cur = s.to_string();
            // `+` means a space only in the text as sent; after one decoding it is a plus.
            for round in 0..4 {
                let d = url_decode(&cur, round == 0);
                if d == cur {
                    break;
                }
                cur = d;
            }
            (cur != s).then_some(cur)
        }
        Transform::UnicodeDecode => {
            let fullwidth = !s.is_ascii() && s.chars().any(|c| ('\u{ff01}'..='\u{ff5e}').contains(&c));
            let escaped = memchr::memchr(b'%', s.as_bytes()).is_some() && s.contains("%u");
            (escaped || fullwidth).then(|| fullwidth_to_ascii(&unicode_decode(s)))
        }
        Transform::HtmlEntityDecode => s.contains('&').then(|| html_decode(s)),
        Transform::Lowercase if s.is_ascii() => {
            s.bytes().any(|c| c.is_ascii_uppercase()).then(|| s.to_ascii_lowercase())
        }
        Transform::Lowercase => s.chars().any(char::is_uppercase).then(|| s.to_lowercase()),
        Transform::CompressWhitespace => {
            let b = s.as_bytes();
            let messy = b.iter().any(|c| matches!(c, b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
                || memchr::memmem::find(b, b"  ").is_some()
                || b.first() == Some(&b' ')
                || b.last() == Some(&b' ');
            messy.then(|| s.split_whitespace().collect::<Vec<_>>().join(" "))
        }
        Transform::RemoveComments => {
            let open = memchr::memchr2(b'*', b'!', s.as_bytes()).is_some() && (s.contains("/*") || s.contains("<!--"));
            open.then(|| remove_comments(s))
        }
        Transform::RemoveNulls => s.contains('\0').then(|| s.replace('\0', "")),
        Transform::NormalizePath => {
            let b = s.as_bytes();
            let odd = memchr::memchr(b'\\', b).is_some()
                || memchr::memchr_iter(b'/', b).any(|i| match b.get(i + 1) {
                    Some(b'/') => true,
                    Some(b'.') => b.get(i + 2) == Some(&b'/'),
                    _ => false,
                });
            odd.then(|| normalize_path(s))
        }
        Transform::Base64Decode => base64_decode(s),
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn url_decode(s: &str, plus_as_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_as_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    // Overlong UTF-8 forms of `/`, `\` and `.` that old servers accepted.
    let mut fixed = Vec::with_capacity(out.len());
    let mut j = 0;
    while j < out.len() {
        match (out[j], out.get(j + 1)) {
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
    String::from_utf8_lossy(&fixed).into_owned()
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

fn normalize_path(s: &str) -> String {
    let mut p = s.replace('\\', "/");
    while p.contains("/./") {
        p = p.replace("/./", "/");
    }
    while p.contains("//") {
        p = p.replace("//", "/");
    }
    p
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
    use super::*;
    use Transform::*;

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
