//! Threshold alerting: rules in TOML, an evaluator on a fixed interval, and a state machine per
//! alert instance (inactive -> pending -> firing -> resolved) persisted in the data directory.
//!
//! A rule is evaluated into observations, one per instance (the whole traffic, or one client,
//! route or source); an instance whose observation crosses the threshold is active. [`step`]
//! turns observations into transitions and is a pure function of the state and the clock, so
//! `for`, `keep_firing_for` and window edges are tested without sleeping. Delivery (`deliver`)
//! reads the transitions from a durable outbox kept in the same state file.

pub mod deliver;
pub mod observe;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ConfigError;

/// The built-in alert rules, used when no `alerts.rules_file` is configured.
pub const BUILTIN: &str = include_str!("../../rules/alerts.toml");

/// What a rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Events with anomalies (of a least severity, or of given families or rules) in the window.
    AnomalyCount,
    /// Share of 5xx responses in the window (0..1), with at least `min_requests` requests.
    ErrorRate,
    /// A latency percentile in milliseconds (`percentile`, default 99).
    Latency,
    /// Share of requests slower than the slow threshold (0..1).
    SlowRatio,
    /// No line from a source for longer than the window.
    Absent,
}

/// What each instance of a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    ClientIp,
    Route,
    Source,
}

impl Per {
    pub fn label(self) -> &'static str {
        match self {
            Per::ClientIp => "client_ip",
            Per::Route => "route",
            Per::Source => "source",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    pub kind: Kind,
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub window: Duration,
    /// The value the observation must exceed (ignored by `absent`, which uses the window).
    #[serde(default)]
    pub threshold: f64,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for", deserialize_with = "duration", serialize_with = "show_duration")]
    pub for_: Duration,
    /// How long a firing alert stays firing after its condition clears.
    #[serde(default, deserialize_with = "duration", serialize_with = "show_duration")]
    pub keep_firing_for: Duration,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Templates: `{value}`, `{threshold}`, `{window}`, `{route}`, `{client_ip}`, `{source}`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// One alert per client, route or source instead of one for everything.
    #[serde(default)]
    pub per: Option<Per>,
    /// Only this route (error_rate, latency, slow_ratio) or this source (absent).
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    /// anomaly_count: the least severity counted (LOW, MODERATE, HIGH, CRITICAL).
    #[serde(default)]
    pub min_severity: Option<String>,
    #[serde(default)]
    pub families: Vec<String>,
    #[serde(default)]
    pub rules: Vec<String>,
    /// latency: which percentile (50, 90, 95, 99, 99.9).
    #[serde(default)]
    pub percentile: Option<f64>,
    /// error_rate, latency, slow_ratio: fewer requests than this in the window never alert.
    #[serde(default)]
    pub min_requests: u64,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e} (try \"30s\", \"5m\")")))
}

fn show_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    alert: Vec<AlertRule>,
}

pub const SEVERITIES: [&str; 4] = ["LOW", "MODERATE", "HIGH", "CRITICAL"];

impl AlertRule {
    fn check(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("`name` is empty".into());
        }
        if self.window.is_zero() {
            return Err("`window` must be longer than zero".into());
        }
        if let Some(s) = &self.min_severity
            && !SEVERITIES.contains(&s.to_ascii_uppercase().as_str())
        {
            return Err(format!("`min_severity` {s:?} is not one of LOW, MODERATE, HIGH, CRITICAL"));
        }
        if let Some(p) = self.percentile
            && ![50.0, 90.0, 95.0, 99.0, 99.9].contains(&p)
        {
            return Err(format!("`percentile` {p} is not one of 50, 90, 95, 99, 99.9"));
        }
        match (self.kind, self.per) {
            (Kind::AnomalyCount, Some(Per::Source)) | (Kind::Absent, Some(Per::ClientIp | Per::Route)) => {
                Err(format!("`per` {:?} does not apply to kind {:?}", self.per, self.kind))
            }
            (Kind::ErrorRate | Kind::Latency | Kind::SlowRatio, Some(Per::ClientIp | Per::Source)) => Err(format!(
                "`per` {:?} needs the index; kind {:?} comes from the route statistics (per = \"route\")",
                self.per, self.kind
            )),
            _ => Ok(()),
        }
    }
}

