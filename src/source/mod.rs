//! Sources: where lines come from. Files are found by glob (`discover`), named by content
//! (`fingerprint`), followed through rotation (`tailer`) and cut into records (`framer`);
//! `stdin` is the other source.
//!
//! One scheduler thread owns every tailer and reads them in turn, a bounded amount each, so
//! one busy file cannot starve the others. It hands batches to the pipeline over a bounded
//! channel: when the pipeline falls behind, `send` blocks and reading slows down; nothing is
//! dropped. The source never decides what is durable: each record carries its offsets, and the
//! index commits them together with the events.

pub mod fingerprint;
pub mod framer;
mod tailer;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, channel};
use std::time::{Duration, Instant};

use notify::Watcher;

use crate::config::ReadFrom;
use crate::event::{LineFlag, Origin};
pub use framer::{Framer, Record};
use tailer::{FileId, ReadState, Tailer};

/// How long a file that disappeared from every glob is still read before it is closed.
const ROTATE_WAIT: Duration = Duration::from_secs(3);
/// How long a multi-line record waits for more continuation lines once its file is quiet.
const MULTILINE_QUIET: Duration = Duration::from_millis(300);
/// The most bytes read from one file before the next file gets its turn.
const READ_BUDGET: usize = 256 * 1024;

/// A record with where it came from.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub origin: Origin,
    pub text: String,
    pub flags: Vec<LineFlag>,
    /// Which configured source matched the file, to pick its format.
    pub source_idx: usize,
}

impl SourceRecord {
    /// A record of `text` at `offset` of a file named `path`, for tools and tests that feed the
    /// pipeline's stages without a tailer.
    pub fn of_text(path: &str, offset: u64, text: String, flags: Vec<LineFlag>) -> Self {
        let origin = Origin {
            fingerprint: "text".into(),
            offset,
            end_offset: offset + text.len() as u64 + 1,
            path: path.into(),
        };
        Self { origin, text, flags, source_idx: 0 }
    }
}

/// What the pipeline receives.
#[derive(Debug)]
pub enum Item {
    Record(SourceRecord),
    /// A file position that advanced without a record (a file opened at its end).
    Position {
        fingerprint: String,
        offset: u64,
    },
}

pub type Batch = Vec<Item>;

/// Wraps framed records of one file as pipeline items.
pub fn to_items(records: &mut Vec<Record>, fingerprint: &str, path: &str, source_idx: usize) -> Batch {
    // One copy of each for the whole read, shared by its records.
    let (fingerprint, path): (Arc<str>, Arc<str>) = (fingerprint.into(), path.into());
    records
        .drain(..)
        .map(|r| {
            Item::Record(SourceRecord {
                origin: Origin {
                    fingerprint: fingerprint.clone(),
                    offset: r.offset,
                    end_offset: r.end_offset,
                    path: path.clone(),
                },
                text: r.text,
                flags: r.flags,
                source_idx,
            })
        })
        .collect()
}

/// One group of files, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct FileSettings {
    pub include: Vec<String>,
    pub exclude: Vec<glob::Pattern>,
    pub read_from: ReadFrom,
    pub max_line_bytes: usize,
    pub poll_interval: Duration,
}

/// Follows every file of every configured group.
pub struct FileSource {
    settings: Vec<FileSettings>,
    tailers: HashMap<String, Tailer>,
    /// Where to resume each fingerprint that has no open tailer: checkpoints from the index,
    /// then positions of tailers closed since.
    positions: HashMap<String, u64>,
    /// Compressed files read to their end.
    finished: HashSet<String>,
    /// Fingerprints of files that have not changed since they were last named, so a scan does
    /// not reopen (or decompress) every rotated file each poll. A file truncated and refilled
    /// changes its modification time or length and is named again.
    names: HashMap<FileId, (std::time::SystemTime, u64, String)>,
    first_scan: bool,
    tx: SyncSender<Batch>,
    shutdown: Arc<AtomicBool>,
}

impl FileSource {
    pub fn new(
        settings: Vec<FileSettings>,
        checkpoints: HashMap<String, u64>,
        tx: SyncSender<Batch>,
        shutdown: Arc<AtomicBool>,
    ) -> Self {
        Self {
            settings,
            tailers: HashMap::new(),
            positions: checkpoints,
            finished: HashSet::new(),
            names: HashMap::new(),
            first_scan: true,
            tx,
            shutdown,
        }
    }

