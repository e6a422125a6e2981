//! API abuse against the real daemon while it ingests: a load from this (second) process at
//! high request rates, slow clients (slowloris) and oversized headers that must not starve the
//! others, path tricks that must not get past authentication, and answers that must never
//! carry a secret, a path outside the data directory or a stack trace. Figures are printed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, TOKEN, line, request};

const SECRET: &str = "hunter2-abuse-secret";

fn start(tmp: &Path) -> (Daemon, std::path::PathBuf) {
    let (logs, glob) = common::logs_dir(tmp);
    // A rate limit above what the load reaches: this measures the server, not the limiter
    // (tests/api.rs checks the limiter).
    let config = "[api]\nrate_limit_per_minute = 10000000\nmax_concurrent_requests = 256\n";
    (Daemon::with_config(tmp, config, &tmp.join("data"), &glob), logs.join("access.log"))
}

/// Appends `per_tick` lines every 50 ms until `stop`, with a secret in every tenth; returns
/// how many it wrote.
fn writer(log: std::path::PathBuf, per_tick: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open log");
        let mut seq = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut text = String::new();
            for _ in 0..per_tick {
                let l = line(seq);
                text.push_str(&if seq % 10 == 0 { l.replace("page=1", &format!("password={SECRET}")) } else { l });
                seq += 1;
            }
            f.write_all(text.as_bytes()).expect("append");
            std::thread::sleep(Duration::from_millis(50));
        }
        seq
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
fn a_load_from_another_process_gets_no_errors_while_ingestion_keeps_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (d, log) = start(tmp.path());
    let stop = Arc::new(AtomicBool::new(false));
    let written = writer(log, 500, stop.clone());
    std::thread::sleep(Duration::from_millis(500));

    let paths = [
        "/api/v1/search?q=status:200&limit=20",
        "/api/v1/search?q=path:%22/item/7%22",
        "/api/v1/stats?window=1h",
        "/api/v1/stats/timeseries?window=1h&interval=1m",
        "/health",
        "/metrics",
    ];
    let results = Arc::new(Mutex::new(Vec::<(u16, Duration)>::new()));
    let started = Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (results, base) = (results.clone(), format!("http://{}", d.addr));
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(30)))
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut mine = Vec::new();
                let mut i = c;
                let until = Instant::now() + Duration::from_secs(6);
                while Instant::now() < until {
                    let t = Instant::now();
                    let mut resp = agent
                        .get(format!("{base}{}", paths[i % paths.len()]))
                        .header("Authorization", format!("Bearer {TOKEN}"))
                        .call()
                        .expect("a response");
                    let _ = resp.body_mut().read_to_vec();
                    mine.push((resp.status().as_u16(), t.elapsed()));
                    i += 1;
                }
                results.lock().expect("results").extend(mine);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let lines = written.join().expect("writer");

    let results = results.lock().expect("results");
    let mut times: Vec<Duration> = results.iter().map(|r| r.1).collect();
    times.sort();
    let errors = results.iter().filter(|r| r.0 >= 500).count();
    let not_ok: Vec<u16> = results.iter().filter(|r| r.0 != 200).map(|r| r.0).collect();
    println!(
        "{} requests from 8 clients in {:.1} s: {:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} 5xx; {lines} lines written meanwhile",
        results.len(),
        elapsed.as_secs_f64(),
        results.len() as f64 / elapsed.as_secs_f64(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().expect("requests").as_secs_f64() * 1e3,
        errors
    );
    assert!(results.len() > 100, "the load ran");
    assert_eq!(errors, 0, "no 5xx under load");
    assert!(not_ok.is_empty(), "every request answered 200: {:?}", &not_ok[..not_ok.len().min(10)]);
    assert_eq!(d.wait_total("*", lines, Duration::from_secs(60)), lines, "ingestion kept up with the load");

    // No answer carries the planted secret, and it is nowhere on disk or in the log.
    let found = request(d.addr, "GET", "/api/v1/search?q=*&limit=100", Some(TOKEN), &[], &[]).expect("search");
    assert!(!found.body.contains(SECRET));
    d.stop();
    let mut leaks = Vec::new();
    for entry in walk(tmp.path()) {
        if entry.starts_with(tmp.path().join("logs")) {
            continue;
        }
        if std::fs::read(&entry).is_ok_and(|b| b.windows(SECRET.len()).any(|w| w == SECRET.as_bytes())) {
            leaks.push(entry);
        }
    }
    assert!(leaks.is_empty(), "the secret reached {leaks:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn slow_clients_and_oversized_headers_do_not_starve_the_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (d, log) = start(tmp.path());
    std::fs::write(&log, (0..100).map(line).collect::<String>()).expect("write");
    assert_eq!(d.wait_total("*", 100, Duration::from_secs(30)), 100);

    // 300 slowloris connections: a request line and then one header byte now and then.
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).expect("connect");
            s.write_all(b"GET /api/v1/search?q=* HTTP/1.1\r\nHost: x\r\nX-Slow: ").expect("write");
            s
        })
        .collect();
    let opened = Instant::now();
    // Meanwhile the others are served, among them a client with 100 KB of headers (refused).
    let big = "a".repeat(100 * 1024);
    let r = request(d.addr, "GET", "/api/v1/search?q=*", Some(TOKEN), &[("X-Big", &big)], &[]).expect("big headers");
    assert_eq!(r.status, 431, "oversized headers are refused: {}", r.body);
    let many: Vec<(String, String)> = (0..2000).map(|i| (format!("X-H{i}"), "v".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let r = request(d.addr, "GET", "/api/v1/search?q=*", Some(TOKEN), &many, &[]);
    assert!(r.is_ok_and(|r| r.status == 431), "2,000 headers are refused");
    let mut served = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let r = request(d.addr, "GET", "/api/v1/search?q=*&limit=1", Some(TOKEN), &[], &[]).expect("request");
        assert_eq!(r.status, 200);
        served.push(t.elapsed());
        for s in slow.iter_mut().take(50) {
            let _ = s.write_all(b"x");
        }
    }
    served.sort();
    println!(
        "with 300 slow clients connected: 20 requests served, slowest {:.1} ms",
        served.last().expect("served").as_secs_f64() * 1e3
    );

    // The slow clients are cut off once the header read timeout (10 s) has passed.
    let mut closed = 0;
    for s in &mut slow {
        let left = Duration::from_secs(20).saturating_sub(opened.elapsed()).max(Duration::from_millis(100));
        s.set_read_timeout(Some(left)).expect("timeout");
        let mut buf = [0u8; 512];
        // The server closes (EOF, or an error response and then EOF), or resets.
        match s.read(&mut buf) {
            Ok(_) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(_) => {}
        }
    }
    println!("{closed} of 300 slow connections closed by the server after {:.1} s", opened.elapsed().as_secs_f64());
    assert_eq!(closed, 300, "every slow client is cut off");
    let r = request(d.addr, "GET", "/health", None, &[], &[]).expect("health");
    assert_eq!(r.status, 200);
    d.stop();
}

