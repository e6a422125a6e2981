//! The index: one tantivy index per day under `<data_dir>/index/<YYYY-MM-DD>`, written by one
//! [`IndexStore`] and read through a shared [`Catalog`].
//!
//! Retention drops whole days. Positions of the files being read are saved in the payload of
//! every commit (see `checkpoint`), so a restart resumes exactly where the index ends.

pub mod agent;
pub mod checkpoint;
pub mod schema;
pub mod search;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument};

use crate::event::Origin;
use crate::parse::timestamp::civil_from_days;
use crate::redact::Redacted;
use checkpoint::{Payload, Positions, Recovery};
use schema::Fields;
use search::Replay;

const DAY_MS: i64 = 86_400_000;

/// A writer not used for this long is closed after a commit, freeing its memory.
const WRITER_IDLE: Duration = Duration::from_secs(60);
/// At most this many partition writers are open at once (a backfill over many days).
const MAX_WRITERS: usize = 3;
/// The stored events are JSON, compressed a block at a time. zstd packs them several times
/// smaller than lz4 (tantivy's default), because it also codes the bytes it cannot match.
/// Level 6 instead of 3 (with the blocks below) took the store of a million generated events
/// from 26.7 to 21.8 MiB, for about 5 % more CPU over the whole ingest, in tantivy's own
/// compressor thread; the index of the raw log then fits in half its size.
const DOCSTORE_ZSTD_LEVEL: i32 = 6;
/// Reading one hit decompresses its whole block. Bigger blocks give zstd more lines to match
/// against: from 16 to 64 KiB the store went from 38 to 27 MiB, and 128 KiB saves 1.5 MiB
/// more at either level. Hits sorted by time mostly share blocks, so searches over
/// 10,000,000 events stayed within a few milliseconds (README's search table).
const DOCSTORE_BLOCK: usize = 131_072;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index error in {partition}: {source}")]
    Tantivy { partition: String, source: tantivy::TantivyError },
    #[error("cannot use {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("commit payload of {partition} is unreadable: {source}")]
    Payload { partition: String, source: serde_json::Error },
    /// The data directory cannot take a commit now (full, read-only): ingestion pauses.
    #[error("{0}")]
    Storage(String),
}

/// Whether the filesystem of `dir` can take writes with `min_free` bytes to spare: not
/// read-only, enough space, and a small file can be written and removed.
pub fn storage_ready(dir: &Path, min_free: u64) -> Result<(), String> {
    free_space(dir, min_free)?;
    let probe = dir.join(".write-probe");
    let written = std::fs::write(&probe, [0u8; 4096]).and_then(|()| std::fs::remove_file(&probe));
    written.map_err(|e| format!("cannot write in {}: {e}", dir.display()))
}

/// Whether the filesystem of `dir` is mounted writable with `min_free` bytes free: one
/// statvfs call, cheap enough for every commit. (A filesystem turned read-only by an error
/// may still say writable; the commit's own writes then fail.)
fn free_space(dir: &Path, min_free: u64) -> Result<(), String> {
    let vfs = rustix::fs::statvfs(dir).map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
    if vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Err(format!("the filesystem of {} is read-only", dir.display()));
    }
    let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    if free < min_free {
        return Err(format!(
            "{} MiB free on the filesystem of {}, below index.min_free_mb = {}",
            free >> 20,
            dir.display(),
            min_free >> 20
        ));
    }
    Ok(())
}

