//! Shipping redacted events to ClickHouse, so a fleet of agents can be queried in one place.
//!
//! The index thread appends every event it indexes to a spool (`spool`); the sink thread sends
//! the spool in batches (`INSERT ... FORMAT JSONEachRow`, gzip) and acknowledges a batch only
//! after ClickHouse answered 2xx, retrying with backoff meanwhile. Delivery is at least once;
//! every row carries the event id (file fingerprint and offset), and the table is a
//! ReplacingMergeTree ordered by (ts, id), so a row sent twice collapses into one.

pub mod fleet;
pub mod spool;
pub mod sql;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::ClickHouseConfig;
use crate::index::now_ms;
use spool::{SinkHealth, SpoolReader};

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The table, for old and new ClickHouse alike: `DateTime` plus a milliseconds column rather
/// than `DateTime64`.
pub fn create_table_sql(database: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{table} (
            ts DateTime('UTC'), ts_ms UInt16, id String, agent String, host String, source String,
            format String, method String, path String, route String, query String, status UInt16,
            duration_ms Nullable(Float64), bytes_sent Nullable(UInt64), client_ip String,
            user_agent String, referer String, level String, message String,
            anomalies Array(String), families Array(String), anomaly_score UInt32,
            severity String, attack UInt8, parse_error String, raw String, event String
        ) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMMDD(ts) ORDER BY (ts, id)"
    )
}

/// One spooled event (its JSON as the index stores it) as a table row.
pub fn row(event: &Value, agent: &str) -> Value {
    let s = |k: &str| event.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |k: &str| event.get(k).cloned().filter(Value::is_array).unwrap_or_else(|| json!([]));
    let ts = event.get("timestamp_ms").and_then(Value::as_i64).unwrap_or(0);
    json!({
        "ts": ts.div_euclid(1000),
        "ts_ms": ts.rem_euclid(1000),
        "id": s("id"),
        "agent": agent,
        "host": s("host"),
        "source": s("source"),
        "format": s("format"),
        "method": s("method"),
        "path": s("path"),
        "route": s("route"),
        "query": s("query"),
        "status": event.get("status").and_then(Value::as_u64).unwrap_or(0),
        "duration_ms": event.get("duration_ms").and_then(Value::as_f64),
        "bytes_sent": event.get("bytes_sent").and_then(Value::as_u64),
        "client_ip": s("client_ip"),
        "user_agent": s("user_agent"),
        "referer": s("referer"),
        "level": s("level"),
        "message": s("message"),
        "anomalies": list("anomalies"),
        "families": list("families"),
        "anomaly_score": event.get("anomaly_score").and_then(Value::as_u64).unwrap_or(0),
        "severity": s("severity"),
        "attack": u8::from(event.get("attack").and_then(Value::as_bool).unwrap_or(false)),
        "parse_error": s("parse_error"),
        "raw": s("raw"),
        "event": event.to_string(),
    })
}

/// A ClickHouse HTTP client for one server.
#[derive(Clone)]
pub struct ClickHouse {
    agent: ureq::Agent,
    url: String,
    user: Option<String>,
    password: Option<String>,
}

