//! The web dashboard in headless Chromium against the real daemon: each page loads with no
//! script error and no CSP violation (the page lists both in `#diagnostics`), the latency chart
//! draws what the stats API returns, a search finds the known events and a click on a hit opens
//! its context, secrets show as redacted, and a wrong token is refused. Screenshots of each
//! page go to `target/screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Daemon, TOKEN, http_get, logs_dir};

fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()));
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "chromium is missing and CI=true");
        eprintln!("SKIP: chromium is not installed");
    }
    found
}

/// Loads `url` in headless Chromium and returns the DOM once scripts have run; with `shot`,
/// also writes a screenshot there.
fn load(browser: &str, profile: &Path, url: &str, shot: Option<&Path>) -> String {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=8000",
        "--window-size=1280,1000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    match shot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `t` (epoch seconds) as a common log format time: `29/Nov/2026:10:00:00 +0000`.
fn clf_time(t: i64) -> String {
    let (y, m, d) = logwarden::parse::timestamp::civil_from_days(t.div_euclid(86400));
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][m as usize - 1];
    let secs = t.rem_euclid(86400);
    format!("{d:02}/{month}/{y}:{:02}:{:02}:{:02} +0000", secs / 3600, secs / 60 % 60, secs % 60)
}

fn attr<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let at = dom.find(&format!("{name}=\""))? + name.len() + 2;
    dom[at..].split('"').next()
}

fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let start = at + dom[at..].find('>').expect("tag end") + 1;
    dom[start..].split('<').next().unwrap_or("")
}

fn diagnostics(dom: &str) -> Vec<&str> {
    dom.match_indices("<li data-kind=").map(|(i, _)| dom[i..].split("</li>").next().unwrap_or("")).collect()
}

