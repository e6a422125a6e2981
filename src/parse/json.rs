//! JSON lines from Express/morgan-json, pino, bunyan, winston, Caddy, Traefik and nginx
//! `escape=json`. Nested objects are walked and their paths flattened, so `req.method` and
//! `request.method` meet the same alias as `method` (see `fields`).

use serde_json::Value as Json;

use super::ParseError;
use super::fields::{Unit, Value, apply, normalise};
use crate::event::Event;

/// Nesting deeper than this is kept in the raw line but not walked.
const MAX_DEPTH: usize = 8;

pub fn parse(line: &str, ev: &mut Event) -> Result<(), ParseError> {
    let doc: Json = serde_json::from_str(line).map_err(|e| ParseError::invalid(format!("invalid JSON: {e}")))?;
    let Json::Object(obj) = &doc else {
        return Err(ParseError::invalid("JSON line is not an object"));
    };
    // Duration units are the one thing aliases cannot settle: Caddy writes seconds, Traefik
    // nanoseconds, the Node.js loggers milliseconds.
    let unit = if obj.get("logger").and_then(Json::as_str).is_some_and(|l| l.starts_with("http")) {
        Unit::Seconds
    } else if obj.contains_key("DownstreamStatus") || obj.contains_key("RouterName") {
        Unit::Nanos
    } else {
        Unit::Millis
    };
    walk(&doc, &mut String::new(), ev, unit, 0);
    Ok(())
}

fn walk(v: &Json, path: &mut String, ev: &mut Event, unit: Unit, depth: usize) {
    match v {
        Json::Object(obj) if depth < MAX_DEPTH => {
            for (k, child) in obj {
                let len = path.len();
                path.push_str(&normalise(k));
                if is_headers(path) {
                    collect_headers(child, ev);
                }
                walk(child, path, ev, unit, depth + 1);
                path.truncate(len);
            }
        }
        Json::String(s) => {
            apply(ev, path, &Value::Str(s), unit);
        }
        Json::Number(n) => {
            if let Some(f) = n.as_f64() {
                apply(ev, path, &Value::Num(f), unit);
            }
        }
        // Caddy writes header values as one-element arrays.
        Json::Array(items) if items.len() == 1 => walk(&items[0], path, ev, unit, depth + 1),
        Json::Object(_) | Json::Array(_) => {
            if matches!(path.as_str(), "body" | "requestbody" | "reqbody") {
                apply(ev, path, &Value::Str(&v.to_string()), unit);
            }
        }
        Json::Bool(_) | Json::Null => {}
    }
}

fn is_headers(path: &str) -> bool {
    matches!(path, "headers" | "requestheaders" | "reqheaders")
}

fn collect_headers(v: &Json, ev: &mut Event) {
    let Json::Object(obj) = v else { return };
    for (name, value) in obj {
        let text = match value {
            Json::String(s) => s.clone(),
            Json::Array(items) => items.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(", "),
            other => other.to_string(),
        };
        ev.headers.insert(name.to_ascii_lowercase(), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Event {
        let mut ev = Event::default();
        parse(line, &mut ev).unwrap();
        ev
    }

    #[test]
    fn pino_http() {
        let ev = p(
            r#"{"level":30,"time":1700000000123,"pid":1,"hostname":"web-1","req":{"id":7,"method":"POST","url":"/api/users/42?x=1","headers":{"user-agent":"curl/8","authorization":"Bearer abc"},"remoteAddress":"10.0.0.9"},"res":{"statusCode":201},"responseTime":12.5,"msg":"request completed"}"#,
        );
        assert_eq!(ev.level.as_deref(), Some("info"));
        assert_eq!(ev.timestamp_ms, 1_700_000_000_123);
        assert_eq!(ev.method.as_deref(), Some("POST"));
        assert_eq!(ev.route.as_deref(), Some("/api/users/:id"));
        assert_eq!(ev.status, Some(201));
        assert_eq!(ev.duration_ms, Some(12.5));
        assert_eq!(ev.client_ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(ev.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(ev.headers.get("authorization").map(String::as_str), Some("Bearer abc"));
    }

    #[test]
    fn caddy_durations_are_seconds_and_traefik_nanoseconds() {
        let ev = p(
            r#"{"level":"info","ts":1703373474.8155608,"logger":"http.log.access","request":{"remote_ip":"192.0.2.5","method":"GET","host":"example.com","uri":"/shop/","headers":{"User-Agent":["Firefox"]}},"duration":0.5,"size":3609,"status":200}"#,
        );
        assert_eq!((ev.duration_ms, ev.status, ev.bytes_sent), (Some(500.0), Some(200), Some(3609)));
        assert_eq!(ev.user_agent.as_deref(), Some("Firefox"));
        assert_eq!(ev.host.as_deref(), Some("example.com"));
        let ev = p(
            r#"{"ClientHost":"192.0.2.6","DownstreamStatus":404,"Duration":2500000,"RequestMethod":"GET","RequestPath":"/x?id=1","StartUTC":"2023-08-11T11:39:21.773Z"}"#,
        );
        assert_eq!((ev.duration_ms, ev.status), (Some(2.5), Some(404)));
        assert_eq!(ev.query.as_deref(), Some("id=1"));
    }

    #[test]
    fn not_json_is_an_error() {
        let mut ev = Event::default();
        assert!(parse("{not json", &mut ev).is_err());
        assert!(parse("[1,2]", &mut ev).is_err());
    }
}