    /// Runs until shutdown, or until the pipeline hangs up.
    pub fn run(mut self) {
        let (wake_tx, wake_rx) = channel::<()>();
        let _watcher = self.watch(wake_tx);
        let poll = self.settings.iter().map(|s| s.poll_interval).min().unwrap_or(Duration::from_millis(250));
        let mut last_scan: Option<Instant> = None;
        let mut buf = vec![0u8; 64 * 1024];
        while !self.shutdown.load(Ordering::Relaxed) {
            if last_scan.is_none_or(|t| t.elapsed() >= poll) {
                let positions = self.scan();
                last_scan = Some(Instant::now());
                if !positions.is_empty() && self.tx.send(positions).is_err() {
                    return;
                }
            }
            let (batch, busy) = self.read_round(&mut buf);
            if !batch.is_empty() && self.tx.send(batch).is_err() {
                return;
            }
            if !busy {
                wait(&wake_rx, poll);
            }
        }
    }

    /// Watches the directories of the globs so new data is noticed before the next poll.
    fn watch(&self, wake: std::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        let mut watcher = notify::recommended_watcher(move |_res| {
            let _ = wake.send(());
        })
        .map_err(|e| tracing::warn!(error = %e, "file notifications unavailable, polling only"))
        .ok()?;
        for dir in self.settings.iter().flat_map(|s| s.include.iter()).filter_map(|g| glob_base(g)) {
            if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory, polling it");
            }
        }
        Some(watcher)
    }

    /// Matches the globs, opens new files and follows renamed ones. Returns position items
    /// for files opened at their end.
    fn scan(&mut self) -> Batch {
        let mut positions = Vec::new();
        let mut seen: HashSet<FileId> = HashSet::new();
        let mut seen_fps: HashSet<String> = HashSet::new();
        for idx in 0..self.settings.len() {
            for path in self.matches(idx) {
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                let id = FileId::of(&meta);
                if !meta.is_file() || !seen.insert(id) {
                    continue;
                }
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                let cached = self
                    .names
                    .get(&id)
                    .filter(|(m, len, _)| *m == modified && *len == meta.len())
                    .map(|(_, _, fp)| fp.clone());
                let fp = match cached {
                    Some(fp) => fp,
                    None => match fingerprint::fingerprint(&path) {
                        Ok(Some(fp)) => {
                            self.names.insert(id, (modified, meta.len(), fp.clone()));
                            fp
                        }
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot fingerprint file");
                            continue;
                        }
                    },
                };
                if let Some(t) = self.tailers.values_mut().find(|t| t.id == id && !t.truncated) {
                    if t.fingerprint == fp {
                        t.path = path;
                        t.unseen_since = None;
                        seen_fps.insert(fp);
                        continue;
                    }
                    // Truncated and refilled past the old offset before a read could notice.
                    tracing::info!(path = %path.display(), "file content was replaced");
                    t.truncated = true;
                }
                if self.finished.contains(&fp) {
                    continue;
                }
                seen_fps.insert(fp.clone());
                let max_line = self.settings[idx].max_line_bytes;
                if let Some(t) = self.tailers.get(&fp) {
                    // Same content under another inode: the copy that copytruncate made. If the
                    // original was truncated, the rest of its lines are in the copy.
                    if t.truncated {
                        let resume = t.resume_offset();
                        tracing::info!(path = %path.display(), fingerprint = %fp, offset = resume, "continuing a truncated file in its copy");
                        self.open(path, fp, resume, max_line, idx);
                    }
                    continue;
                }
                let offset = match self.positions.get(&fp) {
                    Some(&o) if fingerprint::is_gzip(&path) || o <= meta.len() => o,
                    Some(_) => 0,
                    None if self.first_scan
                        && self.settings[idx].read_from == ReadFrom::End
                        && !fingerprint::is_gzip(&path) =>
                    {
                        positions.push(Item::Position { fingerprint: fp.clone(), offset: meta.len() });
                        meta.len()
                    }
                    None => 0,
                };
                tracing::info!(path = %path.display(), fingerprint = %fp, offset, "following file");
                self.open(path, fp, offset, max_line, idx);
            }
        }
        self.names.retain(|id, _| seen.contains(id));
        for t in self.tailers.values_mut() {
            if !seen.contains(&t.id) && !seen_fps.contains(&t.fingerprint) && t.unseen_since.is_none() {
                t.unseen_since = Some(Instant::now());
            }
        }
        self.first_scan = false;
        positions
    }

    fn open(&mut self, path: PathBuf, fp: String, offset: u64, max_line: usize, idx: usize) {
        match Tailer::open(path.clone(), fp.clone(), offset, max_line, idx) {
            Ok(t) => {
                self.tailers.insert(fp, t);
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot open file"),
        }
    }

    fn matches(&self, idx: usize) -> Vec<PathBuf> {
        let s = &self.settings[idx];
        let mut out = Vec::new();
        for pattern in &s.include {
            let Ok(paths) = glob::glob(pattern) else { continue };
            for path in paths.flatten() {
                if !s.exclude.iter().any(|x| x.matches_path(&path)) {
                    out.push(path);
                }
            }
        }
        // Older rotated files first, so a backlog is read in the order it was written.
        out.sort_by(|a, b| b.cmp(a));
        out
    }

    /// Reads every tailer once. Returns the records and whether any file has more to read.
    fn read_round(&mut self, buf: &mut [u8]) -> (Batch, bool) {
        let mut batch = Vec::new();
        let mut busy = false;
        let mut done = Vec::new();
        let mut records = Vec::new();
        let mut fps: Vec<String> = self.tailers.keys().cloned().collect();
        fps.sort();
        for fp in fps {
            let Some(t) = self.tailers.get_mut(&fp) else { continue };
            if t.truncated {
                if t.unseen_since.get_or_insert_with(Instant::now).elapsed() >= ROTATE_WAIT {
                    done.push((fp, false));
                }
                continue;
            }
            match t.read(READ_BUDGET, buf, &mut records) {
                Ok(ReadState::More) => busy = true,
                Ok(ReadState::Idle) => {
                    t.flush_if_quiet(MULTILINE_QUIET, &mut records);
                    if t.unseen_since.is_some_and(|u| u.elapsed() >= ROTATE_WAIT)
                        && t.last_activity.elapsed() >= ROTATE_WAIT
                    {
                        t.finish(&mut records);
                        done.push((fp.clone(), false));
                    }
                }
                Ok(ReadState::Truncated) => {
                    tracing::info!(path = %t.path.display(), fingerprint = %fp, "file was truncated");
                    t.truncated = true;
                    t.unseen_since = None;
                }
                Ok(ReadState::Finished) => {
                    t.finish(&mut records);
                    done.push((fp.clone(), true));
                }
                Err(e) => {
                    tracing::warn!(path = %t.path.display(), error = %e, "read failed, closing file");
                    done.push((fp.clone(), false));
                }
            }
            batch.extend(to_items(&mut records, &fp, &t.path.display().to_string(), t.source_idx));
        }
        for (fp, finished) in done {
            if let Some(t) = self.tailers.remove(&fp) {
                tracing::info!(path = %t.path.display(), fingerprint = %fp, "closed file");
                self.positions.insert(fp.clone(), t.resume_offset());
            }
            if finished {
                self.finished.insert(fp);
            }
        }
        (batch, busy)
    }
}