#[test]
fn dashboard_pages_in_headless_chromium() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = logs_dir(tmp.path());
    // Two hours of traffic ending now: three routes, some failures, a secret in one query string.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut text = String::new();
    for i in 0..2000i64 {
        let t = now - 7200 + i * 3;
        let (route, status) = match i % 10 {
            0 => ("/checkout?card=4111111111111111&password=hunter2secret", 500),
            1..=3 => ("/search", 200),
            _ => ("/api/users/42", 200),
        };
        text.push_str(&format!(
            "10.0.0.{} - - [{}] \"GET {route} HTTP/1.1\" {status} 100 \"-\" \"Mozilla/5.0\" 0.{:03}\n",
            i % 50,
            clf_time(t),
            (i * 37) % 1000
        ));
    }
    // Twelve injection attempts from one client, an hour ago.
    for k in 0..12i64 {
        let t = now - 3600 + k;
        text.push_str(&format!(
            "203.0.113.77 - - [{}] \"GET /search?q=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1\" 200 10 \"-\" \"sqlmap/1.7\" 0.004\n",
            clf_time(t)
        ));
    }
    std::fs::write(logs.join("access.log"), text).expect("write");
    let d = Daemon::tailing(tmp.path(), &glob);
    assert_eq!(d.wait_total("*", 2012, Duration::from_secs(30)), 2012);
    std::thread::sleep(Duration::from_millis(500)); // the statistics publish with the commit
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    let profile = |name: &str| -> PathBuf { tmp.path().join(format!("profile-{name}")) };
    let base = format!("http://{}/", d.addr);
    let (from, to) = (now - 7200, now + 60);
    let api = |path: &str| -> serde_json::Value {
        let (status, body) = http_get(d.addr, path).expect("api");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("json")
    };

    // Overview: the figures and the chart are the API's.
    let url = format!("{base}#token={TOKEN}&from={from}&to={to}");
    let dom = load(browser, &profile("overview"), &url, None);
    assert_eq!(attr(&dom, "data-ready"), Some("yes"), "{dom}");
    assert!(diagnostics(&dom).is_empty(), "{:?}", diagnostics(&dom));
    let stats = api(&format!("/api/v1/stats?from={from}&to={to}"));
    assert_eq!(text_of(&dom, "total-count"), stats["total"]["count"].to_string());
    for g in stats["groups"].as_array().unwrap() {
        assert!(dom.contains(&format!("data-route=\"{}\"", g["key"].as_str().unwrap())), "route {} missing", g["key"]);
    }
    let (sf, st) = (stats["from"].as_i64().unwrap(), stats["to"].as_i64().unwrap());
    let minutes = ((st - sf) as f64 / 60000.0 / 300.0).ceil().max(1.0) as i64;
    let series =
        api(&format!("/api/v1/stats/timeseries?from={}&to={}&interval={minutes}m", sf / 1000, (st + 999) / 1000));
    let points = series["points"].as_array().unwrap();
    assert_eq!(attr(&dom, "data-points"), Some(points.len().to_string().as_str()));
    let max_p99 = points.iter().filter_map(|p| p["p99_ms"].as_f64()).fold(0.0f64, f64::max);
    let drawn: f64 = attr(&dom, "data-max-p99").expect("max p99 drawn").parse().unwrap();
    assert!((drawn - max_p99).abs() < 1e-9, "chart {drawn} vs API {max_p99}");
    assert!(dom.contains("class=\"uplot"), "the chart was drawn");
    // Traffic and errors over the same points, adding up to the total.
    let traffic = &dom[dom.find("id=\"traffic-chart\"").expect("traffic chart")..];
    assert_eq!(attr(traffic, "data-points"), Some(points.len().to_string().as_str()));
    assert_eq!(attr(traffic, "data-requests"), Some(stats["total"]["count"].to_string().as_str()));
    // The slowest requests: the top route by p99 and its slowest request's duration.
    let slow = api(&format!("/api/v1/stats/slow?from={from}&to={to}&n=5&requests=3"));
    let slowest = &dom[dom.find("id=\"slowest\"").expect("slowest table")..];
    let slowest = slowest.split("</table>").next().unwrap();
    let top = &slow["routes"][0];
    assert!(slowest.contains(&format!("<td>{}</td>", top["route"].as_str().unwrap())), "{slowest}");
    let rows: usize = slow["routes"].as_array().unwrap().iter().map(|r| r["requests"].as_array().unwrap().len()).sum();
    assert_eq!(slowest.matches("<tr class=\"hit\"").count(), rows);
    load(browser, &profile("overview-shot"), &url, Some(&shots.join("overview.png")));

    // Search: the failures are found, a click opens the context, secrets show redacted.
    let url = format!("{base}#token={TOKEN}&page=search&from={from}&to={to}&q=status:500&open=first");
    let dom = load(browser, &profile("search"), &url, None);
    assert_eq!(attr(&dom, "data-ready"), Some("yes"), "{dom}");
    assert!(diagnostics(&dom).is_empty(), "{:?}", diagnostics(&dom));
    let found = api(&format!("/api/v1/search?q=status:500&from={from}&to={to}&limit=100"));
    assert_eq!(text_of(&dom, "search-summary"), format!("100 of {} matching events", found["total"]));
    assert_eq!(dom.matches("<tr class=\"hit\"").count(), 100);
    let first = found["hits"][0]["id"].as_str().unwrap();
    assert!(dom.contains(&format!("id=\"context\" data-event=\"{first}\"")), "the context of the first hit is open");
    assert!(dom.contains(&format!("class=\"focus\" data-id=\"{first}\"")));
    assert!(dom.contains("<span class=\"redacted\">[REDACTED]</span>"));
    assert!(!dom.contains("hunter2secret") && !dom.contains("4111111111111111"));
    load(browser, &profile("search-shot"), &url, Some(&shots.join("search.png")));

    // Anomalies: the verdict, counts and top client are the security report's.
    let url = format!("{base}#token={TOKEN}&page=anomalies&from={from}&to={to}");
    let dom = load(browser, &profile("anomalies"), &url, None);
    assert_eq!(attr(&dom, "data-ready"), Some("yes"), "{dom}");
    assert!(diagnostics(&dom).is_empty(), "{:?}", diagnostics(&dom));
    let report = api(&format!("/api/v1/security-report?from={from}&to={to}"));
    assert_eq!(text_of(&dom, "verdict"), report["status"].as_str().unwrap());
    assert_eq!(text_of(&dom, "sev-critical"), report["severity"]["critical"].to_string());
    assert!(dom.contains("<td>203.0.113.77</td><td class=\"num\">12</td>"), "top client");
    let anomalous =
        api(&format!("/api/v1/search?q={}&from={from}&to={to}&limit=1", common::encode("anomaly_score:>0")))["total"]
            .clone();
    let chart = &dom[dom.find("id=\"anomaly-chart\"").expect("chart")..];
    assert_eq!(attr(chart, "data-total"), Some(anomalous.to_string().as_str()));
    load(browser, &profile("anomalies-shot"), &url, Some(&shots.join("anomalies.png")));
    // The same chart by family: each attack is both sqli and scanner.
    let dom = load(browser, &profile("anomalies-family"), &format!("{url}&by=family"), None);
    assert!(diagnostics(&dom).is_empty(), "{:?}", diagnostics(&dom));
    let chart = &dom[dom.find("id=\"anomaly-chart\"").expect("chart")..];
    let series = attr(chart, "data-series").expect("series");
    assert!(series.contains("sqli") && series.contains("scanner"), "{series}");
    assert_eq!(attr(chart, "data-total"), Some("24"));

    // Alerts: the rules in force (the built-in set) and the current alerts.
    let url = format!("{base}#token={TOKEN}&page=alerts");
    let dom = load(browser, &profile("alerts"), &url, None);
    assert_eq!(attr(&dom, "data-ready"), Some("yes"), "{dom}");
    assert!(diagnostics(&dom).is_empty(), "{:?}", diagnostics(&dom));
    for name in ["AttackBurstFromClient", "HighErrorRate", "SlowP99", "LogStopped"] {
        assert!(dom.contains(&format!("<td>{name}</td>")), "rule {name}");
    }
    load(browser, &profile("alerts-shot"), &url, Some(&shots.join("alerts.png")));

    // Live: the stream delivers matching events since the start, each once. How many arrive
    // before the browser takes its snapshot depends on the machine's load: on a busy machine
    // the snapshot can come before the first event, so the page is loaded up to three times.
    let url = format!("{base}#token={TOKEN}&page=live&q=status:500&since={from}&max_seconds=3");
    let live_count = |dom: &str| -> u64 {
        let counter = &dom[dom.find("id=\"live-count\"").expect("counter")..];
        attr(counter, "data-count").expect("count").parse().unwrap()
    };
    let mut dom = String::new();
    for attempt in 0..3 {
        dom = load(browser, &profile(&format!("live-{attempt}")), &url, None);
        assert!(diagnostics(&dom).is_empty(), "{:?}", diagnostics(&dom));
        if live_count(&dom) > 0 {
            break;
        }
    }
    let failures = api(&format!("/api/v1/search?q=status:500&from={from}&limit=1"))["total"].as_u64().unwrap();
    let received = live_count(&dom);
    assert!(received > 0 && received <= failures, "{received} of {failures}");
    let mut ids: Vec<&str> =
        dom.match_indices("<tr data-id=\"").map(|(i, m)| dom[i + m.len()..].split('"').next().unwrap()).collect();
    assert_eq!(ids.len() as u64, received.min(200));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, received.min(200), "an event shown twice");
    load(browser, &profile("live-shot"), &url, Some(&shots.join("live.png")));

    // A wrong token is refused and the login form stays.
    let dom = load(browser, &profile("wrong"), &format!("{base}#token=not-the-token"), None);
    assert_eq!(attr(&dom, "data-ready"), Some("login"));
    assert_eq!(text_of(&dom, "login-error"), "This token was refused.");
    load(browser, &profile("login-shot"), &format!("{base}#token=not-the-token"), Some(&shots.join("login.png")));
    assert!(std::fs::metadata(shots.join("overview.png")).is_ok_and(|m| m.len() > 10_000));
    d.stop();
}

