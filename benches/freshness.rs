//! Freshness: how long after a line is written to the log it is returned by search, at a
//! steady write rate, through the real daemon (release build) and its HTTP API.
//!
//! A writer appends LOGWARDEN_BENCH_RATE lines a second (default 20,000) for
//! LOGWARDEN_BENCH_SECONDS (default 30), in 10 ms ticks, noting when each tick's lines were
//! written. A poller asks the API every 10 ms how many events are searchable; lines are numbered
//! in order and a commit makes a prefix of them searchable, so line k is searchable once the
//! count reaches k + 1. The latency of each line is then when the count first covered it minus
//! when it was written (to within the 10 ms of a poll).
//!
//! Run: `cargo bench --bench freshness`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-freshness-token";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The number of searchable events, or `None` while the daemon does not answer.
fn searchable(addr: SocketAddr) -> Option<u64> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "GET /api/v1/search?q=*&limit=1&from=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let at = body.find("\"total\":")? + 8;
    body[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn line(seq: u64) -> String {
    format!(
        "10.1.{}.{} - - [29/Nov/2026:10:00:00 +0000] \"GET /fresh/{seq} HTTP/1.1\" 200 512 \"-\" \"bench/1.0\" 0.004\n",
        seq / 250 % 250,
        seq % 250
    )
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument other than ours means another bench.
    // Test runners list benchmarks with `--list`; that must not start a 30 s run.
    if std::env::args().skip(1).any(|a| a == "--list" || (!a.starts_with("--") && a != "freshness")) {
        return;
    }
    let rate = env_u64("LOGWARDEN_BENCH_RATE", 20_000);
    let seconds = env_u64("LOGWARDEN_BENCH_SECONDS", 30);
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("access.log");
    std::fs::write(&log, "").expect("create the log");
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr")
    };
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_logwarden"))
        .args(["run", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(["--tail", log.to_str().expect("utf-8"), "--read-from", "beginning", "--listen", &addr.to_string()])
        .env("LOGWARDEN_API_TOKEN", TOKEN)
        .env("LOGWARDEN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start logwarden");
    let deadline = Instant::now() + Duration::from_secs(30);
    while searchable(addr).is_none() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // (first line of the tick, when the tick was written), in order.
    let written: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let total = rate * seconds;
    let writer = {
        let (written, done) = (written.clone(), done.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).expect("open the log");
            let per_tick = (rate / 100).max(1);
            let start = Instant::now();
            let mut seq = 0;
            let mut tick = 0u32;
            while seq < total {
                let text: String = (seq..(seq + per_tick).min(total)).map(line).collect();
                f.write_all(text.as_bytes()).expect("append");
                written.lock().expect("written").push((seq, Instant::now()));
                seq = (seq + per_tick).min(total);
                tick += 1;
                let next = start + Duration::from_millis(10) * tick;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            done.store(true, Ordering::Relaxed);
            start.elapsed()
        })
    };

    // (when the poll answered, searchable count).
    let mut seen: Vec<(Instant, u64)> = Vec::new();
    let last_change = Instant::now();
    let mut last = (0, last_change);
    loop {
        if let Some(n) = searchable(addr) {
            let now = Instant::now();
            if n > last.0 {
                seen.push((now, n));
                last = (n, now);
            }
            if n >= total {
                break;
            }
        }
        if done.load(Ordering::Relaxed) && last.1.elapsed() > Duration::from_secs(30) {
            panic!("stuck at {} of {total} searchable events", last.0);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wrote_for = writer.join().expect("writer");
    let _ = daemon.kill();
    let _ = daemon.wait();

    // Each tick's lines become searchable when the count first reaches the tick's last line.
    let written = written.lock().expect("written");
    let mut latencies: Vec<Duration> = Vec::with_capacity(written.len());
    let mut at = 0;
    for (i, &(first, when)) in written.iter().enumerate() {
        let end = written.get(i + 1).map_or(total, |w| w.0);
        while at < seen.len() && seen[at].1 < end {
            at += 1;
        }
        let Some(&(visible, _)) = seen.get(at) else { break };
        let n = end - first;
        latencies.extend(std::iter::repeat_n(visible.saturating_duration_since(when), n as usize));
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!(
        "freshness at {rate} lines/s for {seconds} s ({total} lines, written in {:.1} s): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        wrote_for.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().expect("latencies").as_secs_f64() * 1e3
    );
}
