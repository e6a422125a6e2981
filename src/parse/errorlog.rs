//! Server error logs that sit next to access logs and carry requests too: nginx
//! (`2021/09/30 09:23:53 [error] 19#19: *17 ..., client: 1.2.3.4, request: "GET / HTTP/1.1"`),
//! apache (`[Fri Oct 08 17:08:41.203277 2021] [core:error] [pid 7005] [client 1.2.3.4:14532] ...`)
//! and litespeed (`2022-06-08 22:49:20.774649 [NOTICE] [1226033] ...`).

use super::ParseError;
use super::lexer::{bracketed, set_request};
use super::timestamp::{parse_ctime, parse_iso};
use crate::event::Event;

const LEVELS: &[&str] = &["emerg", "alert", "crit", "error", "warn", "warning", "notice", "info", "debug", "trace"];

fn level_of(s: &str) -> Option<String> {
    // apache 2.4 writes `module:level`.
    let level = s.rsplit(':').next().unwrap_or(s).to_ascii_lowercase();
    LEVELS.contains(&level.as_str()).then_some(level)
}

pub fn parse(line: &str, ev: &mut Event) -> Result<(), ParseError> {
    let rest = if line.starts_with('[') {
        let (rest, ts) = bracketed(line).map_err(|_| ParseError::invalid("unclosed [timestamp]"))?;
        ev.timestamp_ms = parse_ctime(ts).ok_or(ParseError::invalid("unrecognised timestamp"))?;
        super::mark_time(ev, line, ts);
        rest
    } else {
        let end = line.find(" [").ok_or(ParseError::invalid("expected `timestamp [level]`"))?;
        ev.timestamp_ms = parse_iso(&line[..end]).ok_or(ParseError::invalid("unrecognised timestamp"))?;
        super::mark_time(ev, line, &line[..end]);
        &line[end..]
    };
    let rest = rest.trim_start();
    let (rest, level) = bracketed(rest).map_err(|_| ParseError::invalid("expected [level]"))?;
    ev.level = Some(level_of(level).ok_or(ParseError::invalid("unknown level"))?);
    let mut rest = rest.trim_start();
    // apache's [pid ...] [client ...] and similar bracketed fields.
    while let Ok((r, field)) = bracketed(rest) {
        if let Some(client) = field.strip_prefix("client ") {
            ev.client_ip = Some(strip_port(client).to_string());
        }
        rest = r.trim_start();
    }
    if let Some(client) = field_after(rest, "client: ") {
        ev.client_ip = Some(client.to_string());
    }
    if let Some(server) = field_after(rest, "server: ") {
        ev.host = Some(server.to_string());
    }
    if let Some(host) = quoted_after(rest, "host: \"") {
        ev.host = Some(host.to_string());
    }
    if let Some(request) = quoted_after(rest, "request: \"") {
        set_request(ev, request);
    }
    ev.message = Some(rest.to_string());
    Ok(())
}

fn strip_port(s: &str) -> &str {
    match s.rsplit_once(':') {
        Some((ip, port)) if port.bytes().all(|c| c.is_ascii_digit()) && ip.contains('.') => ip,
        _ => s,
    }
}

fn field_after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let start = s.find(key)? + key.len();
    let v = s[start..].split([',', ' ']).next()?;
    (!v.is_empty()).then_some(v)
}

fn quoted_after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let start = s.find(key)? + key.len();
    s[start..].split('"').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_error_line() {
        let mut ev = Event::default();
        parse(r#"2021/09/30 09:23:53 [error] 4411#4411: *9 user "eve" was not found in "/etc/nginx/.htpasswd", client: 127.0.0.1, server: _, request: "GET /admin HTTP/1.1", host: "example.com""#, &mut ev).unwrap();
        assert_eq!(ev.level.as_deref(), Some("error"));
        assert_eq!(ev.client_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(ev.path.as_deref(), Some("/admin"));
        assert_eq!(ev.host.as_deref(), Some("example.com"));
        assert_eq!(ev.timestamp_ms, 1_632_993_833_000);
    }

    #[test]
    fn apache_error_lines() {
        let mut ev = Event::default();
        parse("[Fri Oct 08 17:08:41.203277 2021] [core:error] [pid 311:tid 12] [client 198.51.100.9:40001] AH00126: Invalid URI in request GET /cgi-bin/x", &mut ev).unwrap();
        assert_eq!((ev.level.as_deref(), ev.client_ip.as_deref()), (Some("error"), Some("198.51.100.9")));
        assert_eq!(ev.timestamp_ms, 1_633_712_921_203);
        let mut ev = Event::default();
        parse("[Sun Jun 09 07:57:47 2013] [error] [client 192.0.2.10] script not found", &mut ev).unwrap();
        assert_eq!(ev.message.as_deref(), Some("script not found"));
    }

    #[test]
    fn not_an_error_log() {
        let mut ev = Event::default();
        assert!(parse("2025/05/01 07:57:03 [2025-05-01 07:57:03.150624] [proxy:edge] GET / 444", &mut ev).is_err());
        assert!(parse("hello [world]", &mut ev).is_err());
    }
}
