//! Latency and error statistics as a client sees them, checked against figures computed here
//! independently from the raw lines: exact nearest-rank percentiles, GoAccess's time served,
//! and the same answer before and after a kill -9.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{BIN, Daemon, corpus, encode, http_get, logs_dir};

/// 2026-11-28T10:00:00Z, a closed past hour.
const T0: i64 = 1_795_860_000;

/// One generated request: what the test knows without asking logwarden.
struct Req {
    route: &'static str,
    path: String,
    status: u16,
    ms: u64,
    client: u32,
}

const ROUTES: &[&str] = &["/api/users/:id", "/api/orders/:uuid", "/search", "/checkout", "/", "/api/items/:id/reviews"];

/// A deterministic mix: log-uniform durations from 1 ms to about 30 s, a few errors, ids and
/// UUIDs in paths so that routes need normalising.
fn generate(n: usize, seed: u64) -> Vec<Req> {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            let route = ROUTES[(r % ROUTES.len() as u64) as usize];
            let id = next() % 100_000;
            let path = match route {
                "/api/users/:id" => format!("/api/users/{id}"),
                "/api/orders/:uuid" => format!("/api/orders/{:08x}-1234-4abc-9def-{:012x}", id, next() % (1 << 40)),
                "/api/items/:id/reviews" => format!("/api/items/{id}/reviews"),
                other => other.to_string(),
            };
            let exp = next() % 15;
            let ms = ((1u64 << exp) + next() % (1u64 << exp)).min(30_000);
            let status = match next() % 50 {
                0..=2 => 500,
                3 => 503,
                4..=6 => 404,
                _ => 200,
            };
            Req { route, path, status, ms, client: (i % 40) as u32 }
        })
        .collect()
}

fn combined(reqs: &[Req], span_secs: i64) -> String {
    let mut out = String::new();
    for (i, r) in reqs.iter().enumerate() {
        let t = T0 + i as i64 * span_secs / reqs.len() as i64;
        let (h, m, s) = (t / 3600 % 24, t / 60 % 60, t % 60);
        out.push_str(&format!(
            "10.0.0.{} - - [28/Nov/2026:{h:02}:{m:02}:{s:02} +0000] \"GET {} HTTP/1.1\" {} 512 \"-\" \"loadgen/1.0\" {}.{:03}\n",
            r.client,
            r.path,
            r.status,
            r.ms / 1000,
            r.ms % 1000
        ));
    }
    out
}

/// Nearest rank: the smallest value with at least `q` of the values at or below it.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// Within HdrHistogram's precision (3 significant figures: 0.1 %), never below the exact value.
fn assert_close(what: &str, got: f64, exact: f64) {
    assert!(got >= exact - 1e-9 && got <= exact * 1.001 + 1e-9, "{what}: logwarden {got}, exact {exact}");
}

