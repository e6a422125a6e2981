//! Parsers compiled from the format strings users already have: an nginx `log_format` such as
//! `$remote_addr - $remote_user [$time_local] "$request" $status $request_time`, or an apache
//! `LogFormat` such as `%h %l %u %t \"%r\" %>s %b %D`.

use super::ParseError;
use super::lexer::{non_empty, set_request, unescape};
use super::timestamp::{from_epoch, parse_clf, parse_iso};
use crate::event::Event;

#[derive(Debug, Clone, PartialEq)]
enum Var {
    ClientIp,
    User,
    TimeClf,
    TimeIso,
    Msec,
    /// Epoch time in units per second: `%{sec}t`, `%{msec}t`, `%{usec}t`.
    Epoch(u32),
    /// The sub-second part written after a strftime time: `%{msec_frac}t`, `%{usec_frac}t`
    /// (digits, in units per second).
    Fraction(u32),
    Request,
    Status,
    BytesSent,
    Referer,
    UserAgent,
    Seconds,
    UpstreamSeconds,
    Micros,
    Millis,
    Host,
    Method,
    Target,
    Path,
    Query,
    Protocol,
    RequestBytes,
    RequestId,
    Header(String),
    Ignore,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Lit(String),
    Var(Var),
}

/// A compiled format string.
#[derive(Debug, Clone)]
pub struct CustomFormat {
    pieces: Vec<Piece>,
}

/// Why a format string could not be compiled.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FormatError {
    #[error("two variables ({0}) follow each other without text between them, so they cannot be told apart")]
    Adjacent(String),
    #[error("the format string has no variables")]
    Empty,
    #[error("unterminated %{{...}} in apache format")]
    Unterminated,
}

fn nginx_var(name: &str) -> Var {
    match name {
        "remote_addr" | "binary_remote_addr" | "realip_remote_addr" => Var::ClientIp,
        "remote_user" => Var::User,
        "time_local" => Var::TimeClf,
        "time_iso8601" => Var::TimeIso,
        "msec" => Var::Msec,
        "request" => Var::Request,
        "status" => Var::Status,
        "body_bytes_sent" | "bytes_sent" => Var::BytesSent,
        "http_referer" => Var::Referer,
        "http_user_agent" => Var::UserAgent,
        "request_time" => Var::Seconds,
        "upstream_response_time" => Var::UpstreamSeconds,
        "host" | "server_name" | "http_host" => Var::Host,
        "request_method" => Var::Method,
        "request_uri" => Var::Target,
        "uri" | "document_uri" => Var::Path,
        "args" | "query_string" => Var::Query,
        "server_protocol" => Var::Protocol,
        "request_length" => Var::RequestBytes,
        "request_id" | "http_x_request_id" => Var::RequestId,
        other => match other.strip_prefix("http_") {
            Some(h) => Var::Header(h.replace('_', "-")),
            None => Var::Ignore,
        },
    }
}

fn apache_var(directive: char, arg: Option<&str>) -> Var {
    match (directive, arg) {
        ('h' | 'a', _) => Var::ClientIp,
        ('u', _) => Var::User,
        ('t', None) => Var::TimeClf,
        ('t', Some(a)) => match a.strip_prefix("begin:").or_else(|| a.strip_prefix("end:")).unwrap_or(a) {
            "sec" => Var::Epoch(1),
            "msec" => Var::Epoch(1000),
            "usec" => Var::Epoch(1_000_000),
            "msec_frac" => Var::Fraction(1000),
            "usec_frac" => Var::Fraction(1_000_000),
            // A strftime format: the everyday ISO-like ones parse as such.
            _ => Var::TimeIso,
        },
        ('r', _) => Var::Request,
        ('s', _) => Var::Status,
        ('b' | 'B' | 'O', _) => Var::BytesSent,
        ('I', _) => Var::RequestBytes,
        ('D', _) => Var::Micros,
        ('T', Some("ms")) => Var::Millis,
        ('T', Some("us")) => Var::Micros,
        ('T', _) => Var::Seconds,
        ('v' | 'V', _) => Var::Host,
        ('m', _) => Var::Method,
        ('U', _) => Var::Path,
        ('q', _) => Var::Query,
        ('H', _) => Var::Protocol,
        ('i', Some(h)) if h.eq_ignore_ascii_case("referer") => Var::Referer,
        ('i', Some(h)) if h.eq_ignore_ascii_case("user-agent") => Var::UserAgent,
        ('i', Some(h)) if h.eq_ignore_ascii_case("x-request-id") => Var::RequestId,
        ('i', Some(h)) => Var::Header(h.to_ascii_lowercase()),
        _ => Var::Ignore,
    }
}

