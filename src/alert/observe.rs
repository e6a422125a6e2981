//! What a rule measures now: route figures from the statistics, anomaly counts from the index,
//! and for `absent` when each source last produced a line.

use std::collections::BTreeMap;

use super::{AlertRule, Kind, Observation, Per, SEVERITIES};
use crate::index::Catalog;
use crate::index::search::{SearchError, SearchRequest};
use crate::metrics::SourceCounts;
use crate::stats::{Filter, GroupBy, MinuteRange, Stats, Summary};

/// What the evaluator reads.
pub struct Inputs<'a> {
    pub stats: &'a Stats,
    pub catalog: &'a Catalog,
    pub per_source: &'a BTreeMap<String, SourceCounts>,
    /// When the daemon started (ms): a named source never seen is absent since then.
    pub started_ms: i64,
}

/// A value quoted for the query language.
pub fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fn any_of(field: &str, values: &[String]) -> String {
    let terms: Vec<String> = values.iter().map(|v| quote(v)).collect();
    format!("{field}:({})", terms.join(" OR "))
}

/// The query selecting the events an `anomaly_count` rule counts.
pub fn anomaly_query(rule: &AlertRule) -> String {
    let mut parts = Vec::new();
    if let Some(min) = &rule.min_severity {
        let from = SEVERITIES.iter().position(|s| s.eq_ignore_ascii_case(min)).unwrap_or(0);
        let at_least: Vec<String> = SEVERITIES[from..].iter().map(|s| s.to_string()).collect();
        parts.push(any_of("severity", &at_least));
    }
    if !rule.families.is_empty() {
        parts.push(any_of("family", &rule.families));
    }
    if !rule.rules.is_empty() {
        parts.push(any_of("anomalies", &rule.rules));
    }
    if parts.is_empty() {
        parts.push("anomaly_score:>0".into());
    }
    parts.join(" AND ")
}

/// The query for the events behind one instance, for samples and links (`None` for `absent`).
pub fn events_query(rule: &AlertRule, key: Option<&(String, String)>) -> Option<String> {
    let route = key.filter(|(k, _)| k == "route").map(|(_, v)| v.clone()).or_else(|| rule.route.clone());
    let mut parts = match rule.kind {
        Kind::Absent => return None,
        Kind::AnomalyCount => vec![anomaly_query(rule)],
        Kind::ErrorRate => vec!["status:[500 TO 599]".to_string()],
        Kind::Latency | Kind::SlowRatio => Vec::new(),
    };
    if let Some(r) = route {
        parts.push(format!("route:{}", quote(&r)));
    }
    if let Some((k, v)) = key.filter(|(k, _)| k == "client_ip") {
        parts.push(format!("{k}:{}", quote(v)));
    }
    Some(if parts.is_empty() { "*".into() } else { parts.join(" AND ") })
}

fn figure(rule: &AlertRule, s: &Summary) -> Option<f64> {
    match rule.kind {
        Kind::ErrorRate => Some(s.error_rate),
        Kind::SlowRatio => (s.timed_count > 0).then_some(s.slow_ratio),
        Kind::Latency => match rule.percentile.unwrap_or(99.0) {
            50.0 => s.p50_ms,
            90.0 => s.p90_ms,
            95.0 => s.p95_ms,
            99.9 => s.p999_ms,
            _ => s.p99_ms,
        },
        Kind::AnomalyCount | Kind::Absent => None,
    }
}

