//! `logwarden rules eval`: runs labelled request cases (the JSON Lines schema of the attack
//! corpus: `method`, `uri`, `headers`, `body`, `family`, `expect`, `source`) through the same
//! parsing, redaction and matching path as live events, and tallies detection and false
//! positives per source and family.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::Detector;
use crate::event::Event;
use crate::parse::{FileParser, FormatSpec, Kind};
use crate::redact::Redactor;

/// A browser user-agent for cases that carry none, so "missing user-agent" does not fire on
/// every case of a source that records no headers.
const DEFAULT_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0 Safari/537.36";

/// The verdict on one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub verdict: &'static str,
    pub rules: Vec<String>,
    pub score: u32,
    pub expect: String,
    pub source: String,
    pub family: String,
}

/// Cases, detections and false positives of one (source, family).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Tally {
    pub attacks: u64,
    pub detected: u64,
    pub benign: u64,
    pub false_positives: u64,
}

impl Tally {
    /// Counts one case.
    pub fn add(&mut self, r: &CaseResult) {
        let flagged = r.verdict == "attack";
        if r.expect == "attack" {
            self.attacks += 1;
            self.detected += u64::from(flagged);
        } else {
            self.benign += 1;
            self.false_positives += u64::from(flagged);
        }
    }

    pub fn detection_rate(&self) -> f64 {
        self.detected as f64 / self.attacks.max(1) as f64 * 100.0
    }

    pub fn false_positive_rate(&self) -> f64 {
        self.false_positives as f64 / self.benign.max(1) as f64 * 100.0
    }
}

/// The log line a case would have produced, as a JSON access-log entry, so it goes through the
/// real JSON parser (headers, body and all).
fn as_log_line(case: &Value) -> String {
    let mut headers = case.get("headers").cloned().unwrap_or_else(|| json!({}));
    let about_ua = case["family"].as_str().is_some_and(|f| f.contains("scanner"))
        || case["desc"].as_str().is_some_and(|d| {
            d.to_ascii_lowercase().contains("user-agent") || d.to_ascii_lowercase().contains("user agent")
        });
    if let Some(h) = headers.as_object_mut()
        && !about_ua
        && !h.keys().any(|k| k.eq_ignore_ascii_case("user-agent"))
    {
        h.insert("User-Agent".into(), json!(DEFAULT_UA));
    }
    json!({
        "time": "2026-11-29T10:00:00Z",
        "method": case["method"].as_str().unwrap_or("GET"),
        "url": case["uri"].as_str().unwrap_or("/"),
        "status": 200,
        "headers": headers,
        "body": case["body"].as_str().unwrap_or(""),
    })
    .to_string()
}

/// Evaluates one case.
pub fn evaluate(case: &Value, redactor: &Redactor, detector: &Detector) -> CaseResult {
    let line = as_log_line(case);
    let mut parser = FileParser::new(FormatSpec::Fixed(Kind::Json));
    let mut ev = Event::default();
    let _ = parser.parse(&line, &mut ev);
    if ev.body.as_deref() == Some("") {
        ev.body = None;
    }
    ev.raw = line;
    let mut redacted = redactor.redact(ev);
    let tags = detector.tags(redacted.event());
    let attack = tags.attack;
    redacted.tag(tags);
    let ev = redacted.event();
    CaseResult {
        verdict: if attack { "attack" } else { "benign" },
        rules: ev.anomalies.clone(),
        score: ev.anomaly_score,
        expect: case["expect"].as_str().unwrap_or("").to_string(),
        source: case["source"].as_str().unwrap_or("").to_string(),
        family: case["family"].as_str().unwrap_or("").to_string(),
    }
}

/// Adds a result to the tally of its (source, family).
pub fn count(tallies: &mut BTreeMap<(String, String), Tally>, r: &CaseResult) {
    tallies.entry((r.source.clone(), r.family.clone())).or_default().add(r);
}

/// The table printed after the cases.
pub fn table(tallies: &BTreeMap<(String, String), Tally>) -> String {
    let mut out = format!(
        "{:<14} {:<28} {:>8} {:>9} {:>8} {:>8} {:>6} {:>8}\n",
        "source", "family", "attacks", "detected", "rate", "benign", "FP", "FP rate"
    );
    for ((source, family), t) in tallies {
        out.push_str(&format!(
            "{source:<14} {family:<28} {:>8} {:>9} {:>7.1}% {:>8} {:>6} {:>7.2}%\n",
            t.attacks,
            t.detected,
            t.detection_rate(),
            t.benign,
            t.false_positives,
            t.false_positive_rate()
        ));
    }
    out
}
