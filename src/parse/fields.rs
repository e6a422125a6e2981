//! Field aliases shared by the key-value formats (JSON lines, logfmt, the Express text format).
//!
//! Every emitter names the same things differently (`status`, `statusCode`, `res.statusCode`,
//! `DownstreamStatus`). Keys are normalised (lowercase, separators and dots removed, so nested
//! JSON paths flatten to the same shape as Traefik's `RequestMethod`) and looked up once here.

use super::timestamp::{from_epoch, parse_any};
use crate::event::Event;

/// The unit a bare number of a duration field is in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    Seconds,
    Millis,
    Nanos,
}

/// A value as the key-value formats give it.
pub enum Value<'a> {
    Str(&'a str),
    Num(f64),
}

impl Value<'_> {
    fn text(&self) -> Option<String> {
        match self {
            Value::Str(s) => (!s.is_empty() && *s != "-").then(|| s.to_string()),
            Value::Num(n) if n.fract() == 0.0 => Some(format!("{}", *n as i64)),
            Value::Num(n) => Some(n.to_string()),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            Value::Str(s) => s.trim().parse().ok(),
        }
    }
}

/// Lowercases and drops everything that is not a letter or digit: `res.statusCode`,
/// `status_code` and `Status-Code` all become `statuscode`.
pub fn normalise(key: &str) -> String {
    key.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// A duration written with a unit (`45ms`, `0.12s`, `1.5µs`) in milliseconds.
pub fn duration_with_unit(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit.trim() {
        "ms" => n,
        "s" | "sec" => n * 1000.0,
        "us" | "µs" => n / 1000.0,
        "ns" => n / 1e6,
        "m" | "min" => n * 60_000.0,
        _ => return None,
    })
}

/// A size written with a unit (`0.45KB`, `12 MB`) in bytes.
fn size_with_unit(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1024.0,
        "mb" | "m" => 1024.0 * 1024.0,
        "gb" | "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((n * mult).round() as u64)
}

fn duration(v: &Value, unit: Unit) -> Option<f64> {
    if let Value::Str(s) = v
        && let Some(ms) = duration_with_unit(s)
    {
        return Some(ms);
    }
    let n = v.number()?;
    Some(match unit {
        Unit::Seconds => n * 1000.0,
        Unit::Millis => n,
        Unit::Nanos => n / 1e6,
    })
}

fn level_name(v: &Value) -> Option<String> {
    match v {
        // pino and bunyan write numeric levels.
        Value::Num(n) => Some(
            match *n as i64 {
                ..=10 => "trace",
                11..=20 => "debug",
                21..=30 => "info",
                31..=40 => "warn",
                41..=50 => "error",
                _ => "fatal",
            }
            .to_string(),
        ),
        Value::Str(s) => Some(s.to_ascii_lowercase()),
    }
}

