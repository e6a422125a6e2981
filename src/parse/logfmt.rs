//! logfmt: `time=... method=GET path=/x status=200 duration=12ms "quoted values"`.

use nom::bytes::complete::take_till1;
use nom::character::complete::char;
use nom::{IResult, Parser};

use super::ParseError;
use super::fields::{Unit, Value, apply, normalise};
use super::lexer::{quoted, token, unescape, ws};
use crate::event::Event;

fn pair(i: &str) -> IResult<&str, (&str, Option<&str>)> {
    let (i, key) = take_till1(|c| c == '=' || c == ' ' || c == '\t').parse(i)?;
    match char::<&str, nom::error::Error<&str>>('=').parse(i) {
        Ok((i, _)) => {
            if i.starts_with('"') {
                let (i, v) = quoted(i)?;
                Ok((i, (key, Some(v))))
            } else {
                let (i, v) = token(i).unwrap_or((i, ""));
                Ok((i, (key, Some(v))))
            }
        }
        Err(_) => Ok((i, (key, None))),
    }
}

pub fn parse(line: &str, ev: &mut Event) -> Result<(), ParseError> {
    let mut rest = line.trim();
    let mut pairs = 0;
    let mut known = 0;
    while !rest.is_empty() {
        let (r, (key, value)) = pair(rest).map_err(|_| ParseError::invalid("expected key=value"))?;
        let Some(value) = value else {
            return Err(ParseError::invalid(format!("`{key}` has no =value")));
        };
        pairs += 1;
        let value = unescape(value);
        let v = match value.parse::<f64>() {
            Ok(n) if !value.is_empty() => Value::Num(n),
            _ => Value::Str(&value),
        };
        let norm = normalise(key);
        if apply(ev, &norm, &v, Unit::Millis) {
            known += 1;
        } else if let Some(h) = key.strip_prefix("header.").or_else(|| key.strip_prefix("req.header.")) {
            ev.headers.insert(h.to_ascii_lowercase(), value.into_owned());
        }
        rest = ws(r).map_or(r, |(r, _)| r);
    }
    if pairs < 2 || known == 0 {
        return Err(ParseError::invalid("not enough key=value pairs for logfmt"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heroku_style_line() {
        let mut ev = Event::default();
        parse(r#"at=info method=GET path="/api/items/9?q=a b" host=example.com request_id=abc fwd="1.2.3.4" status=503 duration=1200ms bytes=52 level=warn"#, &mut ev).unwrap();
        assert_eq!(ev.method.as_deref(), Some("GET"));
        assert_eq!(ev.route.as_deref(), Some("/api/items/:id"));
        assert_eq!(ev.query.as_deref(), Some("q=a b"));
        assert_eq!(ev.status, Some(503));
        assert_eq!(ev.duration_ms, Some(1200.0));
        assert_eq!(ev.request_id.as_deref(), Some("abc"));
        assert_eq!(ev.bytes_sent, Some(52));
    }

    #[test]
    fn prose_is_not_logfmt() {
        let mut ev = Event::default();
        assert!(parse("the quick brown fox", &mut ev).is_err());
        assert!(parse("a=1 b=2", &mut ev).is_err());
    }
}
