//! Helpers for black-box tests: start the real binary on loopback with temporary directories
//! and talk to it over HTTP the way a user would.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_logwarden");
/// The admin token every test daemon gets through `LOGWARDEN_API_TOKEN`.
pub const TOKEN: &str = "test-admin-token-5b1f";

/// A free port on loopback (bound then released; the daemon binds it right after).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `logwarden run` with `args` (the listen address is added), logging to `log`,
    /// and waits until `/health` says it is healthy.
    pub fn start(args: &[&str], log: &Path) -> Daemon {
        let d = Daemon::spawn(args, log);
        d.wait_healthy(Duration::from_secs(30));
        d
    }

    /// Starts `logwarden run` without waiting for it.
    pub fn spawn(args: &[&str], log: &Path) -> Daemon {
        let addr = free_addr();
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open daemon log");
        let child = Command::new(BIN)
            .arg("run")
            .args(args)
            .args(["--listen", &addr.to_string()])
            .env("LOGWARDEN_LOG", "logwarden=debug,warn")
            .env("LOGWARDEN_API_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start logwarden");
        Daemon { child, addr, log: log.to_path_buf() }
    }

    /// Starts a daemon under `tmp` (data in `tmp/data`, its log in `tmp/d.log`) tailing `glob`
    /// from the beginning of each file.
    pub fn tailing(tmp: &Path, glob: &str) -> Daemon {
        let data = tmp.join("data");
        let data = data.to_str().expect("utf-8 path");
        Daemon::start(&["--data-dir", data, "--tail", glob, "--read-from", "beginning"], &tmp.join("d.log"))
    }

    /// Starts a daemon with `config` (written to `tmp/lw.toml`), its data in `data` and its
    /// log in `tmp/d.log`, tailing `glob` from the beginning of each file.
    pub fn with_config(tmp: &Path, config: &str, data: &Path, glob: &str) -> Daemon {
        let cfg = tmp.join("lw.toml");
        std::fs::write(&cfg, config).expect("write the configuration");
        let args = [
            "--config",
            cfg.to_str().expect("utf-8 path"),
            "--data-dir",
            data.to_str().expect("utf-8 path"),
            "--tail",
            glob,
            "--read-from",
            "beginning",
        ];
        Daemon::start(&args, &tmp.join("d.log"))
    }

    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok((200, _)) = http_get(self.addr, "/health") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not become healthy; log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    /// SIGKILL: no chance to flush or commit.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL the daemon");
        self.child.wait().expect("reap the daemon");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                assert!(
                    s.success(),
                    "daemon exited with {s}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn search(&self, query: &str, limit: usize) -> serde_json::Value {
        let path = format!("/api/v1/search?q={}&limit={limit}", encode(query));
        let (status, body) = http_get(self.addr, &path).expect("search request");
        assert_eq!(status, 200, "search {query:?} failed: {body}");
        serde_json::from_str(&body).expect("search returns JSON")
    }

    pub fn total(&self, query: &str) -> u64 {
        self.search(query, 1)["total"].as_u64().expect("total is a number")
    }

    /// Waits until `query` matches exactly `n` events.
    pub fn wait_total(&self, query: &str, n: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut last = 0;
        while Instant::now() < deadline {
            last = self.total(query);
            if last >= n {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        last
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query string value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A minimal HTTP/1.1 GET with the test token: status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let r = request(addr, "GET", path, Some(TOKEN), &[], b"")?;
    Ok((r.status, r.body))
}

/// A response: status, lowercased header names with their values, body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 request.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Ok(Reply { status, headers, body })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n.min(rest.len())]);
        body = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// Creates `tmp/logs` and returns it with the glob of its `*.log` files.
pub fn logs_dir(tmp: &Path) -> (PathBuf, String) {
    let logs = tmp.join("logs");
    std::fs::create_dir_all(&logs).expect("create the logs directory");
    let glob = format!("{}/*.log", logs.display());
    (logs, glob)
}

/// A combined log line whose path carries `seq`, so every line can be found and counted.
pub fn line(seq: u64) -> String {
    format!(
        "10.0.{}.{} - - [29/Nov/2026:10:{:02}:{:02} +0000] \"GET /item/{seq}?page=1 HTTP/1.1\" 200 512 \"-\" \"loadgen/1.0\" 0.{:03}\n",
        seq / 250 % 250,
        seq % 250,
        seq / 60 % 60,
        seq % 60,
        seq % 1000
    )
}

/// How many times the index under `index_dir` holds each line written by [`line`], by its
/// sequence number: the count every nothing-lost, nothing-doubled test checks.
pub fn seq_counts(index_dir: &Path) -> std::collections::HashMap<u64, u32> {
    use logwarden::index::Catalog;
    use logwarden::index::search::SearchRequest;
    let catalog = Catalog::open(index_dir).expect("the index opens");
    let mut counts = std::collections::HashMap::new();
    let req = SearchRequest { query: "*".into(), limit: 1, ..Default::default() };
    catalog
        .export(&req, |hit| {
            let path = hit["path"].as_str().expect("every line parsed");
            let seq: u64 = path.trim_start_matches("/item/").parse().expect("a sequence number in the path");
            *counts.entry(seq).or_default() += 1;
            true
        })
        .expect("export");
    counts
}

/// The corpus of third-party logs and attacks, from `LOGWARDEN_CORPUS` (default
/// `../shared/corpus`). `None` (with a note) when absent, except under `CI=true`.
pub fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("LOGWARDEN_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the corpus is missing at {} and CI=true", dir.display());
    }
    eprintln!("SKIP: corpus not found at {} (set LOGWARDEN_CORPUS)", dir.display());
    None
}

/// Polls `f` until it gives a value, failing the test after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
