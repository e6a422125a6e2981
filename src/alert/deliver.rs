//! The alerting threads: the evaluator (rules -> transitions -> outbox, on a fixed interval) and
//! the deliverer (outbox -> receivers, with retries and exponential backoff).
//!
//! Every transition is written to the outbox, in the same atomic state file as the instances,
//! before anything is sent, so a notification raised while a receiver is down, or just before
//! a crash, is delivered later; a notification leaves the outbox only once its receiver
//! answered 2xx. Alertmanager additionally gets every firing alert again on each evaluation, as
//! Prometheus does: that is its protocol for "still firing", and it de-duplicates by labels.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::observe::{self, Inputs};
use super::{AlertRule, Instance, Persisted, State, Transition, step};
use crate::api::encode;
use crate::config::{AlertsConfig, ReceiverKind};
use crate::index::search::{SearchRequest, Sort};
use crate::index::{Catalog, now_ms};
use crate::metrics::IngestCounters;
use crate::parse::timestamp::format_rfc3339;
use crate::stats::Stats;

/// The longest wait between two attempts at one notification.
const MAX_BACKOFF_MS: i64 = 60_000;

/// What the API shows and the threads share.
pub struct AlertHandle {
    pub rules: RwLock<Vec<AlertRule>>,
    pub state: Mutex<Persisted>,
    pub receivers: Vec<String>,
}

pub struct Alerting {
    cfg: AlertsConfig,
    data_dir: PathBuf,
    external_url: String,
    handle: Arc<AlertHandle>,
    rules_stamp: Option<std::time::SystemTime>,
}

impl Alerting {
    /// Loads the rules and the saved state. `api_url` is where the API listens, for links.
    pub fn new(cfg: &AlertsConfig, data_dir: PathBuf, api_url: String) -> Result<Self, String> {
        let rules = super::load_rules(cfg.rules_file.as_deref()).map_err(|e| e.to_string())?;
        let state = Persisted::load(&data_dir).map_err(|e| format!("cannot read the alert state: {e}"))?;
        let receivers = cfg
            .receivers
            .iter()
            .map(|r| r.name.clone().unwrap_or_else(|| format!("{:?}", r.kind).to_lowercase()))
            .collect();
        let external_url =
            if cfg.external_url.is_empty() { api_url } else { cfg.external_url.trim_end_matches('/').to_string() };
        let rules_stamp = cfg.rules_file.as_deref().and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        Ok(Self {
            cfg: cfg.clone(),
            data_dir,
            external_url,
            handle: Arc::new(AlertHandle { rules: RwLock::new(rules), state: Mutex::new(state), receivers }),
            rules_stamp,
        })
    }

    pub fn handle(&self) -> Arc<AlertHandle> {
        self.handle.clone()
    }

    /// Reloads the rule file when it changed; a bad file is logged and the old rules kept.
    fn reload(&mut self) {
        let Some(path) = self.cfg.rules_file.clone() else { return };
        let stamp = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if stamp == self.rules_stamp {
            return;
        }
        self.rules_stamp = stamp;
        match super::load_rules(Some(&path)) {
            Ok(rules) => {
                tracing::info!(rules = rules.len(), file = %path.display(), "alert rules reloaded");
                *self.handle.rules.write().expect("alert rules lock") = rules;
            }
            Err(e) => tracing::error!(error = %e, "alert rules not reloaded; keeping the previous ones"),
        }
    }

    fn search_link(&self, query: &str, from: i64, to: i64) -> String {
        format!("{}/api/v1/search?q={}&from={}&to={}", self.external_url, encode(query), from / 1000, (to + 999) / 1000)
    }

