//! Follows one file, identified by its fingerprint, through renames and truncation.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Instant;

use super::fingerprint::{is_gzip, open_content};
use super::framer::{Framer, Record};

/// The identity of an open file on its device, to recognise it under a new name cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self { dev: meta.dev(), ino: meta.ino() }
    }
}

/// What a read found.
#[derive(Debug, PartialEq)]
pub enum ReadState {
    /// Data was read and there may be more.
    More,
    /// At the end of the file for now.
    Idle,
    /// The file is shorter than what was read: it was truncated (copytruncate).
    Truncated,
    /// A compressed file was read to its end; it will not grow.
    Finished,
}

/// Plain files are read through their handle, so a renamed or deleted file is still read to
/// its end and its length is asked of the handle, not of whatever the path names now.
enum Input {
    Plain(File),
    Gzip(Box<dyn Read + Send>),
}

pub struct Tailer {
    pub fingerprint: String,
    pub path: PathBuf,
    pub id: FileId,
    input: Input,
    /// Offset of the next byte to read (decompressed for gzip).
    pub offset: u64,
    framer: Framer,
    pub last_activity: Instant,
    /// Set when the file no longer appears under any matched path.
    pub unseen_since: Option<Instant>,
    pub source_idx: usize,
    /// Set once a read found the file shorter than the offset.
    pub truncated: bool,
}

impl Tailer {
    /// Opens `path` and positions it at `offset`.
    pub fn open(
        path: PathBuf,
        fingerprint: String,
        offset: u64,
        max_line: usize,
        source_idx: usize,
    ) -> io::Result<Self> {
        let meta = std::fs::metadata(&path)?;
        let id = FileId::of(&meta);
        let input = if is_gzip(&path) {
            let mut reader = open_content(&path)?;
            io::copy(&mut (&mut reader).take(offset), &mut io::sink())?;
            Input::Gzip(reader)
        } else {
            let mut file = File::open(&path)?;
            file.seek(SeekFrom::Start(offset))?;
            Input::Plain(file)
        };
        Ok(Self {
            fingerprint,
            path,
            id,
            input,
            offset,
            framer: Framer::new(offset, max_line),
            last_activity: Instant::now(),
            unseen_since: None,
            source_idx,
            truncated: false,
        })
    }

    /// Reads at most `budget` bytes, appending complete records to `out`.
    pub fn read(&mut self, budget: usize, buf: &mut [u8], out: &mut Vec<Record>) -> io::Result<ReadState> {
        if let Input::Plain(file) = &self.input
            && file.metadata()?.len() < self.offset
        {
            return Ok(ReadState::Truncated);
        }
        let mut read = 0;
        while read < budget {
            let want = buf.len().min(budget - read);
            let result = match &mut self.input {
                Input::Plain(f) => f.read(&mut buf[..want]),
                Input::Gzip(r) => r.read(&mut buf[..want]),
            };
            let n = match result {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                break;
            }
            self.framer.push(&buf[..n], out);
            self.offset += n as u64;
            read += n;
        }
        if read > 0 {
            self.last_activity = Instant::now();
        }
        Ok(match (read, &self.input) {
            (0, Input::Gzip(_)) => ReadState::Finished,
            (0, Input::Plain(_)) => ReadState::Idle,
            (n, _) if n >= budget => ReadState::More,
            _ => ReadState::Idle,
        })
    }

    /// Emits a held multi-line record once the file has been quiet for `quiet`.
    pub fn flush_if_quiet(&mut self, quiet: std::time::Duration, out: &mut Vec<Record>) {
        if self.framer.has_pending() && self.last_activity.elapsed() >= quiet {
            self.framer.flush_pending(out);
        }
    }

    /// Where a reopened reader must start so that nothing buffered is lost.
    pub fn resume_offset(&self) -> u64 {
        self.framer.resume_offset()
    }

    /// Emits everything left, a last line without newline included.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        self.framer.finish(out);
    }
}
