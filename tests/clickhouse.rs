//! The ClickHouse sink against a real ClickHouse server started here on loopback: every event
//! arrives once by id, an outage of ClickHouse loses nothing, and neither does a kill -9 of
//! logwarden during delivery.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Daemon, free_addr, http_get, line, logs_dir, wait_for};

struct Server {
    child: Option<Child>,
    http: SocketAddr,
    tcp: SocketAddr,
    interserver: SocketAddr,
    dir: std::path::PathBuf,
}

impl Server {
    /// Starts (or restarts, on the same data) a private ClickHouse on free loopback ports.
    fn start(&mut self) {
        let d = &self.dir;
        let child = Command::new("clickhouse-server")
            .arg("--config-file=/etc/clickhouse-server/config.xml")
            .arg("--")
            .arg("--listen_host=127.0.0.1")
            .arg(format!("--http_port={}", self.http.port()))
            .arg(format!("--tcp_port={}", self.tcp.port()))
            .arg(format!("--interserver_http_port={}", self.interserver.port()))
            .arg(format!("--path={}/data/", d.display()))
            .arg(format!("--tmp_path={}/tmp/", d.display()))
            .arg(format!("--user_files_path={}/files/", d.display()))
            .arg(format!("--format_schema_path={}/schemas/", d.display()))
            .arg(format!("--logger.log={}/server.log", d.display()))
            .arg(format!("--logger.errorlog={}/error.log", d.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clickhouse-server");
        self.child = Some(child);
        wait_for("ClickHouse to answer", Duration::from_secs(120), || {
            (self.query("SELECT 1").ok()? == "1").then_some(())
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn query(&self, sql: &str) -> Result<String, String> {
        let r = common::request(self.http, "POST", "/", None, &[], sql.as_bytes()).map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(r.body);
        }
        Ok(r.body.trim().to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn append(log: &Path, from: u64, to: u64) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open");
    let text: String = (from..to).map(line).collect();
    f.write_all(text.as_bytes()).expect("append");
}

/// (rows, distinct ids) in the table.
fn counts(ch: &Server) -> Option<(u64, u64)> {
    let r = ch.query("SELECT count(), uniqExact(id) FROM lwtest.events").ok()?;
    let (a, b) = r.split_once('\t')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[test]
fn events_reach_clickhouse_once_across_an_outage_and_a_kill() {
    if Command::new("clickhouse-server").arg("--help").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "clickhouse-server is missing and CI=true");
        eprintln!("SKIP: clickhouse-server is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut ch = Server {
        child: None,
        http: free_addr(),
        tcp: free_addr(),
        interserver: free_addr(),
        dir: tmp.path().join("ch"),
    };
    ch.start();
    let (logs, glob) = logs_dir(tmp.path());
    let log = logs.join("access.log");
    append(&log, 0, 3000);
    // A secret in one line: it must reach ClickHouse redacted.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(b"10.9.9.9 - - [29/Nov/2026:10:00:00 +0000] \"GET /login?password=hunter2secret HTTP/1.1\" 200 5 \"-\" \"t\" 0.001\n")
        })
        .expect("append");
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[index]\ncommit_interval = \"200ms\"\n[clickhouse]\nenabled = true\nurl = \"http://{}\"\ndatabase = \"lwtest\"\nbatch_size = 700\nmax_batch_delay = \"200ms\"\nagent = \"web-1\"\n",
            ch.http
        ),
    )
    .expect("config");
    let data = tmp.path().join("data");
    let start = || {
        Daemon::start(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
                "--tail",
                &glob,
                "--read-from",
                "beginning",
            ],
            &tmp.path().join("d.log"),
        )
    };
    let d = start();
    wait_for("3,001 events in ClickHouse", Duration::from_secs(60), || (counts(&ch)? == (3001, 3001)).then_some(()));
    assert_eq!(ch.query("SELECT count() FROM lwtest.events WHERE raw LIKE '%hunter2secret%'").unwrap(), "0");
    assert_eq!(ch.query("SELECT count() FROM lwtest.events WHERE raw LIKE '%password=[REDACTED]%'").unwrap(), "1");
    assert_eq!(ch.query("SELECT DISTINCT agent FROM lwtest.events").unwrap(), "web-1");
    // Timestamps keep their milliseconds in their own column; routes and statuses are columns.
    assert_eq!(
        ch.query("SELECT count() FROM lwtest.events WHERE route = '/item/:id' AND status = 200").unwrap(),
        "3000"
    );

    // ClickHouse goes away while lines keep coming: they wait in the spool.
    ch.stop();
    append(&log, 3000, 5000);
    assert_eq!(d.wait_total("*", 5001, Duration::from_secs(60)), 5001);
    let health: serde_json::Value = wait_for("the spool to hold the new events", Duration::from_secs(30), || {
        let (_, body) = http_get(d.addr, "/health/detailed").ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["sinks"][0]["pending_bytes"].as_u64()? > 0 && v["sinks"][0]["errors"].as_u64()? > 0).then_some(v)
    });
    assert_eq!(health["sinks"][0]["name"], "clickhouse");
    let (_, metrics) = http_get(d.addr, "/metrics").unwrap();
    assert!(metrics.contains("logwarden_sink_pending_bytes{sink=\"clickhouse\"}"), "{metrics}");
    ch.start();
    wait_for("5,001 events after the outage", Duration::from_secs(90), || (counts(&ch)? == (5001, 5001)).then_some(()));

