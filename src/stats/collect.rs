//! Statistics straight from the index's fast fields: how the buckets are rebuilt on start, and
//! how `/api/v1/stats?q=` answers for any subset the buckets cannot ("p99 of this client").
//!
//! Each segment is read column by column (timestamp, route, method, status, host, duration)
//! without loading a document, into series keyed by minute and by the segment's term ordinals;
//! ordinals become strings once per distinct key, when the segment is harvested.

use std::collections::HashMap;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use super::{Key, MINUTE_MS, NO_ROUTE, Series, Thresholds, micros};

/// Series by minute and key, as collected from one or more segments.
pub type Collected = Vec<(i64, Key, Series)>;

/// Collects the matching events into per-minute series.
pub struct SeriesCollector {
    pub thresholds: Arc<Thresholds>,
}

/// The ordinal of "no value" in a key (a segment may have no host column at all).
const NONE: u64 = u64::MAX;

pub struct SegmentSeries {
    thresholds: Arc<Thresholds>,
    timestamp: Column<i64>,
    status: Option<Column<u64>>,
    duration: Option<Column<f64>>,
    route: Option<StrColumn>,
    method: Option<StrColumn>,
    host: Option<StrColumn>,
    /// Slow threshold per route ordinal.
    slow: HashMap<u64, u64>,
    series: HashMap<(i64, u64, u64, u16, u64), Series>,
}

fn ord(col: &Option<StrColumn>, doc: DocId) -> u64 {
    col.as_ref().and_then(|c| c.ords().first(doc)).unwrap_or(NONE)
}

fn text(col: &Option<StrColumn>, ord: u64) -> String {
    let mut s = String::new();
    if ord != NONE
        && let Some(c) = col
    {
        let _ = c.ord_to_str(ord, &mut s);
    }
    s
}

impl Collector for SeriesCollector {
    type Fruit = Collected;
    type Child = SegmentSeries;

    fn for_segment(&self, _: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<SegmentSeries> {
        let ff = reader.fast_fields();
        Ok(SegmentSeries {
            thresholds: self.thresholds.clone(),
            timestamp: ff.i64("timestamp")?,
            status: ff.column_opt("status")?,
            duration: ff.column_opt("duration_ms")?,
            route: ff.str("route")?,
            method: ff.str("method")?,
            host: ff.str("host")?,
            slow: HashMap::new(),
            series: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Collected>) -> tantivy::Result<Collected> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

impl SegmentCollector for SegmentSeries {
    type Fruit = Collected;

    fn collect(&mut self, doc: DocId, _: Score) {
        // The same requests as the live recorder: a route, a status or a duration.
        let route = ord(&self.route, doc);
        let status = self.status.as_ref().and_then(|c| c.first(doc));
        let duration = self.duration.as_ref().and_then(|c| c.first(doc));
        if route == NONE && status.is_none() && duration.is_none() {
            return;
        }
        let Some(ts) = self.timestamp.first(doc) else { return };
        let status = status.map_or(0, |s| s as u16);
        let us = duration.and_then(micros);
        let key = (ts.div_euclid(MINUTE_MS), route, ord(&self.method, doc), status, ord(&self.host, doc));
        let slow = match self.slow.get(&route) {
            Some(s) => *s,
            None => {
                let s = self.thresholds.slow_us(&text(&self.route, route));
                self.slow.insert(route, s);
                s
            }
        };
        self.series.entry(key).or_default().record(status, us, slow, self.thresholds.apdex_us);
    }

    fn harvest(self) -> Collected {
        self.series
            .into_iter()
            .map(|((minute, route, method, status, host), s)| {
                let key = Key {
                    route: if route == NONE { NO_ROUTE.to_string() } else { text(&self.route, route) },
                    method: text(&self.method, method),
                    status,
                    host: text(&self.host, host),
                };
                (minute, key, s)
            })
            .collect()
    }
}
