//! The ingest pipeline: record -> parse -> filter -> redact -> index, then commit on an
//! interval. One thread runs it so events of a file reach the index in file order, which is
//! what makes "positions up to here are indexed" true at every commit; tantivy's own indexing
//! threads do the heavy lifting behind `add`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::filter::Filter;
use crate::index::{IndexError, IndexStore, now_ms};
use crate::metrics::{IngestCounters, SourceCounts};
use crate::parse::{FileParser, FormatSpec};
use crate::redact::Redactor;
use crate::rules::Detector;
use crate::source::{Batch, Item, SourceRecord};

pub struct Pipeline {
    specs: Vec<FormatSpec>,
    parsers: HashMap<String, FileParser>,
    filter: Filter,
    redactor: Redactor,
    store: IndexStore,
    counters: Arc<IngestCounters>,
    per_source: BTreeMap<String, SourceCounts>,
    detector: Option<Detector>,
}

impl Pipeline {
    /// `specs[i]` is the format of configured source `i`.
    pub fn new(
        specs: Vec<FormatSpec>,
        filter: Filter,
        redactor: Redactor,
        detector: Option<Detector>,
        store: IndexStore,
        counters: Arc<IngestCounters>,
    ) -> Self {
        Self {
            specs,
            parsers: HashMap::new(),
            filter,
            redactor,
            store,
            counters,
            per_source: BTreeMap::new(),
            detector,
        }
    }

    /// Builds the event of one record; a record no parser accepts becomes an unparsed event.
    pub fn event_of(parser: &mut FileParser, rec: &SourceRecord) -> Event {
        let mut ev = Event::default();
        if let Err(e) = parser.parse(&rec.text, &mut ev) {
            ev = Event { parse_error: Some(e.to_string()), format: "unparsed".into(), ..Event::default() };
        }
        ev.id = rec.origin.event_id();
        ev.source = rec.origin.path.clone();
        ev.raw = rec.text.clone();
        ev.flags = rec.flags.clone();
        if ev.timestamp_ms == 0 {
            ev.timestamp_ms = now_ms();
        }
        ev
    }

    fn process(&mut self, batch: Batch) -> Result<(), IndexError> {
        if let Some(d) = &mut self.detector {
            d.refresh();
        }
        for item in batch {
            match item {
                Item::Position { fingerprint, offset } => self.store.advance(&fingerprint, offset),
                Item::Record(rec) => self.record(&rec)?,
            }
        }
        Ok(())
    }

    fn record(&mut self, rec: &SourceRecord) -> Result<(), IndexError> {
        IngestCounters::add(&self.counters.records_read, 1);
        IngestCounters::add(&self.counters.bytes_read, rec.origin.end_offset - rec.origin.offset);
        let spec = self.specs.get(rec.source_idx).cloned().unwrap_or(FormatSpec::Auto);
        let parser = self.parsers.entry(rec.origin.fingerprint.clone()).or_insert_with(|| FileParser::new(spec));
        let before = parser.detected();
        let ev = Self::event_of(parser, rec);
        if before.is_none()
            && let Some(kind) = parser.detected()
        {
            tracing::info!(path = %rec.origin.path, format = kind.name(), "detected log format");
        }
        let counts = self.per_source.entry(rec.origin.path.clone()).or_default();
        counts.records += 1;
        if counts.format.is_none() {
            counts.format = parser.detected().map(|k| k.name().to_string());
        }
        if ev.parse_error.is_some() {
            IngestCounters::add(&self.counters.parse_errors, 1);
            counts.parse_errors += 1;
        }
        if !ev.flags.is_empty() {
            IngestCounters::add(&self.counters.flagged, 1);
        }
        if self.filter.skip(&ev).is_some() {
            IngestCounters::add(&self.counters.skipped, 1);
            counts.skipped += 1;
            self.store.advance(&rec.origin.fingerprint, rec.origin.end_offset);
            return Ok(());
        }
        let mut redacted = self.redactor.redact(ev);
        if let Some(d) = &self.detector {
            let tags = d.tags(redacted.event());
            if tags.attack {
                IngestCounters::add(&self.counters.attacks, 1);
            }
            redacted.tag(tags);
        }
        self.store.add(&rec.origin, &redacted)?;
        IngestCounters::add(&self.counters.events_indexed, 1);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), IndexError> {
        let started = Instant::now();
        if let Some(stats) = self.store.commit()? {
            IngestCounters::add(&self.counters.commits, 1);
            self.counters.last_commit_ms.store(now_ms(), Ordering::Relaxed);
            if let Ok(mut published) = self.counters.per_source.lock() {
                published.clone_from(&self.per_source);
            }
            tracing::debug!(
                docs = stats.docs,
                partitions = stats.partitions,
                took_ms = started.elapsed().as_millis() as u64,
                "committed"
            );
        }
        Ok(())
    }

    /// Consumes batches until every sender hangs up or `shutdown` is set, committing every
    /// `interval`; then commits a last time and closes the index. Batches still queued at
    /// shutdown are not lost: their positions were not committed, so they are read again.
    pub fn run(mut self, rx: Receiver<Batch>, interval: Duration, shutdown: &AtomicBool) -> Result<(), IndexError> {
        let mut last_commit = Instant::now();
        let mut last_retention: Option<Instant> = None;
        while !shutdown.load(Ordering::Relaxed) {
            let timeout = interval.saturating_sub(last_commit.elapsed());
            match rx.recv_timeout(timeout) {
                Ok(batch) => self.process(batch)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_commit.elapsed() >= interval {
                self.commit()?;
                last_commit = Instant::now();
                if last_retention.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                    self.store.apply_retention()?;
                    last_retention = Some(Instant::now());
                }
            }
        }
        self.store.close()
    }
}
