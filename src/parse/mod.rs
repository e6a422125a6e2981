//! Parsing: one module per log format, all filling the same [`Event`].
//!
//! A [`FileParser`] is created per source file because some formats carry state (W3C's
//! `#Fields:` header) and because `auto` detection is decided per file from its first lines.
//! In `auto` mode a line the detected format rejects is offered to the other parsers before it
//! becomes an unparsed event, so a file that mixes formats (nginx-proxy-manager) still parses.

mod alb;
mod combined;
pub mod custom;
pub mod express;
mod fields;
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
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Json, Kind::W3c, Kind::Express, Kind::Alb, Kind::Combined, Kind::Logfmt];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Combined => "combined",
            Kind::Json => "json",
            Kind::Logfmt => "logfmt",
            Kind::Express => "express",
            Kind::Alb => "alb",
            Kind::W3c => "w3c",
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
            Kind::Json => json::parse(record, ev),
            Kind::Logfmt => logfmt::parse(record, ev),
            Kind::Express => express::parse(record, ev),
            Kind::Alb => alb::parse(record, ev),
            Kind::W3c => self.w3c.parse(record, ev).map(|_| ()),
        }
    }
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
        assert_eq!((ev.format.as_str(), ev.status), ("json", Some(200)));
        assert_eq!(p.detected(), Some(Kind::Combined));
        assert!(p.parse("complete garbage", &mut Event::default()).is_err());
    }

    #[test]
    fn fixed_format_does_not_fall_back() {
        let mut p = FileParser::new(FormatSpec::Fixed(Kind::Combined));
        assert!(p.parse(r#"{"status":200}"#, &mut Event::default()).is_err());
    }
}