    // kill -9 in the middle of delivering a burst; the restart finishes the job.
    append(&log, 5000, 20_000);
    wait_for("delivery to be under way", Duration::from_secs(60), || (counts(&ch)?.1 > 5001).then_some(()));
    d.kill9();
    let d = start();
    wait_for("all 20,001 events", Duration::from_secs(120), || (counts(&ch)?.1 == 20_001).then_some(()));
    // Batches resent after the kill are the same rows by id; the table collapses them.
    let _ = ch.query("OPTIMIZE TABLE lwtest.events FINAL");
    let (rows, ids) = counts(&ch).expect("counts");
    assert_eq!(ids, 20_001);
    assert_eq!(ch.query("SELECT count() FROM lwtest.events FINAL").unwrap(), "20001", "{rows} rows before merging");
    let (_, body) = http_get(d.addr, "/health/detailed").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    wait_for("the spool to drain", Duration::from_secs(30), || {
        let (_, body) = http_get(d.addr, "/health/detailed").ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["sinks"][0]["pending_bytes"].as_u64()? == 0).then_some(())
    });
    assert!(v["sinks"][0]["last_success_ms"].as_i64().unwrap() > 0);
    d.stop();
}

/// Requests of one agent: (route, status, ms), written as combined lines in a past hour.
fn agent_log(path: &Path, seed: u64, n: usize, t0: i64) -> Vec<(&'static str, u16, u64)> {
    let mut x = seed;
    let mut reqs = Vec::new();
    let mut text = String::new();
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let route = ["/checkout", "/search", "/"][(x % 3) as usize];
        let status = if x.is_multiple_of(17) { 500 } else { 200 };
        let ms = 1 + (x >> 20) % 2000;
        let t = t0 + (i as i64 * 3600 / n as i64);
        let (h, m, s) = (t / 3600 % 24, t / 60 % 60, t % 60);
        text.push_str(&format!(
            "10.{seed}.0.{} - - [28/Nov/2026:{h:02}:{m:02}:{s:02} +0000] \"GET {route} HTTP/1.1\" {status} 10 \"-\" \"t\" {}.{:03}\n",
            i % 200,
            ms / 1000,
            ms % 1000
        ));
        reqs.push((route, status, ms));
    }
    // Three injection attempts from one client.
    for k in 0..3 {
        text.push_str(&format!(
            "203.0.113.66 - - [28/Nov/2026:10:30:0{k} +0000] \"GET /search?q=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1\" 200 10 \"-\" \"sqlmap/1.7\" 0.005\n"
        ));
        reqs.push(("/search", 200, 5));
    }
    std::fs::write(path, text).expect("write the agent log");
    reqs
}