/// Measures `rule` at `now`. Instances below `min_requests` or without a figure are left out,
/// which resolves them if they were firing.
pub fn observe(rule: &AlertRule, inputs: &Inputs, now: i64) -> Result<Vec<Observation>, SearchError> {
    let window = rule.window.as_millis() as i64;
    let active = |value: f64| value > rule.threshold;
    match rule.kind {
        Kind::ErrorRate | Kind::Latency | Kind::SlowRatio => {
            let range = MinuteRange::covering(now - window, now);
            let filter = Filter { route: rule.route.clone(), ..Filter::default() };
            let per_route = rule.per == Some(Per::Route);
            let report = inputs.stats.report(range, &filter, if per_route { GroupBy::Route } else { GroupBy::None });
            let groups: Vec<(Option<(String, String)>, Summary)> = if per_route {
                report.groups.into_iter().map(|g| (Some(("route".to_string(), g.key)), g.summary)).collect()
            } else {
                vec![(None, report.total)]
            };
            Ok(groups
                .into_iter()
                .filter(|(_, s)| s.count >= rule.min_requests.max(1))
                .filter_map(|(key, s)| figure(rule, &s).map(|value| Observation { key, value, active: active(value) }))
                .collect())
        }
        Kind::AnomalyCount => {
            let req = SearchRequest {
                query: anomaly_query(rule),
                from_ms: Some(now - window),
                to_ms: Some(now),
                limit: 1,
                ..Default::default()
            };
            if rule.per == Some(Per::ClientIp) {
                Ok(inputs
                    .catalog
                    .top_values("client_ip", &req, 1000)?
                    .into_iter()
                    .map(|(ip, n)| {
                        let ip = ip.as_str().map_or_else(|| ip.to_string(), str::to_string);
                        Observation { key: Some(("client_ip".into(), ip)), value: n as f64, active: active(n as f64) }
                    })
                    .collect())
            } else {
                let n = inputs.catalog.search(&req)?.total as f64;
                Ok(vec![Observation { key: None, value: n, active: active(n) }])
            }
        }
        Kind::Absent => {
            let sources: Vec<String> = match &rule.source {
                Some(s) => vec![s.clone()],
                None => inputs.per_source.keys().cloned().collect(),
            };
            Ok(sources
                .into_iter()
                .map(|s| {
                    let last = inputs.per_source.get(&s).map_or(inputs.started_ms, |c| c.last_record_ms);
                    let silent = now - last;
                    let key = Some(("source".to_string(), s));
                    Observation { key, value: (silent / 1000) as f64, active: silent > window }
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::Event;
    use crate::stats::Recorder;

    fn rule(text: &str) -> AlertRule {
        super::super::parse_rules("t.toml", &format!("[[alert]]\nname = \"r\"\n{text}")).expect("rule").remove(0)
    }

    #[test]
    fn queries_for_anomalies_and_samples() {
        let r = rule("kind = \"anomaly_count\"\nwindow = \"5m\"\nmin_severity = \"high\"\nfamilies = [\"sqli\"]\n");
        assert_eq!(anomaly_query(&r), "severity:(\"HIGH\" OR \"CRITICAL\") AND family:(\"sqli\")");
        let key = ("client_ip".to_string(), "10.0.0.1".to_string());
        assert_eq!(
            events_query(&r, Some(&key)).unwrap(),
            "severity:(\"HIGH\" OR \"CRITICAL\") AND family:(\"sqli\") AND client_ip:\"10.0.0.1\""
        );
        let e = rule("kind = \"error_rate\"\nwindow = \"5m\"\nper = \"route\"\n");
        let key = ("route".to_string(), "/a \"b\"".to_string());
        assert_eq!(events_query(&e, Some(&key)).unwrap(), "status:[500 TO 599] AND route:\"/a \\\"b\\\"\"");
    }

    /// The window is whole minutes back from now: requests just inside count, older do not.
    #[test]
    fn error_rate_window_edges_and_min_requests() {
        let stats = Arc::new(Stats::default());
        let mut rec = Recorder::new(stats.clone());
        let now = 1_800_000_000_000 + 30_000; // 30 s into a minute
        let ev = |ts: i64, status: u16| Event {
            timestamp_ms: ts,
            route: Some("/pay".into()),
            status: Some(status),
            duration_ms: Some(5.0),
            ..Event::default()
        };
        // Failures 6 minutes ago (outside a 5-minute window), successes now.
        for _ in 0..50 {
            rec.record(&ev(now - 6 * 60_000, 500));
        }
        for _ in 0..19 {
            rec.record(&ev(now - 4 * 60_000 - 30_000, 500));
            rec.record(&ev(now, 200));
        }
        rec.flush();
        let catalog_dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(catalog_dir.path()).unwrap();
        let per_source = BTreeMap::new();
        let inputs = Inputs { stats: &stats, catalog: &catalog, per_source: &per_source, started_ms: 0 };
        let r = rule("kind = \"error_rate\"\nwindow = \"5m\"\nthreshold = 0.4\nper = \"route\"\nmin_requests = 38\n");
        let o = observe(&r, &inputs, now).unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].value, 0.5, "the 19 failures 4.5 minutes ago count, the 50 at 6 minutes do not");
        assert!(o[0].active);
        let strict = rule("kind = \"error_rate\"\nwindow = \"5m\"\nthreshold = 0.4\nmin_requests = 39\n");
        assert!(observe(&strict, &inputs, now).unwrap().is_empty(), "below min_requests");
        let lat = rule("kind = \"latency\"\nwindow = \"1m\"\nthreshold = 4\npercentile = 50\n");
        let o = observe(&lat, &inputs, now).unwrap();
        assert!(o[0].active && (5.0..5.01).contains(&o[0].value), "{o:?}");
    }

    /// Anomaly counts come from the index: per client, of a least severity, within the window.
    #[test]
    fn anomaly_counts_per_client_and_slow_ratio() {
        use crate::event::{AnomalyTags, Origin};
        use crate::index::IndexStore;
        use crate::redact::{Redactor, Replacement};
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        let (mut store, _) = IndexStore::open(catalog.clone(), 0, 36500).unwrap();
        let now = 1_800_000_000_000i64;
        let redactor = Redactor::new(&[], Replacement::Fixed);
        let stats = Arc::new(Stats::default());
        let mut rec = Recorder::new(stats.clone());
        // (client, severity, minutes ago)
        let cases =
            [("10.0.0.1", "CRITICAL", 1), ("10.0.0.1", "HIGH", 2), ("10.0.0.1", "HIGH", 9), ("10.0.0.2", "LOW", 1)];
        for (i, (ip, sev, ago)) in cases.iter().enumerate() {
            let origin = Origin {
                fingerprint: "f".into(),
                offset: i as u64 * 10,
                end_offset: i as u64 * 10 + 10,
                path: "p".into(),
            };
            let ev = Event {
                id: origin.event_id(),
                timestamp_ms: now - ago * 60_000,
                client_ip: Some(ip.to_string()),
                route: Some("/q".into()),
                status: Some(200),
                duration_ms: Some(if i == 0 { 3000.0 } else { 10.0 }),
                raw: "x".into(),
                ..Event::default()
            };
            rec.record(&ev);
            let mut r = redactor.redact(ev);
            r.tag(AnomalyTags {
                rules: vec!["r1".into()],
                families: vec!["sqli".into()],
                score: 5,
                severity: Some(sev.to_string()),
                attack: true,
                matches: Vec::new(),
            });
            store.add(&origin, &r).unwrap();
        }
        store.close().unwrap();
        rec.flush();
        let per_source = BTreeMap::new();
        let inputs = Inputs { stats: &stats, catalog: &catalog, per_source: &per_source, started_ms: 0 };
        let r = rule(
            "kind = \"anomaly_count\"\nwindow = \"5m\"\nthreshold = 1\nper = \"client_ip\"\nmin_severity = \"HIGH\"\n",
        );
        let o = observe(&r, &inputs, now).unwrap();
        assert_eq!(o, [Observation { key: Some(("client_ip".into(), "10.0.0.1".into())), value: 2.0, active: true }]);
        let all = rule("kind = \"anomaly_count\"\nwindow = \"10m\"\nthreshold = 3\n");
        assert_eq!(observe(&all, &inputs, now).unwrap()[0].value, 4.0);
        assert!(observe(&all, &inputs, now).unwrap()[0].active);
        // One of the four requests is slower than the default 1 s threshold.
        let slow = rule("kind = \"slow_ratio\"\nwindow = \"10m\"\nthreshold = 0.2\n");
        assert_eq!(observe(&slow, &inputs, now).unwrap()[0].value, 0.25);
    }

    #[test]
    fn absent_sources() {
        let stats = Stats::default();
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        let mut per_source = BTreeMap::new();
        per_source.insert("/a.log".to_string(), SourceCounts { last_record_ms: 100_000, ..SourceCounts::default() });
        per_source.insert("/b.log".to_string(), SourceCounts { last_record_ms: 290_000, ..SourceCounts::default() });
        let inputs = Inputs { stats: &stats, catalog: &catalog, per_source: &per_source, started_ms: 0 };
        let r = rule("kind = \"absent\"\nwindow = \"2m\"\nper = \"source\"\n");
        let o = observe(&r, &inputs, 300_000).unwrap();
        assert_eq!(o.iter().filter(|o| o.active).count(), 1);
        assert!(o[0].active && o[0].value == 200.0);
        let named = rule("kind = \"absent\"\nwindow = \"2m\"\nsource = \"/never.log\"\n");
        assert!(observe(&named, &inputs, 300_000).unwrap()[0].active, "never seen since the start");
    }
}
