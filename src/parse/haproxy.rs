//! HAProxy's HTTP log format (`option httplog`), usually behind a syslog prefix:
//! `1.2.3.4:55008 [25/Sep/2018:06:05:27.584] ft_https~ bk/srv 0/0/0/72/72 200 7456 - - ---- 5/4/0/1/0 0/0 "POST /user/ HTTP/1.1"`.

use super::ParseError;
use super::lexer::{bracketed, quoted, set_request, token, unescape, ws};
use super::timestamp::parse_clf;
use crate::event::Event;

pub fn parse(line: &str, ev: &mut Event) -> Result<(), ParseError> {
    let bad = |what: &'static str| move |_| ParseError::invalid(what);
    let (r, client) = token(line).map_err(bad("missing client"))?;
    let (ip, port) = client.rsplit_once(':').ok_or(ParseError::invalid("expected client:port"))?;
    if !port.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ParseError::invalid("expected client:port"));
    }
    ev.client_ip = Some(ip.trim_matches(['[', ']']).to_string());
    let (r, _) = ws(r).map_err(bad("missing date"))?;
    let (r, date) = bracketed(r).map_err(bad("missing [accept date]"))?;
    ev.timestamp_ms = parse_clf(date).ok_or(ParseError::invalid("unrecognised timestamp"))?;
    super::mark_time(ev, line, date);
    let mut cols = Vec::with_capacity(8);
    let mut r = r;
    while let Ok((rest, _)) = ws(r) {
        if rest.starts_with('"') || rest.is_empty() {
            r = rest;
            break;
        }
        let (rest, t) = token(rest).map_err(bad("missing columns"))?;
        cols.push(t);
        r = rest;
    }
    // Connection errors: `frontend/bind: SSL handshake failure`.
    if let Some(frontend) = cols.first().and_then(|c| c.strip_suffix(':')) {
        ev.host = Some(frontend.split('/').next().unwrap_or(frontend).to_string());
        let msg_start = line.find(cols[0]).map_or(0, |i| i + cols[0].len());
        ev.message = Some(line[msg_start..].trim().to_string());
        return Ok(());
    }
    // frontend backend/server timers status bytes ...
    if cols.len() < 5 || !cols[1].contains('/') {
        return Err(ParseError::invalid("expected frontend, backend/server, timers, status, bytes"));
    }
    let timers: Vec<i64> = cols[2].split('/').filter_map(|t| t.parse().ok()).collect();
    if timers.len() < 4 {
        return Err(ParseError::invalid("expected Tq/Tw/Tc/Tr/Tt timers"));
    }
    ev.duration_ms = timers.last().filter(|t| **t >= 0).map(|t| *t as f64);
    ev.status = cols[3].parse().ok();
    ev.bytes_sent = cols[4].trim_start_matches('+').parse().ok();
    ev.host = Some(cols[0].trim_end_matches('~').to_string());
    if let Ok((_, request)) = quoted(r) {
        let request = unescape(request);
        if !set_request(ev, &request) {
            ev.message = Some(request.into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_log_line() {
        let mut ev = Event::default();
        parse(r#"192.0.2.41:51544 [25/Sep/2018:06:05:27.584] web_tls~ app_pool/node2 0/0/0/72/72 200 7456 - - ---- 5/4/0/1/0 0/0 "POST /account/ HTTP/1.1""#, &mut ev).unwrap();
        assert_eq!(ev.client_ip.as_deref(), Some("192.0.2.41"));
        assert_eq!((ev.status, ev.bytes_sent, ev.duration_ms), (Some(200), Some(7456), Some(72.0)));
        assert_eq!(ev.path.as_deref(), Some("/account/"));
        assert_eq!(ev.timestamp_ms, 1_537_855_527_584);
        assert!(
            parse("1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1", &mut Event::default()).is_err()
        );
        let mut ev = Event::default();
        parse("192.0.2.42:60000 [28/Feb/2025:02:43:10.123] web_tls/bind1: SSL handshake failure", &mut ev).unwrap();
        assert_eq!(ev.message.as_deref(), Some("SSL handshake failure"));
    }
}
