//! Counters the pipeline updates and the API reads. Plain atomics: the hot path pays one
//! relaxed increment per event and never takes a lock for them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use serde::Serialize;

#[derive(Debug, Default)]
pub struct IngestCounters {
    pub records_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub events_indexed: AtomicU64,
    pub parse_errors: AtomicU64,
    pub skipped: AtomicU64,
    pub flagged: AtomicU64,
    pub attacks: AtomicU64,
    pub commits: AtomicU64,
    /// Time spent committing, in microseconds (with `commits`, the mean commit latency).
    pub commit_us: AtomicU64,
    pub last_commit_ms: AtomicI64,
    /// Events with anomalies, by severity and by rule, published at each commit.
    pub anomalies_by_severity: Mutex<BTreeMap<String, u64>>,
    pub anomalies_by_rule: Mutex<BTreeMap<String, u64>>,
    /// Set when the pipeline stopped on an error it cannot recover from.
    pub failed: AtomicBool,
    /// Why reading is paused (a full or read-only data directory), until a commit succeeds.
    pub paused: Mutex<Option<String>>,
    /// Per source file, published by the pipeline at each commit (not per event).
    pub per_source: Mutex<BTreeMap<String, SourceCounts>>,
}

/// What one source file has produced since the daemon started.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SourceCounts {
    pub records: u64,
    pub parse_errors: u64,
    pub skipped: u64,
    /// The format `auto` detected, or the configured one.
    pub format: Option<String>,
    /// When a record of this source was last read (ms), for `absent` alerts.
    pub last_record_ms: i64,
}

impl IngestCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Sets (or, with `None`, clears) why ingestion is paused.
    pub fn set_paused(&self, reason: Option<String>) {
        if let Ok(mut p) = self.paused.lock() {
            *p = reason;
        }
    }

    pub fn paused(&self) -> Option<String> {
        self.paused.lock().ok().and_then(|p| p.clone())
    }
}