/// The name of the day partition of a timestamp (UTC).
pub fn partition_of(timestamp_ms: i64) -> String {
    let (y, m, d) = civil_from_days(timestamp_ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

fn is_partition_name(name: &str) -> bool {
    name.len() == 10
        && name.as_bytes()[4] == b'-'
        && name.as_bytes()[7] == b'-'
        && name.bytes().filter(u8::is_ascii_digit).count() == 8
}

/// The readable side: every partition's reader, refreshed by the writer after each commit.
pub struct Catalog {
    dir: PathBuf,
    fields: Fields,
    schema: tantivy::schema::Schema,
    /// What the query parser reads (see [`schema::for_queries`]).
    query_schema: tantivy::schema::Schema,
    readers: RwLock<BTreeMap<String, IndexReader>>,
}

impl Catalog {
    /// Opens every existing partition under `dir` for reading.
    pub fn open(dir: &Path) -> Result<Arc<Self>, IndexError> {
        std::fs::create_dir_all(dir).map_err(|source| IndexError::Io { path: dir.to_path_buf(), source })?;
        let (schema, fields) = schema::build();
        let catalog = Arc::new(Self {
            dir: dir.to_path_buf(),
            fields,
            schema,
            query_schema: schema::for_queries(),
            readers: RwLock::new(BTreeMap::new()),
        });
        for name in catalog.partition_names()? {
            catalog.refresh(&name)?;
        }
        Ok(catalog)
    }

    fn partition_names(&self) -> Result<Vec<String>, IndexError> {
        let io = |source| IndexError::Io { path: self.dir.clone(), source };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_partition_name(&name) && entry.path().join("meta.json").exists() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn tantivy(partition: &str) -> impl Fn(tantivy::TantivyError) -> IndexError + '_ {
        move |source| IndexError::Tantivy { partition: partition.to_string(), source }
    }

    /// Reloads (or starts reading) one partition after a commit.
    fn refresh(&self, name: &str) -> Result<(), IndexError> {
        if let Some(r) = self.readers.read().expect("catalog lock").get(name) {
            return r.reload().map_err(Self::tantivy(name));
        }
        let index = Index::open_in_dir(self.dir.join(name)).map_err(Self::tantivy(name))?;
        let reader =
            index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(Self::tantivy(name))?;
        self.readers.write().expect("catalog lock").insert(name.to_string(), reader);
        Ok(())
    }

    fn remove(&self, name: &str) {
        self.readers.write().expect("catalog lock").remove(name);
    }

    /// Readers of the partitions that may hold events in `[from, to)`.
    fn readers_between(&self, from_ms: Option<i64>, to_ms: Option<i64>) -> Vec<(String, IndexReader)> {
        let lo = from_ms.map(partition_of);
        let hi = to_ms.map(|t| partition_of(t - 1));
        self.readers
            .read()
            .expect("catalog lock")
            .iter()
            .filter(|(name, _)| lo.as_ref().is_none_or(|l| *name >= l) && hi.as_ref().is_none_or(|h| *name <= h))
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect()
    }

    /// Documents and segments per partition, and bytes on disk, for health and metrics.
    pub fn stats(&self) -> Vec<PartitionStats> {
        let readers = self.readers.read().expect("catalog lock");
        readers
            .iter()
            .map(|(name, reader)| {
                let searcher = reader.searcher();
                PartitionStats {
                    name: name.clone(),
                    docs: searcher.num_docs(),
                    segments: searcher.segment_readers().len(),
                    bytes: dir_bytes(&self.dir.join(name)),
                }
            })
            .collect()
    }

    /// Every distinct value of a keyword field across the partitions (the routes already
    /// known, on start).
    pub fn distinct_terms(&self, field: &str) -> Result<std::collections::BTreeSet<String>, IndexError> {
        let mut out = std::collections::BTreeSet::new();
        let Ok(f) = self.schema.get_field(field) else { return Ok(out) };
        for (name, reader) in self.readers.read().expect("catalog lock").iter() {
            let io = |source| IndexError::Io { path: self.dir.join(name), source };
            for segment in reader.searcher().segment_readers() {
                let inverted = segment.inverted_index(f).map_err(Self::tantivy(name))?;
                let mut terms = inverted.terms().stream().map_err(io)?;
                while terms.advance() {
                    out.insert(String::from_utf8_lossy(terms.key()).into_owned());
                }
            }
        }
        Ok(out)
    }

    pub fn partitions(&self) -> Vec<String> {
        self.readers.read().expect("catalog lock").keys().cloned().collect()
    }
}

/// One partition as `/health/detailed` and `/metrics` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionStats {
    pub name: String,
    pub docs: u64,
    pub segments: usize,
    pub bytes: u64,
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

struct PartitionWriter {
    writer: IndexWriter,
    dirty: bool,
    last_used: Instant,
    /// Whether the partition rebuilds ids from its columns (see [`schema::Fields::document`]).
    ids_in_columns: bool,
}

/// Writes events and commits them with the file positions they reach.
pub struct IndexStore {
    catalog: Arc<Catalog>,
    /// By partition name: names of our own making, at most `MAX_WRITERS` of them, so the
    /// cheap FxHash is safe here.
    writers: FxHashMap<String, PartitionWriter>,
    /// The day of the last event added and its partition's name.
    last_day: Option<(i64, String)>,
    memory_budget: usize,
    positions: Positions,
    previous: Positions,
    positions_changed: bool,
    replace_until: Positions,
    /// The (partition, file) pairs whose replayed lines were deleted in this run.
    replaced: HashSet<(String, String)>,
    generation: u64,
    last_round: Vec<String>,
    retention_days: u32,
    docs_since_commit: u64,
    /// Commits are refused (`IndexError::Storage`) below this much free space.
    min_free: u64,
}

/// What one commit did, for logs and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommitStats {
    pub docs: u64,
    pub partitions: usize,
}

impl IndexStore {
    /// Opens the index under `dir` and works out where each file resumes.
    pub fn open(
        catalog: Arc<Catalog>,
        memory_budget: usize,
        retention_days: u32,
    ) -> Result<(Self, Positions), IndexError> {
        let mut payloads = BTreeMap::new();
        for name in catalog.partition_names()? {
            let index = Index::open_in_dir(catalog.dir.join(&name)).map_err(Catalog::tantivy(&name))?;
            let meta = index.load_metas().map_err(Catalog::tantivy(&name))?;
            let payload = match meta.payload {
                Some(p) => Some(
                    serde_json::from_str::<Payload>(&p)
                        .map_err(|source| IndexError::Payload { partition: name.clone(), source })?,
                ),
                None => None,
            };
            payloads.insert(name, payload);
        }
        let Recovery { generation, resume, replace_until } = checkpoint::recover(&payloads);
        if !replace_until.is_empty() {
            tracing::warn!(
                files = replace_until.len(),
                "the last commit was cut short; replaying its lines with replacement"
            );
        }
        let last_round = payloads
            .iter()
            .filter(|(_, p)| p.as_ref().is_some_and(|p| p.generation == generation))
            .map(|(n, _)| n.clone())
            .collect();
        let store = Self {
            catalog,
            writers: FxHashMap::default(),
            last_day: None,
            memory_budget,
            positions: resume.clone(),
            previous: resume.clone(),
            positions_changed: false,
            replace_until,
            replaced: HashSet::new(),
            generation,
            last_round,
            retention_days,
            docs_since_commit: 0,
            min_free: 0,
        };
        Ok((store, resume))
    }

    /// Refuses commits (and so pauses ingestion) below `bytes` of free space.
    pub fn with_min_free(mut self, bytes: u64) -> Self {
        self.min_free = bytes;
        self
    }

    fn writer(&mut self, name: &str) -> Result<&mut PartitionWriter, IndexError> {
        if !self.writers.contains_key(name) {
            if self.writers.len() >= MAX_WRITERS {
                // Make room: commit so the least recently used writer can be closed safely.
                self.commit()?;
                if let Some(lru) = self.writers.iter().min_by_key(|(_, w)| w.last_used).map(|(n, _)| n.clone()) {
                    self.writers.remove(&lru);
                }
            }
            let path = self.catalog.dir.join(name);
            std::fs::create_dir_all(&path).map_err(|source| IndexError::Io { path: path.clone(), source })?;
            let dir = tantivy::directory::MmapDirectory::open(&path)
                .map_err(|e| IndexError::Tantivy { partition: name.to_string(), source: e.into() })?;
            let index = open_or_create(dir, &self.catalog.schema).map_err(Catalog::tantivy(name))?;
            let ids_in_columns = index.schema().get_field_entry(self.catalog.fields.fingerprint).is_fast();
            let writer = writer(&index, self.memory_budget).map_err(Catalog::tantivy(name))?;
            let w = PartitionWriter { writer, dirty: false, last_used: Instant::now(), ids_in_columns };
            self.writers.insert(name.to_string(), w);
        }
        let w = self.writers.get_mut(name).expect("inserted above");
        w.last_used = Instant::now();
        Ok(w)
    }

    /// Adds one event read from `origin`.
    pub fn add(&mut self, origin: &Origin, ev: &Redacted) -> Result<(), IndexError> {
        let timestamp_ms = ev.event().timestamp_ms;
        let day = timestamp_ms.div_euclid(DAY_MS);
        // Most events fall on the day of the one before, whose partition's name is kept:
        // formatting it for each event took a tenth of the pipeline thread's instructions.
        let name = match self.last_day.take() {
            Some((d, name)) if d == day => name,
            _ => partition_of(timestamp_ms),
        };
        let added = self.add_to(&name, origin, ev);
        self.last_day = Some((day, name));
        added
    }

    fn add_to(&mut self, name: &str, origin: &Origin, ev: &Redacted) -> Result<(), IndexError> {
        let until = self.replace_until.get(&*origin.fingerprint).copied().filter(|&until| origin.offset < until);
        // Lines read again after a crash replace what a cut-short commit kept of them: at the
        // first of them in a partition, everything it holds of the rest of them goes at once.
        // A delete only removes documents added before it, so the lines added next stay.
        let replaced = until.is_some_and(|_| self.replaced.insert((name.to_string(), origin.fingerprint.to_string())));
        let catalog = self.catalog.clone();
        let w = self.writer(name)?;
        let doc: TantivyDocument = catalog.fields.document(ev, w.ids_in_columns);
        if let Some(until) = until
            && replaced
        {
            let lines = catalog.fields.lines(&origin.fingerprint, origin.offset, until);
            w.writer.delete_query(lines).map_err(Catalog::tantivy(name))?;
        }
        w.writer.add_document(doc).map_err(Catalog::tantivy(name))?;
        w.dirty = true;
        self.docs_since_commit += 1;
        self.advance(&origin.fingerprint, origin.end_offset);
        Ok(())
    }

    /// Records that a file has been consumed up to `offset`.
    pub fn advance(&mut self, fingerprint: &str, offset: u64) {
        match self.positions.get_mut(fingerprint) {
            Some(p) if *p == offset => {}
            Some(p) => {
                *p = offset;
                self.positions_changed = true;
            }
            None => {
                self.positions.insert(fingerprint.to_string(), offset);
                self.positions_changed = true;
            }
        }
    }

    /// Commits every partition written since the last commit, with the positions reached.
    /// Returns `None` when there was nothing to commit.
    pub fn commit(&mut self) -> Result<Option<CommitStats>, IndexError> {
        self.commit_round(usize::MAX)
    }

    /// Commits at most `limit` partitions of the round: tests pass a smaller limit to leave a
    /// round half committed, as a crash between two partition commits would.
    fn commit_round(&mut self, limit: usize) -> Result<Option<CommitStats>, IndexError> {
        let mut round: Vec<String> = self.writers.iter().filter(|(_, w)| w.dirty).map(|(n, _)| n.clone()).collect();
        if round.is_empty() && !self.positions_changed {
            return Ok(None);
        }
        if self.min_free > 0 {
            free_space(&self.catalog.dir, self.min_free).map_err(IndexError::Storage)?;
        }
        if round.is_empty() {
            // Positions moved without events (filtered lines, files opened at their end): carry
            // them in the newest partition.
            let name = self.last_round.iter().max().cloned().unwrap_or_else(|| partition_of(now_ms()));
            self.writer(&name)?;
            round.push(name);
        }
        round.sort();
        self.generation += 1;
        let payload = Payload {
            generation: self.generation,
            round: round.clone(),
            positions: self.positions.clone(),
            previous: self.previous.clone(),
        };
        let text = serde_json::to_string(&payload).expect("payload serialises");
        for name in round.iter().take(limit) {
            let w = self.writers.get_mut(name).expect("round partitions have writers");
            let mut prepared = w.writer.prepare_commit().map_err(Catalog::tantivy(name))?;
            prepared.set_payload(&text);
            prepared.commit().map_err(Catalog::tantivy(name))?;
            w.dirty = false;
        }
        if limit < round.len() {
            return Ok(None);
        }
        for name in &round {
            self.catalog.refresh(name)?;
        }
        self.previous = self.positions.clone();
        self.positions_changed = false;
        let positions = &self.positions;
        self.replace_until.retain(|fp, until| positions.get(fp).is_none_or(|p| p < until));
        let replacing = &self.replace_until;
        self.replaced.retain(|(_, fp)| replacing.contains_key(fp));
        self.last_round = round;
        let stats =
            CommitStats { docs: std::mem::take(&mut self.docs_since_commit), partitions: self.last_round.len() };
        self.writers.retain(|_, w| w.last_used.elapsed() < WRITER_IDLE);
        Ok(Some(stats))
    }

    /// The lines this store will read again, replacing what a cut-short commit left: what
    /// anything derived from the index (statistics) must not count before they are replayed.
    pub fn replaying(&self) -> Vec<Replay> {
        self.replace_until
            .iter()
            .map(|(fp, until)| Replay {
                fingerprint: fp.clone(),
                from: self.previous.get(fp).copied().unwrap_or(0),
                until: *until,
            })
            .collect()
    }

    /// Drops the partitions older than the retention (see [`IndexStore::drop_old_partitions`]);
    /// returns the start (ms) of the oldest day still held, below which nothing is retained.
    pub fn apply_retention(&mut self) -> Result<i64, IndexError> {
        self.drop_old_partitions()?;
        let cutoff = (now_ms().div_euclid(DAY_MS) - i64::from(self.retention_days)) * DAY_MS;
        // Partitions of the last round are kept whatever their age, and their days with them.
        let oldest =
            self.last_round.iter().filter_map(|n| crate::parse::timestamp::parse_iso(&format!("{n}T00:00:00Z"))).min();
        Ok(oldest.map_or(cutoff, |o| o.min(cutoff)))
    }

    /// Drops the partitions older than the retention, except those of the last commit, whose
    /// payload holds the positions.
    pub fn drop_old_partitions(&mut self) -> Result<Vec<String>, IndexError> {
        let cutoff = partition_of(now_ms() - i64::from(self.retention_days) * DAY_MS);
        let mut dropped = Vec::new();
        for name in self.catalog.partition_names()? {
            if name < cutoff && !self.last_round.contains(&name) {
                self.writers.remove(&name);
                self.catalog.remove(&name);
                let path = self.catalog.dir.join(&name);
                std::fs::remove_dir_all(&path).map_err(|source| IndexError::Io { path, source })?;
                tracing::info!(partition = %name, "dropped partition past retention");
                dropped.push(name);
            }
        }
        Ok(dropped)
    }

    /// Waits for merges and releases the writers (graceful shutdown).
    pub fn close(mut self) -> Result<(), IndexError> {
        self.commit()?;
        for (name, w) in self.writers.drain() {
            w.writer.wait_merging_threads().map_err(Catalog::tantivy(&name))?;
        }
        Ok(())
    }
}

/// Opens a partition, or creates it with the current schema and a zstd-compressed document
/// store. A partition written by an earlier version keeps the options it was made with: field
/// names, order and types are the same, so the same documents fit it.
fn open_or_create(dir: tantivy::directory::MmapDirectory, schema: &tantivy::schema::Schema) -> tantivy::Result<Index> {
    if Index::exists(&dir)? {
        return Index::open(dir);
    }
    Index::builder().schema(schema.clone()).settings(settings()).open_or_create(dir)
}

/// A writer of `index` with up to `memory_budget` bytes, indexing on two threads at most.
pub fn writer(index: &Index, memory_budget: usize) -> tantivy::Result<IndexWriter> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    // tantivy needs at least 15 MB per indexing thread.
    index.writer_with_num_threads(threads, memory_budget.max(threads * 16_000_000))
}