fn get_json(d: &Daemon, path: &str) -> serde_json::Value {
    let (status, body) = http_get(d.addr, path).expect("request");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

fn check_against_exact(label: &str, got: &serde_json::Value, durations: &mut [u64]) {
    durations.sort_unstable();
    assert_eq!(got["count"], durations.len() as u64, "{label}: count");
    for (field, q) in [("p50_ms", 0.5), ("p90_ms", 0.9), ("p95_ms", 0.95), ("p99_ms", 0.99), ("p999_ms", 0.999)] {
        let v = got[field].as_f64().unwrap_or_else(|| panic!("{label}: {field} missing in {got}"));
        assert_close(&format!("{label} {field}"), v, nearest_rank(durations, q) as f64);
    }
    assert_eq!(got["max_ms"].as_f64(), Some(*durations.last().expect("values") as f64), "{label}: max");
    let mean = durations.iter().sum::<u64>() as f64 / durations.len() as f64;
    assert!((got["mean_ms"].as_f64().expect("mean") - mean).abs() < 1e-5, "{label}: mean {got} vs {mean}");
}

#[test]
fn percentiles_per_route_match_exact_nearest_rank() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = logs_dir(tmp.path());
    let reqs = generate(20_000, 7);
    std::fs::write(logs.join("access.log"), combined(&reqs, 3600)).expect("write");
    let config = "[index]\nretention_days = 36500\n[stats]\nslow_request_ms = 2000\n";
    let d = Daemon::with_config(tmp.path(), config, &tmp.path().join("data"), &glob);
    assert_eq!(d.wait_total("*", 20_000, Duration::from_secs(60)), 20_000);
    let range = format!("from={T0}&to={}", T0 + 3600);
    let stats = get_json(&d, &format!("/api/v1/stats?{range}"));
    assert_eq!(stats["source"], "buckets");
    assert_eq!(stats["groups_total"], ROUTES.len());

    let mut by_route: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for r in &reqs {
        by_route.entry(r.route).or_default().push(r.ms);
    }
    for (route, durations) in &mut by_route {
        let group = stats["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["key"] == *route)
            .unwrap_or_else(|| panic!("no group {route} in {stats}"));
        check_against_exact(route, group, durations);
        let errors = reqs.iter().filter(|r| r.route == *route && r.status >= 500).count() as f64;
        let client = reqs.iter().filter(|r| r.route == *route && (400..500).contains(&r.status)).count() as f64;
        let slow = reqs.iter().filter(|r| r.route == *route && r.ms > 2000).count();
        let n = durations.len() as f64;
        assert!((group["error_rate"].as_f64().expect("rate") - errors / n).abs() < 1e-6, "{route} error_rate");
        assert!((group["client_error_rate"].as_f64().expect("rate") - client / n).abs() < 1e-6);
        assert_eq!(group["slow_count"], slow as u64, "{route} slow_count");
        assert!((group["rps"].as_f64().expect("rps") - n / 3600.0).abs() < 1e-6);
    }
    let mut all: Vec<u64> = reqs.iter().map(|r| r.ms).collect();
    check_against_exact("total", &stats["total"], &mut all);
    // Sorting and the top lists.
    let sorted = get_json(&d, &format!("/api/v1/stats?{range}&sort=p99"));
    let p99s: Vec<f64> =
        sorted["groups"].as_array().expect("groups").iter().map(|g| g["p99_ms"].as_f64().unwrap()).collect();
    assert!(p99s.windows(2).all(|w| w[0] >= w[1]), "sorted by p99: {p99s:?}");
    assert_eq!(sorted["slowest"][0]["key"], sorted["groups"][0]["key"]);
    assert!(sorted["failing"][0]["server_errors"].as_u64().expect("errors") > 0);

    // Any subset through the query language, from the index: one client's requests.
    let mut client7: Vec<u64> = reqs.iter().filter(|r| r.client == 7).map(|r| r.ms).collect();
    let sub = get_json(&d, &format!("/api/v1/stats?{range}&group_by=none&q={}", encode("client_ip:10.0.0.7")));
    assert_eq!(sub["source"], "index");
    check_against_exact("client 10.0.0.7", &sub["total"], &mut client7);
    // Filters and other groupings from the buckets.
    let s5 = get_json(&d, &format!("/api/v1/stats?{range}&group_by=status&status=5xx"));
    let mut five: Vec<u64> = reqs.iter().filter(|r| r.status >= 500).map(|r| r.ms).collect();
    check_against_exact("5xx", &s5["total"], &mut five);
    let keys: Vec<&str> = s5["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&"500") && keys.contains(&"503"));

    // The timeseries adds up to the total, minute by minute.
    let ts = get_json(&d, &format!("/api/v1/stats/timeseries?{range}&interval=1m&route={}", encode("/checkout")));
    let points = ts["points"].as_array().expect("points");
    assert_eq!(points.len(), 60);
    let sum: u64 = points.iter().map(|p| p["count"].as_u64().unwrap()).sum();
    assert_eq!(sum, by_route["/checkout"].len() as u64);
    let max = points.iter().filter_map(|p| p["max_ms"].as_f64()).fold(0.0, f64::max);
    assert_eq!(max, *by_route["/checkout"].iter().max().unwrap() as f64);

    // The slowest routes, each with its slowest requests, linking to them.
    let slow = get_json(&d, &format!("/api/v1/stats/slow?{range}&n=2&requests=3"));
    let first = &slow["routes"][0];
    assert_eq!(first["route"], sorted["groups"][0]["key"]);
    let durations: Vec<f64> =
        first["requests"].as_array().expect("requests").iter().map(|r| r["duration_ms"].as_f64().unwrap()).collect();
    assert_eq!(durations.len(), 3);
    assert_eq!(durations[0], first["stats"]["max_ms"].as_f64().unwrap());
    assert!(durations.windows(2).all(|w| w[0] >= w[1]));
    let link = first["requests"][0]["context"].as_str().expect("link");
    assert_eq!(http_get(d.addr, link).expect("context").0, 200);
    assert_eq!(http_get(d.addr, first["search"].as_str().expect("search link")).expect("search").0, 200);

    // Slow requests are logged with route, duration and threshold, but not one line each.
    let log = std::fs::read_to_string(&d.log).expect("daemon log");
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("slow request")).collect();
    let slow_total = reqs.iter().filter(|r| r.ms > 2000).count();
    assert!(!warnings.is_empty() && warnings.len() < 5, "{} warnings for {slow_total} slow requests", warnings.len());
    assert!(warnings[0].contains("route=") && warnings[0].contains("threshold_ms=2000"), "{}", warnings[0]);

    // Bad parameters are 400s that say what is wrong.
    for (path, needle) in [
        ("/api/v1/stats?group_by=colour", "group_by"),
        ("/api/v1/stats?sort=vibes", "sort"),
        ("/api/v1/stats?from=now&to=now-1h", "before"),
        ("/api/v1/stats?window=soon", "window"),
        ("/api/v1/stats?q=status:[5", "invalid"),
        ("/api/v1/stats/timeseries?interval=30s", "whole minutes"),
        ("/api/v1/stats/timeseries?window=30d", "at most"),
        ("/api/v1/stats?limit=0", "limit"),
    ] {
        let (status, body) = http_get(d.addr, path).expect("request");
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains(needle), "{path}: {body}");
    }
    d.stop();
}