/// The page and its assets are served without a token, with the strict CSP, and hold no data.
#[test]
fn dashboard_assets_are_public_and_static() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, glob) = logs_dir(tmp.path());
    let d = Daemon::tailing(tmp.path(), &glob);
    for (path, kind) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
    ] {
        let r = common::request(d.addr, "GET", path, None, &[], b"").expect("request");
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").is_some_and(|c| c.starts_with(kind)), "{path}");
        assert!(r.header("content-security-policy").is_some_and(|c| c.contains("script-src 'self'")));
    }
    let r = common::request(d.addr, "GET", "/", None, &[], b"").unwrap();
    assert!(!r.body.contains("<script>") && !r.body.contains("style="), "no inline script or style");
    d.stop();
}

/// With 2,000 routes the overview stays bounded: it asks for the top 200 rows and says how
/// many there are, instead of transferring every route.
#[test]
fn the_overview_stays_bounded_with_two_thousand_routes() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = logs_dir(tmp.path());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut text = String::new();
    for i in 0..4000i64 {
        let t = now - 1800 + i / 4;
        text.push_str(&format!(
            "10.0.0.1 - - [{}] \"GET /r{}/items HTTP/1.1\" 200 10 \"-\" \"t\" 0.0{:02}\n",
            clf_time(t),
            i % 2000,
            i % 100
        ));
    }
    std::fs::write(logs.join("access.log"), text).expect("write");
    let d = Daemon::tailing(tmp.path(), &glob);
    assert_eq!(d.wait_total("*", 4000, Duration::from_secs(30)), 4000);
    std::thread::sleep(Duration::from_millis(500));
    let url = format!("http://{}/#token={TOKEN}&from={}&to={}", d.addr, now - 3600, now + 60);
    let dom = load(browser, &tmp.path().join("profile"), &url, None);
    assert_eq!(attr(&dom, "data-ready"), Some("yes"), "{dom}");
    assert!(diagnostics(&dom).is_empty(), "{:?}", diagnostics(&dom));
    assert_eq!(dom.matches("data-route=").count(), 200);
    assert_eq!(text_of(&dom, "routes-shown"), "(200 of 2000)");
    assert_eq!(text_of(&dom, "total-count"), "4000");
    d.stop();
}

