//! The command line and the less common sources, driven through the real binary:
//! check-config errors, ingest then run on the same directory, search, read_from = end,
//! rotated .gz files read once, stdin, multi-line records, and API errors.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Daemon, http_get, line};

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run logwarden");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_names_file_line_and_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(&cfg, "data_dir = \"d\"\n\n[index]\ncommit_interval = \"1s\"\nretention_dayz = 3\n").expect("write");
    let (ok, _, err) = run(&["check-config", "--config", cfg.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(err.contains("lw.toml:5: key `retention_dayz`"), "{err}");

    std::fs::write(&cfg, "[[sources]]\ninclude = [\"/x\"]\nread_from = \"middle\"\n").expect("write");
    let (ok, _, err) = run(&["check-config", "--config", cfg.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(err.contains("lw.toml:3: key `read_from`") && err.contains("middle"), "{err}");

    let (ok, out, _) = run(&["check-config"]);
    assert!(ok, "the embedded default is valid");
    assert!(out.contains("127.0.0.1:7700"), "{out}");

    // The environment overrides the file and is named when wrong.
    let out =
        Command::new(BIN).args(["check-config"]).env("LOGWARDEN_INDEX__RETENTION_DAYS", "none").output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LOGWARDEN_INDEX__RETENTION_DAYS"));
}

#[test]
fn ingest_then_run_serves_the_backfill_and_nothing_twice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let file = tmp.path().join("old.log");
    std::fs::write(&file, (0..500).map(line).collect::<String>()).expect("write");
    let d = data.to_str().expect("utf-8");
    let f = file.to_str().expect("utf-8");
    let (ok, out, err) = run(&["ingest", "--quiet", "--data-dir", d, f]);
    assert!(ok, "{err}");
    assert!(out.contains("ingested 500 lines (500 indexed"), "{out}");
    // Ingesting again reads nothing new.
    let (ok, out, _) = run(&["ingest", "--quiet", "--data-dir", d, f]);
    assert!(ok);
    assert!(out.contains("ingested 0 lines"), "{out}");
    // A daemon on the same directory, tailing the same file, serves the events once.
    let daemon = Daemon::start(&["--data-dir", d, "--tail", f, "--read-from", "beginning"], &tmp.path().join("d.log"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(daemon.total("*"), 500);
    daemon.stop();
    let (ok, out, _) = run(&["search", "--data-dir", d, "--limit", "3", r#"path:"/item/42""#]);
    assert!(ok);
    assert!(out.contains("/item/42") && out.contains("1 of 1 matching"), "{out}");
    let (ok, _, err) = run(&["search", "--data-dir", d, "status:[500 TO"]);
    assert!(!ok && err.contains("invalid query"), "{err}");
}

#[test]
fn read_from_end_skips_history_but_not_lines_written_while_down() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("access.log");
    std::fs::write(&log, (0..100).map(line).collect::<String>()).expect("write");
    let data = tmp.path().join("data");
    let args =
        ["--data-dir", data.to_str().expect("utf-8"), "--tail", log.to_str().expect("utf-8"), "--read-from", "end"];
    let d = Daemon::start(&args, &tmp.path().join("d.log"));
    std::thread::sleep(Duration::from_millis(1500));
    let mut f = OpenOptions::new().append(true).open(&log).expect("open");
    f.write_all((100..110).map(line).collect::<String>().as_bytes()).expect("write");
    assert_eq!(d.wait_total("*", 10, Duration::from_secs(20)), 10);
    d.stop();
    // Written while the daemon is down: read on restart, although read_from = end.
    f.write_all((110..120).map(line).collect::<String>().as_bytes()).expect("write");
    let d = Daemon::start(&args, &tmp.path().join("d.log"));
    assert_eq!(d.wait_total("*", 20, Duration::from_secs(20)), 20);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.total("*"), 20);
    assert_eq!(d.total(r#"path:"/item/5""#), 0, "history before the first start is skipped");
    d.stop();
}

/// What logrotate's compress leaves behind.
fn write_gz(path: &std::path::Path, bytes: &[u8]) {
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(path).expect("create gz"), flate2::Compression::default());
    enc.write_all(bytes).expect("compress");
    enc.finish().expect("finish gz");
}

#[test]
fn rotated_gz_files_are_read_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, _) = common::logs_dir(tmp.path());
    let plain = logs.join("access.log");
    std::fs::write(&plain, (0..50).map(line).collect::<String>()).expect("write");
    let glob = format!("{}/access.log*", logs.display());
    let d = Daemon::tailing(tmp.path(), &glob);
    assert_eq!(d.wait_total("*", 50, Duration::from_secs(20)), 50);
    // logrotate: rename, compress, start a new file.
    std::fs::rename(&plain, logs.join("access.log.1")).expect("rename");
    write_gz(&logs.join("access.log.1.gz"), &std::fs::read(logs.join("access.log.1")).expect("read"));
    std::fs::remove_file(logs.join("access.log.1")).expect("remove");
    std::fs::write(&plain, (50..60).map(line).collect::<String>()).expect("write");
    // An older archive that was never read.
    write_gz(&logs.join("access.log.2.gz"), (1000..1030).map(line).collect::<String>().as_bytes());
    assert_eq!(d.wait_total("*", 90, Duration::from_secs(20)), 90);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.total("*"), 90, "the compressed copy of a file already read is not read again");
    d.stop();
    let d = Daemon::tailing(tmp.path(), &glob);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.total("*"), 90, "nor after a restart");
    d.stop();
}

#[test]
fn stdin_and_multiline_records() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let addr = common::free_addr();
    let data = tmp.path().join("data");
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--listen",
            &addr.to_string(),
            "--stdin",
            "--tail",
            "/nonexistent/*.log",
        ])
        .stdin(Stdio::piped())
        .env("LOGWARDEN_API_TOKEN", common::TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(
            b"[2025-11-25T10:30:45Z] INFO: POST /api/auth/login - 200 (45ms)\n  requestId: req-1\n  duration: 45ms\n  responseSize: 0.45KB\n\
[2025-11-25T10:30:46Z] ERROR: GET /api/orders/7 - 503 (1200ms)\n  requestId: req-2\n  userId: u-9\n",
        )
        .expect("write");
    stdin.flush().expect("flush");
    let d = Daemon { child, addr, log: tmp.path().join("none.log") };
    d.wait_healthy(Duration::from_secs(30));
    assert_eq!(d.wait_total("*", 2, Duration::from_secs(20)), 2, "two multi-line records, two events");
    let hit = &d.search("request_id:req-2", 1)["hits"][0];
    assert_eq!(hit["status"], 503);
    assert_eq!(hit["user_id"], "u-9");
    assert_eq!(hit["route"], "/api/orders/:id");
    assert_eq!(hit["duration_ms"], 1200.0);
    assert_eq!(d.total("level:error"), 1);
    drop(stdin);
    d.stop();
}