#[test]
fn stats_are_the_same_after_kill9_as_without_a_crash() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = logs_dir(tmp.path());
    let reqs = generate(60_000, 99);
    std::fs::write(logs.join("access.log"), combined(&reqs, 3600)).expect("write");
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(&cfg, "[index]\nretention_days = 36500\ncommit_interval = \"200ms\"\n").expect("config");
    let start = |name: &str| {
        let data = tmp.path().join(name);
        Daemon::start(
            &[
                "--config",
                cfg.to_str().expect("utf-8"),
                "--data-dir",
                data.to_str().expect("utf-8"),
                "--tail",
                &glob,
                "--read-from",
                "beginning",
            ],
            &tmp.path().join(format!("{name}.log")),
        )
    };
    let queries = [
        format!("/api/v1/stats?from={T0}&to={}&limit=1000", T0 + 3600),
        format!("/api/v1/stats?from={}&to={}&group_by=status", T0 + 600, T0 + 2400),
        format!("/api/v1/stats/timeseries?from={T0}&to={}&interval=5m", T0 + 3600),
    ];
    let answers =
        |d: &Daemon| -> Vec<String> { queries.iter().map(|q| http_get(d.addr, q).expect("stats").1).collect() };

    let clean = start("clean");
    assert_eq!(clean.wait_total("*", 60_000, Duration::from_secs(120)), 60_000);
    let expected = answers(&clean);
    clean.stop();
    assert!(expected[0].contains("\"count\":60000"), "{}", &expected[0][..200.min(expected[0].len())]);

    // Kill in the middle of ingestion, twice, then once more after everything is in.
    let mut d = start("crashy");
    for round in 0..2 {
        let target = 15_000 * (round + 1);
        let seen = d.wait_total("*", target, Duration::from_secs(120));
        assert!(seen >= target, "round {round}: {seen}");
        d.kill9();
        d = start("crashy");
    }
    assert_eq!(d.wait_total("*", 60_000, Duration::from_secs(120)), 60_000);
    // Positions are committed with the events; wait for a commit to settle the last events.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(answers(&d), expected, "after two kills during ingestion");
    d.kill9();
    let d = start("crashy");
    assert_eq!(answers(&d), expected, "after a kill once everything was in");
    d.stop();
}