fn wait(rx: &Receiver<()>, timeout: Duration) {
    if rx.recv_timeout(timeout).is_ok() {
        // Coalesce a burst of notifications into one wake-up.
        while rx.try_recv().is_ok() {}
    }
}

/// The directory part of a glob, before its first wildcard.
fn glob_base(pattern: &str) -> Option<PathBuf> {
    let cut = pattern.find(['*', '?', '[', '{']).unwrap_or(pattern.len());
    let head = &pattern[..cut];
    let dir = if cut == pattern.len() {
        Path::new(head).parent()?
    } else {
        Path::new(head.rsplit_once('/').map_or(".", |(d, _)| if d.is_empty() { "/" } else { d }))
    };
    dir.is_dir().then(|| dir.to_path_buf())
}

/// Reads standard input until it closes, as one source named `stdin-<start time>`. A reader
/// thread blocks on stdin; this loop frames what it reads and, when input goes quiet, emits a
/// held multi-line record instead of waiting for the next line.
pub fn read_stdin(tx: SyncSender<Batch>, max_line: usize, shutdown: Arc<AtomicBool>) {
    let fp = format!(
        "stdin-{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
    );
    let (chunks_tx, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if chunks_tx.send(buf).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "stdin read failed");
                    return;
                }
            }
        }
    });
    let mut framer = Framer::new(0, max_line);
    let mut records = Vec::new();
    while !shutdown.load(Ordering::Relaxed) {
        let closed = match chunks.recv_timeout(MULTILINE_QUIET) {
            Ok(chunk) => {
                framer.push(&chunk, &mut records);
                false
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                framer.flush_pending(&mut records);
                false
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                framer.finish(&mut records);
                true
            }
        };
        let batch = to_items(&mut records, &fp, "stdin", 0);
        if (!batch.is_empty() && tx.send(batch).is_err()) || closed {
            return;
        }
    }
}
