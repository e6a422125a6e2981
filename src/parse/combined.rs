//! nginx and apache `combined` and `common` access logs, tolerant of the usual variations:
//! a vhost before the client (`%v`), extra identity columns, ISO timestamps in the brackets,
//! escaped quotes, and timing columns after the user-agent (`$request_time`,
//! `$upstream_response_time`, apache `%D` and `%T`, or `rt=` style key-value pairs).

use super::ParseError;
use super::lexer::{bracketed, non_empty, quoted, set_request, token, unescape, ws};
use super::timestamp::{parse_clf, parse_iso};
use crate::event::Event;

/// Parses one line into `ev`. Returns the format name it recognised (`combined` or `common`).
pub fn parse(line: &str, ev: &mut Event) -> Result<&'static str, ParseError> {
    let bracket = memchr::memchr(b'[', line.as_bytes()).ok_or(ParseError::invalid("no [timestamp]"))?;
    let columns_wrong = || ParseError::invalid("expected client, ident and user before [timestamp]");
    // One to six columns: client, ident and user, after a vhost and extra identity columns.
    let mut columns = [""; 6];
    let mut n = 0;
    for column in line[..bracket].split_ascii_whitespace() {
        *columns.get_mut(n).ok_or_else(columns_wrong)? = column;
        n += 1;
    }
    let prefix = &columns[..n];
    if prefix.is_empty() {
        return Err(columns_wrong());
    }
    // With more than three columns the first is a vhost, unless it is the IP and the next is not.
    let vhost_first = prefix.len() >= 4 && (looks_like_ip(prefix[1]) || !looks_like_ip(prefix[0]));
    let client = if vhost_first {
        ev.host = Some(prefix[0].to_string());
        prefix[1]
    } else {
        prefix[0]
    };
    ev.client_ip = non_empty(client).map(str::to_string);
    if prefix.len() >= 3 {
        ev.user_id = non_empty(prefix[prefix.len() - 1]).map(str::to_string);
    }

    let (rest, date) = bracketed(&line[bracket..]).map_err(|_| ParseError::invalid("unclosed [timestamp]"))?;
    ev.timestamp_ms =
        parse_clf(date).or_else(|| parse_iso(date)).ok_or(ParseError::invalid("unrecognised timestamp"))?;
    super::mark_time(ev, line, date);

    // Some variants put a token or two between the date and the request (gandi's `(0 s)`).
    let mut rest = ws(rest).map_or(rest, |(r, _)| r);
    let mut skipped = 0;
    while !rest.starts_with('"') {
        let (r, _) = token(rest).map_err(|_| ParseError::invalid("missing \"request\""))?;
        rest = ws(r).map_or(r, |(r, _)| r);
        skipped += 1;
        if skipped > 3 {
            return Err(ParseError::invalid("missing \"request\""));
        }
    }
    let (r, request) = quoted(rest).map_err(|_| ParseError::invalid("unterminated \"request\""))?;
    let request = unescape(request);
    if !set_request(ev, &request) {
        ev.message = non_empty(&request).map(str::to_string);
    }

    let (r, _) = ws(r).map_err(|_| ParseError::invalid("missing status"))?;
    let (r, status) = token(r).map_err(|_| ParseError::invalid("missing status"))?;
    ev.status = match status {
        "-" => None,
        s => Some(s.parse().map_err(|_| ParseError::invalid("status is not a number"))?),
    };
    let (r, _) = ws(r).unwrap_or((r, ""));
    let Ok((r, bytes)) = token(r) else {
        return Ok("common");
    };
    ev.bytes_sent = match bytes {
        "-" => Some(0),
        b => Some(b.parse().map_err(|_| ParseError::invalid("bytes is not a number"))?),
    };
    let (r, _) = ws(r).unwrap_or((r, ""));
    let Ok((r, referer)) = quoted(r) else {
        extras(r, ev);
        return Ok("common");
    };
    ev.referer = non_empty(&unescape(referer)).map(str::to_string);
    let (r, _) = ws(r).unwrap_or((r, ""));
    if let Ok((r, ua)) = quoted(r) {
        ev.user_agent = non_empty(&unescape(ua)).map(str::to_string);
        extras(r, ev);
    }
    Ok("combined")
}

fn looks_like_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// Reads timing extensions after the standard columns. Only unambiguous shapes are taken:
/// `key=value` pairs with a known key, a decimal number of seconds as the first extra column
/// (nginx `$request_time`, with `$upstream_response_time` after it), or a lone integer as the
/// only extra column (apache `%D`, microseconds).
fn extras(r: &str, ev: &mut Event) {
    let (mut first, mut second, mut count) = (None, None, 0);
    for col in r.split_ascii_whitespace() {
        match count {
            0 => first = Some(col),
            1 => second = Some(col),
            _ => {}
        }
        count += 1;
        if let Some(eq) = memchr::memchr(b'=', col.as_bytes()) {
            let (k, v) = (&col[..eq], col[eq + 1..].trim_matches('"'));
            let secs = v.parse::<f64>().ok().map(|s| s * 1000.0);
            match k {
                "rt" | "request_time" => ev.duration_ms = ev.duration_ms.or(secs),
                "urt" | "upstream_response_time" => ev.upstream_ms = ev.upstream_ms.or(secs),
                "request_id" | "rid" => ev.request_id = non_empty(v).map(str::to_string),
                _ => {}
            }
        }
    }
    match first {
        Some(only) if count == 1 && only.bytes().all(|c| c.is_ascii_digit()) => {
            ev.duration_ms = only.parse::<f64>().ok().map(|us| us / 1000.0);
        }
        Some(first) if is_decimal_seconds(first) => {
            ev.duration_ms = first.parse::<f64>().ok().map(|s| s * 1000.0);
            if let Some(up) = second.map(|u| u.trim_matches('"')).filter(|u| is_decimal_seconds(u)) {
                ev.upstream_ms = up.parse::<f64>().ok().map(|s| s * 1000.0);
            }
        }
        _ => {}
    }
}