/// Parses an alert rule file; errors name the file, the line and the rule.
pub fn parse_rules(origin: &str, text: &str) -> Result<Vec<AlertRule>, ConfigError> {
    let file: RuleFile = toml::from_str(text).map_err(|e| crate::config::toml_error(origin, text, &e))?;
    let mut names = std::collections::HashSet::new();
    for r in &file.alert {
        let line = text.find(&format!("\"{}\"", r.name)).map_or(0, |at| text[..at].lines().count());
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.into(),
            line,
            key: format!("alert {}", r.name),
            message,
        };
        r.check().map_err(invalid)?;
        if !names.insert(r.name.clone()) {
            return Err(invalid("two alert rules have this name".into()));
        }
    }
    Ok(file.alert)
}

/// Loads `path`, or the built-in rules.
pub fn load_rules(path: Option<&Path>) -> Result<Vec<AlertRule>, ConfigError> {
    match path {
        None => parse_rules("rules/alerts.toml (built in)", BUILTIN),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Invalid {
                origin: p.display().to_string(),
                line: 0,
                key: String::new(),
                message: e.to_string(),
            })?;
            parse_rules(&p.display().to_string(), &text)
        }
    }
}

/// One measurement of one instance of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The instance's own label (`client_ip`, `route` or `source`), if the rule is `per` one.
    pub key: Option<(String, String)>,
    pub value: f64,
    /// Whether the condition holds.
    pub active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Firing,
}

/// One alert instance that is pending or firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub rule: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: State,
    pub value: f64,
    /// When the condition first held (ms).
    pub active_since_ms: i64,
    /// When it last held (ms).
    pub last_active_ms: i64,
    pub fired_at_ms: Option<i64>,
}

/// What `step` decided for one instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Fired(Instance),
    Resolved(Instance, i64),
}

/// The fingerprint of a label set: stable across restarts and versions.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xfe]);
    }
    hex::encode(&h.finalize()[..8])
}

fn render(template: &str, rule: &AlertRule, value: f64, labels: &BTreeMap<String, String>) -> String {
    let value = format!("{value:.3}").trim_end_matches('0').trim_end_matches('.').to_string();
    let mut out = template
        .replace("{value}", &value)
        .replace("{threshold}", &rule.threshold.to_string())
        .replace("{window}", &humantime::format_duration(rule.window).to_string());
    for key in ["route", "client_ip", "source"] {
        out = out.replace(&format!("{{{key}}}"), labels.get(key).map_or("all", String::as_str));
    }
    out
}

/// Applies one evaluation of `rule` at `now` to the instances of that rule in `instances`
/// (keyed by fingerprint) and returns what fired and what resolved.
pub fn step(
    instances: &mut BTreeMap<String, Instance>,
    rule: &AlertRule,
    observations: &[Observation],
    now: i64,
) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for o in observations.iter().filter(|o| o.active) {
        let mut labels = rule.labels.clone();
        labels.insert("alertname".into(), rule.name.clone());
        if let Some((k, v)) = &o.key {
            labels.insert(k.clone(), v.clone());
        }
        let fp = fingerprint(&labels);
        seen.insert(fp.clone());
        let annotations =
            rule.annotations.iter().map(|(k, t)| (k.clone(), render(t, rule, o.value, &labels))).collect();
        let inst = instances.entry(fp.clone()).or_insert_with(|| Instance {
            rule: rule.name.clone(),
            fingerprint: fp,
            labels,
            annotations: BTreeMap::new(),
            state: State::Pending,
            value: o.value,
            active_since_ms: now,
            last_active_ms: now,
            fired_at_ms: None,
        });
        inst.value = o.value;
        inst.last_active_ms = now;
        inst.annotations = annotations;
        if inst.state == State::Pending && now - inst.active_since_ms >= rule.for_.as_millis() as i64 {
            inst.state = State::Firing;
            inst.fired_at_ms = Some(now);
            out.push(Transition::Fired(inst.clone()));
        }
    }
    let keep = rule.keep_firing_for.as_millis() as i64;
    let gone: Vec<String> = instances
        .iter()
        .filter(|(fp, i)| i.rule == rule.name && !seen.contains(*fp))
        .filter(|(_, i)| i.state == State::Pending || now - i.last_active_ms >= keep)
        .map(|(fp, _)| fp.clone())
        .collect();
    for fp in gone {
        let inst = instances.remove(&fp).expect("listed above");
        if inst.state == State::Firing {
            out.push(Transition::Resolved(inst, now));
        }
    }
    out
}

