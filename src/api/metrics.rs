//! `/metrics` (Prometheus text format) and `/health/detailed`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, LATENCY_BUCKETS};
use crate::index::now_ms;
use crate::metrics::IngestCounters;

/// A commit older than this while data is arriving means ingestion is stuck.
const STALE_COMMIT_MS: i64 = 60_000;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// Prometheus text exposition of the daemon's own metrics.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "metrics", content_type = "text/plain", body = String),
    super::openapi::ReadErrors,
))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let c = &state.counters;
    let mut out = String::new();
    for (name, help, counter) in [
        ("logwarden_records_read_total", "Records (lines or multi-line entries) read from sources.", &c.records_read),
        ("logwarden_bytes_read_total", "Bytes read from sources.", &c.bytes_read),
        ("logwarden_events_indexed_total", "Events written to the index.", &c.events_indexed),
        ("logwarden_parse_errors_total", "Records no parser recognised (kept as unparsed events).", &c.parse_errors),
        (
            "logwarden_skipped_total",
            "Events counted but not indexed (health checks, static assets, skip rules).",
            &c.skipped,
        ),
        ("logwarden_flagged_total", "Records kept with a flag (truncated, invalid UTF-8, NUL, partial).", &c.flagged),
        ("logwarden_attacks_total", "Events whose anomaly score reached the threshold.", &c.attacks),
        ("logwarden_commits_total", "Index commits.", &c.commits),
    ] {
        metric(&mut out, name, "counter", help, IngestCounters::get(counter));
    }
    let last = c.last_commit_ms.load(Ordering::Relaxed);
    metric(
        &mut out,
        "logwarden_last_commit_timestamp_seconds",
        "gauge",
        "Time of the last index commit.",
        last as f64 / 1000.0,
    );
    metric(
        &mut out,
        "logwarden_up",
        "gauge",
        "1 while ingestion works, 0 once it has failed.",
        u8::from(!c.failed.load(Ordering::Relaxed)),
    );
    metric(
        &mut out,
        "logwarden_ingest_paused",
        "gauge",
        "1 while reading is paused because the data directory cannot take writes (full, read-only).",
        u8::from(c.paused().is_some()),
    );
    metric(
        &mut out,
        "logwarden_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        state.started.elapsed().as_secs(),
    );
    for s in &state.sinks {
        let l = label(&s.name);
        for (name, kind, help, value) in [
            (
                "logwarden_sink_pending_bytes",
                "gauge",
                "Spooled bytes not yet acknowledged by the sink.",
                s.pending_bytes.load(Ordering::Relaxed) as i64,
            ),
            (
                "logwarden_sink_delivered_total",
                "counter",
                "Events the sink acknowledged.",
                s.delivered_total.load(Ordering::Relaxed) as i64,
            ),
            (
                "logwarden_sink_errors_total",
                "counter",
                "Failed deliveries (retried).",
                s.errors_total.load(Ordering::Relaxed) as i64,
            ),
            (
                "logwarden_sink_last_success_timestamp_seconds",
                "gauge",
                "Time of the last acknowledged batch.",
                s.last_success_ms.load(Ordering::Relaxed) / 1000,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{sink=\"{l}\"}} {value}");
        }
    }
    let (keys, minutes) = state.stats.size();
    metric(
        &mut out,
        "logwarden_stats_series",
        "gauge",
        "Distinct route, method, status and host combinations in the statistics.",
        keys,
    );
    metric(&mut out, "logwarden_stats_minutes", "gauge", "Minute buckets held by the statistics.", minutes);
    metric(
        &mut out,
        "logwarden_routes_folded_total",
        "counter",
        "Requests whose route was folded into `other` by stats.max_routes.",
        state.stats.folded_routes.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "logwarden_commit_duration_seconds_total",
        "counter",
        "Time spent in index commits (divide by logwarden_commits_total for the mean).",
        IngestCounters::get(&c.commit_us) as f64 / 1e6,
    );
    for (name, help, label_name, map) in [
        (
            "logwarden_anomalies_total",
            "Events with anomalies, by highest severity.",
            "severity",
            &c.anomalies_by_severity,
        ),
        ("logwarden_anomaly_rule_matches_total", "Events each anomaly rule matched.", "rule", &c.anomalies_by_rule),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        if let Ok(m) = map.lock() {
            for (k, n) in m.iter() {
                let _ = writeln!(out, "{name}{{{label_name}=\"{}\"}} {n}", label(k));
            }
        }
    }
    let _ = writeln!(out, "# HELP logwarden_alerts Alert instances by state.\n# TYPE logwarden_alerts gauge");
    if let Some(alerts) = &state.alerts
        && let Ok(s) = alerts.state.lock()
    {
        for st in [crate::alert::State::Pending, crate::alert::State::Firing] {
            let n = s.instances.values().filter(|i| i.state == st).count();
            let name = if st == crate::alert::State::Firing { "firing" } else { "pending" };
            let _ = writeln!(out, "logwarden_alerts{{state=\"{name}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP logwarden_alert_outbox Notifications waiting for a receiver.\n# TYPE logwarden_alert_outbox gauge\nlogwarden_alert_outbox {}",
            s.outbox.len()
        );
    }
    let parts = state.catalog.stats();
    metric(&mut out, "logwarden_index_partitions", "gauge", "Day partitions in the index.", parts.len());
    metric(
        &mut out,
        "logwarden_index_documents",
        "gauge",
        "Documents in the index.",
        parts.iter().map(|p| p.docs).sum::<u64>(),
    );
    metric(
        &mut out,
        "logwarden_index_bytes",
        "gauge",
        "Bytes the index takes on disk.",
        parts.iter().map(|p| p.bytes).sum::<u64>(),
    );
    if let Ok(sources) = c.per_source.lock() {
        let _ = writeln!(
            out,
            "# HELP logwarden_source_records_total Records read per source file.\n# TYPE logwarden_source_records_total counter"
        );
        for (path, s) in sources.iter() {
            let _ = writeln!(out, "logwarden_source_records_total{{path=\"{}\"}} {}", label(path), s.records);
        }
        let _ = writeln!(
            out,
            "# HELP logwarden_source_parse_errors_total Unparsed records per source file.\n# TYPE logwarden_source_parse_errors_total counter"
        );
        for (path, s) in sources.iter() {
            let _ = writeln!(out, "logwarden_source_parse_errors_total{{path=\"{}\"}} {}", label(path), s.parse_errors);
        }
    }
    if let Ok(by_route) = state.requests.by_route.lock() {
        let _ = writeln!(
            out,
            "# HELP logwarden_api_requests_total API requests by route and status.\n# TYPE logwarden_api_requests_total counter"
        );
        let mut rows: Vec<_> = by_route.iter().collect();
        rows.sort();
        for ((route, status), n) in rows {
            let _ = writeln!(out, "logwarden_api_requests_total{{route=\"{}\",status=\"{status}\"}} {n}", label(route));
        }
    }
    if let Ok(h) = state.requests.search.lock() {
        let _ = writeln!(
            out,
            "# HELP logwarden_search_duration_seconds Search latency.\n# TYPE logwarden_search_duration_seconds histogram"
        );
        for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
            let _ = writeln!(out, "logwarden_search_duration_seconds_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "logwarden_search_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "logwarden_search_duration_seconds_sum {}", h.sum_s);
        let _ = writeln!(out, "logwarden_search_duration_seconds_count {}", h.count);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}

/// Per-source, per-partition and commit health (admin token).
#[utoipa::path(get, path = "/health/detailed", responses(
    (status = 200, description = "healthy", body = serde_json::Value),
    (status = 503, description = "unhealthy, with the reason", body = serde_json::Value),
    super::openapi::ReadErrors,
))]
pub async fn health_detailed(State(state): State<AppState>) -> Response {
    let c = &state.counters;
    let failed = c.failed.load(Ordering::Relaxed);
    let last = c.last_commit_ms.load(Ordering::Relaxed);
    let age = (last > 0).then(|| now_ms() - last);
    let reading = IngestCounters::get(&c.records_read) > 0;
    let stale = reading
        && age.is_some_and(|a| a > STALE_COMMIT_MS)
        && IngestCounters::get(&c.records_read)
            > IngestCounters::get(&c.events_indexed) + IngestCounters::get(&c.skipped);
    let paused = c.paused();
    let (healthy, message) = if failed {
        (false, "the ingest pipeline stopped on an error; see the daemon's log".to_string())
    } else if let Some(reason) = &paused {
        (false, format!("reading is paused: {reason}"))
    } else if stale {
        (false, format!("no commit for {} s while events are waiting", age.unwrap_or(0) / 1000))
    } else {
        (true, "ok".to_string())
    };
    let parts = state.catalog.stats();
    let body = json!({
        "healthy": healthy,
        "message": message,
        "ingest": {
            "paused": paused.is_some(),
            "records_read": IngestCounters::get(&c.records_read),
            "bytes_read": IngestCounters::get(&c.bytes_read),
            "events_indexed": IngestCounters::get(&c.events_indexed),
            "parse_errors": IngestCounters::get(&c.parse_errors),
            "skipped": IngestCounters::get(&c.skipped),
            "attacks": IngestCounters::get(&c.attacks),
        },
        "sources": c.per_source.lock().map(|m| json!(*m)).unwrap_or(serde_json::Value::Null),
        "index": {
            "partitions": parts,
            "documents": parts.iter().map(|p| p.docs).sum::<u64>(),
            "bytes": parts.iter().map(|p| p.bytes).sum::<u64>(),
            "commits": IngestCounters::get(&c.commits),
            "last_commit_ms": last,
            "last_commit_age_ms": age,
        },
        "sinks": state.sinks.iter().map(|s| json!({
            "name": s.name,
            "pending_bytes": s.pending_bytes.load(Ordering::Relaxed),
            "oldest_pending_age_ms": match s.oldest_pending_ms.load(Ordering::Relaxed) { 0 => None, t => Some(now_ms() - t) },
            "last_success_ms": s.last_success_ms.load(Ordering::Relaxed),
            "delivered": s.delivered_total.load(Ordering::Relaxed),
            "errors": s.errors_total.load(Ordering::Relaxed),
            "reading_paused": s.blocked.load(Ordering::Relaxed),
        })).collect::<Vec<_>>(),
        "uptime_s": state.started.elapsed().as_secs(),
    });
    let status = if healthy { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}