fn is_decimal_seconds(s: &str) -> bool {
    let s = s.trim_matches('"');
    match s.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> (Event, &'static str) {
        let mut ev = Event::default();
        let f = parse(line, &mut ev).unwrap_or_else(|e| panic!("{line}: {e}"));
        (ev, f)
    }

    #[test]
    fn combined_line() {
        let (ev, f) = p(
            r#"198.51.100.23 - - [17/May/2015:10:05:03 +0000] "GET /docs/guide.png?a=1 HTTP/1.1" 200 203023 "http://docs.example.org/" "Mozilla/5.0 (Macintosh)""#,
        );
        assert_eq!(f, "combined");
        assert_eq!(ev.client_ip.as_deref(), Some("198.51.100.23"));
        assert_eq!(ev.method.as_deref(), Some("GET"));
        assert_eq!(ev.path.as_deref(), Some("/docs/guide.png"));
        assert_eq!(ev.query.as_deref(), Some("a=1"));
        assert_eq!(ev.status, Some(200));
        assert_eq!(ev.bytes_sent, Some(203023));
        assert_eq!(ev.referer.as_deref(), Some("http://docs.example.org/"));
        assert_eq!(ev.user_agent.as_deref(), Some("Mozilla/5.0 (Macintosh)"));
        assert_eq!(ev.timestamp_ms, 1_431_857_103_000);
    }

    #[test]
    fn common_and_vhost_and_ipv6() {
        let (ev, f) = p(r#"192.0.2.8 - carol [10/Feb/2012:16:42:07 -0500] "GET / HTTP/1.0" 301 368"#);
        assert_eq!((f, ev.user_id.as_deref(), ev.status), ("common", Some("carol"), Some(301)));
        let (ev, _) = p(r#"shop.example.net 192.0.2.9 - carol [10/Feb/2012:16:42:07 -0500] "GET / HTTP/1.0" 301 368"#);
        assert_eq!(ev.host.as_deref(), Some("shop.example.net"));
        assert_eq!(ev.client_ip.as_deref(), Some("192.0.2.9"));
        let (ev, _) =
            p(r#"2001:db8:aa::17 - - [25/Jul/2025:10:25:21 -0400] "GET /api/v2/tickets/981 HTTP/3.0" 304 0 "" """#);
        assert_eq!(ev.client_ip.as_deref(), Some("2001:db8:aa::17"));
        assert_eq!(ev.route.as_deref(), Some("/api/v2/tickets/:id"));
        assert_eq!(ev.user_agent, None);
    }

    #[test]
    fn timing_extensions() {
        let (ev, _) = p(r#"1.2.3.4 - - [10/Feb/2012:16:42:07 -0500] "GET / HTTP/1.1" 200 5 "-" "curl" 0.250 0.200"#);
        assert_eq!((ev.duration_ms, ev.upstream_ms), (Some(250.0), Some(200.0)));
        let (ev, _) = p(
            r#"intranet:443 192.0.2.77 x9k2 dpark [26/Jul/2023:00:01:26 -0700] "GET /s HTTP/2.0" 200 17163 "-" "Mozilla/5.0" 116075"#,
        );
        assert_eq!(ev.duration_ms, Some(116.075));
        assert_eq!(ev.user_id.as_deref(), Some("dpark"));
        let (ev, _) =
            p(r#"1.2.3.4 - - [10/Feb/2012:16:42:07 -0500] "GET / HTTP/1.1" 200 5 "-" "curl" rt=1.5 urt="1.250""#);
        assert_eq!((ev.duration_ms, ev.upstream_ms), (Some(1500.0), Some(1250.0)));
    }

    #[test]
    fn odd_requests_are_kept() {
        let (ev, _) = p(r#"203.0.113.200 - - [20/Jan/2015:19:53:28 +0100] "" 400 47 "-" "-" "-""#);
        assert_eq!((ev.method.as_deref(), ev.status), (None, Some(400)));
        let (ev, _) = p(r#"1.2.3.4 - - [20/Jan/2015:19:53:28 +0100] "GET /a\"b HTTP/1.1" 200 1 "-" "-""#);
        assert_eq!(ev.path.as_deref(), Some("/a\"b"));
        let (ev, _) = p(
            r#"127.0.0.1 - - [2016-11-03 22:53:18.331758] "GET /cms/index.php HTTP/1.1" 200 549 "-" "curl" intranet 127.0.0.1 80 - -"#,
        );
        assert_eq!(ev.duration_ms, None);
        assert_eq!(ev.timestamp_ms, 1_478_213_598_331);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut ev = Event::default();
        assert!(parse("hello world", &mut ev).is_err());
        assert!(parse("1.2.3.4 - - [bad date] \"GET / HTTP/1.1\" 200 1", &mut ev).is_err());
        assert!(parse("1.2.3.4 - - [10/Feb/2012:16:42:07 -0500] \"GET / HTTP/1.1\" abc 1", &mut ev).is_err());
    }
}