/// The settings a new partition is made with: its document store's compression and blocks.
pub fn settings() -> tantivy::IndexSettings {
    tantivy::IndexSettings {
        docstore_compression: tantivy::store::Compressor::Zstd(tantivy::store::ZstdCompressor {
            compression_level: Some(DOCSTORE_ZSTD_LEVEL),
        }),
        docstore_blocksize: DOCSTORE_BLOCK,
        ..tantivy::IndexSettings::default()
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::search::SearchRequest;
    use super::*;
    use crate::event::Event;
    use crate::redact::{Redactor, Replacement};
    use crate::stats::{Filter, GroupBy, MinuteRange, Recorder, Stats};

    const DAY: i64 = 86_400_000;

    fn event(ts: i64, offset: u64) -> (Origin, Redacted) {
        let origin = Origin { fingerprint: "f".into(), offset, end_offset: offset + 10, path: "p".into() };
        let ev = Event {
            id: origin.event_id(),
            timestamp_ms: ts,
            raw: format!("line {offset}"),
            status: Some(200),
            duration_ms: Some(offset as f64),
            bytes_sent: Some(offset),
            ..Event::default()
        };
        (origin, Redactor::new(&[], Replacement::Fixed).redact(ev))
    }

    fn ids(catalog: &Catalog) -> Vec<String> {
        ids_between(catalog, None, None)
    }

    /// The ids of the events from `from_ms` (included) to `to_ms` (excluded), sorted.
    fn ids_between(catalog: &Catalog, from_ms: Option<i64>, to_ms: Option<i64>) -> Vec<String> {
        let mut ids = Vec::new();
        let req = SearchRequest { query: String::new(), from_ms, to_ms, limit: 1, ..Default::default() };
        catalog
            .export(&req, |hit| {
                ids.push(hit["id"].as_str().unwrap_or_default().to_string());
                true
            })
            .expect("export");
        ids.sort();
        ids
    }

    #[test]
    fn a_partition_from_an_earlier_schema_still_takes_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = 1_764_000_000_000;
        // As earlier versions made them: field norms everywhere, offsets indexed, lz4 blocks.
        let mut b = tantivy::schema::Schema::builder();
        for entry in schema::build().0.fields().map(|(_, e)| e) {
            use tantivy::schema::{FAST, INDEXED, STORED, STRING, TEXT};
            match entry.field_type().value_type() {
                tantivy::schema::Type::Str if entry.name() == "_source" => b.add_text_field(entry.name(), STORED),
                // Without the column that ids are rebuilt from: they stay in `_source`.
                tantivy::schema::Type::Str if entry.name() == "fingerprint" => b.add_text_field(entry.name(), STRING),
                tantivy::schema::Type::Str if entry.is_fast() => b.add_text_field(entry.name(), STRING | FAST),
                tantivy::schema::Type::Str if schema::TEXT_FIELDS.contains(&entry.name()) => {
                    b.add_text_field(entry.name(), TEXT)
                }
                tantivy::schema::Type::Str => b.add_text_field(entry.name(), STRING),
                tantivy::schema::Type::I64 => b.add_i64_field(entry.name(), INDEXED | FAST),
                tantivy::schema::Type::U64 => b.add_u64_field(entry.name(), INDEXED | FAST),
                tantivy::schema::Type::F64 => b.add_f64_field(entry.name(), INDEXED | FAST),
                tantivy::schema::Type::Bool => b.add_bool_field(entry.name(), INDEXED),
                tantivy::schema::Type::IpAddr => b.add_ip_addr_field(entry.name(), INDEXED | FAST),
                other => panic!("no earlier form for {other:?}"),
            };
        }
        let old = b.build();
        assert_ne!(old, schema::build().0, "the earlier schema differs");
        let path = dir.path().join(partition_of(t));
        std::fs::create_dir_all(&path).expect("mkdir");
        Index::create_in_dir(&path, old.clone()).expect("create earlier partition");

        let (mut store, _) = IndexStore::open(Catalog::open(dir.path()).expect("catalog"), 0, 3650).expect("open");
        let (o, e) = event(t, 0);
        // With a user agent in the earlier partition, which kept its words' positions.
        let e = Redactor::new(&[], Replacement::Fixed).redact(Event {
            user_agent: Some("curl/8.5".into()),
            raw: "line 0 curl/8.5".into(),
            ..e.event().clone()
        });
        store.add(&o, &e).expect("add");
        let (o, e) = event(t + DAY, 10);
        store.add(&o, &e).expect("add");
        store.close().expect("close");

        let catalog = Catalog::open(dir.path()).expect("catalog");
        assert_eq!(ids(&catalog), ["f:0", "f:10"]);
        let earlier = Index::open_in_dir(&path).expect("earlier partition");
        assert_eq!(earlier.schema(), old, "an earlier partition keeps its options");
        assert!(matches!(earlier.settings().docstore_compression, tantivy::store::Compressor::Lz4));
        let new = Index::open_in_dir(dir.path().join(partition_of(t + DAY))).expect("new partition");
        assert!(matches!(new.settings().docstore_compression, tantivy::store::Compressor::Zstd(_)));
        let hits = catalog.search(&SearchRequest { query: "\"line 10\"".into(), limit: 5, ..Default::default() });
        assert_eq!(hits.expect("phrase on raw").total, 1);
        // Numbers it indexed are found by value as in partitions where they are only columns.
        let count = |q: &str| catalog.search(&SearchRequest { query: q.into(), limit: 5, ..Default::default() });
        assert_eq!(count("duration_ms:0 OR bytes_sent:10").expect("by value").total, 2);
        // A phrase on a field that keeps no positions now is answered as it is where it does.
        assert_eq!(count("user_agent:\"curl 8\"").expect("phrase on user_agent").total, 1);
        assert_eq!(count("user_agent:\"8 curl\"").expect("phrase on user_agent").total, 0);
    }

    #[test]
    fn a_round_cut_short_is_replayed_without_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = 1_764_000_000_000;
        {
            let (mut store, resume) =
                IndexStore::open(Catalog::open(dir.path()).expect("catalog"), 0, 3650).expect("open");
            assert!(resume.is_empty());
            let (o, e) = event(t, 0);
            store.add(&o, &e).expect("add");
            store.commit().expect("commit");
            // A round over two days, and a crash after the first day committed.
            for (i, ts) in [t + DAY, t, t + DAY].into_iter().enumerate() {
                let (o, e) = event(ts, 10 * (i as u64 + 1));
                store.add(&o, &e).expect("add");
            }
            store.commit_round(1).expect("half a round");
        }
        let catalog = Catalog::open(dir.path()).expect("catalog");
        let (mut store, resume) = IndexStore::open(catalog.clone(), 0, 3650).expect("reopen");
        assert_eq!(resume["f"], 10, "resume after the last complete round");
        // Statistics rebuilt now must leave out what the replay will add again: the day that
        // committed holds two of the round's events.
        let stats = Arc::new(Stats::default());
        let mut recorder = Recorder::new(stats.clone());
        let replaying = store.replaying();
        assert_eq!(replaying, [Replay { fingerprint: "f".into(), from: 10, until: 40 }]);
        assert_eq!(crate::stats::rebuild(&catalog, &replaying, &mut recorder).expect("rebuild"), 1);
        for (i, ts) in [t + DAY, t, t + DAY].into_iter().enumerate() {
            let (o, e) = event(ts, 10 * (i as u64 + 1));
            store.add(&o, &e).expect("replay");
            recorder.record(e.event());
        }
        store.close().expect("close");
        recorder.flush();
        let all = MinuteRange::covering(t - DAY, t + 2 * DAY);
        assert_eq!(stats.report(all, &Filter::default(), GroupBy::None).total.count, 4);
        let catalog = Catalog::open(dir.path()).expect("catalog");
        assert_eq!(ids(&catalog), ["f:0", "f:10", "f:20", "f:30"]);
        let (_, resume) = IndexStore::open(catalog, 0, 3650).expect("reopen");
        assert_eq!(resume["f"], 40);
    }

    #[test]
    fn numbers_kept_only_as_columns_are_found_by_value_and_by_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = 1_764_000_000_000;
        let catalog = Catalog::open(dir.path()).expect("catalog");
        let (mut store, _) = IndexStore::open(catalog.clone(), 0, 3650).expect("open");
        for offset in [0, 10, 20] {
            let (o, e) = event(t + offset as i64, offset);
            store.add(&o, &e).expect("add");
        }
        store.commit().expect("commit");
        let partition = Index::open_in_dir(dir.path().join(partition_of(t))).expect("partition");
        for name in schema::COLUMN_ONLY {
            let entry = partition.schema().get_field_entry(partition.schema().get_field(name).expect("field")).clone();
            assert!(entry.is_fast() && !entry.is_indexed(), "{name} is a column only");
        }
        let total = |q: &str| {
            catalog.search(&SearchRequest { query: q.into(), limit: 5, ..Default::default() }).map(|r| r.total)
        };
        assert_eq!(total("duration_ms:10").expect("a duration"), 1);
        assert_eq!(total("bytes_sent:20 OR duration_ms:0").expect("either"), 2);
        assert_eq!(total("duration_ms:[5 TO 20]").expect("a range"), 2);
        assert_eq!(total("status:200 -bytes_sent:10").expect("excluded"), 2);
        // A negation alone in its group means everything else.
        assert_eq!(total("status:200 AND NOT bytes_sent:10").expect("and not"), 2);
        assert_eq!(total("NOT bytes_sent:10").expect("not alone"), 2);
        assert_eq!(total("-bytes_sent:10 -duration_ms:20").expect("exclusions alone"), 1);
        match total("duration_ms:slow") {
            Err(search::SearchError::Query(m)) => assert!(m.starts_with("expected a number"), "{m}"),
            other => panic!("not a number is the client's error: {other:?}"),
        }
        assert_eq!(total("status:200 AND (NOT duration_ms:0 AND NOT duration_ms:20)").expect("nested"), 1);
        assert_eq!(total("duration_ms:0 OR NOT status:200").expect("or not"), 1);
        assert_eq!(total(&format!("timestamp:{}", t + 20)).expect("a time"), 1);
        match total("bytes_sent: IN [10 20]") {
            Err(search::SearchError::Query(m)) => assert!(m.contains("a value or a range"), "{m}"),
            other => panic!("a set over a column is refused, not left to find nothing: {other:?}"),
        }
        store.close().expect("close");
    }

    /// Indexes combined lines as the pipeline does (parsed, then redacted) and commits them.
    fn index_combined(lines: &[&str]) -> (tempfile::TempDir, Arc<Catalog>, IndexStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(dir.path()).expect("catalog");
        let (mut store, _) = IndexStore::open(catalog.clone(), 0, 3650).expect("open");
        let mut parser = crate::parse::FileParser::new(crate::parse::FormatSpec::Fixed(crate::parse::Kind::Combined));
        for (i, line) in lines.iter().enumerate() {
            let mut ev = Event { raw: line.to_string(), ..Event::default() };
            parser.parse(line, &mut ev).expect("a combined line");
            let origin = Origin { fingerprint: "f".into(), offset: i as u64 * 300, end_offset: 0, path: "p".into() };
            ev.id = origin.event_id();
            store.add(&origin, &Redactor::new(&[], Replacement::Fixed).redact(ev)).expect("add");
        }
        store.commit().expect("commit");
        (dir, catalog, store)
    }

    /// Which lines a search found, by the last number of their client (`203.0.113.N`), sorted.
    fn matched(catalog: &Catalog, req: &SearchRequest) -> String {
        let mut ips: Vec<String> = catalog
            .search(req)
            .unwrap_or_else(|e| panic!("{}: {e}", req.query))
            .hits
            .iter()
            .map(|h| h["client_ip"].as_str().unwrap_or_default().trim_start_matches("203.0.113.").to_string())
            .collect();
        ips.sort();
        ips.join(" ")
    }

    /// The words of a line's own timestamp are not indexed (the time is searched as a range),
    /// the rest of the line is, and a line the redactor changed is indexed whole.
    #[test]
    fn a_line_is_searched_without_its_timestamp() {
        let lines = [
            r#"203.0.113.1 - - [24/Nov/2025:16:07:00 +0000] "GET /a HTTP/1.1" 200 5 "-" "curl/8.5.0""#,
            // Relayed by syslog, whose own header stays words.
            r#"Nov 24 16:09:01 web-1 nginx[2869]: 203.0.113.2 - - [24/Nov/2025:16:07:01 +0000] "GET /b HTTP/1.1" 200 5 "-" "curl/8.5.0""#,
            // A secret before the timestamp: the redacted line is indexed whole.
            r#"203.0.113.3 - password=hunter2 [24/Nov/2025:16:07:02 +0000] "GET /c HTTP/1.1" 200 5 "-" "curl/8.5.0""#,
        ];
        let (_dir, catalog, store) = index_combined(&lines);
        let found = |q: &str, from_ms: Option<i64>| {
            matched(&catalog, &SearchRequest { query: q.into(), from_ms, limit: 5, ..Default::default() })
        };
        assert_eq!(found("07", None), "3");
        assert_eq!(found("2025 OR 0000", None), "3");
        assert_eq!(found("nov", None), "2 3");
        assert_eq!(found("09", None), "2");
        assert_eq!(found("hunter2", None), "");
        // The words on either side of the timestamp, and phrases up to it.
        assert_eq!(found(r#""203.0.113.2""#, None), "2");
        assert_eq!(found(r#""GET /b HTTP/1.1""#, None), "2");
        assert_eq!(found("get", None), "1 2 3");
        // No phrase runs across the gap the timestamp left.
        assert_eq!(found(r#""203.0.113.1 GET""#, None), "");
        // The time itself is asked as a range.
        assert_eq!(found("get", Some(1_764_000_421_000)), "2 3");
        store.close().expect("close");
    }

    /// `user_agent`, `referer` and `query` keep no word positions (`user_agent` not even its
    /// words), yet a word or a phrase on them (or a value of several words) finds the events
    /// whose field holds it; on `user_agent`, only those, wherever else the line has it.
    #[test]
    fn words_and_phrases_on_fields_without_positions_are_found() {
        let lines = [
            r#"203.0.113.1 - - [24/Nov/2025:16:00:00 +0000] "GET /a?q=red+shoes HTTP/1.1" 200 5 "https://shop.example/sale" "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) Safari/605.1.15""#,
            // The same words in another order.
            r#"203.0.113.2 - - [24/Nov/2025:16:00:01 +0000] "GET /x HTTP/1.1" 200 5 "-" "Mozilla/5.0 (Mac; Intel) curl/8.5.0""#,
            r#"203.0.113.3 - - [24/Nov/2025:16:00:02 +0000] "GET /b?q=shoes+red HTTP/1.1" 200 5 "https://example.shop/sale" "curl/8.6.0""#,
            // The phrase and the word elsewhere in the line, the words apart in the user agent.
            r#"203.0.113.4 - - [24/Nov/2025:16:00:03 +0000] "GET /intel/mac/safari HTTP/1.1" 200 5 "-" "Mozilla/5.0 (Mac; Intel)""#,
            r#"203.0.113.5 - - [24/Nov/2025:16:00:04 +0000] "GET /curl HTTP/1.1" 200 5 "-" "-""#,
        ];
        let (_dir, catalog, store) = index_combined(&lines);
        let found = |q: &str| matched(&catalog, &SearchRequest { query: q.into(), limit: 5, ..Default::default() });
        assert_eq!(found(r#"user_agent:"Intel Mac""#), "1");
        assert_eq!(found(r#"user_agent:"Mac Intel""#), "2 4");
        // A slop is answered by the words alone.
        assert_eq!(found(r#"user_agent:"Intel Mac"~2"#), "1 2 4");
        assert_eq!(found("user_agent:curl/8.5.0"), "2");
        assert_eq!(found("user_agent:safari"), "1");
        assert_eq!(found("user_agent:curl AND NOT user_agent:mozilla"), "3");
        assert_eq!(found("safari"), "1 4");
        assert_eq!(found("user_agent:safari OR client_ip:203.0.113.2"), "1 2");
        assert_eq!(found("user_agent:*"), "1 2 3 4");
        assert_eq!(found("NOT user_agent:*"), "5");
        assert_eq!(found(r#"referer:"shop example""#), "1");
        assert_eq!(found(r#"referer:"example shop""#), "3");
        assert_eq!(found(r#"query:"red shoes""#), "1");
        assert_eq!(found(r#"raw:"Intel Mac""#), "1 4");
        let refused = |q: &str| match catalog.search(&SearchRequest { query: q.into(), limit: 5, ..Default::default() })
        {
            Err(search::SearchError::Query(m)) => m,
            other => panic!("{q} is refused: {other:?}"),
        };
        assert!(refused(r#"referer:"shop exa"*"#).contains("`referer` keeps no word positions"));
        assert!(refused(r#"user_agent:"Intel Ma"*"#).contains("`user_agent` takes words or a phrase"));
        assert!(refused("user_agent:[a TO c]").contains("`user_agent` takes words or a phrase"));
        store.close().expect("close");
    }

    #[test]
    fn retention_drops_whole_old_days_but_keeps_the_last_round() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(dir.path()).expect("catalog");
        let (mut store, _) = IndexStore::open(catalog.clone(), 0, 7).expect("open");
        let now = now_ms();
        let (o, e) = event(now - 30 * DAY, 0);
        store.add(&o, &e).expect("add");
        store.commit().expect("commit");
        assert!(store.drop_old_partitions().expect("retention").is_empty(), "it holds the newest positions");
        let (o, e) = event(now, 10);
        store.add(&o, &e).expect("add");
        store.commit().expect("commit");
        assert_eq!(store.drop_old_partitions().expect("retention"), [partition_of(now - 30 * DAY)]);
        assert_eq!(catalog.partitions(), [partition_of(now)]);
        assert_eq!(ids(&catalog), ["f:10"]);
        store.close().expect("close");
        let (_, resume) = IndexStore::open(Catalog::open(dir.path()).expect("catalog"), 0, 7).expect("reopen");
        assert_eq!(resume["f"], 20, "positions survive the dropped partition");
    }

    #[test]
    fn each_event_lands_in_the_partition_of_its_day() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(dir.path()).expect("catalog");
        let (mut store, _) = IndexStore::open(catalog.clone(), 0, 3650).expect("open");
        // Days in turn, back and forth, and the last and first millisecond of a day.
        let midnight = 1_764_028_800_000;
        let times = [midnight - 1, midnight, midnight - 1, midnight + DAY, midnight, midnight + DAY - 1];
        for (i, ts) in times.into_iter().enumerate() {
            let (o, e) = event(ts, i as u64 * 10);
            store.add(&o, &e).expect("add");
        }
        store.commit().expect("commit");
        let in_day = |ts: i64| {
            let from = ts.div_euclid(DAY) * DAY;
            ids_between(&catalog, Some(from), Some(from + DAY))
        };
        assert_eq!(
            catalog.partitions(),
            [partition_of(midnight - 1), partition_of(midnight), partition_of(midnight + DAY)]
        );
        assert_eq!(in_day(midnight - 1), ["f:0", "f:20"]);
        assert_eq!(in_day(midnight), ["f:10", "f:40", "f:50"]);
        assert_eq!(in_day(midnight + DAY), ["f:30"]);
        store.close().expect("close");
    }
}