#[test]
fn path_tricks_do_not_bypass_auth_and_errors_leak_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (d, log) = start(tmp.path());
    let secret_line = line(1).replace("page=1", &format!("password={SECRET}"));
    std::fs::write(&log, secret_line).expect("write");
    assert_eq!(d.wait_total("*", 1, Duration::from_secs(30)), 1);

    // Without a token, no spelling of a protected path reaches its handler.
    let tricks = [
        "/api/v1/search?q=*",
        "//api/v1/search?q=*",
        "/api//v1/search?q=*",
        "/./api/v1/search?q=*",
        "/api/v1/./search?q=*",
        "/x/../api/v1/search?q=*",
        "/api/v1/search/?q=*",
        "/api/v1/search/.?q=*",
        "/API/V1/SEARCH?q=*",
        "/Api/v1/search?q=*",
        "/%61pi/v1/search?q=*",
        "/api/v1/%73earch?q=*",
        "/api%2fv1%2fsearch?q=*",
        "/api/v1/search%2f?q=*",
        "/api/v1/%2e/search?q=*",
        "/api/v1/%2e%2e/v1/search?q=*",
        "/api/v1/search;jsessionid=1?q=*",
        "/api/v1/search%00?q=*",
        "/api/v1/search%20?q=*",
        "/api/v1/search#x",
        "/health/../api/v1/search?q=*",
        "/health/detailed",
        "//health/detailed",
        "/health/detailed/",
        "/HEALTH/detailed",
        "/api/v1/alerts",
        "/api/v1/export?q=*",
        "/metrics/../api/v1/search?q=*",
    ];
    for path in tricks {
        for method in ["GET", "HEAD", "OPTIONS", "POST"] {
            let r = request(d.addr, method, path, None, &[], &[]).expect("request");
            assert!(
                matches!(r.status, 400 | 401 | 404 | 405),
                "{method} {path} without a token answered {}: {}",
                r.status,
                r.body
            );
            assert!(!r.body.contains(SECRET) && !r.body.contains("/item/1"), "{method} {path} leaked data");
        }
    }

    // With a token, bad input of every kind: a clear 4xx, never a trace, a path or a secret.
    let data_dir = tmp.path().join("data");
    let bad = [
        "/api/v1/search?q=status:[500%20TO",
        "/api/v1/search?q=*&limit=-1",
        "/api/v1/search?q=*&from=yesterday-ish",
        "/api/v1/search?q=*&cursor=%00%ff",
        "/api/v1/search?q=*&sort=../../etc/passwd",
        "/api/v1/stats?group_by=../../etc",
        "/api/v1/stats?from=99999999999999999999",
        "/api/v1/stats/timeseries?interval=0m",
        "/api/v1/events/..%2f..%2f..%2fetc%2fpasswd/context",
        "/api/v1/events/%00/context",
        "/assets/..%2f..%2fCargo.toml",
        "/assets/../../Cargo.toml",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/../../../../etc/passwd",
    ];
    for path in bad {
        let r = request(d.addr, "GET", path, Some(TOKEN), &[], &[]).expect("request");
        assert!((400..500).contains(&r.status), "GET {path} answered {}: {}", r.status, r.body);
        for leak in
            [SECRET, "panicked", "RUST_BACKTRACE", "stack backtrace", ".rs:", "/root/", "/home/", "/etc/passwd:"]
        {
            assert!(!r.body.contains(leak), "GET {path} leaked {leak:?}: {}", r.body);
        }
        let tmp_path = tmp.path().to_string_lossy();
        assert!(
            !r.body.contains(&*tmp_path) || r.body.contains(&*data_dir.to_string_lossy()),
            "GET {path} named a path outside the data directory: {}",
            r.body
        );
        assert!(!r.body.contains("root:x:0:0"), "GET {path} served /etc/passwd");
    }
    d.stop();
}
