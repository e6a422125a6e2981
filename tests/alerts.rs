//! Alerting against real receivers: a Prometheus Alertmanager started here on loopback, and an
//! HTTP receiver in the test that can be taken down and brought back.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Daemon, free_addr, http_get, logs_dir, wait_for};

const RULES: &str = r#"
[[alert]]
name = "CheckoutErrors"
kind = "error_rate"
per = "route"
route = "/checkout"
window = "5m"
threshold = 0.2
min_requests = 10
labels = { severity = "page", team = "payments" }
annotations = { summary = "{route} failing: {value} > {threshold}" }
"#;

/// A pino-style request line stamped now; failing ones carry secrets in their query string.
fn request(status: u16) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    format!(
        "{{\"level\":30,\"time\":{now},\"req\":{{\"method\":\"POST\",\"url\":\"/checkout?card=4111111111111111&password=hunter2secret\",\"remoteAddress\":\"10.1.1.1\"}},\"res\":{{\"statusCode\":{status}}},\"responseTime\":12}}\n"
    )
}

fn append(log: &Path, lines: &str) {
    std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap().write_all(lines.as_bytes()).unwrap();
}

/// An HTTP receiver that records every JSON body POSTed to it, until stopped. The request's
/// `Idempotency-Key` header is recorded in the body as `header_key`.
struct Receiver {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(addr: SocketAddr, bodies: Arc<Mutex<Vec<serde_json::Value>>>) -> Receiver {
        let listener = TcpListener::bind(addr).expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream);
                let (mut len, mut key) = (0, None);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    } else if lower.starts_with("idempotency-key:") {
                        key = line.split_once(':').map(|(_, v)| v.trim().to_string());
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body)
                {
                    v["header_key"] = serde_json::json!(key);
                    b.lock().unwrap().push(v);
                }
                let _ =
                    reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Receiver { bodies, stop, thread: Some(thread) }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn with_status(&self, status: &str) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().iter().filter(|b| b["status"] == status).cloned().collect()
    }
}

struct Alertmanager {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Alertmanager on loopback, or `None` (outside CI) when it is not installed.
fn alertmanager(dir: &Path) -> Option<Alertmanager> {
    let bin = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()));
    let Some(bin) = bin else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "Alertmanager is missing and CI=true");
        eprintln!("SKIP: prometheus-alertmanager is not installed");
        return None;
    };
    let cfg = dir.join("am.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: none\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let addr = free_addr();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("am.log")).unwrap())
        .spawn()
        .expect("start alertmanager");
    let am = Alertmanager { child, addr };
    wait_for("alertmanager to start", Duration::from_secs(20), || am_alerts(addr).ok());
    Some(am)
}

fn am_alerts(addr: SocketAddr) -> Result<Vec<serde_json::Value>, String> {
    let r = common::request(addr, "GET", "/api/v2/alerts", None, &[], b"").map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(r.body);
    }
    serde_json::from_str(&r.body).map_err(|e| e.to_string())
}

fn start(tmp: &Path, glob: &str, receivers: &str) -> Daemon {
    let rules = tmp.join("alerts.toml");
    std::fs::write(&rules, RULES).unwrap();
    let cfg = tmp.join("lw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[index]\ncommit_interval = \"200ms\"\n[alerts]\nevaluation_interval = \"300ms\"\nrules_file = {:?}\n{receivers}",
            rules.display().to_string()
        ),
    )
    .unwrap();
    let data: PathBuf = tmp.join("data");
    Daemon::start(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--tail",
            glob,
            "--read-from",
            "beginning",
        ],
        &tmp.join("d.log"),
    )
}

fn failing_traffic(log: &Path) {
    let mut lines = String::new();
    for i in 0..30 {
        lines.push_str(&request(if i % 2 == 0 { 500 } else { 200 }));
    }
    append(log, &lines);
}

fn healthy_traffic(log: &Path) {
    append(log, &(0..200).map(|_| request(200)).collect::<String>());
}

