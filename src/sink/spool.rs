//! The on-disk spool between the index and a sink: redacted events as JSON lines in numbered
//! segment files, appended by the index thread and consumed by the sink thread, which records
//! in `ack` how far the sink has acknowledged.
//!
//! The index thread syncs the spool before each index commit, so an event whose file position
//! is committed is always in the spool; an event spooled but not committed is spooled again
//! after a crash, which the sink's stable ids make harmless. When the unacknowledged bytes
//! exceed the limit, appending waits: reading the logs slows down, nothing is dropped.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A segment is closed and a new one started beyond this size.
const SEGMENT_BYTES: u64 = 64 << 20;

/// Health of a sink, shared with the API.
#[derive(Debug, Default)]
pub struct SinkHealth {
    pub name: String,
    /// Bytes spooled and not yet acknowledged.
    pub pending_bytes: AtomicU64,
    /// Timestamp (ms) of the oldest event not yet acknowledged, 0 when none.
    pub oldest_pending_ms: AtomicI64,
    pub last_success_ms: AtomicI64,
    pub delivered_total: AtomicU64,
    pub errors_total: AtomicU64,
    /// The index thread is waiting for the spool to drain.
    pub blocked: AtomicBool,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:012}.ndjson"))
}

fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".ndjson")?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Where the sink has acknowledged up to: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

fn read_ack(dir: &Path) -> Position {
    std::fs::read_to_string(dir.join("ack"))
        .ok()
        .and_then(|s| {
            let (a, b) = s.trim().split_once(' ')?;
            Some(Position { segment: a.parse().ok()?, offset: b.parse().ok()? })
        })
        .unwrap_or_default()
}

fn write_ack(dir: &Path, p: Position) -> std::io::Result<()> {
    let tmp = dir.join("ack.tmp");
    let mut f = File::create(&tmp)?;
    writeln!(f, "{} {}", p.segment, p.offset)?;
    f.sync_all()?;
    std::fs::rename(tmp, dir.join("ack"))
}

/// Bytes from `ack` to the end of the spool.
fn pending(dir: &Path, ack: Position) -> std::io::Result<u64> {
    let mut total = 0;
    for n in segments(dir)? {
        let len = std::fs::metadata(segment_path(dir, n))?.len();
        if n > ack.segment {
            total += len;
        } else if n == ack.segment {
            total += len.saturating_sub(ack.offset);
        }
    }
    Ok(total)
}

/// The writing end, owned by the index thread.
pub struct SpoolWriter {
    dir: PathBuf,
    segment_bytes: u64,
    segment: u64,
    bytes: u64,
    out: BufWriter<File>,
    max_pending: u64,
    health: Arc<SinkHealth>,
}

