//! Parsing: one module per log format, all filling the same [`Event`].
//!
//! A [`FileParser`] is created per source file because some formats carry state (W3C's
//! `#Fields:` header) and because `auto` detection is decided per file from its first lines.
//! In `auto` mode a line the detected format rejects is offered to the other parsers before it
//! becomes an unparsed event, so a file that mixes formats (nginx-proxy-manager) still parses.

mod alb;
mod combined;
pub mod custom;
mod errorlog;
pub mod express;
mod fields;
mod haproxy;
mod json;
mod lexer;
mod logfmt;
pub mod timestamp;
mod w3c;

use std::borrow::Cow;
use std::sync::Arc;

pub use custom::{CustomFormat, FormatError};

use crate::event::Event;

/// Why a line could not be parsed; kept on the event as `parse_error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    reason: Cow<'static, str>,
}

impl ParseError {
    pub fn invalid(reason: impl Into<Cow<'static, str>>) -> Self {
        Self { reason: reason.into() }
    }
}

/// A format a source is configured with.
#[derive(Debug, Clone)]
pub enum FormatSpec {
    Auto,
    Fixed(Kind),
    Custom(Arc<CustomFormat>),
}

/// The built-in formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// nginx/apache combined, and common (which it accepts too).
    Combined,
    Json,
    Logfmt,
    Express,
    Alb,
    W3c,
    Haproxy,
    /// nginx, apache and litespeed error logs.
    ErrorLog,
}

impl Kind {
    /// In the order `auto` tries them.
    pub const ALL: [Kind; 8] =
        [Kind::Json, Kind::W3c, Kind::Express, Kind::Alb, Kind::Combined, Kind::Haproxy, Kind::ErrorLog, Kind::Logfmt];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Combined => "combined",
            Kind::Json => "json",
            Kind::Logfmt => "logfmt",
            Kind::Express => "express",
            Kind::Alb => "alb",
            Kind::W3c => "w3c",
            Kind::Haproxy => "haproxy",
            Kind::ErrorLog => "error_log",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "combined" | "common" | "nginx" | "apache" | "clf" => Kind::Combined,
            "json" => Kind::Json,
            "logfmt" => Kind::Logfmt,
            "express" => Kind::Express,
            "alb" | "elb" => Kind::Alb,
            "w3c" | "iis" => Kind::W3c,
            "haproxy" => Kind::Haproxy,
            "error_log" | "errorlog" => Kind::ErrorLog,
            _ => return None,
        })
    }

    /// Whether `line` is worth offering to this parser during detection.
    fn plausible(self, line: &str) -> bool {
        match self {
            Kind::Json => line.starts_with('{'),
            Kind::W3c => line.starts_with('#'),
            Kind::Express => express::is_header(line),
            Kind::Alb => alb::looks_like(line),
            Kind::Combined => line.contains('['),
            Kind::Logfmt => line.contains('='),
            Kind::Haproxy => line.contains(" [") && line.contains('/'),
            Kind::ErrorLog => line.starts_with('[') || line.starts_with(|c: char| c.is_ascii_digit()),
        }
    }
}

/// Parses the records of one file.
#[derive(Debug, Clone)]
pub struct FileParser {
    spec: FormatSpec,
    detected: Option<Kind>,
    w3c: w3c::W3c,
}

impl FileParser {
    pub fn new(spec: FormatSpec) -> Self {
        let detected = match &spec {
            FormatSpec::Fixed(k) => Some(*k),
            _ => None,
        };
        Self { spec, detected, w3c: w3c::W3c::default() }
    }

    /// The format `auto` settled on, if it has.
    pub fn detected(&self) -> Option<Kind> {
        self.detected
    }

    /// Parses one record (a line, or a header with its continuation lines) into `ev`.
    /// On error `ev` may be partly filled; the caller resets it.
    pub fn parse(&mut self, record: &str, ev: &mut Event) -> Result<(), ParseError> {
        // Lines relayed through syslog carry its header in front of the real line.
        if let Some((host, inner)) = syslog_prefix(record) {
            self.parse_inner(inner, ev)?;
            // The inner line ends the record: its timestamp sits that much further along.
            let shift = u32::try_from(record.len() - inner.len()).ok();
            ev.time_in_raw =
                ev.time_in_raw.zip(shift).and_then(|((a, b), s)| Some((a.checked_add(s)?, b.checked_add(s)?)));
            if ev.host.is_none() {
                ev.host = Some(host.to_string());
            }
        } else {
            self.parse_inner(record, ev)?;
        }
        ev.duration_ms = ev.duration_ms.map(whole_micros);
        ev.upstream_ms = ev.upstream_ms.map(whole_micros);
        Ok(())
    }