/// A notification waiting in the outbox for one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub id: u64,
    pub receiver: usize,
    pub payload: serde_json::Value,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
}

/// A transition, kept for `/api/v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at_ms: i64,
    pub status: String,
    pub rule: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Everything that must survive a restart, written atomically as one file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    pub instances: BTreeMap<String, Instance>,
    pub outbox: Vec<Pending>,
    pub history: Vec<HistoryEntry>,
    pub next_id: u64,
}

/// Transitions kept in the history.
pub const HISTORY: usize = 200;
/// Notifications kept for a receiver that stays down; the oldest go first beyond this.
pub const OUTBOX_LIMIT: usize = 10_000;

impl Persisted {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("alerts").join("state.json")
    }

    pub fn load(data_dir: &Path) -> std::io::Result<Persisted> {
        match std::fs::read(Self::path(data_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes to a temporary file, syncs it and renames it over the old one.
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let path = Self::path(data_dir);
        let dir = path.parent().expect("state file has a directory");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("state.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    }

    pub fn enqueue(&mut self, receiver: usize, payload: serde_json::Value, now: i64) {
        if self.outbox.len() >= OUTBOX_LIMIT {
            tracing::warn!(dropped_id = self.outbox[0].id, "alert outbox full; dropping the oldest notification");
            self.outbox.remove(0);
        }
        self.next_id += 1;
        self.outbox.push(Pending {
            id: self.next_id,
            receiver,
            payload,
            attempts: 0,
            next_attempt_ms: now,
            last_error: None,
        });
    }

    pub fn record(&mut self, status: &str, inst: &Instance, at_ms: i64) {
        self.history.push(HistoryEntry {
            at_ms,
            status: status.into(),
            rule: inst.rule.clone(),
            fingerprint: inst.fingerprint.clone(),
            labels: inst.labels.clone(),
            value: inst.value,
        });
        if self.history.len() > HISTORY {
            let extra = self.history.len() - HISTORY;
            self.history.drain(..extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn rule(for_s: u64, keep_s: u64) -> AlertRule {
        let text = format!(
            "[[alert]]\nname = \"errors\"\nkind = \"error_rate\"\nwindow = \"5m\"\nthreshold = 0.05\nfor = \"{for_s}s\"\nkeep_firing_for = \"{keep_s}s\"\nper = \"route\"\nlabels = {{ severity = \"page\" }}\nannotations = {{ summary = \"{{route}} fails {{value}} > {{threshold}} over {{window}}\" }}\n"
        );
        parse_rules("t.toml", &text).expect("parses").remove(0)
    }

    fn obs(route: &str, value: f64) -> Observation {
        Observation { key: Some(("route".into(), route.into())), value, active: value > 0.05 }
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let r = rule(60, 0);
        let mut inst = BTreeMap::new();
        assert!(step(&mut inst, &r, &[obs("/a", 0.2)], 0).is_empty(), "pending first");
        assert_eq!(inst.values().next().unwrap().state, State::Pending);
        assert!(step(&mut inst, &r, &[obs("/a", 0.2)], 59 * S).is_empty(), "not yet held for 60 s");
        let t = step(&mut inst, &r, &[obs("/a", 0.3)], 60 * S);
        let Transition::Fired(i) = &t[0] else { panic!("{t:?}") };
        assert_eq!(i.labels["alertname"], "errors");
        assert_eq!(i.labels["route"], "/a");
        assert_eq!(i.labels["severity"], "page");
        assert_eq!(i.annotations["summary"], "/a fails 0.3 > 0.05 over 5m");
        assert_eq!(i.fired_at_ms, Some(60 * S));
        assert!(step(&mut inst, &r, &[obs("/a", 0.3)], 75 * S).is_empty(), "fires once");
        let t = step(&mut inst, &r, &[obs("/a", 0.01)], 90 * S);
        assert!(matches!(&t[..], [Transition::Resolved(i, at)] if i.active_since_ms == 0 && *at == 90 * S));
        assert!(inst.is_empty());
    }

    #[test]
    fn a_pending_alert_that_clears_never_fires() {
        let r = rule(60, 0);
        let mut inst = BTreeMap::new();
        step(&mut inst, &r, &[obs("/a", 0.2)], 0);
        assert!(step(&mut inst, &r, &[obs("/a", 0.0)], 30 * S).is_empty());
        assert!(inst.is_empty());
        // Starting again restarts the clock.
        step(&mut inst, &r, &[obs("/a", 0.2)], 40 * S);
        assert!(step(&mut inst, &r, &[obs("/a", 0.2)], 90 * S).is_empty());
        assert_eq!(step(&mut inst, &r, &[obs("/a", 0.2)], 100 * S).len(), 1);
    }

    #[test]
    fn keep_firing_for_bridges_a_short_gap() {
        let r = rule(0, 120);
        let mut inst = BTreeMap::new();
        assert_eq!(step(&mut inst, &r, &[obs("/a", 0.2)], 0).len(), 1, "for = 0 fires at once");
        assert!(step(&mut inst, &r, &[], 60 * S).is_empty(), "still firing 60 s after clearing");
        assert!(step(&mut inst, &r, &[obs("/a", 0.2)], 100 * S).is_empty(), "active again: same firing");
        assert!(step(&mut inst, &r, &[], 219 * S).is_empty());
        assert_eq!(step(&mut inst, &r, &[], 220 * S).len(), 1, "resolved 120 s after it last held");
    }

    #[test]
    fn instances_per_key_are_independent_and_fingerprints_stable() {
        let r = rule(0, 0);
        let mut inst = BTreeMap::new();
        assert_eq!(step(&mut inst, &r, &[obs("/a", 0.2), obs("/b", 0.5), obs("/c", 0.01)], 0).len(), 2);
        let t = step(&mut inst, &r, &[obs("/b", 0.5)], S);
        assert!(matches!(&t[..], [Transition::Resolved(i, _)] if i.labels["route"] == "/a"));
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), "errors".to_string());
        labels.insert("route".to_string(), "/b".to_string());
        labels.insert("severity".to_string(), "page".to_string());
        assert!(inst.contains_key(&fingerprint(&labels)));
    }

    #[test]
    fn bad_rules_name_the_file_line_and_rule() {
        let e = parse_rules(
            "a.toml",
            "[[alert]]\nname = \"x\"\nkind = \"error_rate\"\nwindow = \"5m\"\nper = \"client_ip\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("a.toml:2") && e.contains("alert x") && e.contains("needs the index"), "{e}");
        let e = parse_rules("a.toml", "[[alert]]\nname = \"x\"\nkind = \"loud\"\nwindow = \"5m\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.toml:3") && e.contains("kind"), "{e}");
        assert!(!load_rules(None).expect("built-in rules parse").is_empty());
    }

    #[test]
    fn state_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Persisted::default();
        let r = rule(0, 0);
        step(&mut p.instances, &r, &[obs("/a", 0.2)], 0);
        p.enqueue(0, serde_json::json!({"x": 1}), 5);
        p.save(dir.path()).unwrap();
        assert_eq!(Persisted::load(dir.path()).unwrap(), p);
        assert_eq!(Persisted::load(&dir.path().join("none")).unwrap(), Persisted::default());
    }
}
