//! The text format Express request loggers write, one header line and indented details:
//!
//! ```text
//! [2025-11-25T10:30:45Z] INFO: POST /api/auth/login - 200 (45ms)
//!   requestId: 9f1c...
//!   duration: 45ms
//!   responseSize: 0.45KB
//! ```
//!
//! The source groups the indented lines with their header (see `source::framer`), so this
//! parser sees the whole multi-line record at once.

use super::ParseError;
use super::fields::{Unit, Value, apply, duration_with_unit, normalise};
use super::timestamp::parse_any;
use crate::event::Event;

/// True when `line` starts like the header of this format (`[timestamp] LEVEL:`).
pub fn is_header(line: &str) -> bool {
    header(line).is_some()
}

fn header(line: &str) -> Option<(&str, &str, &str)> {
    let rest = line.strip_prefix('[')?;
    let (ts, rest) = rest.split_once("] ")?;
    let (level, rest) = rest.split_once(": ")?;
    (!level.is_empty() && level.len() <= 8 && level.bytes().all(|c| c.is_ascii_alphabetic()))
        .then_some((ts, level, rest))
}

pub fn parse(record: &str, ev: &mut Event) -> Result<(), ParseError> {
    let mut lines = record.lines();
    let first = lines.next().unwrap_or("");
    let (ts, level, rest) = header(first).ok_or(ParseError::invalid("expected `[timestamp] LEVEL: ...`"))?;
    ev.timestamp_ms = parse_any(ts).ok_or(ParseError::invalid("unrecognised timestamp"))?;
    super::mark_time(ev, record, ts);
    ev.level = Some(level.to_ascii_lowercase());
    // `METHOD /path - STATUS (Nms)`; anything else is a plain message.
    match request_summary(rest) {
        Some((method, target, status, dur)) => {
            ev.method = Some(method.to_string());
            ev.set_target(target);
            ev.status = Some(status);
            ev.duration_ms = dur;
        }
        None => ev.message = Some(rest.to_string()),
    }
    for line in lines {
        let Some((key, value)) = line.trim().split_once(':') else { continue };
        let value = value.trim();
        let v = match value.parse::<f64>() {
            Ok(n) => Value::Num(n),
            Err(_) => Value::Str(value),
        };
        let norm = normalise(key);
        if !apply(ev, &norm, &v, Unit::Millis) && !key.contains(' ') {
            ev.headers.insert(key.trim().to_ascii_lowercase(), value.to_string());
        }
    }
    Ok(())
}

fn request_summary(s: &str) -> Option<(&str, &str, u16, Option<f64>)> {
    let (method, rest) = s.split_once(' ')?;
    if !method.bytes().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let (target, rest) = rest.split_once(" - ")?;
    let (status, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = status.parse().ok()?;
    let dur = rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')')).and_then(duration_with_unit);
    Some((method, target, status, dur))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_record() {
        let mut ev = Event::default();
        let rec = "[2025-11-25T10:30:45Z] INFO: POST /api/auth/login - 200 (45ms)\n  requestId: 9f1c\n  duration: 45ms\n  responseSize: 0.45KB\n  userId: u-7\n  ip: 10.1.2.3\n";
        parse(rec, &mut ev).unwrap();
        assert_eq!(ev.method.as_deref(), Some("POST"));
        assert_eq!(ev.path.as_deref(), Some("/api/auth/login"));
        assert_eq!(ev.status, Some(200));
        assert_eq!(ev.duration_ms, Some(45.0));
        assert_eq!(ev.request_id.as_deref(), Some("9f1c"));
        assert_eq!(ev.bytes_sent, Some(461));
        assert_eq!(ev.user_id.as_deref(), Some("u-7"));
        assert_eq!(ev.client_ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(ev.level.as_deref(), Some("info"));
    }

    #[test]
    fn header_detection() {
        assert!(is_header("[2025-11-25T10:30:45Z] ERROR: GET /x - 500 (3ms)"));
        assert!(!is_header("[10/Oct/2000:13:55:36 -0700] \"GET\""));
        assert!(!is_header("1.2.3.4 - - [x]"));
    }
}