#[test]
fn api_errors_are_400_with_a_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        &["--data-dir", tmp.path().join("data").to_str().expect("utf-8"), "--tail", "/nonexistent/*.log"],
        &tmp.path().join("d.log"),
    );
    for (path, code) in [
        ("/api/v1/search?q=nosuchfield:1", "invalid_query"),
        ("/api/v1/search?q=status:%5B500%20TO", "invalid_query"),
        ("/api/v1/search?q=id:%22abc:12%22", "invalid_query"),
        ("/api/v1/search?from=yesterday", "invalid_time"),
        ("/api/v1/search?limit=0", "invalid_limit"),
        ("/api/v1/search?limit=abc", "invalid_limit"),
    ] {
        let (status, body) = http_get(d.addr, path).expect("request");
        assert_eq!(status, 400, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json error");
        assert_eq!(v["error"]["code"], code, "{path}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, body) = http_get(d.addr, "/api/v1/search?q=id:abc").expect("request");
    assert!(body.contains("/context"), "the message says where an event is found by id: {body}");
    let (status, body) = http_get(d.addr, "/api/v1/search?q=*&from=now-1h&to=now").expect("request");
    assert_eq!(status, 200, "{body}");
    d.stop();
}

#[test]
fn config_file_sources_with_exclude_and_fixed_format() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    std::fs::write(
        logs.join("app.log"),
        r#"{"time":"2026-11-29T10:00:00Z","method":"GET","url":"/a/1","status":200}"#.to_string() + "\n",
    )
    .expect("write");
    std::fs::write(
        logs.join("debug.log"),
        r#"{"time":"2026-11-29T10:00:00Z","method":"GET","url":"/debug","status":200}"#.to_string() + "\n",
    )
    .expect("write");
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[[sources]]\ninclude = [{:?}]\nexclude = [{:?}]\nformat = \"json\"\nread_from = \"beginning\"\n",
            tmp.path().join("data").display().to_string(),
            format!("{}/*.log", logs.display()),
            format!("{}/debug*", logs.display()),
        ),
    )
    .expect("write config");
    let d = Daemon::start(&["--config", cfg.to_str().expect("utf-8")], &tmp.path().join("d.log"));
    assert_eq!(d.wait_total("*", 1, Duration::from_secs(20)), 1);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(d.total("*"), 1, "the excluded file is not read");
    assert_eq!(d.total("format:json AND route:\"/a/:id\""), 1);
    d.stop();
}

/// `logwarden tail` follows new matching events through the API: each once, in order, and
/// nothing that does not match.
#[test]
fn tail_follows_new_matching_events_over_the_api() {
    use std::io::{BufRead, Write};
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = common::logs_dir(tmp.path());
    let log = logs.join("access.log");
    std::fs::write(&log, "").expect("create");
    let d = common::Daemon::tailing(tmp.path(), &glob);
    let mut child = std::process::Command::new(common::BIN)
        .args([
            "tail",
            "--url",
            &format!("http://{}", d.addr),
            "--interval",
            "200ms",
            "--since",
            "1h",
            "--json",
            "status:500",
        ])
        .env("LOGWARDEN_API_TOKEN", common::TOKEN)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start tail");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Written in three bursts while tail runs; every third request fails. All share timestamps
    // within a second, so the cursor must tell apart events of the same millisecond.
    let mut expected = Vec::new();
    for burst in 0..3 {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).expect("open");
        for i in 0..30 {
            let n = burst * 30 + i;
            let status = if n % 3 == 0 { 500 } else { 200 };
            if status == 500 {
                expected.push(format!("/item/{n}"));
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
            writeln!(
                f,
                "{{\"time\":{now},\"req\":{{\"method\":\"GET\",\"url\":\"/item/{n}\"}},\"res\":{{\"statusCode\":{status}}},\"responseTime\":3}}"
            )
            .expect("write");
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < expected.len() && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_str(&line).expect("--json prints JSON lines");
            assert_eq!(v["status"], 500, "{line}");
            seen.push(v["path"].as_str().expect("path").to_string());
        }
    }
    // Nothing more arrives: no event is printed twice.
    std::thread::sleep(Duration::from_millis(800));
    while let Ok(line) = rx.try_recv() {
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    // Events of the same millisecond may come in any order; each exactly once.
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "printed twice: {seen:?}");
    expected.sort();
    assert_eq!(sorted, expected);
}