impl CustomFormat {
    /// Compiles an nginx `log_format` string (`$variable`).
    pub fn nginx(spec: &str) -> Result<Self, FormatError> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = spec.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                lit.push(c);
                continue;
            }
            let braced = chars.peek() == Some(&'{');
            if braced {
                chars.next();
            }
            let mut name = String::new();
            while let Some(&n) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    name.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            if braced && chars.peek() == Some(&'}') {
                chars.next();
            }
            if name.is_empty() {
                lit.push('$');
                continue;
            }
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Var(nginx_var(&name)));
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Self::build(pieces)
    }

    /// Compiles an apache `LogFormat` string (`%h`, `%>s`, `%{Referer}i`).
    pub fn apache(spec: &str) -> Result<Self, FormatError> {
        let spec = spec.replace("\\\"", "\"");
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = spec.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            if chars.peek() == Some(&'%') {
                chars.next();
                lit.push('%');
                continue;
            }
            while matches!(chars.peek(), Some('>' | '<' | '!' | ',' | '0'..='9')) {
                chars.next();
            }
            let mut arg = None;
            if chars.peek() == Some(&'{') {
                chars.next();
                let mut a = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => a.push(ch),
                        None => return Err(FormatError::Unterminated),
                    }
                }
                arg = Some(a);
            }
            let Some(directive) = chars.next() else { break };
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            let var = apache_var(directive, arg.as_deref());
            // Apache's %t carries its own brackets; nginx users write them around $time_local.
            if var == Var::TimeClf {
                pieces.push(Piece::Lit("[".into()));
                pieces.push(Piece::Var(var));
                pieces.push(Piece::Lit("]".into()));
            } else {
                pieces.push(Piece::Var(var));
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        // Merge literals that the %t expansion put next to each other.
        let mut merged: Vec<Piece> = Vec::with_capacity(pieces.len());
        for p in pieces {
            match (merged.last_mut(), p) {
                (Some(Piece::Lit(a)), Piece::Lit(b)) => a.push_str(&b),
                (_, p) => merged.push(p),
            }
        }
        Self::build(merged)
    }

    fn build(pieces: Vec<Piece>) -> Result<Self, FormatError> {
        if !pieces.iter().any(|p| matches!(p, Piece::Var(_))) {
            return Err(FormatError::Empty);
        }
        for w in pieces.windows(2) {
            if let [Piece::Var(a), Piece::Var(b)] = w {
                return Err(FormatError::Adjacent(format!("{a:?} and {b:?}")));
            }
        }
        Ok(Self { pieces })
    }

    pub fn parse(&self, line: &str, ev: &mut Event) -> Result<(), ParseError> {
        let mut rest = line;
        for (i, piece) in self.pieces.iter().enumerate() {
            match piece {
                Piece::Lit(l) => {
                    rest = rest.strip_prefix(l.as_str()).ok_or_else(|| {
                        ParseError::invalid(format!("expected {l:?} at column {}", line.len() - rest.len() + 1))
                    })?;
                }
                Piece::Var(var) => {
                    let end = match self.pieces.get(i + 1) {
                        Some(Piece::Lit(next)) => find_unescaped(rest, next)
                            .ok_or_else(|| ParseError::invalid(format!("expected {next:?} after a value")))?,
                        _ => rest.len(),
                    };
                    set(ev, var, &rest[..end])?;
                    rest = &rest[end..];
                }
            }
        }
        Ok(())
    }
}

/// Finds `needle`, skipping quotes escaped with a backslash when the needle starts with one.
fn find_unescaped(hay: &str, needle: &str) -> Option<usize> {
    let mut from = 0;
    loop {
        let i = from + hay[from..].find(needle)?;
        if needle.starts_with('"') && i > 0 && hay.as_bytes()[i - 1] == b'\\' {
            from = i + 1;
            continue;
        }
        return Some(i);
    }
}