    /// Runs until `shutdown`: evaluates every interval, delivering from a second thread.
    pub fn run(
        mut self,
        stats: Arc<Stats>,
        catalog: Arc<Catalog>,
        counters: Arc<IngestCounters>,
        shutdown: Arc<AtomicBool>,
    ) {
        let started = now_ms();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(true)
            .build()
            .into();
        let deliverer = {
            let (handle, cfg, dir, agent, stop) =
                (self.handle.clone(), self.cfg.clone(), self.data_dir.clone(), agent.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name("alert-deliver".into())
                .spawn(move || deliver_loop(&handle, &cfg, &dir, &agent, &stop))
                .expect("spawn alert delivery")
        };
        let mut next = Instant::now();
        while !shutdown.load(Ordering::Relaxed) {
            if Instant::now() < next {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            next = Instant::now() + self.cfg.evaluation_interval;
            self.reload();
            let per_source = counters.per_source.lock().map(|m| m.clone()).unwrap_or_default();
            let inputs = Inputs { stats: &stats, catalog: &catalog, per_source: &per_source, started_ms: started };
            self.evaluate(&inputs, &catalog, now_ms());
            self.refresh_alertmanagers(&agent);
        }
        let _ = deliverer.join();
    }

    /// One evaluation of every rule at `now`.
    pub fn evaluate(&mut self, inputs: &Inputs, catalog: &Catalog, now: i64) {
        let rules = self.handle.rules.read().expect("alert rules lock").clone();
        let mut transitions = Vec::new();
        {
            let mut state = self.handle.state.lock().expect("alert state lock");
            // Instances of rules that no longer exist resolve.
            let names: std::collections::HashSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
            let orphans: Vec<String> = state
                .instances
                .iter()
                .filter(|(_, i)| !names.contains(i.rule.as_str()))
                .map(|(f, _)| f.clone())
                .collect();
            for fp in orphans {
                let inst = state.instances.remove(&fp).expect("listed");
                if inst.state == State::Firing {
                    transitions.push((None, Transition::Resolved(inst, now)));
                }
            }
        }
        for rule in &rules {
            let observations = match observe::observe(rule, inputs, now) {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(rule = %rule.name, error = %e, "alert rule could not be evaluated");
                    continue;
                }
            };
            let mut state = self.handle.state.lock().expect("alert state lock");
            for t in step(&mut state.instances, rule, &observations, now) {
                transitions.push((Some(rule.clone()), t));
            }
        }
        if transitions.is_empty() {
            return;
        }
        // Samples are read before the state lock is taken again.
        let mut notes = Vec::new();
        for (rule, t) in transitions {
            let (inst, status, ends) = match &t {
                Transition::Fired(i) => (i, "firing", None),
                Transition::Resolved(i, at) => (i, "resolved", Some(*at)),
            };
            let key = rule
                .as_ref()
                .and_then(|r| r.per)
                .and_then(|p| inst.labels.get(p.label()).map(|v| (p.label().to_string(), v.clone())));
            let window = rule.as_ref().map_or(0, |r| r.window.as_millis() as i64);
            let query = rule.as_ref().and_then(|r| observe::events_query(r, key.as_ref()));
            let (from, to) = (inst.active_since_ms - window, ends.unwrap_or(now));
            let link = query.as_deref().map(|q| self.search_link(q, from, to));
            let samples = match (&query, status) {
                (Some(q), "firing") if self.cfg.sample_events > 0 => {
                    samples(catalog, rule.as_ref(), q, from, to, self.cfg.sample_events)
                }
                _ => Vec::new(),
            };
            tracing::info!(alert = %inst.rule, fingerprint = %inst.fingerprint, status, value = inst.value, "alert");
            notes.push((inst.clone(), status, ends, link, samples));
        }
        let mut state = self.handle.state.lock().expect("alert state lock");
        for (inst, status, ends, link, samples) in notes {
            state.record(status, &inst, ends.unwrap_or(now));
            for (i, r) in self.cfg.receivers.iter().enumerate() {
                let payload = match r.kind {
                    // Firing alerts reach Alertmanager by the refresh after every evaluation.
                    ReceiverKind::Alertmanager if status == "firing" => continue,
                    ReceiverKind::Alertmanager => json!([am_alert(&inst, ends, link.as_deref())]),
                    ReceiverKind::Webhook => webhook_payload(
                        &self.handle.receivers[i],
                        &self.external_url,
                        &inst,
                        status,
                        ends,
                        link.as_deref(),
                        &samples,
                    ),
                };
                state.enqueue(i, payload, now);
            }
        }
        if let Err(e) = state.save(&self.data_dir) {
            tracing::error!(error = %e, "cannot save the alert state");
        }
    }

    /// Sends every firing alert to each Alertmanager (best effort: the next evaluation repeats).
    fn refresh_alertmanagers(&self, agent: &ureq::Agent) {
        let firing: Vec<Value> = {
            let state = self.handle.state.lock().expect("alert state lock");
            let rules = self.handle.rules.read().expect("alert rules lock");
            state
                .instances
                .values()
                .filter(|i| i.state == State::Firing)
                .map(|i| {
                    let rule = rules.iter().find(|r| r.name == i.rule);
                    let key = rule
                        .and_then(|r| r.per)
                        .and_then(|p| i.labels.get(p.label()).map(|v| (p.label().to_string(), v.clone())));
                    let window = rule.map_or(0, |r| r.window.as_millis() as i64);
                    let link = rule
                        .and_then(|r| observe::events_query(r, key.as_ref()))
                        .map(|q| self.search_link(&q, i.active_since_ms - window, now_ms()));
                    am_alert(i, None, link.as_deref())
                })
                .collect()
        };
        if firing.is_empty() {
            return;
        }
        for (i, r) in self.cfg.receivers.iter().enumerate().filter(|(_, r)| r.kind == ReceiverKind::Alertmanager) {
            if let Err(e) = send(agent, r, &json!(firing)) {
                tracing::warn!(receiver = %self.handle.receivers[i], error = %e, "alertmanager refresh failed; retrying next evaluation");
            }
        }
    }
}

/// Up to `n` matching events for a notification: already redacted, as the index holds them.
fn samples(catalog: &Catalog, rule: Option<&AlertRule>, query: &str, from: i64, to: i64, n: usize) -> Vec<Value> {
    let slowest = rule.is_some_and(|r| matches!(r.kind, super::Kind::Latency | super::Kind::SlowRatio));
    let req = SearchRequest {
        query: query.to_string(),
        from_ms: Some(from),
        to_ms: Some(to + 1),
        limit: n,
        sort: if slowest { Sort::Slowest } else { Sort::Newest },
        cursor: None,
    };
    catalog.search(&req).map(|r| r.hits).unwrap_or_default()
}

fn am_alert(inst: &Instance, ends: Option<i64>, link: Option<&str>) -> Value {
    let mut a = json!({
        "labels": inst.labels,
        "annotations": inst.annotations,
        "startsAt": format_rfc3339(inst.fired_at_ms.unwrap_or(inst.active_since_ms)),
    });
    if let Some(end) = ends {
        a["endsAt"] = json!(format_rfc3339(end));
    }
    if let Some(l) = link {
        a["generatorURL"] = json!(l);
    }
    a
}

/// Alertmanager's webhook payload (version 4) for one alert, plus `samples` and `search`.
fn webhook_payload(
    receiver: &str,
    external_url: &str,
    inst: &Instance,
    status: &str,
    ends: Option<i64>,
    link: Option<&str>,
    samples: &[Value],
) -> Value {
    let mut alert = am_alert(inst, ends, link);
    alert["status"] = json!(status);
    alert["fingerprint"] = json!(inst.fingerprint);
    if ends.is_none() {
        alert["endsAt"] = json!("0001-01-01T00:00:00Z");
    }
    // The same transition always gets the same key, so a receiver can drop a notification that
    // a crash between its 2xx and our state write made us send again.
    let key = format!("{}-{}-{}", inst.fingerprint, status, inst.fired_at_ms.unwrap_or(inst.active_since_ms));
    json!({
        "version": "4",
        "idempotencyKey": key,
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", inst.rule),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": inst.rule},
        "commonLabels": inst.labels,
        "commonAnnotations": inst.annotations,
        "externalURL": external_url,
        "alerts": [alert],
        "samples": samples,
        "search": link,
    })
}

