//! Counters the pipeline updates and the API reads. Plain atomics: the hot path pays one
//! relaxed increment per event and never takes a lock for them.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct IngestCounters {
    pub records_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub events_indexed: AtomicU64,
    pub parse_errors: AtomicU64,
    pub skipped: AtomicU64,
    pub flagged: AtomicU64,
    pub commits: AtomicU64,
    pub last_commit_ms: AtomicI64,
    /// Set when the pipeline stopped on an error it cannot recover from (disk full, ...).
    pub failed: AtomicBool,
}

impl IngestCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
