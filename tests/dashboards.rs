//! Every metric the Grafana dashboards use is one the daemon really exports.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Daemon, free_addr, http_get, logs_dir};

/// The `logwarden_*` metric names in a PromQL expression, histogram suffixes folded.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("logwarden_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        out.push(base.to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_dashboard_metric_is_exported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = logs_dir(tmp.path());
    // Traffic with an attack, so the anomaly families have samples.
    let mut lines = String::new();
    for i in 0..20 {
        lines.push_str(&common::line(i));
    }
    lines.push_str("203.0.113.5 - - [29/Nov/2026:10:00:00 +0000] \"GET /q?id=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1\" 200 5 \"-\" \"sqlmap/1.7\" 0.002\n");
    std::fs::write(logs.join("access.log"), lines).expect("write");
    // A ClickHouse sink (nothing listens there: it only spools) so its metrics exist too.
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(&cfg, format!("[clickhouse]\nenabled = true\nurl = \"http://{}\"\n", free_addr())).expect("config");
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
    assert_eq!(d.wait_total("*", 21, Duration::from_secs(30)), 21);
    let _ = d.search("status:200", 1); // one search, so the latency histogram has a sample
    let (status, metrics) = http_get(d.addr, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    let exported: BTreeSet<&str> =
        metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_whitespace().next()).collect();
    assert!(metrics.contains("logwarden_anomalies_total{severity=\"CRITICAL\"}"), "{metrics}");

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("dashboards/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("valid JSON");
        for panel in dash["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let names = metric_names(expr);
                assert!(!names.is_empty(), "{}: panel {:?} uses no logwarden metric", path.display(), panel["title"]);
                for name in names {
                    assert!(
                        exported.contains(name.as_str()),
                        "{}: panel {:?} uses {name}, which /metrics does not export",
                        path.display(),
                        panel["title"]
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} metric uses checked");
    d.stop();
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(logwarden_search_duration_seconds_bucket[5m]))) / logwarden_up"
        ),
        ["logwarden_search_duration_seconds", "logwarden_up"]
    );
}
