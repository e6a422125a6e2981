//! The ingest pipeline: record -> parse -> filter -> redact -> rules -> index, committing on an
//! interval.
//!
//! Three kinds of threads, so the CPU-heavy middle runs on every core while the order of
//! events, which is what makes "positions up to here are indexed" true at each commit, is kept:
//!
//! ```text
//! source batches -> parse + filter (1 thread, per-file parser state)
//!                -> redact + rules (N workers, stateless)
//!                -> index (1 thread, re-orders by sequence number, adds, commits)
//! ```
//!
//! Every batch gets a sequence number when it is parsed; the index stage applies batches
//! strictly in that order, so a file's events and positions reach the index in file order
//! whichever worker finished first.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::event::{Event, LineFlag, Origin};
use crate::filter::Filter;
use crate::index::{IndexError, IndexStore, now_ms};
use crate::metrics::{IngestCounters, SourceCounts};
use crate::parse::{FileParser, FormatSpec};
use crate::redact::{Redacted, Redactor};
use crate::rules::Detector;
use crate::sink::spool::SpoolWriter;
use crate::source::{Batch, Item, SourceRecord};
use crate::stats::Recorder;
use crate::stats::routes::RouteTable;

/// Records per unit of work handed to a worker.
const CHUNK: usize = 1024;
/// Units of work in flight per worker.
const QUEUE: usize = 2;
/// How often the index loop hands free memory back (see `release_free_memory`).
const TRIM_EVERY: Duration = Duration::from_secs(5);
/// Emptied chunks kept for reuse, of each kind.
const SPARE_CHUNKS: usize = 4;

/// Emptied chunks, handed back to the stage that fills them. A chunk of 1,024 events is about
/// 800 KB; allocated afresh each time, its pages were faulted in again each time, since the
/// allocator returns freed memory to the system at once (see `logwarden::Allocator`).
struct Spare<T> {
    chunks: Mutex<Vec<Vec<T>>>,
}

impl<T> Spare<T> {
    fn new() -> Self {
        Self { chunks: Mutex::new(Vec::new()) }
    }

    /// An empty chunk with room for `CHUNK` items.
    fn take(&self) -> Vec<T> {
        self.chunks.lock().ok().and_then(|mut c| c.pop()).unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    fn give(&self, mut chunk: Vec<T>) {
        chunk.clear();
        if let Ok(mut c) = self.chunks.lock()
            && c.len() < SPARE_CHUNKS
        {
            c.push(chunk);
        }
    }
}

/// What the parse stage hands on. Events are by far the common variant, so they are kept
/// inline rather than boxed: boxing would cost an allocation per event for the rare `Advance`.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Event(Origin, Event),
    Advance(Arc<str>, u64),
}

/// What the workers hand to the index stage (inline for the same reason as `Parsed`).
#[allow(clippy::large_enum_variant)]
enum Ready {
    Add(Origin, Redacted),
    Advance(Arc<str>, u64),
}

/// The parse stage: the only one with per-file state.
struct Parse {
    specs: Vec<FormatSpec>,
    /// By file fingerprint: digests of our own making, so the cheap FxHash is safe here.
    parsers: FxHashMap<String, FileParser>,
    filter: Filter,
    routes: RouteTable,
    counters: Arc<IngestCounters>,
    per_source: BTreeMap<String, SourceCounts>,
}

pub struct Pipeline {
    parse: Parse,
    redactor: Redactor,
    detector: Option<Detector>,
    store: IndexStore,
    recorder: Recorder,
    spool: Option<SpoolWriter>,
    counters: Arc<IngestCounters>,
    workers: usize,
}

/// The stages between parsing and the index, each built from its part of the configuration.
pub struct Stages {
    pub filter: Filter,
    pub routes: RouteTable,
    pub redactor: Redactor,
    pub detector: Option<Detector>,
    pub recorder: Recorder,
    /// The spool of a sink (ClickHouse), when one is configured.
    pub spool: Option<SpoolWriter>,
}

