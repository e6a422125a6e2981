//! Events per second from one agent into ClickHouse: a generated nginx log is ingested with the
//! ClickHouse sink on (so every event is spooled), then a private ClickHouse server is started
//! on loopback and the sink drains the spool into it; the time until ClickHouse holds every
//! event is measured. Skips with a note when `clickhouse-server` is not installed.
//!
//! Run: `cargo bench --bench clickhouse` (1,000,000 lines), or set `LOGWARDEN_BENCH_LINES`.

use std::io::{BufWriter, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use logwarden::config::ConfigFile;
use logwarden::daemon;
use logwarden::demo::TrafficGenerator;
use logwarden::parse::FormatSpec;
use logwarden::sink::spool::{SinkHealth, SpoolReader};

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn main() {
    if std::env::args().skip(1).any(|a| a == "--list" || (!a.starts_with("--") && a != "clickhouse")) {
        return;
    }
    if Command::new("clickhouse-server").arg("--help").output().is_err() {
        println!("clickhouse-server is not installed (apt-get install clickhouse-server) - skipped");
        return;
    }
    let lines: u64 = std::env::var("LOGWARDEN_BENCH_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("access.log");
    {
        let mut out = BufWriter::new(std::fs::File::create(&log).expect("create log"));
        let mut g = TrafficGenerator::new(2026);
        for i in 0..lines {
            writeln!(out, "{}", g.line(1_764_000_000_000 + i as i64 * 83)).expect("write");
        }
    }
    let (http, tcp, inter) = (port(), port(), port());
    let mut cfg = ConfigFile::parse("bench", "").expect("defaults");
    cfg.data_dir = tmp.path().join("data");
    cfg.index.retention_days = 36500;
    cfg.clickhouse.enabled = true;
    cfg.clickhouse.url = format!("http://127.0.0.1:{http}");
    cfg.clickhouse.database = "bench".into();
    let t = Instant::now();
    daemon::ingest(&cfg, FormatSpec::Auto, std::slice::from_ref(&log), &|_, _| {}).expect("ingest");
    let ingest_s = t.elapsed().as_secs_f64();
    let spool = cfg.data_dir.join("spool").join("clickhouse");
    let health = Arc::new(SinkHealth { name: "clickhouse".into(), ..SinkHealth::default() });
    let reader = SpoolReader::open(&spool, health.clone()).expect("spool");
    let spooled: u64 = std::fs::read_dir(&spool)
        .expect("spool dir")
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "ingested {lines} lines with the sink on in {ingest_s:.1} s; spool {:.0} MiB",
        spooled as f64 / 1_048_576.0
    );

    let dir = tmp.path().join("ch");
    let mut server = Command::new("clickhouse-server")
        .arg("--config-file=/etc/clickhouse-server/config.xml")
        .arg("--")
        .arg("--listen_host=127.0.0.1")
        .arg(format!("--http_port={http}"))
        .arg(format!("--tcp_port={tcp}"))
        .arg(format!("--interserver_http_port={inter}"))
        .arg(format!("--path={}/data/", dir.display()))
        .arg(format!("--tmp_path={}/tmp/", dir.display()))
        .arg(format!("--user_files_path={}/files/", dir.display()))
        .arg(format!("--format_schema_path={}/schemas/", dir.display()))
        .arg(format!("--logger.log={}/server.log", dir.display()))
        .arg(format!("--logger.errorlog={}/error.log", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start clickhouse-server");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let count = || -> Option<u64> {
        let mut r = agent.post(&format!("http://127.0.0.1:{http}/")).send("SELECT count() FROM bench.events").ok()?;
        r.body_mut().read_to_string().ok()?.trim().parse().ok()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.get(&format!("http://127.0.0.1:{http}/ping")).call().is_err() {
        assert!(Instant::now() < deadline, "ClickHouse did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let sink = {
        let (ch, stop, health) = (cfg.clickhouse.clone(), stop.clone(), health.clone());
        std::thread::spawn(move || logwarden::sink::run(&ch, reader, health, &stop))
    };
    while health.pending_bytes.load(Ordering::Relaxed) > 0 || count() != Some(lines) {
        std::thread::sleep(Duration::from_millis(50));
        assert!(t.elapsed() < Duration::from_secs(1800), "the sink did not drain");
    }
    let s = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sink.join();
    println!(
        "ClickHouse sink      {:>10.0} events/s {:>7.1} MiB/s of spool  ({lines} events acknowledged in {s:.1} s, batches of {}, gzip)",
        lines as f64 / s,
        spooled as f64 / 1_048_576.0 / s,
        cfg.clickhouse.batch_size
    );
    let _ = server.kill();
    let _ = server.wait();
}