fn set(ev: &mut Event, var: &Var, raw: &str) -> Result<(), ParseError> {
    let value = unescape(raw);
    let Some(v) = non_empty(&value) else {
        return Ok(());
    };
    let number =
        |what: &str| v.parse::<f64>().map_err(|_| ParseError::invalid(format!("{what} is not a number: {v:?}")));
    match var {
        Var::ClientIp => ev.client_ip = Some(v.to_string()),
        Var::User => ev.user_id = Some(v.to_string()),
        Var::TimeClf => ev.timestamp_ms = parse_clf(v).ok_or(ParseError::invalid("unrecognised timestamp"))?,
        Var::TimeIso => ev.timestamp_ms = parse_iso(v).ok_or(ParseError::invalid("unrecognised timestamp"))?,
        Var::Msec => ev.timestamp_ms = from_epoch(number("msec")?).ok_or(ParseError::invalid("bad msec"))?,
        Var::Epoch(per_second) => {
            let secs = number("epoch time")? / f64::from(*per_second);
            ev.timestamp_ms = from_epoch(secs).ok_or(ParseError::invalid("bad epoch time"))?;
        }
        Var::Fraction(per_second) => {
            ev.timestamp_ms += (number("time fraction")? * 1000.0 / f64::from(*per_second)) as i64
        }
        Var::Request => {
            if !set_request(ev, v) {
                ev.message = Some(v.to_string());
            }
        }
        Var::Status => ev.status = Some(number("status")? as u16),
        Var::BytesSent => ev.bytes_sent = Some(number("bytes")? as u64),
        Var::RequestBytes => ev.request_bytes = Some(number("request bytes")? as u64),
        Var::Referer => ev.referer = Some(v.to_string()),
        Var::UserAgent => ev.user_agent = Some(v.to_string()),
        // nginx writes several comma-separated upstream times when it retried; take the first.
        Var::Seconds => ev.duration_ms = Some(number("request time")? * 1000.0),
        Var::UpstreamSeconds => {
            ev.upstream_ms = v.split([',', ' ']).next().and_then(|s| s.parse::<f64>().ok()).map(|s| s * 1000.0)
        }
        Var::Micros => ev.duration_ms = Some(number("duration")? / 1000.0),
        Var::Millis => ev.duration_ms = Some(number("duration")?),
        Var::Host => ev.host = Some(v.to_string()),
        Var::Method => ev.method = Some(v.to_string()),
        Var::Target => ev.set_target(v),
        Var::Path => {
            let q = ev.query.take();
            ev.set_target(v);
            ev.query = q.or(ev.query.take());
        }
        Var::Query => ev.query = Some(v.trim_start_matches('?').to_string()),
        Var::Protocol => ev.protocol = Some(v.to_string()),
        Var::RequestId => ev.request_id = Some(v.to_string()),
        Var::Header(h) => {
            ev.headers.insert(h.clone(), v.to_string());
        }
        Var::Ignore => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_log_format() {
        let f = CustomFormat::nginx(r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" "$http_x_api_key""#).unwrap();
        let mut ev = Event::default();
        f.parse(r#"10.0.0.1 - bob [10/Oct/2000:13:55:36 -0700] "GET /a/1?x=\"y\" HTTP/1.1" 404 12 "-" "curl/8" rt=0.042 uct="0.001" "k-123""#, &mut ev).unwrap();
        assert_eq!(ev.client_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(ev.user_id.as_deref(), Some("bob"));
        assert_eq!(ev.query.as_deref(), Some("x=\"y\""));
        assert_eq!(ev.status, Some(404));
        assert_eq!(ev.duration_ms, Some(42.0));
        assert_eq!(ev.headers.get("x-api-key").map(String::as_str), Some("k-123"));
        assert!(f.parse("garbage", &mut Event::default()).is_err());
    }

    #[test]
    fn apache_log_format() {
        let f = CustomFormat::apache(r#"%v %h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\" %D"#).unwrap();
        let mut ev = Event::default();
        f.parse(
            r#"example.com 1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "POST /login HTTP/1.1" 302 0 "-" "Mozilla" 1500"#,
            &mut ev,
        )
        .unwrap();
        assert_eq!(ev.host.as_deref(), Some("example.com"));
        assert_eq!(ev.method.as_deref(), Some("POST"));
        assert_eq!(ev.duration_ms, Some(1.5));
        assert_eq!(ev.user_agent.as_deref(), Some("Mozilla"));
    }

    #[test]
    fn apache_strftime_times_with_fractions() {
        // The netnea tutorials' "extended" format.
        let f = CustomFormat::apache(r#"%h %{GEOIP_COUNTRY_CODE}e %u [%{%Y-%m-%d %H:%M:%S}t.%{usec_frac}t] \"%r\" %>s %b %{ratio}n%% %D %{begin:msec}t"#).unwrap();
        let mut ev = Event::default();
        f.parse(
            r#"75.249.65.145 US - [2016-09-02 10:42:51.003372] "GET /cms/ HTTP/1.1" 200 7113 -% 88871 1472812971003"#,
            &mut ev,
        )
        .unwrap();
        assert_eq!(ev.timestamp_ms, 1_472_812_971_003);
        assert_eq!(ev.duration_ms, Some(88.871));
        assert_eq!(ev.status, Some(200));
        assert_eq!(ev.path.as_deref(), Some("/cms/"));
    }

    #[test]
    fn ambiguous_formats_are_refused() {
        assert!(matches!(CustomFormat::nginx("$status$request_time"), Err(FormatError::Adjacent(_))));
        assert_eq!(CustomFormat::nginx("no vars").unwrap_err(), FormatError::Empty);
    }
}