/// Applies one key-value pair; the first alias seen for a field wins. `key` is normalised.
/// Returns false when the key is not one logwarden knows.
pub fn apply(ev: &mut Event, key: &str, v: &Value, duration_unit: Unit) -> bool {
    fn set(slot: &mut Option<String>, v: &Value) {
        if slot.is_none() {
            *slot = v.text();
        }
    }
    match key {
        "time" | "timestamp" | "ts" | "date" | "datetime" | "startutc" | "timelocal" | "timeiso8601" | "msec"
        | "timestampns" | "t" => {
            if ev.timestamp_ms == 0 {
                ev.timestamp_ms = match v {
                    Value::Num(n) => from_epoch(*n),
                    Value::Str(s) => parse_any(s),
                }
                .unwrap_or(0);
            }
        }
        "method" | "requestmethod" | "reqmethod" | "httpmethod" | "verb" | "csmethod" => set(&mut ev.method, v),
        "url" | "uri" | "path" | "requesturi" | "requestpath" | "requrl" | "originalurl" | "httpurl" | "requesturl"
        | "target" | "route" => {
            if ev.path.is_none()
                && let Some(t) = v.text()
            {
                ev.set_target(&t);
            }
        }
        "query" | "querystring" | "args" | "requestquery" | "csuriquery" => set(&mut ev.query, v),
        "status" | "statuscode" | "resstatuscode" | "downstreamstatus" | "responsestatus" | "httpstatus"
        | "httpstatuscode" | "responsestatuscode" | "scstatus" => {
            if ev.status.is_none() {
                ev.status = v.number().filter(|n| (100.0..1000.0).contains(n)).map(|n| n as u16);
            }
        }
        "duration" | "elapsed" | "latency" | "took" => {
            ev.duration_ms = ev.duration_ms.or_else(|| duration(v, duration_unit));
        }
        "responsetime"
        | "responsetimems"
        | "ms"
        | "elapsedms"
        | "durationms"
        | "latencyms"
        | "timems"
        | "generationtimemilli"
        | "timetaken" => {
            ev.duration_ms = ev.duration_ms.or_else(|| duration(v, Unit::Millis));
        }
        "requesttime" | "durations" | "durationsec" => {
            ev.duration_ms = ev.duration_ms.or_else(|| duration(v, Unit::Seconds));
        }
        "upstreamresponsetime" | "upstreamtime" => {
            ev.upstream_ms = ev.upstream_ms.or_else(|| duration(v, Unit::Seconds))
        }
        "originduration" => ev.upstream_ms = ev.upstream_ms.or_else(|| duration(v, Unit::Nanos)),
        "bytes"
        | "size"
        | "bodybytessent"
        | "bytessent"
        | "contentlength"
        | "downstreamcontentsize"
        | "length"
        | "responsesize"
        | "ressize"
        | "scbytes"
        | "resheaderscontentlength" => {
            if ev.bytes_sent.is_none() {
                ev.bytes_sent = match v {
                    Value::Str(s) => size_with_unit(s),
                    Value::Num(n) => Some(*n as u64),
                };
            }
        }
        "requestlength" | "bytesread" | "requestcontentsize" | "reqsize" | "requestsize" | "csbytes" => {
            if ev.request_bytes.is_none() {
                ev.request_bytes = v.number().map(|n| n as u64);
            }
        }
        "ip" | "clientip" | "remoteaddr" | "remoteaddress" | "clienthost" | "requestremoteip" | "requestclientip"
        | "remoteip" | "reqremoteaddress" | "cip" => set(&mut ev.client_ip, v),
        "useragent"
        | "httpuseragent"
        | "requestuseragent"
        | "requestheadersuseragent"
        | "reqheadersuseragent"
        | "agent"
        | "ua"
        | "csuseragent"
        | "headersuseragent" => set(&mut ev.user_agent, v),
        "referer"
        | "referrer"
        | "httpreferer"
        | "requestreferer"
        | "requestheadersreferer"
        | "reqheadersreferer"
        | "csreferer"
        | "headersreferer" => set(&mut ev.referer, v),
        "host" | "requesthost" | "servername" | "httphost" | "vhost" | "cshost" => set(&mut ev.host, v),
        "proto" | "protocol" | "requestproto" | "requestprotocol" | "serverprotocol" | "httpversion" | "csversion" => {
            set(&mut ev.protocol, v)
        }
        "level" | "severity" | "loglevel" | "lvl" => {
            if ev.level.is_none() {
                ev.level = level_name(v);
            }
        }
        "msg" | "message" => set(&mut ev.message, v),
        "requestid" | "reqid" | "xrequestid" | "requestheadersxrequestid" | "reqheadersxrequestid" | "traceid" => {
            set(&mut ev.request_id, v)
        }
        "userid" | "user" | "username" | "remoteuser" | "csusername" => set(&mut ev.user_id, v),
        "clientid" | "apiclient" => set(&mut ev.client_id, v),
        "body" | "requestbody" | "reqbody" => set(&mut ev.body, v),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_land_in_the_same_field() {
        for key in ["status", "statusCode", "res.statusCode", "DownstreamStatus", "status_code"] {
            let mut ev = Event::default();
            assert!(apply(&mut ev, &normalise(key), &Value::Str("503"), Unit::Millis), "{key}");
            assert_eq!(ev.status, Some(503), "{key}");
        }
    }

    #[test]
    fn durations_and_sizes_with_units() {
        assert_eq!(duration_with_unit("45ms"), Some(45.0));
        assert_eq!(duration_with_unit("1.5s"), Some(1500.0));
        assert_eq!(size_with_unit("0.5KB"), Some(512));
        let mut ev = Event::default();
        apply(&mut ev, "duration", &Value::Num(0.25), Unit::Seconds);
        assert_eq!(ev.duration_ms, Some(250.0));
    }

    #[test]
    fn numeric_levels() {
        let mut ev = Event::default();
        apply(&mut ev, "level", &Value::Num(50.0), Unit::Millis);
        assert_eq!(ev.level.as_deref(), Some("error"));
    }
}