#[test]
fn an_alert_fires_and_resolves_in_alertmanager_and_at_a_webhook_that_was_down() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(am) = alertmanager(tmp.path()) else { return };
    let (logs, glob) = logs_dir(tmp.path());
    let log = logs.join("app.log");
    let hook = free_addr();
    let d = start(
        tmp.path(),
        &glob,
        &format!(
            "[[alerts.receivers]]\nkind = \"alertmanager\"\nurl = \"http://{}\"\n[[alerts.receivers]]\nkind = \"webhook\"\nname = \"ops-hook\"\nurl = \"http://{hook}/hook\"\n",
            am.addr
        ),
    );
    failing_traffic(&log);

    // Alertmanager gets the alert with its labels, annotations and a link to the events.
    let alert = wait_for("the alert in Alertmanager", Duration::from_secs(30), || {
        am_alerts(am.addr).ok()?.into_iter().find(|a| a["labels"]["alertname"] == "CheckoutErrors")
    });
    assert_eq!(alert["labels"]["team"], "payments");
    assert_eq!(alert["labels"]["route"], "/checkout");
    assert_eq!(alert["status"]["state"], "active");
    assert_eq!(alert["annotations"]["summary"], "/checkout failing: 0.5 > 0.2");
    let link = alert["generatorURL"].as_str().expect("generatorURL");
    assert!(link.starts_with(&format!("http://{}/api/v1/search?q=", d.addr)), "{link}");
    let path = link.split_once(&d.addr.to_string()).unwrap().1;
    let (status, body) = http_get(d.addr, path).expect("follow the link");
    assert_eq!(status, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(found["total"], 15, "the link finds the 15 failures");

    // The webhook was down when the alert fired: the notification waits in the outbox.
    let (_, body) = http_get(d.addr, "/api/v1/alerts").unwrap();
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["alerts"][0]["state"], "firing");
    wait_for("a failed delivery attempt", Duration::from_secs(10), || {
        let (_, body) = http_get(d.addr, "/api/v1/alerts").ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["outbox"][0]["attempts"].as_u64()? >= 1).then_some(())
    });
    let receiver = Receiver::start(hook, Arc::default());
    let fired = wait_for("the firing webhook", Duration::from_secs(30), || receiver.with_status("firing").pop());
    assert_eq!(fired["version"], "4");
    assert_eq!(fired["receiver"], "ops-hook");
    assert_eq!(fired["alerts"][0]["labels"]["alertname"], "CheckoutErrors");
    assert_eq!(fired["alerts"][0]["fingerprint"].as_str().map(str::len), Some(16));
    let samples = fired["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 5);
    assert!(samples.iter().all(|s| s["status"] == 500 && s["route"] == "/checkout"));
    let text = fired.to_string();
    assert!(!text.contains("hunter2secret") && !text.contains("4111111111111111"), "a secret in the webhook: {text}");
    assert!(text.contains("[REDACTED]"));
    assert!(fired["search"].as_str().is_some_and(|s| s.contains("/api/v1/search?q=")));
    let fingerprint = fired["alerts"][0]["fingerprint"].as_str().unwrap();
    let key = fired["idempotencyKey"].as_str().expect("idempotencyKey");
    assert!(key.starts_with(&format!("{fingerprint}-firing-")), "{key}");
    assert_eq!(fired["header_key"], key, "the Idempotency-Key header repeats the body's key");

    // Healthy traffic brings the rate under the threshold: resolved everywhere, once.
    healthy_traffic(&log);
    let resolved = wait_for("the resolved webhook", Duration::from_secs(30), || receiver.with_status("resolved").pop());
    assert_eq!(resolved["alerts"][0]["fingerprint"], fired["alerts"][0]["fingerprint"]);
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(resolved["idempotencyKey"], key.replace("-firing-", "-resolved-"), "one firing episode");
    assert_eq!(resolved["header_key"], resolved["idempotencyKey"]);
    wait_for("Alertmanager to drop the resolved alert", Duration::from_secs(30), || {
        let alerts = am_alerts(am.addr).ok()?;
        (!alerts.iter().any(|a| a["labels"]["alertname"] == "CheckoutErrors" && a["status"]["state"] == "active"))
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(receiver.with_status("firing").len(), 1, "one firing notification");
    assert_eq!(receiver.with_status("resolved").len(), 1, "one resolved notification");
    let (_, body) = http_get(d.addr, "/api/v1/alerts").unwrap();
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(state["alerts"].as_array().unwrap().is_empty());
    assert_eq!(state["history"][0]["status"], "resolved");
    assert_eq!(state["history"][1]["status"], "firing");
    assert!(state["outbox"].as_array().unwrap().is_empty());
    receiver.stop();
    d.stop();
}

#[test]
fn a_restart_while_firing_neither_repeats_the_alert_nor_loses_its_resolve() {
    let tmp = tempfile::tempdir().unwrap();
    let (logs, glob) = logs_dir(tmp.path());
    let log = logs.join("app.log");
    let hook = free_addr();
    let receivers = format!("[[alerts.receivers]]\nkind = \"webhook\"\nurl = \"http://{hook}/hook\"\n");
    let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let receiver = Receiver::start(hook, bodies.clone());
    let d = start(tmp.path(), &glob, &receivers);
    failing_traffic(&log);
    wait_for("the firing webhook", Duration::from_secs(30), || receiver.with_status("firing").pop());
    // Delivery is at least once: a kill between the receiver's 2xx and the state write would
    // send the notification again (with the same idempotency key), so wait for that write.
    wait_for("the delivery to be recorded", Duration::from_secs(10), || {
        let (_, body) = http_get(d.addr, "/api/v1/alerts").ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["outbox"].as_array()?.is_empty().then_some(())
    });

    // kill -9 while firing, start again: the alert is still firing and is not sent again.
    d.kill9();
    let d = start(tmp.path(), &glob, &receivers);
    std::thread::sleep(Duration::from_secs(3));
    let (_, body) = http_get(d.addr, "/api/v1/alerts").unwrap();
    assert!(body.contains("\"state\":\"firing\""), "{body}");
    assert_eq!(receiver.with_status("firing").len(), 1, "no duplicate after the restart");

    // The receiver goes down, the alert resolves, the daemon is killed before it could deliver.
    receiver.stop();
    healthy_traffic(&log);
    wait_for("the resolve in the outbox", Duration::from_secs(30), || {
        let (_, body) = http_get(d.addr, "/api/v1/alerts").ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["alerts"].as_array()?.is_empty() && v["outbox"].as_array()?.len() == 1).then_some(())
    });
    d.kill9();
    let receiver = Receiver::start(hook, bodies);
    let d = start(tmp.path(), &glob, &receivers);
    wait_for("the resolved webhook after the restart", Duration::from_secs(30), || {
        receiver.with_status("resolved").pop()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.with_status("firing").len(), 1);
    assert_eq!(receiver.with_status("resolved").len(), 1);
    receiver.stop();
    d.stop();
}

#[test]
fn security_report_and_alert_listing() {
    let tmp = tempfile::tempdir().unwrap();
    let (logs, glob) = logs_dir(tmp.path());
    let log = logs.join("access.log");
    let mut lines = String::new();
    for i in 0..12 {
        lines.push_str(&format!(
            "203.0.113.9 - - [29/Nov/2026:10:00:{i:02} +0000] \"GET /search?q=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1\" 200 10 \"-\" \"sqlmap/1.7\" 0.010\n"
        ));
    }
    lines.push_str(
        "198.51.100.7 - - [29/Nov/2026:10:00:30 +0000] \"GET / HTTP/1.1\" 200 10 \"-\" \"Mozilla/5.0\" 0.010\n",
    );
    append(&log, &lines);
    let d = start(tmp.path(), &glob, "");
    assert_eq!(d.wait_total("*", 13, Duration::from_secs(30)), 13);
    let (status, body) =
        http_get(d.addr, "/api/v1/security-report?from=2026-11-29T00:00:00Z&to=2026-11-30T00:00:00Z").unwrap();
    assert_eq!(status, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["status"], "FAILED", "{r}");
    assert_eq!(r["severity"]["critical"], 12, "{r}");
    assert_eq!(r["top_clients"][0]["value"], "203.0.113.9");
    assert_eq!(r["top_clients"][0]["count"], 12);
    assert!(r["recommendations"].to_string().contains("parameterised"), "{r}");
    let (status, body) =
        http_get(d.addr, "/api/v1/security-report?from=2026-11-28T00:00:00Z&to=2026-11-29T00:00:00Z").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"PASSED\""), "{body}");
    assert_eq!(http_get(d.addr, "/api/v1/security-report?n=0").unwrap().0, 400);
    let (_, body) = http_get(d.addr, "/api/v1/alerts").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rules"][0]["name"], "CheckoutErrors");
    assert_eq!(v["rules"][0]["window"], "5m");
    // The rule file is reloaded when it changes; a broken one is refused and the old rules kept.
    let rules = tmp.path().join("alerts.toml");
    let names = |d: &Daemon| -> Vec<String> {
        let (_, body) = http_get(d.addr, "/api/v1/alerts").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
    };
    std::thread::sleep(Duration::from_millis(1100)); // a new modification time
    std::fs::write(&rules, format!("{RULES}\n[[alert]]\nname = \"Quiet\"\nkind = \"absent\"\nwindow = \"1h\"\n"))
        .unwrap();
    wait_for("the reloaded rules", Duration::from_secs(10), || (names(&d).len() == 2).then_some(()));
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&rules, "[[alert]]\nname = \"Broken\"\nkind = \"sometimes\"\nwindow = \"1h\"\n").unwrap();
    wait_for("the refusal in the log", Duration::from_secs(10), || {
        std::fs::read_to_string(&d.log).ok()?.contains("alert rules not reloaded").then_some(())
    });
    assert_eq!(names(&d), ["CheckoutErrors", "Quiet"]);
    d.stop();
    // The CLI reads the same state from the data directory.
    let out = Command::new(common::BIN)
        .args(["alerts", "--data-dir", tmp.path().join("data").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 alerts, 0 notifications waiting"));
}
