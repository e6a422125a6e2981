//! Small nom parsers shared by the space-separated formats (combined, ALB, custom).

use std::borrow::Cow;

use crate::event::Event;

use nom::bytes::complete::{take_till, take_till1, take_while};
use nom::character::complete::char;
use nom::{IResult, Parser};

/// Skips spaces and tabs.
pub fn ws(i: &str) -> IResult<&str, &str> {
    take_while(|c| c == ' ' || c == '\t').parse(i)
}

/// A run of non-blank characters.
pub fn token(i: &str) -> IResult<&str, &str> {
    take_till1(|c| c == ' ' || c == '\t').parse(i)
}

/// A double-quoted string in which `\"` and `\\` are escapes; returns the text between the
/// quotes, still escaped (see [`unescape`]), so the common case stays zero-copy.
pub fn quoted(i: &str) -> IResult<&str, &str> {
    let (i, _) = char('"').parse(i)?;
    let bytes = i.as_bytes();
    let mut pos = 0;
    while let Some(at) = bytes.get(pos..).and_then(|b| memchr::memchr2(b'"', b'\\', b)) {
        let at = pos + at;
        if bytes[at] == b'"' {
            return Ok((&i[at + 1..], &i[..at]));
        }
        pos = at + 2;
    }
    Err(nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Char)))
}

/// A bracketed field such as `[10/Oct/2000:13:55:36 -0700]`.
pub fn bracketed(i: &str) -> IResult<&str, &str> {
    let (i, _) = char('[').parse(i)?;
    let (i, inner) = take_till(|c| c == ']').parse(i)?;
    let (i, _) = char(']').parse(i)?;
    Ok((i, inner))
}

/// Undoes the escapes nginx and apache write inside quoted fields (`\"`, `\\`, `\xHH`).
pub fn unescape(s: &str) -> Cow<'_, str> {
    if memchr::memchr(b'\\', s.as_bytes()).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'x' if i + 3 < b.len() => match u8::from_str_radix(s.get(i + 2..i + 4).unwrap_or(""), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                    Err(_) => out.push(b'\\'),
                },
                c @ (b'"' | b'\\') => {
                    out.push(c);
                    i += 2;
                    continue;
                }
                _ => out.push(b'\\'),
            }
            i += 1;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// `None` for the placeholders formats write for "no value".
pub fn non_empty(s: &str) -> Option<&str> {
    match s {
        "" | "-" => None,
        _ => Some(s),
    }
}

/// A request line `GET /path HTTP/1.1` split into its parts; `None` when it is not one.
pub fn request_line(r: &str) -> Option<(&str, &str, Option<&str>)> {
    let space = memchr::memchr(b' ', r.as_bytes())?;
    let (method, rest) = (&r[..space], &r[space + 1..]);
    let (target, proto) = match memchr::memchr(b' ', rest.as_bytes()) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let method_ok = method.len() <= 20
        && method.as_bytes().first().is_some_and(u8::is_ascii_uppercase)
        && method.bytes().all(|c| c.is_ascii_uppercase() || c == b'-' || c == b'_');
    method_ok.then_some((method, target, proto.filter(|p| !p.is_empty())))
}

/// Fills method, path, route, query and protocol from a request line. Returns false, leaving
/// `ev` untouched, when the text is not one (`-`, an empty request, binary junk), so each
/// format decides what to keep of it.
pub fn set_request(ev: &mut Event, request: &str) -> bool {
    let Some((method, target, proto)) = request_line(request) else { return false };
    ev.method = Some(method.to_string());
    ev.set_target(target);
    ev.protocol = proto.map(str::to_string);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_handles_escaped_quotes() {
        let (rest, q) = quoted(r#""GET /a\"b HTTP/1.1" 200"#).unwrap();
        assert_eq!(q, r#"GET /a\"b HTTP/1.1"#);
        assert_eq!(rest, " 200");
        assert_eq!(unescape(q), r#"GET /a"b HTTP/1.1"#);
        assert!(quoted(r#""unterminated"#).is_err());
    }

    #[test]
    fn unescape_hex() {
        assert_eq!(unescape(r"\x41\x42"), "AB");
        assert_eq!(unescape(r"\xZZ"), r"\xZZ");
    }

    #[test]
    fn request_lines() {
        assert_eq!(request_line("GET / HTTP/1.0"), Some(("GET", "/", Some("HTTP/1.0"))));
        assert_eq!(request_line("GET /x"), Some(("GET", "/x", None)));
        assert_eq!(request_line("-"), None);
        assert_eq!(request_line("- - - "), None);
        assert_eq!(request_line("\u{16}\u{3}\u{1} x"), None);
    }
}