/// The netnea tutorial's production log carries `%D` (microseconds) in Apache's "extended"
/// format; every percentile must match the exact ones computed from its lines.
#[test]
fn netnea_production_log_percentiles_match_the_raw_lines() {
    let Some(corpus) = corpus() else { return };
    let file = corpus.join("logs/netnea-tutorials/tutorial-5-example-access.log");
    let text = std::fs::read_to_string(&file).expect("read the netnea log");
    // Expected figures straight from the lines: status is the field after the request, %D the
    // sixth field from the end.
    let mut by_status: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut all = Vec::new();
    for line in text.lines() {
        let after_request = line.split('"').nth(2).expect("a request field");
        let status = after_request.split_whitespace().next().expect("a status").to_string();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let us: u64 = fields[fields.len() - 6].parse().expect("%D is a number");
        by_status.entry(status).or_default().push(us);
        all.push(us);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = logs_dir(tmp.path());
    std::fs::copy(&file, logs.join("access.log")).expect("copy");
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir = {data:?}
[index]
retention_days = 36500
[filter]
skip_health_checks = false
skip_static_assets = false
[[sources]]
include = [{glob:?}]
read_from = "beginning"
format = "apache"
log_format = '%h %{{GEOIP_COUNTRY_CODE}}e %u [%{{%Y-%m-%d %H:%M:%S}}t.%{{usec_frac}}t] "%r" %>s %b "%{{Referer}}i" "%{{User-Agent}}i" %v %A %p %R %{{BALANCER_WORKER_ROUTE}}e %X "%{{cookie}}n" %{{UNIQUE_ID}}e %{{SSL_PROTOCOL}}x %{{SSL_CIPHER}}x %I %O %{{ratio}}n%% %D %{{ModSecTimeIn}}e %{{ApplicationTime}}e %{{ModSecTimeOut}}e %{{ModSecAnomalyScoreIn}}e %{{ModSecAnomalyScoreOut}}e'
"#,
            data = tmp.path().join("data").display().to_string(),
        ),
    )
    .expect("config");
    let d = Daemon::start(&["--config", cfg.to_str().expect("utf-8")], &tmp.path().join("d.log"));
    assert_eq!(d.wait_total("*", all.len() as u64, Duration::from_secs(60)), all.len() as u64);
    assert_eq!(d.total("unparsed:true"), 0);
    let range = "from=2016-01-01T00:00:00Z&to=2017-01-01T00:00:00Z";
    let stats = get_json(&d, &format!("/api/v1/stats?{range}&group_by=status&limit=100"));
    let check = |label: &str, got: &serde_json::Value, us: &mut Vec<u64>| {
        us.sort_unstable();
        assert_eq!(got["count"], us.len() as u64, "{label}: count");
        for (field, q) in [("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)] {
            let v = got[field].as_f64().unwrap_or_else(|| panic!("{label}: no {field}"));
            assert_close(&format!("{label} {field}"), v * 1000.0, nearest_rank(us, q) as f64);
        }
        let max = got["max_ms"].as_f64().expect("max") * 1000.0;
        assert!((max - *us.last().unwrap() as f64).abs() < 1e-3, "{label}: max {max}");
    };
    check("all", &stats["total"], &mut all);
    for (status, us) in &mut by_status {
        let group = stats["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["key"] == status.as_str())
            .unwrap_or_else(|| panic!("no status {status}"));
        check(status, group, us);
    }
    d.stop();
}

/// GoAccess's time served per request path (mean and max, in microseconds) against ours, on a
/// log whose paths need no normalising, so both group the same way.
#[test]
fn mean_and_max_time_served_match_goaccess() {
    if std::process::Command::new("goaccess").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "goaccess is missing and CI=true");
        eprintln!("SKIP: goaccess is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = logs_dir(tmp.path());
    let mut reqs = generate(8_000, 3);
    for r in &mut reqs {
        // Fixed paths, statuses GoAccess keeps in its requests panel.
        r.path = r.route.replace(":id", "list").replace(":uuid", "all");
        r.status = if r.status == 404 { 200 } else { r.status };
    }
    let log = logs.join("access.log");
    std::fs::write(&log, combined(&reqs, 3600)).expect("write");
    let report = tmp.path().join("report.json");
    let out = std::process::Command::new("goaccess")
        .arg(&log)
        .args([
            "--log-format=%h %^[%d:%t %^] \"%r\" %s %b \"%R\" \"%u\" %T",
            "--date-format=%d/%b/%Y",
            "--time-format=%H:%M:%S",
            "--no-progress",
            "-o",
        ])
        .arg(&report)
        .output()
        .expect("run goaccess");
    assert!(out.status.success(), "goaccess: {}", String::from_utf8_lossy(&out.stderr));
    let goaccess: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("goaccess json");

    let tmp_cfg = tmp.path().join("lw.toml");
    std::fs::write(&tmp_cfg, "[index]\nretention_days = 36500\n").expect("config");
    let data = tmp.path().join("data");
    let d = Daemon::start(
        &[
            "--config",
            tmp_cfg.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--tail",
            &glob,
            "--read-from",
            "beginning",
        ],
        &tmp.path().join("d.log"),
    );
    assert_eq!(d.wait_total("*", reqs.len() as u64, Duration::from_secs(60)), reqs.len() as u64);
    let ours = get_json(&d, &format!("/api/v1/stats?from={T0}&to={}", T0 + 3600));
    let items = goaccess["requests"]["data"].as_array().expect("requests panel");
    assert_eq!(items.len(), ROUTES.len(), "{items:?}");
    for item in items {
        let path = item["data"].as_str().expect("path");
        let group = ours["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"] == path)
            .unwrap_or_else(|| panic!("no route {path} in {ours}"));
        assert_eq!(group["count"], item["hits"]["count"], "{path}: hits");
        let mean_us = group["mean_ms"].as_f64().unwrap() * 1000.0;
        let avgts = item["avgts"].as_f64().expect("avgts");
        // GoAccess divides whole microseconds and truncates.
        assert_eq!(mean_us.floor(), avgts, "{path}: mean {mean_us} µs vs GoAccess {avgts}");
        assert_eq!(group["max_ms"].as_f64().unwrap() * 1000.0, item["maxts"].as_f64().unwrap(), "{path}: max");
    }
    d.stop();
}

