//! Cuts the bytes of a file into records: lines, or a header line with its indented
//! continuation lines (the Express text format). It never loses a byte and never splits a
//! record across a checkpoint: a record is emitted only once its newline has been read, and
//! its `end_offset` is where the next record begins.

use crate::event::LineFlag;

/// One record read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub offset: u64,
    pub end_offset: u64,
    pub text: String,
    pub flags: Vec<LineFlag>,
}

/// Splits a byte stream into [`Record`]s.
#[derive(Debug)]
pub struct Framer {
    /// Bytes of the current incomplete line.
    buf: Vec<u8>,
    /// File offset of the next byte `push` will see.
    next_offset: u64,
    /// File offset of `buf[0]`.
    line_start: u64,
    max_line: usize,
    /// Bytes dropped from the current line because it exceeded `max_line`.
    dropped: u64,
    /// A multi-line header waiting for its continuation lines.
    pending: Option<Record>,
}

impl Framer {
    pub fn new(offset: u64, max_line: usize) -> Self {
        Self { buf: Vec::new(), next_offset: offset, line_start: offset, max_line, dropped: 0, pending: None }
    }

    /// Feeds bytes read from the file; complete records are appended to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Record>) {
        while !data.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    self.take(&data[..i]);
                    self.next_offset += i as u64 + 1;
                    data = &data[i + 1..];
                    let line = std::mem::take(&mut self.buf);
                    let flags = if self.dropped > 0 { vec![LineFlag::Truncated] } else { Vec::new() };
                    self.dropped = 0;
                    let start = self.line_start;
                    self.line_start = self.next_offset;
                    self.line(start, line, flags, out);
                }
                None => {
                    self.take(data);
                    self.next_offset += data.len() as u64;
                    data = &[];
                }
            }
        }
    }

    /// Keeps at most `max_line` bytes of a line; the rest is counted, not stored.
    fn take(&mut self, part: &[u8]) {
        let room = self.max_line.saturating_sub(self.buf.len());
        let keep = part.len().min(room);
        self.buf.extend_from_slice(&part[..keep]);
        self.dropped += (part.len() - keep) as u64;
    }

    fn line(&mut self, start: u64, mut bytes: Vec<u8>, mut flags: Vec<LineFlag>, out: &mut Vec<Record>) {
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        if bytes.contains(&0) {
            flags.push(LineFlag::Nul);
        }
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                flags.push(LineFlag::InvalidUtf8);
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        let end = self.line_start;
        let continuation = text.starts_with([' ', '\t']) && !text.trim().is_empty();
        if continuation && let Some(p) = &mut self.pending {
            if p.text.len() + text.len() < self.max_line {
                p.text.push('\n');
                p.text.push_str(&text);
            } else if !p.flags.contains(&LineFlag::Truncated) {
                p.flags.push(LineFlag::Truncated);
            }
            p.end_offset = end;
            for f in flags {
                if !p.flags.contains(&f) {
                    p.flags.push(f);
                }
            }
            return;
        }
        if let Some(p) = self.pending.take() {
            out.push(p);
        }
        let record = Record { offset: start, end_offset: end, text, flags };
        if is_multiline_header(&record.text) {
            self.pending = Some(record);
        } else {
            out.push(record);
        }
    }

    /// Emits a held multi-line record: called when the file has been quiet for a while, since
    /// no more continuation lines are coming.
    pub fn flush_pending(&mut self, out: &mut Vec<Record>) {
        if let Some(p) = self.pending.take() {
            out.push(p);
        }
    }

    /// Where reading must resume so that no record is lost or cut: the start of the first
    /// byte not yet emitted in a record.
    pub fn resume_offset(&self) -> u64 {
        self.pending.as_ref().map_or(self.line_start, |p| p.offset)
    }

    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Emits everything, the last line without a newline included (flagged `partial`):
    /// called when a file is closed for good.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        self.flush_pending(out);
        if !self.buf.is_empty() || self.dropped > 0 {
            let start = self.line_start;
            self.line_start = self.next_offset;
            let bytes = std::mem::take(&mut self.buf);
            let mut flags = vec![LineFlag::Partial];
            if self.dropped > 0 {
                flags.push(LineFlag::Truncated);
            }
            self.dropped = 0;
            self.line(start, bytes, flags, out);
            self.flush_pending(out);
        }
    }
}

/// `[2025-11-25T10:30:45Z] INFO: ...`: a line that may be followed by indented details.
fn is_multiline_header(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('[') else { return false };
    let Some((_, after)) = rest.split_once("] ") else { return false };
    after.split_once(": ").is_some_and(|(level, _)| {
        !level.is_empty() && level.len() <= 8 && level.bytes().all(|c| c.is_ascii_alphabetic())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunks: &[&[u8]], max: usize) -> (Vec<Record>, Framer) {
        let mut f = Framer::new(0, max);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        (out, f)
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let (out, mut f) = frame(&[b"one\ntw", b"o\nthr"], 100);
        assert_eq!(out.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["one", "two"]);
        assert_eq!((out[1].offset, out[1].end_offset), (4, 8));
        let mut rest = Vec::new();
        f.finish(&mut rest);
        assert_eq!(rest[0].text, "thr");
        assert_eq!(rest[0].flags, vec![LineFlag::Partial]);
        assert_eq!(rest[0].end_offset, 11);
    }

    #[test]
    fn long_lines_are_cut_and_flagged_with_exact_offsets() {
        let long = vec![b'a'; 50];
        let (out, _) = frame(&[&long, b"\nnext\n"], 10);
        assert_eq!(out[0].text, "a".repeat(10));
        assert_eq!(out[0].flags, vec![LineFlag::Truncated]);
        assert_eq!(out[0].end_offset, 51);
        assert_eq!((out[1].text.as_str(), out[1].offset), ("next", 51));
    }

    #[test]
    fn invalid_utf8_and_nul_are_kept_and_flagged() {
        let (out, _) = frame(&[b"a\xffb\x00c\r\n"], 100);
        assert_eq!(out[0].text, "a\u{fffd}b\u{0}c");
        assert_eq!(out[0].flags, vec![LineFlag::Nul, LineFlag::InvalidUtf8]);
    }

    #[test]
    fn indented_lines_join_their_header() {
        let (out, mut f) = frame(
            &[b"[2025-11-25T10:30:45Z] INFO: GET /a - 200 (4ms)\n  requestId: x\n  duration: 4ms\n[2025-11-25T10:30:46Z] INFO: GET /b - 200 (1ms)\n"],
            1000,
        );
        assert_eq!(out.len(), 1);
        assert!(out[0].text.ends_with("duration: 4ms"));
        assert_eq!(out[0].end_offset, 79);
        assert!(f.has_pending());
        let mut rest = Vec::new();
        f.flush_pending(&mut rest);
        assert_eq!(rest[0].offset, 79);
    }
}