    fn parse_inner(&mut self, record: &str, ev: &mut Event) -> Result<(), ParseError> {
        if let FormatSpec::Custom(f) = &self.spec {
            ev.format = "custom".into();
            return f.parse(record, ev);
        }
        if let Some(kind) = self.detected {
            let first = self.parse_as(kind, record, ev);
            if first.is_ok() || matches!(self.spec, FormatSpec::Fixed(_)) {
                return first;
            }
            // A stray line of another format in an auto-detected file.
            for other in Kind::ALL.into_iter().filter(|k| *k != kind && k.plausible(record)) {
                let mut attempt = Event::default();
                if self.parse_as(other, record, &mut attempt).is_ok() {
                    *ev = attempt;
                    return Ok(());
                }
            }
            return first;
        }
        for kind in Kind::ALL.into_iter().filter(|k| k.plausible(record)) {
            let mut attempt = Event::default();
            if self.parse_as(kind, record, &mut attempt).is_ok() {
                *ev = attempt;
                // A W3C directive alone does not settle the format of the lines after it.
                self.detected = Some(kind);
                return Ok(());
            }
        }
        Err(ParseError::invalid("no parser recognised the line"))
    }

    fn parse_as(&mut self, kind: Kind, record: &str, ev: &mut Event) -> Result<(), ParseError> {
        ev.format = kind.name().into();
        match kind {
            Kind::Combined => combined::parse(record, ev).map(|f| ev.format = f.into()),
            Kind::Json => json::parse(record, ev).map(|()| mark_time_value(ev, record)),
            Kind::Logfmt => logfmt::parse(record, ev).map(|()| mark_time_value(ev, record)),
            Kind::Express => express::parse(record, ev),
            Kind::Alb => alb::parse(record, ev),
            Kind::W3c => self.w3c.parse(record, ev).map(|_| ()),
            Kind::Haproxy => haproxy::parse(record, ev),
            Kind::ErrorLog => errorlog::parse(record, ev),
        }
    }
}

/// A duration in milliseconds, to the nearest microsecond, as the nearest `f64` to that decimal.
/// `1.001` seconds times 1,000 is 1000.9999999999999 in floating point (so are 360 of the
/// 30,000 millisecond values below 30 s): the event would show it, `duration_ms:1001` would not
/// find it, and one such value stops the duration column from
/// packing the durations by their common factor (tantivy divides a column by the values' GCD).
/// Nothing finer than a microsecond is kept anywhere else either (the statistics count micros).
pub fn whole_micros(ms: f64) -> f64 {
    if ms.is_finite() && ms.abs() < 1e12 { (ms * 1000.0).round() / 1000.0 } else { ms }
}

/// Records that the event's timestamp was read from `time`, a slice of `line` (the text the
/// format's parser was given): see [`Event::time_in_raw`]. Only for a slice borrowed from
/// `line`, never for an unescaped copy, whose address says nothing about the line.
fn mark_time(ev: &mut Event, line: &str, time: &str) {
    ev.time_in_raw = offset_in(line, time)
        .and_then(|start| Some((u32::try_from(start).ok()?, u32::try_from(start + time.len()).ok()?)));
}

/// Where `part`, a slice of `line`, starts in it; `None` when it is not within `line`.
fn offset_in(line: &str, part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
    (start <= line.len() && part.len() <= line.len() - start).then_some(start)
}

