//! Names a file by its content instead of its path, so renames, copies and inode reuse cannot
//! fool the tailer. The name is a hash of the file's first line; for W3C files, whose first
//! lines are the same `#Software`/`#Fields` header every day, of the header and the first
//! entry after it. A file whose first line is not complete yet has no fingerprint and waits.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The most bytes read to fingerprint a file.
const MAX_FINGERPRINT_BYTES: usize = 64 * 1024;

/// True for files read as a gzip stream (rotated logs that logrotate compressed).
pub fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Opens `path` for reading its decompressed content from the start.
pub fn open_content(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)?;
    Ok(if is_gzip(path) { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) })
}

/// The fingerprint of the file at `path`, or `None` when it has no complete first line yet.
pub fn fingerprint(path: &Path) -> io::Result<Option<String>> {
    let reader = open_content(path)?;
    of_reader(reader)
}

pub fn of_reader(reader: impl Read) -> io::Result<Option<String>> {
    let mut reader = BufReader::new(reader.take(MAX_FINGERPRINT_BYTES as u64));
    let mut hasher = Sha256::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match reader.read_until(b'\n', &mut line) {
            Ok(n) => n,
            // A gzip file still being written ends early; it is not ready.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::InvalidInput => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(None);
        }
        hasher.update(&line);
        if !line.starts_with(b"#") {
            break;
        }
    }
    let digest = hasher.finalize();
    Ok(Some(hex::encode(&digest[..8])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_names_the_file() {
        let a = of_reader(&b"line one\nline two\n"[..]).unwrap();
        let b = of_reader(&b"line one\nsomething else\n"[..]).unwrap();
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, of_reader(&b"line 1\n"[..]).unwrap());
        assert_eq!(of_reader(&b"no newline yet"[..]).unwrap(), None);
        assert_eq!(of_reader(&b""[..]).unwrap(), None);
    }

    #[test]
    fn w3c_headers_are_skipped_past() {
        let day1 = of_reader(&b"#Software: IIS\n#Fields: a b\n2024-01-01 x\n"[..]).unwrap();
        let day2 = of_reader(&b"#Software: IIS\n#Fields: a b\n2024-01-02 x\n"[..]).unwrap();
        assert_ne!(day1, day2);
        assert_eq!(of_reader(&b"#Software: IIS\n#Fields: a b\n"[..]).unwrap(), None);
    }
}