/// Log text is shown as text: HTML and script in a logged request never become part of the page.
#[test]
fn html_in_log_lines_is_shown_as_text_never_run() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = logs_dir(tmp.path());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let ts = clf_time(now - 60);
    let payload = "/<img/src=x/onerror=document.body.setAttribute('data-owned','yes')>";
    let lines = [
        format!(
            "10.0.0.9 - - [{ts}] \"GET {payload} HTTP/1.1\" 404 5 \"-\" \"<script>document.title='owned'</script>\" 0.002\n"
        ),
        format!(
            "10.0.0.9 - - [{ts}] \"GET /ok HTTP/1.1\" 200 5 \"\\\"><svg/onload=document.body.setAttribute('data-owned','yes')>\" \"Mozilla/5.0\" 0.002\n"
        ),
    ];
    std::fs::write(logs.join("access.log"), lines.concat()).expect("write");
    let d = Daemon::tailing(tmp.path(), &glob);
    assert_eq!(d.wait_total("*", 2, Duration::from_secs(30)), 2);
    std::thread::sleep(Duration::from_millis(500));
    let (from, to) = (now - 3600, now + 60);
    let base = format!("http://{}/", d.addr);
    for (name, page) in [("search", "page=search&q=*&open=first"), ("overview", "page=overview")] {
        let url = format!("{base}#token={TOKEN}&{page}&from={from}&to={to}");
        let dom = load(browser, &tmp.path().join(format!("profile-{name}")), &url, None);
        assert_eq!(attr(&dom, "data-ready"), Some("yes"), "{dom}");
        assert!(diagnostics(&dom).is_empty(), "{:?}", diagnostics(&dom));
        assert!(!dom.contains("data-owned=\"yes\""), "an event handler from the log ran on the {name} page");
        assert!(!dom.contains("<title>owned</title>"), "a script from the log ran on the {name} page");
        assert!(!dom.contains("<img src=\"x\"") && !dom.contains("<svg"), "log text became markup on the {name} page");
        if name == "search" {
            assert!(dom.contains("&lt;img/src=x/onerror="), "the payload is shown as text");
        }
    }
}