/// Two agents ship to one ClickHouse; a query node answers the API for both.
#[test]
fn a_query_node_answers_for_two_agents() {
    if Command::new("clickhouse-server").arg("--help").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "clickhouse-server is missing and CI=true");
        eprintln!("SKIP: clickhouse-server is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut ch = Server {
        child: None,
        http: free_addr(),
        tcp: free_addr(),
        interserver: free_addr(),
        dir: tmp.path().join("ch"),
    };
    ch.start();
    let t0 = 1_795_860_000i64; // 2026-11-28T10:00:00Z
    let mut all = Vec::new();
    let mut agents = Vec::new();
    for (name, seed, n) in [("agent-a", 3u64, 4000usize), ("agent-b", 5, 2500)] {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let reqs = agent_log(&dir.join("logs/access.log"), seed, n, t0);
        all.extend(reqs.iter().map(|r| (name, r.0, r.1, r.2)));
        let cfg = dir.join("lw.toml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir = {:?}\n[index]\nretention_days = 36500\ncommit_interval = \"200ms\"\n[clickhouse]\nenabled = true\nurl = \"http://{}\"\ndatabase = \"fleet\"\nagent = \"{name}\"\nmax_batch_delay = \"200ms\"\n[[sources]]\ninclude = [{:?}]\nread_from = \"beginning\"\n",
                dir.join("data").display().to_string(),
                ch.http,
                dir.join("logs/*.log").display().to_string()
            ),
        )
        .unwrap();
        agents.push(Daemon::start(&["--config", cfg.to_str().unwrap()], &dir.join("d.log")));
    }
    let total = all.len() as u64;
    wait_for("both agents' events in ClickHouse", Duration::from_secs(90), || {
        let r = ch.query("SELECT uniqExact(id) FROM fleet.events").ok()?;
        (r == total.to_string()).then_some(())
    });

    let qcfg = tmp.path().join("query.toml");
    std::fs::write(
        &qcfg,
        format!(
            "data_dir = {:?}\n[clickhouse]\nurl = \"http://{}\"\ndatabase = \"fleet\"\n",
            tmp.path().join("q").display().to_string(),
            ch.http
        ),
    )
    .unwrap();
    let q = Daemon::start(&["--config", qcfg.to_str().unwrap(), "--role", "query"], &tmp.path().join("q.log"));
    let get = |path: &str| -> serde_json::Value {
        let (status, body) = http_get(q.addr, path).expect("request");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    };
    let range = format!("from={t0}&to={}", t0 + 3600);

    // Stats per route equal the union of both agents' requests.
    let stats = get(&format!("/api/v1/stats?{range}"));
    assert_eq!(stats["source"], "clickhouse");
    assert_eq!(stats["total"]["count"], total);
    for route in ["/checkout", "/search", "/"] {
        let mut ms: Vec<u64> = all.iter().filter(|r| r.1 == route).map(|r| r.3).collect();
        ms.sort_unstable();
        let g = stats["groups"].as_array().unwrap().iter().find(|g| g["key"] == route).expect("route group");
        assert_eq!(g["count"], ms.len() as u64, "{route}");
        let errors = all.iter().filter(|r| r.1 == route && r.2 >= 500).count() as f64;
        assert!((g["error_rate"].as_f64().unwrap() - errors / ms.len() as f64).abs() < 1e-6, "{route}");
        assert_eq!(g["max_ms"].as_f64(), Some(*ms.last().unwrap() as f64));
        for (field, q) in [("p50_ms", 0.5), ("p99_ms", 0.99)] {
            // ClickHouse's exact quantile is the nearest rank or the value after it.
            let lo = ms[((q * ms.len() as f64).ceil() as usize).max(1) - 1] as f64;
            let hi = ms[((q * ms.len() as f64) as usize).min(ms.len() - 1)] as f64;
            let v = g[field].as_f64().unwrap();
            assert!((lo..=hi).contains(&v), "{route} {field}: {v} not in [{lo}, {hi}]");
        }
    }
    // Per agent, and one agent alone.
    let by_agent = get(&format!("/api/v1/stats?{range}&group_by=agent"));
    let count =
        |name: &str| by_agent["groups"].as_array().unwrap().iter().find(|g| g["key"] == name).unwrap()["count"].clone();
    assert_eq!(count("agent-a"), 4003);
    assert_eq!(count("agent-b"), 2503);
    assert_eq!(get(&format!("/api/v1/stats?{range}&agent=agent-b&group_by=none"))["total"]["count"], 2503);
    // Search, timeseries and the security report over the fleet.
    let fails = all.iter().filter(|r| r.2 >= 500).count() as u64;
    let found = get(&format!("/api/v1/search?{range}&q=status:500&limit=5"));
    assert_eq!(found["total"], fails);
    assert!(found["hits"].as_array().unwrap().iter().all(|h| h["status"] == 500));
    assert!(found["next_cursor"].is_string());
    let ts = get(&format!("/api/v1/stats/timeseries?{range}&interval=10m"));
    let points = ts["points"].as_array().unwrap();
    assert_eq!(points.len(), 6);
    assert_eq!(points.iter().map(|p| p["count"].as_u64().unwrap()).sum::<u64>(), total);
    let report = get(&format!("/api/v1/security-report?{range}"));
    assert_eq!(report["status"], "FAILED", "{report}");
    assert_eq!(report["top_clients"][0]["value"], "203.0.113.66");
    assert_eq!(report["top_clients"][0]["count"], 6);
    // What only an agent's own index can answer says so.
    assert_eq!(http_get(q.addr, &format!("/api/v1/stats/slow?{range}")).unwrap().0, 501);
    let (status, body) = http_get(q.addr, "/api/v1/search?q=colour:red").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown field"));
    drop(q);
    drop(agents);
}