impl SpoolWriter {
    /// Opens the spool under `dir`, cutting a line torn by a crash off the last segment.
    pub fn open(dir: &Path, max_pending: u64, health: Arc<SinkHealth>) -> std::io::Result<SpoolWriter> {
        std::fs::create_dir_all(dir)?;
        let segment = segments(dir)?.last().copied().unwrap_or(1).max(read_ack(dir).segment);
        let path = segment_path(dir, segment);
        let mut f = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let mut data = Vec::new();
        f.read_to_end(&mut data)?;
        let whole = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) as u64;
        if whole < data.len() as u64 {
            f.set_len(whole)?;
        }
        f.seek(SeekFrom::End(0))?;
        health.pending_bytes.store(pending(dir, read_ack(dir))?, Ordering::Relaxed);
        Ok(SpoolWriter {
            dir: dir.to_path_buf(),
            segment_bytes: SEGMENT_BYTES,
            segment,
            bytes: whole,
            out: BufWriter::new(f),
            max_pending,
            health,
        })
    }

    /// Appends one event (a JSON line), waiting while the spool is over its limit.
    pub fn append(&mut self, json: &str, stop: &AtomicBool) -> std::io::Result<()> {
        if self.health.pending_bytes.load(Ordering::Relaxed) >= self.max_pending {
            self.out.flush()?;
            self.health.blocked.store(true, Ordering::Relaxed);
            tracing::warn!(sink = %self.health.name, "spool full: reading pauses until the sink catches up");
            while self.health.pending_bytes.load(Ordering::Relaxed) >= self.max_pending && !stop.load(Ordering::Relaxed)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            self.health.blocked.store(false, Ordering::Relaxed);
        }
        if self.bytes >= self.segment_bytes {
            self.sync()?;
            self.segment += 1;
            self.out = BufWriter::new(
                OpenOptions::new().create(true).append(true).open(segment_path(&self.dir, self.segment))?,
            );
            self.bytes = 0;
        }
        self.out.write_all(json.as_bytes())?;
        self.out.write_all(b"\n")?;
        let n = json.len() as u64 + 1;
        self.bytes += n;
        self.health.pending_bytes.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Makes every appended event durable: call before the index commit that covers them.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

/// The reading end, owned by the sink thread.
pub struct SpoolReader {
    dir: PathBuf,
    ack: Position,
    health: Arc<SinkHealth>,
}

impl SpoolReader {
    pub fn open(dir: &Path, health: Arc<SinkHealth>) -> std::io::Result<SpoolReader> {
        std::fs::create_dir_all(dir)?;
        Ok(SpoolReader { dir: dir.to_path_buf(), ack: read_ack(dir), health })
    }

    /// Up to `max` complete lines after the acknowledged position, and where they end.
    pub fn peek(&self, max: usize) -> std::io::Result<(Vec<String>, Position)> {
        let mut lines = Vec::new();
        let mut end = self.ack;
        for n in segments(&self.dir)?.into_iter().filter(|n| *n >= self.ack.segment) {
            let mut f = BufReader::new(File::open(segment_path(&self.dir, n))?);
            let start = if n == self.ack.segment { self.ack.offset } else { 0 };
            f.seek(SeekFrom::Start(start))?;
            let mut offset = start;
            let mut line = String::new();
            while lines.len() < max {
                line.clear();
                let read = f.read_line(&mut line)?;
                if read == 0 {
                    // The end of this segment: go on with the next one, if any.
                    break;
                }
                if !line.ends_with('\n') {
                    // A line still being written.
                    return Ok((lines, end));
                }
                offset += read as u64;
                end = Position { segment: n, offset };
                lines.push(line.trim_end().to_string());
            }
            if lines.len() >= max {
                break;
            }
        }
        Ok((lines, end))
    }

    /// Records that everything up to `to` was acknowledged, and drops finished segments.
    pub fn ack(&mut self, to: Position, bytes: u64) -> std::io::Result<()> {
        write_ack(&self.dir, to)?;
        self.ack = to;
        self.health
            .pending_bytes
            .fetch_sub(bytes.min(self.health.pending_bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
        for n in segments(&self.dir)?.into_iter().filter(|n| *n < to.segment) {
            std::fs::remove_file(segment_path(&self.dir, n))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader at the end of one segment goes on with the next, and finished segments go.
    #[test]
    fn reading_crosses_segments() {
        let dir = tempfile::tempdir().unwrap();
        let health = Arc::new(SinkHealth::default());
        let stop = AtomicBool::new(false);
        let mut w = SpoolWriter::open(dir.path(), 1 << 30, health.clone()).unwrap();
        w.segment_bytes = 20;
        for i in 0..10 {
            w.append(&format!("{{\"n\":{i}}}"), &stop).unwrap();
        }
        w.sync().unwrap();
        assert!(segments(dir.path()).unwrap().len() >= 3);
        let mut r = SpoolReader::open(dir.path(), health).unwrap();
        let mut seen = Vec::new();
        for _ in 0..20 {
            let (lines, end) = r.peek(2).unwrap();
            if lines.is_empty() {
                break;
            }
            let bytes = lines.iter().map(|l| l.len() as u64 + 1).sum();
            seen.extend(lines);
            r.ack(end, bytes).unwrap();
        }
        assert_eq!(seen.len(), 10, "{seen:?}");
        assert_eq!(seen[9], "{\"n\":9}");
        assert!(segments(dir.path()).unwrap().len() <= 1, "acknowledged segments are removed");
    }

    #[test]
    fn lines_flow_through_segments_and_a_torn_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let health = Arc::new(SinkHealth::default());
        let stop = AtomicBool::new(false);
        {
            let mut w = SpoolWriter::open(dir.path(), 1 << 30, health.clone()).unwrap();
            for i in 0..5 {
                w.append(&format!("{{\"n\":{i}}}"), &stop).unwrap();
            }
            w.sync().unwrap();
        }
        // A crash in the middle of a line.
        let seg = segment_path(dir.path(), 1);
        OpenOptions::new().append(true).open(&seg).unwrap().write_all(b"{\"n\":").unwrap();
        let mut r = SpoolReader::open(dir.path(), health.clone()).unwrap();
        let (lines, end) = r.peek(3).unwrap();
        assert_eq!(lines, ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);
        r.ack(end, 24).unwrap();
        let mut w = SpoolWriter::open(dir.path(), 1 << 30, health.clone()).unwrap();
        assert_eq!(health.pending_bytes.load(Ordering::Relaxed), 16, "two lines left, the torn one cut");
        w.append("{\"n\":5}", &stop).unwrap();
        w.sync().unwrap();
        let r = SpoolReader::open(dir.path(), health).unwrap();
        assert_eq!(r.peek(10).unwrap().0, ["{\"n\":3}", "{\"n\":4}", "{\"n\":5}"]);
    }
}
