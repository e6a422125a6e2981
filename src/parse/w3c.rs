//! W3C extended log format (IIS, CloudFront, Incapsula, NetScaler): `#Fields:` directives name
//! the columns, so the parser keeps that header as per-file state.

use super::ParseError;
use super::fields::{Unit, Value, apply, normalise};
use super::timestamp::parse_iso;
use crate::event::Event;

#[derive(Debug, Default, Clone)]
pub struct W3c {
    fields: Vec<String>,
}

/// What a line was: a directive (kept as an event but with no request) or a request.
pub enum Line {
    Directive,
    Request,
}

impl W3c {
    pub fn parse(&mut self, line: &str, ev: &mut Event) -> Result<Line, ParseError> {
        if let Some(directive) = line.strip_prefix('#') {
            if let Some(fields) = directive.strip_prefix("Fields:") {
                self.fields = fields.split_whitespace().map(str::to_string).collect();
            }
            ev.message = Some(line.to_string());
            return Ok(Line::Directive);
        }
        if self.fields.is_empty() {
            return Err(ParseError::invalid("W3C line before any #Fields: directive"));
        }
        let values = split_columns(line);
        if values.len() != self.fields.len() {
            return Err(ParseError::invalid(format!(
                "expected {} columns from #Fields:, found {}",
                self.fields.len(),
                values.len()
            )));
        }
        let (mut date, mut time) = (None, None);
        let mut stem = None;
        for (name, value) in self.fields.iter().zip(&values) {
            let value = value.trim();
            if value == "-" {
                continue;
            }
            match name.as_str() {
                "date" | "date-local" => date = Some(value),
                "time" | "time-local" => time = Some(value),
                "cs-uri-stem" => stem = Some(value),
                // IIS writes spaces as `+` in these two.
                "cs(User-Agent)" | "cs(Referer)" => {
                    let decoded = value.replace('+', " ");
                    apply(ev, &normalise(name), &Value::Str(&decoded), Unit::Millis);
                }
                _ => {
                    let v = value.parse::<f64>().map_or(Value::Str(value), Value::Num);
                    apply(ev, &normalise(name), &v, Unit::Millis);
                }
            }
        }
        if let Some(stem) = stem {
            let query = ev.query.take();
            ev.set_target(stem);
            ev.query = query.filter(|q| q != "-");
        }
        if let (Some(d), Some(t)) = (date, time) {
            ev.timestamp_ms = parse_iso(&format!("{d} {t}")).ok_or(ParseError::invalid("unrecognised date/time"))?;
            // Side by side, as writers put them, the two columns are the line's timestamp.
            if let (Some(a), Some(b)) = (super::offset_in(line, d), super::offset_in(line, t))
                && b >= a + d.len()
                && line[a + d.len()..b].trim().is_empty()
            {
                super::mark_time(ev, line, &line[a..b + t.len()]);
            }
        }
        Ok(Line::Request)
    }
}

/// Columns separated by spaces or tabs; a quoted column may hold spaces (its quotes dropped).
fn split_columns(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line.trim_start_matches([' ', '\t']);
    while !rest.is_empty() {
        let (value, after) = match rest.strip_prefix('"') {
            // Inside quotes, `""` is a literal quote.
            Some(q) => {
                let b = q.as_bytes();
                let mut end = 0;
                while end < b.len() && !(b[end] == b'"' && b.get(end + 1) != Some(&b'"')) {
                    end += if b[end] == b'"' { 2 } else { 1 };
                }
                (&q[..end.min(q.len())], q.get(end + 1..).unwrap_or(""))
            }
            None => {
                let end = rest.find([' ', '\t']).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        out.push(value);
        rest = after.trim_start_matches([' ', '\t']);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iis_lines() {
        let mut w = W3c::default();
        let mut ev = Event::default();
        w.parse("#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status sc-substatus sc-win32-status time-taken", &mut ev).unwrap();
        let mut ev = Event::default();
        w.parse(
            "2023-03-14 08:15:00 10.20.30.40 GET /catalog/item q=lamp 443 - 198.51.100.12 Mozilla/5.0+(Windows) 200 0 0 1564",
            &mut ev,
        )
        .unwrap();
        assert_eq!(ev.method.as_deref(), Some("GET"));
        assert_eq!(ev.path.as_deref(), Some("/catalog/item"));
        assert_eq!(ev.query.as_deref(), Some("q=lamp"));
        assert_eq!(ev.client_ip.as_deref(), Some("198.51.100.12"));
        assert_eq!(ev.user_agent.as_deref(), Some("Mozilla/5.0 (Windows)"));
        assert_eq!(ev.status, Some(200));
        assert_eq!(ev.duration_ms, Some(1564.0));
        assert_eq!(ev.timestamp_ms, 1_678_781_700_000);
        assert!(w.parse("2012-04-01 00:00:13 too few", &mut Event::default()).is_err());
        assert_eq!(split_columns("a  \"b c\"\t\"\" d"), ["a", "b c", "", "d"]);
        assert_eq!(split_columns(r#"404 "say ""hi"" there" 0"#), ["404", r#"say ""hi"" there"#, "0"]);
    }
}