impl Pipeline {
    /// `specs[i]` is the format of configured source `i`.
    pub fn new(specs: Vec<FormatSpec>, stages: Stages, store: IndexStore, counters: Arc<IngestCounters>) -> Self {
        let Stages { filter, routes, redactor, detector, recorder, spool } = stages;
        let parse = Parse {
            specs,
            parsers: FxHashMap::default(),
            filter,
            routes,
            counters: counters.clone(),
            per_source: BTreeMap::new(),
        };
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
        Self { parse, redactor, detector, store, recorder, spool, counters, workers }
    }

    /// Builds the event of one record; a record no parser accepts becomes an unparsed event.
    /// The text moves into the event as its raw line: no copy per line.
    pub fn event_of(parser: &mut FileParser, origin: &Origin, text: String, flags: Vec<LineFlag>) -> Event {
        let mut ev = Event::default();
        if let Err(e) = parser.parse(&text, &mut ev) {
            ev = Event { parse_error: Some(e.to_string()), format: "unparsed".into(), ..Event::default() };
        }
        ev.id = origin.event_id();
        ev.source = origin.path.clone();
        ev.raw = text;
        ev.flags = flags;
        if ev.timestamp_ms == 0 {
            ev.timestamp_ms = now_ms();
        }
        ev
    }