impl ClickHouse {
    pub fn new(cfg: &ClickHouseConfig) -> Self {
        let env = |v: &Option<String>| v.as_deref().and_then(|name| std::env::var(name).ok());
        Self {
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(30)))
                .http_status_as_error(false)
                .build()
                .into(),
            url: cfg.url.trim_end_matches('/').to_string(),
            user: env(&cfg.user_env),
            password: env(&cfg.password_env),
        }
    }

    /// Runs `sql` with `body` (gzip-compressed when `gzip`); the answer's text, or the error.
    pub fn query(&self, sql: &str, body: Vec<u8>, gzip: bool) -> Result<String, String> {
        let mut req = self.agent.post(&format!("{}/", self.url)).query("query", sql);
        if let Some(u) = &self.user {
            req = req.header("X-ClickHouse-User", u);
        }
        if let Some(p) = &self.password {
            req = req.header("X-ClickHouse-Key", p);
        }
        if gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        let mut resp = req.send(&body[..]).map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if status.is_success() { Ok(text) } else { Err(format!("ClickHouse answered {status}: {}", text.trim())) }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// Sends the spool to ClickHouse until `stop`.
pub fn run(cfg: &ClickHouseConfig, mut reader: SpoolReader, health: Arc<SinkHealth>, stop: &AtomicBool) {
    let ch = ClickHouse::new(cfg);
    let agent = cfg.agent.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "agent".into())
    });
    let fail = |e: String, backoff: &mut Duration| {
        health.errors_total.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(sink = "clickhouse", error = %e, retry_in_ms = backoff.as_millis() as u64, "ClickHouse unavailable; the spool keeps the events");
        sleep_unless(stop, *backoff);
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
    };
    let mut backoff = Duration::from_millis(500);
    // Create the database and table, waiting for the server if need be.
    while !stop.load(Ordering::Relaxed) {
        let created = ch
            .query(&format!("CREATE DATABASE IF NOT EXISTS {}", cfg.database), Vec::new(), false)
            .and_then(|_| ch.query(&create_table_sql(&cfg.database, &cfg.table), Vec::new(), false));
        match created {
            Ok(_) => break,
            Err(e) => fail(e, &mut backoff),
        }
    }
    let insert = format!("INSERT INTO {}.{} FORMAT JSONEachRow", cfg.database, cfg.table);
    let mut waiting_since: Option<Instant> = None;
    backoff = Duration::from_millis(500);
    while !stop.load(Ordering::Relaxed) {
        let (lines, end) = match reader.peek(cfg.batch_size) {
            Ok(b) => b,
            Err(e) => {
                fail(format!("cannot read the spool: {e}"), &mut backoff);
                continue;
            }
        };
        if lines.is_empty() {
            health.oldest_pending_ms.store(0, Ordering::Relaxed);
            sleep_unless(stop, Duration::from_millis(100));
            continue;
        }
        // A short batch waits up to max_batch_delay for more.
        if lines.len() < cfg.batch_size
            && waiting_since.get_or_insert_with(Instant::now).elapsed() < cfg.max_batch_delay
        {
            sleep_unless(stop, Duration::from_millis(50));
            continue;
        }
        waiting_since = None;
        let mut body = Vec::with_capacity(lines.len() * 512);
        let mut bytes = 0;
        for line in &lines {
            bytes += line.len() as u64 + 1;
            match serde_json::from_str::<Value>(line) {
                Ok(ev) => {
                    if body.is_empty() {
                        health.oldest_pending_ms.store(ev["timestamp_ms"].as_i64().unwrap_or(0), Ordering::Relaxed);
                    }
                    let _ = serde_json::to_writer(&mut body, &row(&ev, &agent));
                    body.push(b'\n');
                }
                Err(e) => tracing::error!(error = %e, "a spooled line is not JSON; skipped"),
            }
        }
        let (payload, compressed) = if cfg.compression { (gzip(&body), true) } else { (body, false) };
        match ch.query(&insert, payload, compressed) {
            Ok(_) => {
                if let Err(e) = reader.ack(end, bytes) {
                    tracing::error!(error = %e, "cannot record the spool position; the batch may be sent again");
                }
                health.delivered_total.fetch_add(lines.len() as u64, Ordering::Relaxed);
                health.last_success_ms.store(now_ms(), Ordering::Relaxed);
                backoff = Duration::from_millis(500);
            }
            Err(e) => fail(e, &mut backoff),
        }
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20).min(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_ids_and_split_milliseconds() {
        let ev = json!({"id": "f:10", "timestamp_ms": 1_795_860_000_123i64, "status": 503, "duration_ms": 1.5,
            "anomalies": ["r1"], "attack": true, "route": "/x"});
        let r = row(&ev, "web-1");
        assert_eq!(r["ts"], 1_795_860_000i64);
        assert_eq!(r["ts_ms"], 123);
        assert_eq!(r["id"], "f:10");
        assert_eq!(r["agent"], "web-1");
        assert_eq!(r["attack"], 1);
        assert_eq!(r["anomalies"], json!(["r1"]));
        assert_eq!(r["bytes_sent"], Value::Null);
        assert_eq!(r["event"].as_str().map(|s| s.contains("\"f:10\"")), Some(true));
    }
}