/// `logwarden stats` reads the data directory and prints the same figures as a table.
#[test]
fn stats_command_prints_a_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = logs_dir(tmp.path());
    let reqs = generate(3_000, 5);
    std::fs::write(logs.join("access.log"), combined(&reqs, 3600)).expect("write");
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(&cfg, "[index]\nretention_days = 36500\n").expect("config");
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
    assert_eq!(d.wait_total("*", 3_000, Duration::from_secs(60)), 3_000);
    d.stop();
    let out = stats_cli(&data, &cfg, &["--from", &T0.to_string(), "--to", &(T0 + 3600).to_string()]);
    let checkout = reqs.iter().filter(|r| r.route == "/checkout").count();
    let row = out.lines().find(|l| l.starts_with("/checkout ")).unwrap_or_else(|| panic!("no /checkout row:\n{out}"));
    assert!(row.split_whitespace().nth(1) == Some(checkout.to_string().as_str()), "{row}");
    assert!(out.lines().next().unwrap_or_default().contains("P99_MS"), "{out}");
    let total = out.lines().find(|l| l.starts_with("TOTAL ")).unwrap_or_else(|| panic!("no TOTAL row:\n{out}"));
    assert_eq!(total.split_whitespace().nth(1), Some(reqs.len().to_string().as_str()), "{total}");
    let json = stats_cli(&data, &cfg, &["--from", &T0.to_string(), "--to", &(T0 + 3600).to_string(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(v["total"]["count"], reqs.len() as u64);
}

fn stats_cli(data: &Path, cfg: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .args(["stats", "--config", cfg.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run logwarden stats");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Configured templates win over the heuristics, and routes beyond `max_routes` are folded
/// into `other`, counted in the response and in /metrics.
#[test]
fn route_templates_and_the_route_cap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = logs_dir(tmp.path());
    let reqs = generate(2_000, 11);
    std::fs::write(logs.join("access.log"), combined(&reqs, 3600)).expect("write");
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(
        &cfg,
        "[index]\nretention_days = 36500\n[stats]\nmax_routes = 3\nroutes = [\"/api/users/:user\", \"/api/items/*\"]\n",
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
    assert_eq!(d.wait_total("*", 2_000, Duration::from_secs(60)), 2_000);
    let stats = get_json(&d, &format!("/api/v1/stats?from={T0}&to={}", T0 + 3600));
    let keys: Vec<&str> = stats["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap()).collect();
    // Templates are not subject to the cap; three heuristic routes are kept, the rest folded.
    assert!(keys.contains(&"/api/users/:user") && keys.contains(&"/api/items/*"), "{keys:?}");
    assert!(keys.contains(&"other"), "{keys:?}");
    assert_eq!(keys.len(), 2 + 3 + 1, "{keys:?}");
    let folded = stats["folded_routes"].as_u64().expect("folded");
    let other = stats["groups"].as_array().unwrap().iter().find(|g| g["key"] == "other").unwrap()["count"].as_u64();
    assert_eq!(Some(folded), other);
    let (_, metrics) = http_get(d.addr, "/metrics").expect("metrics");
    assert!(metrics.contains(&format!("logwarden_routes_folded_total {folded}")), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("logwarden_stats_series ") && l != "logwarden_stats_series 0"));
    // The folded route is what the index holds, so search agrees with the statistics.
    assert_eq!(d.total("route:other"), folded);
    d.stop();
}