    /// Consumes batches until every sender hangs up or `shutdown` is set, committing every
    /// `interval`; then commits a last time and closes the index. Batches still queued at
    /// shutdown are not lost: their positions were not committed, so they are read again.
    pub fn run(self, rx: Receiver<Batch>, interval: Duration, shutdown: &AtomicBool) -> Result<(), IndexError> {
        let Pipeline { mut parse, redactor, detector, store, recorder, spool, counters, workers } = self;
        let (ready_tx, ready_rx) = sync_channel::<(u64, Vec<Ready>)>(workers * QUEUE);
        // Set when the index stage stops, on shutdown or on an error: the parse thread then
        // stops too (dropping its senders stops the workers), so the scope can end.
        let halt = AtomicBool::new(false);
        let (spare_parsed, spare_ready) = (Spare::<Parsed>::new(), Spare::<Ready>::new());
        let (spare_parsed, spare_ready) = (&spare_parsed, &spare_ready);
        std::thread::scope(|scope| {
            let mut work_txs = Vec::with_capacity(workers);
            for i in 0..workers {
                let (tx, rx) = sync_channel::<(u64, Vec<Parsed>)>(QUEUE);
                work_txs.push(tx);
                let (ready_tx, redactor, mut detector, counters) =
                    (ready_tx.clone(), redactor.clone(), detector.clone(), counters.clone());
                std::thread::Builder::new()
                    .name(format!("redact-{i}"))
                    .spawn_scoped(scope, move || {
                        for (seq, mut items) in rx {
                            if let Some(d) = &mut detector {
                                d.refresh();
                            }
                            let mut ready = spare_ready.take();
                            ready.extend(items.drain(..).map(|p| prepare(p, &redactor, detector.as_ref(), &counters)));
                            spare_parsed.give(items);
                            if ready_tx.send((seq, ready)).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawn redact worker");
            }
            drop(ready_tx);
            let halt = &halt;
            let stopped = || shutdown.load(Ordering::Relaxed) || halt.load(Ordering::Relaxed);
            std::thread::Builder::new()
                .name("parse".into())
                .spawn_scoped(scope, move || parse.run(rx, work_txs, spare_parsed, &stopped))
                .expect("spawn parse thread");
            let result = index_loop(store, recorder, spool, (ready_rx, spare_ready), &counters, interval, shutdown);
            halt.store(true, Ordering::Relaxed);
            result
        })
    }
}

/// Redacts and tags one parsed item.
fn prepare(p: Parsed, redactor: &Redactor, detector: Option<&Detector>, counters: &IngestCounters) -> Ready {
    match p {
        Parsed::Advance(fp, offset) => Ready::Advance(fp, offset),
        Parsed::Event(origin, ev) => {
            let mut redacted = redactor.redact(ev);
            if let Some(d) = detector {
                let mut tags = d.tags(redacted.event());
                // Excerpts are decoded text: redact them again, as a decoded value may show a
                // secret its encoded form hid from the first pass.
                for m in &mut tags.matches {
                    if let Some(clean) = redactor.scrub(&m.excerpt) {
                        m.excerpt = clean;
                    }
                }
                if tags.attack {
                    IngestCounters::add(&counters.attacks, 1);
                }
                redacted.tag(tags);
            }
            Ready::Add(origin, redacted)
        }
    }
}

impl Parse {
    /// Parses batches in arrival order, numbering each unit of work, and deals them out to the
    /// workers in turn. Stops when `stopped` says so or when the sources hang up; dropping the senders
    /// then stops the workers and, after them, the index stage.
    fn run(
        &mut self,
        rx: Receiver<Batch>,
        workers: Vec<SyncSender<(u64, Vec<Parsed>)>>,
        spare: &Spare<Parsed>,
        stopped: &dyn Fn() -> bool,
    ) {
        let mut seq = 0u64;
        while !stopped() {
            let batch = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(b) => b,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut out = spare.take();
            for item in batch {
                out.push(match item {
                    Item::Position { fingerprint, offset } => Parsed::Advance(fingerprint.into(), offset),
                    Item::Record(rec) => self.record(rec),
                });
                if out.len() == CHUNK {
                    // Each source's counts are published before its records can be committed,
                    // so /health never shows fewer records than search finds (a few entries
                    // copied per 1,024 records).
                    self.publish();
                    let chunk = std::mem::replace(&mut out, spare.take());
                    if workers[seq as usize % workers.len()].send((seq, chunk)).is_err() {
                        return;
                    }
                    seq += 1;
                }
            }
            if out.is_empty() {
                spare.give(out);
            } else {
                self.publish();
                if workers[seq as usize % workers.len()].send((seq, out)).is_err() {
                    return;
                }
                seq += 1;
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        if let Ok(mut published) = self.counters.per_source.lock() {
            published.clone_from(&self.per_source);
        }
    }

    fn record(&mut self, rec: SourceRecord) -> Parsed {
        let SourceRecord { origin, text, flags, source_idx } = rec;
        IngestCounters::add(&self.counters.records_read, 1);
        IngestCounters::add(&self.counters.bytes_read, origin.end_offset - origin.offset);
        // Look up before inserting, so the common case does not copy the key for every line.
        if !self.parsers.contains_key(&*origin.fingerprint) {
            let spec = self.specs.get(source_idx).cloned().unwrap_or(FormatSpec::Auto);
            self.parsers.insert(origin.fingerprint.to_string(), FileParser::new(spec));
        }
        let parser = self.parsers.get_mut(&*origin.fingerprint).expect("inserted above");
        let before = parser.detected();
        let mut ev = Pipeline::event_of(parser, &origin, text, flags);
        if before.is_none()
            && let Some(kind) = parser.detected()
        {
            tracing::info!(path = %origin.path, format = kind.name(), "detected log format");
        }
        if !self.per_source.contains_key(&*origin.path) {
            self.per_source.insert(origin.path.to_string(), SourceCounts::default());
        }
        let counts = self.per_source.get_mut(&*origin.path).expect("inserted above");
        counts.records += 1;
        counts.last_record_ms = now_ms();
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
            return Parsed::Advance(origin.fingerprint, origin.end_offset);
        }
        self.routes.assign(&mut ev);
        Parsed::Event(origin, ev)
    }
}

/// Applies work in sequence order and commits every `interval`, until the workers hang up.
fn index_loop(
    mut store: IndexStore,
    mut recorder: Recorder,
    mut spool: Option<SpoolWriter>,
    (ready, spare): (Receiver<(u64, Vec<Ready>)>, &Spare<Ready>),
    counters: &IngestCounters,
    interval: Duration,
    shutdown: &AtomicBool,
) -> Result<(), IndexError> {
    let spool_error = |e: std::io::Error| IndexError::Io { path: "spool".into(), source: e };
    let mut next = 0u64;
    let mut early: BTreeMap<u64, Vec<Ready>> = BTreeMap::new();
    let mut last_commit = Instant::now();
    let mut last_trim = Instant::now();
    let mut last_retention: Option<Instant> = None;
    // Anomaly counts since the last commit, published with it: no lock per event.
    let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let timeout = interval.saturating_sub(last_commit.elapsed());
        match ready.recv_timeout(timeout) {
            Ok((seq, items)) => {
                early.insert(seq, items);
                while let Some(mut items) = early.remove(&next) {
                    for item in items.drain(..) {
                        match item {
                            Ready::Advance(fp, offset) => store.advance(&fp, offset),
                            Ready::Add(origin, ev) => {
                                store.add(&origin, &ev)?;
                                recorder.record(ev.event());
                                if let Some(sev) = &ev.event().severity {
                                    *by_severity.entry(sev.clone()).or_default() += 1;
                                    for rule in &ev.event().anomalies {
                                        *by_rule.entry(rule.clone()).or_default() += 1;
                                    }
                                }
                                if let Some(s) = &mut spool {
                                    let json = serde_json::to_string(ev.event()).unwrap_or_default();
                                    s.append(&json, shutdown).map_err(spool_error)?;
                                }
                                IngestCounters::add(&counters.events_indexed, 1);
                            }
                        }
                    }
                    spare.give(items);
                    next += 1;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_commit.elapsed() >= interval {
            // Whatever the commit makes final must already be in the spool.
            if let Some(s) = &mut spool {
                s.sync().map_err(spool_error)?;
            }
            commit(&mut store, counters)?;
            recorder.flush();
            publish_anomalies(counters, &mut by_severity, &mut by_rule);
            if last_trim.elapsed() >= TRIM_EVERY {
                crate::release_free_memory();
                last_trim = Instant::now();
            }
            last_commit = Instant::now();
            if last_retention.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                recorder.drop_before(store.apply_retention()?);
                last_retention = Some(Instant::now());
            }
        }
    }
    if let Some(s) = &mut spool {
        s.sync().map_err(spool_error)?;
    }
    store.close()?;
    recorder.flush();
    publish_anomalies(counters, &mut by_severity, &mut by_rule);
    Ok(())
}

fn publish_anomalies(
    counters: &IngestCounters,
    by_severity: &mut BTreeMap<String, u64>,
    by_rule: &mut BTreeMap<String, u64>,
) {
    for (local, shared) in [(by_severity, &counters.anomalies_by_severity), (by_rule, &counters.anomalies_by_rule)] {
        if local.is_empty() {
            continue;
        }
        if let Ok(mut m) = shared.lock() {
            for (k, n) in std::mem::take(local) {
                *m.entry(k).or_default() += n;
            }
        }
    }
}

fn commit(store: &mut IndexStore, counters: &IngestCounters) -> Result<(), IndexError> {
    let started = Instant::now();
    if let Some(stats) = store.commit()? {
        IngestCounters::add(&counters.commits, 1);
        IngestCounters::add(&counters.commit_us, started.elapsed().as_micros() as u64);
        counters.last_commit_ms.store(now_ms(), Ordering::Relaxed);
        counters.set_paused(None);
        tracing::debug!(
            docs = stats.docs,
            partitions = stats.partitions,
            took_ms = started.elapsed().as_millis() as u64,
            "committed"
        );
    }
    Ok(())
}
