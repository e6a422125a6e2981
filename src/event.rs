//! The event model shared by every stage.
//!
//! An [`Event`] is one request (or one unparsed line) as the parsers understand it. It is a plain
//! record on purpose: parsers fill it field by field, and nothing may write it anywhere until
//! `redact` has wrapped it in `Redacted`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Where an event's bytes came from: enough to find the line again and to name it uniquely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Fingerprint of the file (or `stdin`), stable across renames. Shared by the records of
    /// a read, like `path`: not an allocation per line.
    pub fingerprint: Arc<str>,
    /// Byte offset of the first byte of the record in the file.
    pub offset: u64,
    /// Byte offset just after the record (its newline included).
    pub end_offset: u64,
    /// The path the record was read from.
    pub path: Arc<str>,
}

impl Origin {
    /// The stable id of an event: the same bytes of the same file always get the same id,
    /// which is what lets a replay after a crash replace instead of duplicate.
    pub fn event_id(&self) -> String {
        // Written by hand: `format!` took a tenth of the parse thread's instructions.
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = self.offset;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut id = String::with_capacity(self.fingerprint.len() + 1 + digits.len() - at);
        id.push_str(&self.fingerprint);
        id.push(':');
        id.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
        id
    }
}

/// Problems with the raw bytes of a line, kept on the event rather than dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFlag {
    /// The line was longer than `max_line_bytes` and was cut.
    Truncated,
    /// The line was not valid UTF-8 and was decoded lossily.
    InvalidUtf8,
    /// The line held NUL bytes.
    Nul,
    /// The line had no newline when its file was closed.
    Partial,
}

/// One request as logged. Optional fields stay `None` when the format does not carry them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    /// Milliseconds since the Unix epoch (UTC); the ingest time when the line has none.
    pub timestamp_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The path of the file, shared with the event's `Origin`.
    pub source: Arc<str>,
    /// The format's name, written by the parser (`"combined"`) without an allocation.
    pub format: Cow<'static, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub raw: String,
    /// Where the line's own timestamp sits in `raw` (a byte range), when the parser read it
    /// from there. The index leaves those words out of `raw`: the time is searched as a range,
    /// and the words of every hour, minute and second took 6 % of the index. Not serialised:
    /// an event read back has none, and is indexed whole.
    #[serde(skip)]
    pub time_in_raw: Option<(u32, u32)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<LineFlag>,
    /// Rule ids that matched, filled by the rules stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<String>,
    /// Families of the rules that matched (sqli, xss, scanner, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<String>,
    /// Sum of the scores of the rules that matched.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub anomaly_score: u32,
    /// Highest severity among the rules that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The score reached the anomaly threshold.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attack: bool,
    /// Where each pattern rule matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<AnomalyMatch>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the rules stage found, applied to a redacted event in one go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnomalyTags {
    pub rules: Vec<String>,
    pub families: Vec<String>,
    pub score: u32,
    pub severity: Option<String>,
    pub attack: bool,
    pub matches: Vec<AnomalyMatch>,
}

/// One rule match: the rule, the field it matched in, and a short excerpt of that field as the
/// rule saw it (decoded), redacted again before it is stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnomalyMatch {
    pub rule: String,
    pub target: String,
    pub excerpt: String,
}

impl Event {
    /// Splits a request target into path and query and derives the route.
    pub fn set_target(&mut self, target: &str) {
        let (path, query) = match memchr::memchr(b'?', target.as_bytes()) {
            Some(i) => (&target[..i], Some(&target[i + 1..])),
            None => (target, None),
        };
        self.path = Some(path.to_string());
        self.route = Some(route_of(path));
        self.query = query.filter(|q| !q.is_empty()).map(str::to_string);
    }
}

/// Replaces the variable parts of a path (numbers, UUIDs, hex hashes, emails, dates) with
/// placeholders so that `/api/users/42` and `/api/users/43` share the route `/api/users/:id`.
pub fn route_of(path: &str) -> String {
    let path = url_path(path);
    let mut out = String::with_capacity(path.len());
    // Segment by segment; every segment after the first starts past a `/`.
    let mut start = 0;
    for end in memchr::memchr_iter(b'/', path.as_bytes()).chain([path.len()]) {
        if start > 0 {
            out.push('/');
        }
        let seg = &path[start..end];
        out.push_str(placeholder(seg).unwrap_or(seg));
        start = end + 1;
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The path of an absolute URL (as proxies and ALB log it), or `target` itself.
pub fn url_path(target: &str) -> &str {
    let b = target.as_bytes();
    match memchr::memchr_iter(b':', b).find(|&i| b[i + 1..].starts_with(b"//")) {
        Some(i) => target[i + 3..].find('/').map_or("/", |j| &target[i + 3 + j..]),
        None => target,
    }
}

fn placeholder(seg: &str) -> Option<&'static str> {
    if seg.is_empty() {
        return None;
    }
    let b = seg.as_bytes();
    if b.iter().all(u8::is_ascii_digit) {
        return Some(":id");
    }
    if is_uuid(b) {
        return Some(":uuid");
    }
    if b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit) {
        return Some(":hash");
    }
    if seg.contains('@') && seg.contains('.') {
        return Some(":email");
    }
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' && b.iter().filter(|c| c.is_ascii_digit()).count() == 8 {
        return Some(":date");
    }
    None
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_the_fingerprint_and_the_offset_in_decimal() {
        for offset in [0, 7, 9, 10, 99, 100, 1_234_567, 10u64.pow(19), u64::MAX] {
            let origin = Origin { fingerprint: "ab12".into(), offset, end_offset: offset, path: "x".into() };
            assert_eq!(origin.event_id(), format!("ab12:{offset}"));
        }
    }

    #[test]
    fn absolute_urls_keep_their_path() {
        assert_eq!(url_path("http://example.com/a/b?x"), "/a/b?x");
        assert_eq!(url_path("https://example.com"), "/");
        assert_eq!(url_path("/a:b//c"), "/a:b//c");
    }

    #[test]
    fn routes_replace_ids_uuids_hashes_emails_and_dates() {
        assert_eq!(route_of("/api/users/42"), "/api/users/:id");
        assert_eq!(route_of("/o/123e4567-e89b-12d3-a456-426614174000/items"), "/o/:uuid/items");
        assert_eq!(route_of("/blob/0123456789abcdef0123"), "/blob/:hash");
        assert_eq!(route_of("/u/a.b@example.com"), "/u/:email");
        assert_eq!(route_of("/report/2025-11-25"), "/report/:date");
        assert_eq!(route_of("/static/app.js"), "/static/app.js");
        assert_eq!(route_of("https://example.com:443/p/7"), "/p/:id");
        assert_eq!(route_of(""), "/");
    }

    #[test]
    fn target_splits_query() {
        let mut e = Event::default();
        e.set_target("/search?q=x&page=2");
        assert_eq!(e.path.as_deref(), Some("/search"));
        assert_eq!(e.query.as_deref(), Some("q=x&page=2"));
        assert_eq!(e.route.as_deref(), Some("/search"));
    }
}