/// JSON and logfmt lines: their parsers read values decoded, so the timestamp's value is
/// found again in the line, as the first value after a `:` or `=` that starts with a digit and
/// reads back as the event's timestamp (an epoch number, or a date as a string or bare).
/// Anything else, or a value with escapes, is left among the line's words.
fn mark_time_value(ev: &mut Event, line: &str) {
    if ev.timestamp_ms == 0 {
        return;
    }
    let b = line.as_bytes();
    for sep in memchr::memchr2_iter(b':', b'=', b) {
        let mut start = sep + 1;
        while b.get(start) == Some(&b' ') {
            start += 1;
        }
        let quoted = b.get(start) == Some(&b'"');
        let from = start + usize::from(quoted);
        if !b.get(from).is_some_and(u8::is_ascii_digit) {
            continue;
        }
        let end = if quoted {
            match memchr::memchr2(b'"', b'\\', &b[from..]) {
                Some(i) if b[from + i] == b'"' => from + i,
                _ => continue,
            }
        } else {
            from + b[from..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t'))
                .unwrap_or(b.len() - from)
        };
        // Epoch seconds have ten digits and a date at least as many characters.
        if end - from < 10 {
            continue;
        }
        let value = &line[from..end];
        let read = value.parse::<f64>().ok().and_then(timestamp::from_epoch).or_else(|| timestamp::parse_any(value));
        if read == Some(ev.timestamp_ms) {
            mark_time(ev, line, value);
            return;
        }
    }
}

/// Splits `Jul  8 11:07:07 host nginx[2869]: <line>` into the host and the line.
fn syslog_prefix(line: &str) -> Option<(&str, &str)> {
    let b = line.as_bytes();
    if b.len() < 20 || b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' || b[15] != b' ' {
        return None;
    }
    if !b[..3].iter().all(u8::is_ascii_alphabetic)
        || timestamp::parse_clf(&format!("01/{}/2000:00:00:00", &line[..3])).is_none()
    {
        return None;
    }
    let rest = &line[16..];
    let (host, rest) = rest.split_once(' ')?;
    let (tag, inner) = rest.split_once(": ")?;
    (!tag.contains(' ') && !inner.is_empty()).then_some((host, inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_detects_per_file_and_tolerates_strays() {
        let mut p = FileParser::new(FormatSpec::Auto);
        let mut ev = Event::default();
        p.parse(r#"1.2.3.4 - - [10/Feb/2012:16:42:07 -0500] "GET / HTTP/1.0" 301 368 "-" "x""#, &mut ev).unwrap();
        assert_eq!(p.detected(), Some(Kind::Combined));
        let mut ev = Event::default();
        p.parse(r#"{"status":200,"method":"GET","url":"/"}"#, &mut ev).unwrap();
        assert_eq!((&*ev.format, ev.status), ("json", Some(200)));
        assert_eq!(p.detected(), Some(Kind::Combined));
        assert!(p.parse("complete garbage", &mut Event::default()).is_err());
    }

    /// Each format whose parser reads the timestamp from a slice of the line says where it is,
    /// also behind a syslog header; a format that does not says nothing.
    #[test]
    fn the_timestamp_is_found_where_the_line_holds_it() {
        let cases = [
            (
                Kind::Combined,
                r#"1.2.3.4 - - [10/Feb/2012:16:42:07 -0500] "GET / HTTP/1.0" 301 368 "-" "x""#,
                Some("10/Feb/2012:16:42:07 -0500"),
            ),
            (
                Kind::Combined,
                r#"Jul  8 11:07:07 web-1 nginx[2869]: 1.2.3.4 - - [08/Jul/2021:11:07:07 +0000] "GET / HTTP/1.1" 200 5"#,
                Some("08/Jul/2021:11:07:07 +0000"),
            ),
            (
                Kind::Haproxy,
                r#"192.0.2.41:51544 [25/Sep/2018:06:05:27.584] web_tls~ app_pool/node2 0/0/0/72/72 200 7456 - - ---- 5/4/0/1/0 0/0 "POST /account/ HTTP/1.1""#,
                Some("25/Sep/2018:06:05:27.584"),
            ),
            (
                Kind::Alb,
                r#"2015-05-13T23:39:43.945958Z classic-lb 192.0.2.61:5120 10.1.2.3:443 0.001069 0.000028 0.000041 - - 82 305 "- - - " "-" - -"#,
                Some("2015-05-13T23:39:43.945958Z"),
            ),
            (
                Kind::Express,
                "[2025-11-25T10:30:45Z] INFO: POST /api/auth/login - 200 (45ms)\n  requestId: 9f1c\n",
                Some("2025-11-25T10:30:45Z"),
            ),
            (
                Kind::ErrorLog,
                "2021/09/30 09:23:53 [error] 4411#4411: *9 open() failed, client: 127.0.0.1",
                Some("2021/09/30 09:23:53"),
            ),
            (
                Kind::ErrorLog,
                "[Sun Jun 09 07:57:47 2013] [error] [client 192.0.2.10] script not found",
                Some("Sun Jun 09 07:57:47 2013"),
            ),
            (Kind::Json, r#"{"time":"2025-11-25T10:30:45Z","status":200,"url":"/"}"#, Some("2025-11-25T10:30:45Z")),
            (
                Kind::Json,
                r#"{"level":30,"time": 1764000000123,"msg":"request completed","req":{"url":"/"}}"#,
                Some("1764000000123"),
            ),
            // The first value that reads as a date is the timestamp's only when it is the same.
            (
                Kind::Json,
                r#"{"since":"2020-01-01T00:00:00Z","ts":"2025-11-25T10:30:45Z","url":"/"}"#,
                Some("2025-11-25T10:30:45Z"),
            ),
            // A value with an escape is not the text the line holds.
            (Kind::Json, r#"{"time":"2025-11-25T10:30:45\u005a","url":"/"}"#, None),
            (Kind::Json, r#"{"status":200,"url":"/"}"#, None),
            (
                Kind::Logfmt,
                "ts=2025-11-25T10:30:45Z level=info method=GET path=/ status=200",
                Some("2025-11-25T10:30:45Z"),
            ),
            (Kind::Logfmt, r#"time="2025-11-25 10:30:45" method=GET path=/ status=200"#, Some("2025-11-25 10:30:45")),
        ];
        for (kind, line, time) in cases {
            let mut ev = Event::default();
            FileParser::new(FormatSpec::Fixed(kind)).parse(line, &mut ev).unwrap_or_else(|e| panic!("{line}: {e}"));
            let marked = ev.time_in_raw.map(|(a, b)| &line[a as usize..b as usize]);
            assert_eq!(marked, time, "{line}");
        }
    }

    /// W3C lines keep the date and the time in two columns: side by side, they are one span.
    #[test]
    fn w3c_date_and_time_side_by_side_are_the_timestamp() {
        let mut p = FileParser::new(FormatSpec::Fixed(Kind::W3c));
        let mut marked = |line: &str| {
            let mut ev = Event::default();
            p.parse(line, &mut ev).unwrap_or_else(|e| panic!("{line}: {e}"));
            ev.time_in_raw.map(|(a, b)| line[a as usize..b as usize].to_string())
        };
        marked("#Fields: date time cs-method cs-uri-stem sc-status");
        assert_eq!(marked("2025-11-24  16:00:00 GET / 200").as_deref(), Some("2025-11-24  16:00:00"));
        marked("#Fields: date cs-method time cs-uri-stem sc-status");
        assert_eq!(marked("2025-11-24 GET 16:00:00 / 200"), None);
    }

    #[test]
    fn syslog_relayed_lines() {
        let mut p = FileParser::new(FormatSpec::Auto);
        let mut ev = Event::default();
        p.parse(r#"Jul  8 11:07:07 web-1.internal nginx[2869]: 167.71.13.196 - - [08/Jul/2021:11:07:07 +0000] "GET /wp-config.php HTTP/1.1" 200 5 "-" "Go-http-client/1.1""#, &mut ev).unwrap();
        assert_eq!(ev.path.as_deref(), Some("/wp-config.php"));
        assert_eq!(ev.host.as_deref(), Some("web-1.internal"));
        assert_eq!(syslog_prefix("Julia 8 11:07:07 x y: z"), None);
    }

    #[test]
    fn durations_are_the_decimal_that_was_written() {
        assert_ne!(1.001 * 1000.0, 1001.0, "the product that needs mending");
        let mut p = FileParser::new(FormatSpec::Auto);
        let mut ev = Event::default();
        let line = r#"1.2.3.4 - - [10/Feb/2012:16:42:07 -0500] "GET / HTTP/1.1" 200 5 "-" "x" 1.001 0.0235"#;
        p.parse(line, &mut ev).unwrap();
        assert_eq!((ev.duration_ms, ev.upstream_ms), (Some(1001.0), Some(23.5)));
        let mut ev = Event::default();
        p.parse(r#"{"status":200,"url":"/","responseTime":"1.0000004ms"}"#, &mut ev).unwrap();
        assert_eq!(ev.duration_ms, Some(1.0), "to the microsecond");
        assert_eq!(whole_micros(f64::MAX), f64::MAX);
        assert!(whole_micros(f64::NAN).is_nan());
    }

    #[test]
    fn fixed_format_does_not_fall_back() {
        let mut p = FileParser::new(FormatSpec::Fixed(Kind::Combined));
        assert!(p.parse(r#"{"status":200}"#, &mut Event::default()).is_err());
    }
}