fn send(agent: &ureq::Agent, r: &crate::config::ReceiverConfig, payload: &Value) -> Result<(), String> {
    let url = match r.kind {
        ReceiverKind::Alertmanager => format!("{}/api/v2/alerts", r.url.trim_end_matches('/')),
        ReceiverKind::Webhook => r.url.clone(),
    };
    let mut req = agent.post(&url).header("content-type", "application/json");
    if let Some(token) = r.token_env.as_deref().and_then(|v| std::env::var(v).ok()) {
        req = req.header("authorization", &format!("Bearer {token}"));
    }
    if let Some(key) = payload.get("idempotencyKey").and_then(Value::as_str) {
        req = req.header("idempotency-key", key);
    }
    req.send_json(payload).map(drop).map_err(|e| e.to_string())
}

/// Sends what is due from the outbox until `stop`; saves the state after each change.
fn deliver_loop(
    handle: &AlertHandle,
    cfg: &AlertsConfig,
    data_dir: &std::path::Path,
    agent: &ureq::Agent,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let now = now_ms();
        let due: Vec<(u64, usize, Value, u32)> = {
            let state = handle.state.lock().expect("alert state lock");
            state
                .outbox
                .iter()
                .filter(|p| p.next_attempt_ms <= now)
                .map(|p| (p.id, p.receiver, p.payload.clone(), p.attempts))
                .collect()
        };
        if due.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let mut results = BTreeMap::new();
        for (id, receiver, payload, attempts) in due {
            let result = match cfg.receivers.get(receiver) {
                Some(r) => send(agent, r, &payload),
                None => Ok(()), // the receiver was removed from the configuration
            };
            if let Err(e) = &result {
                tracing::warn!(receiver = %handle.receivers.get(receiver).map_or("?", |s| s.as_str()), attempt = attempts + 1, error = %e, "alert delivery failed; will retry");
            }
            results.insert(id, result);
        }
        let mut state = handle.state.lock().expect("alert state lock");
        let now = now_ms();
        state.outbox.retain_mut(|p| match results.get(&p.id) {
            Some(Ok(())) => false,
            Some(Err(e)) => {
                p.attempts += 1;
                p.next_attempt_ms = now + (1000i64 << p.attempts.min(16)).min(MAX_BACKOFF_MS);
                p.last_error = Some(e.clone());
                true
            }
            None => true,
        });
        if let Err(e) = state.save(data_dir) {
            tracing::error!(error = %e, "cannot save the alert state");
        }
    }
}
