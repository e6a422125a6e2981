//! AWS Application Load Balancer (and classic ELB) access logs.

use super::ParseError;
use super::lexer::{non_empty, quoted, set_request, token, unescape, ws};
use super::timestamp::parse_iso;
use crate::event::Event;

fn strip_port(s: &str) -> &str {
    // `1.2.3.4:2817` and `[2001:db8::1]:443`.
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match s.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|c| c.is_ascii_digit()) => ip,
        _ => s,
    }
}

pub fn parse(line: &str, ev: &mut Event) -> Result<(), ParseError> {
    let mut cols = Vec::with_capacity(12);
    let mut rest = line;
    // The 11 or 12 bare columns before the quoted request.
    while !rest.starts_with('"') {
        let (r, t) = token(rest).map_err(|_| ParseError::invalid("missing \"request\""))?;
        cols.push(t);
        rest = ws(r).map_or(r, |(r, _)| r);
        if cols.len() > 12 {
            return Err(ParseError::invalid("too many columns before the request"));
        }
    }
    // ALB lines start with the connection type; classic ELB lines with the time.
    let cols = match cols.len() {
        12 => &cols[1..],
        11 => &cols[..],
        n => return Err(ParseError::invalid(format!("expected 11 or 12 columns before the request, found {n}"))),
    };
    ev.timestamp_ms = parse_iso(cols[0]).ok_or(ParseError::invalid("unrecognised timestamp"))?;
    super::mark_time(ev, line, cols[0]);
    ev.host = Some(cols[1].to_string());
    ev.client_ip = Some(strip_port(cols[2]).to_string());
    let secs: Vec<f64> = cols[4..7].iter().filter_map(|t| t.parse().ok()).filter(|t: &f64| *t >= 0.0).collect();
    if secs.len() == 3 {
        ev.duration_ms = Some(secs.iter().sum::<f64>() * 1000.0);
        ev.upstream_ms = Some(secs[1] * 1000.0);
    }
    ev.status = cols[7].parse().ok();
    ev.request_bytes = cols[9].parse().ok();
    ev.bytes_sent = cols[10].parse().ok();
    let (r, request) = quoted(rest).map_err(|_| ParseError::invalid("unterminated \"request\""))?;
    let request = unescape(request);
    // TCP listeners log `"- - - "`: no request, nothing to keep.
    set_request(ev, &request);
    let r = ws(r).map_or(r, |(r, _)| r);
    if let Ok((_, ua)) = quoted(r) {
        ev.user_agent = non_empty(&unescape(ua)).map(str::to_string);
    }
    Ok(())
}

/// True when the line starts like an ALB or ELB entry.
pub fn looks_like(line: &str) -> bool {
    let first = line.split(' ').next().unwrap_or("");
    let ts = if matches!(first, "http" | "https" | "h2" | "grpcs" | "ws" | "wss") {
        line.split(' ').nth(1).unwrap_or("")
    } else {
        first
    };
    parse_iso(ts).is_some() && line.contains(" \"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alb_line() {
        let mut ev = Event::default();
        parse(r#"https 2020-01-01T00:55:04.127531Z app/front-lb/0f3c 198.51.100.4:40112 10.1.2.3:8080 0.001 0.102 0.000 200 200 225 24950 "GET https://shop.example.net:443/cart/view.html HTTP/1.1" "Mozilla/5.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2"#, &mut ev).unwrap();
        assert_eq!(ev.client_ip.as_deref(), Some("198.51.100.4"));
        assert_eq!(ev.status, Some(200));
        assert_eq!(ev.duration_ms.map(|d| d.round()), Some(103.0));
        assert_eq!(ev.route.as_deref(), Some("/cart/view.html"));
        assert_eq!(ev.bytes_sent, Some(24950));
        assert!(looks_like(
            r#"https 2020-01-01T00:55:04.127531Z app/x 1.2.3.4:1 - -1 -1 -1 460 - 1 2 "GET / HTTP/1.1""#
        ));
    }

    #[test]
    fn elb_tcp_line_without_request() {
        let mut ev = Event::default();
        parse(r#"2015-05-13T23:39:43.945958Z classic-lb 192.0.2.61:5120 10.1.2.3:443 0.001069 0.000028 0.000041 - - 82 305 "- - - " "-" - -"#, &mut ev).unwrap();
        assert_eq!((ev.method, ev.status), (None, None));
        assert_eq!(ev.bytes_sent, Some(305));
    }
}