/// With ClickHouse away and the spool at its limit, reading pauses (and says so) instead of
/// dropping events; when ClickHouse returns, everything arrives.
#[test]
fn a_full_spool_pauses_reading_instead_of_dropping() {
    if Command::new("clickhouse-server").arg("--help").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "clickhouse-server is missing and CI=true");
        eprintln!("SKIP: clickhouse-server is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut ch = Server {
        child: None,
        http: free_addr(),
        tcp: free_addr(),
        interserver: free_addr(),
        dir: tmp.path().join("ch"),
    };
    let (logs, glob) = logs_dir(tmp.path());
    let log = logs.join("access.log");
    append(&log, 0, 200_000);
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[index]\ncommit_interval = \"200ms\"\n[clickhouse]\nenabled = true\nurl = \"http://{}\"\ndatabase = \"full\"\nspool_max_mb = 1\nbatch_size = 2000\nmax_batch_delay = \"100ms\"\n",
            ch.http
        ),
    )
    .expect("config");
    let data = tmp.path().join("data");
    let d = Daemon::start(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--tail",
            &glob,
            "--read-from",
            "beginning",
        ],
        &tmp.path().join("d.log"),
    );
    // ClickHouse is not running: about 1 MiB of events fits in the spool, then reading waits.
    let health: serde_json::Value = wait_for("reading to pause", Duration::from_secs(60), || {
        let (_, body) = http_get(d.addr, "/health/detailed").ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["sinks"][0]["reading_paused"] == true).then_some(v)
    });
    assert!(health["sinks"][0]["pending_bytes"].as_u64().unwrap() >= 1 << 20);
    // Reading has stopped: the count of records read stays put.
    let read = |d: &Daemon| {
        let (_, body) = http_get(d.addr, "/health/detailed").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["ingest"]["records_read"].as_u64().unwrap()
    };
    std::thread::sleep(Duration::from_secs(1));
    let before = read(&d);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(read(&d), before, "reading went on");
    assert!(before < 200_000, "{before}");
    assert!(std::fs::read_to_string(&d.log).unwrap().contains("spool full"));
    ch.start();
    wait_for("all 200,000 events once ClickHouse is back", Duration::from_secs(240), || {
        (ch.query("SELECT uniqExact(id) FROM full.events").ok()? == "200000").then_some(())
    });
    assert_eq!(d.wait_total("*", 200_000, Duration::from_secs(60)), 200_000);
    d.stop();
}
