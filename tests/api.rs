//! The HTTP API as a client sees it: tokens and roles, security headers, metrics, detailed
//! health, POST search, limits, and bad input getting a 4xx that says what is wrong.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Daemon, TOKEN, line, request};

const READ_TOKEN: &str = "read-only-token-77e2";

fn daemon_with_read_token(tmp: &std::path::Path) -> Daemon {
    let logs = tmp.join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    std::fs::write(logs.join("access.log"), (0..20).map(line).collect::<String>()).expect("write");
    let cfg = tmp.join("lw.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[api]\nmax_body_bytes = 1024\n[[api.tokens]]\nname = \"grafana\"\nrole = \"read\"\ntoken_env = \"TEST_READ_TOKEN\"\n[[sources]]\ninclude = [{:?}]\nread_from = \"beginning\"\n",
            tmp.join("data").display().to_string(),
            format!("{}/*.log", logs.display())
        ),
    )
    .expect("config");
    // SAFETY: tests in this binary that read the variable run after it is set; nothing else
    // in the process reads or writes the environment concurrently.
    unsafe { std::env::set_var("TEST_READ_TOKEN", READ_TOKEN) };
    Daemon::start(&["--config", cfg.to_str().expect("utf-8")], &tmp.join("d.log"))
}

#[test]
fn tokens_roles_and_security_headers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = daemon_with_read_token(tmp.path());
    assert_eq!(d.wait_total("*", 20, Duration::from_secs(20)), 20);

    let r = request(d.addr, "GET", "/api/v1/search?q=*", None, &[], b"").expect("request");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"logwarden\""));
    assert!(r.body.contains("missing_token"));
    let r = request(d.addr, "GET", "/api/v1/search?q=*", Some("wrong"), &[], b"").expect("request");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"logwarden\", error=\"invalid_token\""));
    let r = request(d.addr, "GET", "/api/v1/search?q=*", Some(READ_TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = request(d.addr, "GET", "/health/detailed", Some(READ_TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 403, "a read token on an admin endpoint");
    assert!(r.body.contains("needs admin"));
    let r = request(d.addr, "GET", "/health/detailed", Some(TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    let health: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(health["healthy"], true);
    assert_eq!(health["index"]["documents"], 20);
    assert!(health["index"]["partitions"][0]["bytes"].as_u64().is_some_and(|b| b > 0));
    assert!(health["sources"].as_object().is_some_and(|s| s.len() == 1));

    // /health needs no token; every response, errors included, carries the security headers.
    for (path, token, status) in [("/health", None, 200), ("/nope", Some(TOKEN), 404), ("/api/v1/search", None, 401)] {
        let r = request(d.addr, "GET", path, token, &[], b"").expect("request");
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header("content-security-policy"), Some(logwarden::api::CSP), "{path}");
        assert!(!logwarden::api::CSP.contains("unsafe-"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("referrer-policy"), Some("strict-origin-when-cross-origin"));
        assert_eq!(r.header("permissions-policy"), Some(logwarden::api::PERMISSIONS_POLICY));
        assert_eq!(r.header("x-xss-protection"), Some("0"));
    }
    d.stop();
    let log = std::fs::read_to_string(tmp.path().join("d.log")).expect("log");
    assert!(!log.contains(READ_TOKEN) && !log.contains(TOKEN), "tokens are never logged");
}

#[test]
fn metrics_post_search_and_limits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = daemon_with_read_token(tmp.path());
    assert_eq!(d.wait_total("*", 20, Duration::from_secs(20)), 20);

    let r = request(
        d.addr,
        "POST",
        "/api/v1/search",
        Some(READ_TOKEN),
        &[("content-type", "application/json")],
        br#"{"q":"path:\"/item/3\"","limit":5}"#,
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"total\":1"), "{}", r.body);
    for (body, code) in [
        (&br#"{"q":"*","limti":5}"#[..], "invalid_body"),
        (&b"{not json"[..], "invalid_body"),
        (&br#"{"q":"*","limit":100000}"#[..], "invalid_limit"),
    ] {
        let r = request(d.addr, "POST", "/api/v1/search", Some(TOKEN), &[("content-type", "application/json")], body)
            .expect("request");
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains(code), "{}", r.body);
    }
    let big = vec![b'x'; 4096];
    let r = request(d.addr, "POST", "/api/v1/search", Some(TOKEN), &[("content-type", "application/json")], &big)
        .expect("request");
    assert_eq!(r.status, 413, "body over max_body_bytes");
    let r = request(d.addr, "GET", "/api/v1/search?q=*&from=now&to=now-1h", Some(TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("before"));
    let r = request(d.addr, "GET", "/api/v1/search?q=*&bogus=1", Some(TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 400, "unknown parameters are named: {}", r.body);

    let r = request(d.addr, "GET", "/metrics", Some(READ_TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let value = |name: &str| -> f64 {
        r.body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.parse().ok()).unwrap_or(-1.0)
    };
    assert_eq!(value("logwarden_events_indexed_total"), 20.0);
    assert_eq!(value("logwarden_records_read_total"), 20.0);
    assert_eq!(value("logwarden_index_documents"), 20.0);
    assert_eq!(value("logwarden_up"), 1.0);
    assert!(r.body.contains("logwarden_api_requests_total{route=\"/api/v1/search\",status=\"400\"}"), "{}", r.body);
    assert!(r.body.contains("logwarden_search_duration_seconds_count"));
    d.stop();
}

#[test]
fn no_token_beyond_loopback_is_refused_and_loopback_generates_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let out = Command::new(BIN)
        .args(["run", "--data-dir", data.to_str().expect("utf-8"), "--listen", "0.0.0.0:0", "--tail", "/nonexistent/*"])
        .env_remove("LOGWARDEN_API_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a token"));

    // On loopback a token is generated, kept with mode 0600, and printed on the first start only.
    let mut printed = Vec::new();
    for _ in 0..2 {
        let addr = common::free_addr();
        let child = Command::new(BIN)
            .args([
                "run",
                "--data-dir",
                data.to_str().expect("utf-8"),
                "--listen",
                &addr.to_string(),
                "--tail",
                "/nonexistent/*",
            ])
            .env_remove("LOGWARDEN_API_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start");
        let mut healthy = false;
        for _ in 0..200 {
            if let Ok(r) = request(addr, "GET", "/health", None, &[], b"") {
                healthy = r.status == 200;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(healthy);
        let token_file = data.join("api-token");
        let token = std::fs::read_to_string(&token_file).expect("token file").trim().to_string();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_file).expect("meta").permissions().mode() & 0o777, 0o600);
        let r = request(addr, "GET", "/api/v1/search?q=*", Some(&token), &[], b"").expect("request");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success());
        printed.push(String::from_utf8_lossy(&out.stdout).matches(token.as_str()).count());
    }
    assert_eq!(printed, [1, 0], "printed once, on the first start");
}

#[test]
fn pagination_sort_fields_and_export() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = common::logs_dir(tmp.path());
    let log = logs.join("access.log");
    // 100 lines with their own second, then 40 sharing one millisecond (ties across pages).
    let mut text: String = (0..100).map(line).collect();
    for i in 0..40 {
        text.push_str(&format!(
            "10.9.9.{i} - - [29/Nov/2026:11:00:00 +0000] \"GET /tie/{i} HTTP/1.1\" 200 5 \"-\" \"=cmd|'/c calc'!A1\" 0.{i:03}\n"
        ));
    }
    std::fs::write(&log, &text).expect("write");
    let d = Daemon::tailing(tmp.path(), &glob);
    assert_eq!(d.wait_total("*", 140, Duration::from_secs(20)), 140);

    let get = |path: &str| -> serde_json::Value {
        let r = request(d.addr, "GET", path, Some(TOKEN), &[], b"").expect("request");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        serde_json::from_str(&r.body).expect("json")
    };
    // Page newest-first with a small limit while newer lines keep arriving.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/search?q=*&limit=7&cursor={c}"),
            None => "/api/v1/search?q=*&limit=7".to_string(),
        };
        let page = get(&path);
        for hit in page["hits"].as_array().expect("hits") {
            assert!(seen.insert(hit["id"].as_str().expect("id").to_string()), "a hit came back twice: {hit}");
        }
        pages += 1;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).expect("open");
        std::io::Write::write_all(
            &mut f,
            format!(
                "10.8.8.8 - - [29/Nov/2026:12:00:{:02} +0000] \"GET /late/{pages} HTTP/1.1\" 200 1 \"-\" \"x\" 0.001\n",
                pages % 60
            )
            .as_bytes(),
        )
        .expect("append");
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 100, "pagination does not end");
    }
    assert_eq!(seen.len(), 140, "every event of the first page's view once, none of the later ones");

    let oldest = get("/api/v1/search?q=*&limit=1&sort=oldest");
    assert_eq!(oldest["hits"][0]["path"], "/item/0");
    let slowest = get("/api/v1/search?q=path:%22/item/999%22%20OR%20route:%22/item/:id%22&limit=1&sort=duration_ms");
    assert_eq!(slowest["hits"][0]["duration_ms"], 99.0);
    let fields = get("/api/v1/search?q=*&limit=2&fields=status,path");
    let keys: Vec<&String> = fields["hits"][0].as_object().expect("object").keys().collect();
    assert_eq!(keys, ["path", "status"]);
    for bad in [
        "/api/v1/search?fields=status,password",
        "/api/v1/search?sort=random",
        "/api/v1/search?cursor=zz",
        "/api/v1/search?sort=duration_ms&cursor=7b7d",
    ] {
        let r = request(d.addr, "GET", bad, Some(TOKEN), &[], b"").expect("request");
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }

    let r =
        request(d.addr, "GET", "/api/v1/search/export?q=route:%22/tie/:id%22", Some(TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let rows: Vec<serde_json::Value> = r.body.lines().map(|l| serde_json::from_str(l).expect("ndjson line")).collect();
    assert_eq!(rows.len(), 40);
    let r = request(d.addr, "GET", "/api/v1/search/export?q=route:%22/tie/:id%22&format=csv", Some(TOKEN), &[], b"")
        .expect("request");
    assert_eq!(r.status, 200);
    let lines: Vec<&str> = r.body.lines().collect();
    assert!(lines[0].starts_with("timestamp,status,method,path"));
    assert_eq!(lines.len(), 41);
    assert!(lines[1].contains("'=cmd|"), "a formula in a cell is defused: {}", lines[1]);
    let r = request(d.addr, "GET", "/api/v1/search/export?q=status:%5B1%20TO", Some(TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 400, "a bad export query fails before streaming");
    d.stop();
}

#[test]
fn context_and_top_values() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = common::logs_dir(tmp.path());
    std::fs::write(logs.join("a.log"), (0..50).map(line).collect::<String>()).expect("write");
    std::fs::write(logs.join("b.log"), (1000..1010).map(line).collect::<String>()).expect("write");
    let d = Daemon::tailing(tmp.path(), &glob);
    assert_eq!(d.wait_total("*", 60, Duration::from_secs(20)), 60);
    let hit = &d.search(r#"path:"/item/20""#, 1)["hits"][0];
    let id = hit["id"].as_str().expect("id");
    let r = request(d.addr, "GET", &format!("/api/v1/events/{id}/context?before=3&after=2"), Some(TOKEN), &[], b"")
        .expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    let ctx: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    let paths = |k: &str| -> Vec<String> {
        ctx[k].as_array().expect("list").iter().map(|h| h["path"].as_str().unwrap_or("").to_string()).collect()
    };
    assert_eq!(paths("before"), ["/item/17", "/item/18", "/item/19"], "in file order, same file only");
    assert_eq!(ctx["event"]["path"], "/item/20");
    assert_eq!(paths("after"), ["/item/21", "/item/22"]);
    let r = request(d.addr, "GET", "/api/v1/events/nope:1/context", Some(TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 404);

    let r = request(d.addr, "GET", "/api/v1/fields/client_ip/top?n=3&q=route:%22/item/:id%22", Some(TOKEN), &[], b"")
        .expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    let top: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(top["values"].as_array().expect("values").len(), 3);
    let r = request(d.addr, "GET", "/api/v1/fields/status/top", Some(TOKEN), &[], b"").expect("request");
    let top: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(top["values"][0]["count"], 60, "{top}");
    let r = request(d.addr, "GET", "/api/v1/fields/user_agent/top?n=1", Some(TOKEN), &[], b"").expect("request");
    let top: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(top["values"][0]["value"], "loadgen/1.0", "{top}");
    // line(seq) puts its client in 10.0.(seq/250).(seq%250): all 60 are in 10.0.0.0/8, and the
    // 50 of a.log plus 1000..1010 split across 10.0.0.0/24 and 10.0.4.0/24.
    assert_eq!(d.total("client_ip:10.0.0.0/8"), 60);
    assert_eq!(d.total("client_ip:10.0.0.0/24"), 50);
    assert_eq!(d.total("client_ip:10.0.4.0/24 AND status:200"), 10);
    let r = request(d.addr, "GET", "/api/v1/search?q=client_ip:10.0.0.0/40", Some(TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 400, "{}", r.body);
    let r = request(d.addr, "GET", "/api/v1/fields/password/top", Some(TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 400);
    d.stop();
}

#[test]
fn per_token_rate_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\nsources = []\n[api]\nrate_limit_per_minute = 5\n",
            tmp.path().join("data").display().to_string()
        ),
    )
    .expect("config");
    let d = Daemon::start(&["--config", cfg.to_str().expect("utf-8")], &tmp.path().join("d.log"));
    let statuses: Vec<u16> = (0..7)
        .map(|_| request(d.addr, "GET", "/api/v1/search?q=*", Some(TOKEN), &[], b"").expect("request").status)
        .collect();
    assert_eq!(&statuses[..5], [200; 5]);
    assert_eq!(statuses[5], 429);
    let r = request(d.addr, "GET", "/api/v1/search?q=*", Some(TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| (1..=60).contains(&s)));
    assert!(r.body.contains("rate_limited"));
    assert_eq!(
        request(d.addr, "GET", "/health", None, &[], b"").expect("request").status,
        200,
        "/health is not limited"
    );
    d.stop();
}

#[test]
fn repeated_searches_are_cached_until_the_next_commit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = common::logs_dir(tmp.path());
    let log = logs.join("access.log");
    std::fs::write(&log, (0..10).map(line).collect::<String>()).expect("write");
    let d = Daemon::tailing(tmp.path(), &glob);
    assert_eq!(d.wait_total("*", 10, Duration::from_secs(20)), 10);
    std::thread::sleep(Duration::from_millis(1500));
    let get = || request(d.addr, "GET", "/api/v1/search?q=*&limit=5", Some(TOKEN), &[], b"").expect("request");
    let first = get();
    let second = get();
    assert_eq!(first.header("x-cache"), Some("miss"));
    assert_eq!(second.header("x-cache"), Some("hit"));
    assert_eq!(
        first.body.replace(|c: char| c.is_ascii_digit(), ""),
        second.body.replace(|c: char| c.is_ascii_digit(), "")
    );
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).expect("open");
    std::io::Write::write_all(&mut f, line(10).as_bytes()).expect("append");
    assert_eq!(d.wait_total("*", 11, Duration::from_secs(20)), 11, "a commit invalidates the cached total");
    d.stop();
}

/// Native TLS with a generated certificate: HSTS on every HTTPS response, a plain listener that
/// redirects to it (health excepted), and behind a proxy only a trusted proxy's
/// `X-Forwarded-Proto` counts.
#[test]
fn tls_hsts_and_https_redirects() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("self-signed certificate");
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    std::fs::write(tmp.path().join("cert.pem"), &cert_pem).expect("cert");
    std::fs::write(tmp.path().join("key.pem"), &key_pem).expect("key");
    let (tls_addr, plain_addr) = (common::free_addr(), common::free_addr());
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[api]\nlisten = \"{tls_addr}\"\nmode = \"production\"\ntls_cert = {:?}\ntls_key = {:?}\nredirect_listen = \"{plain_addr}\"\n",
            tmp.path().join("data").display().to_string(),
            tmp.path().join("cert.pem").display().to_string(),
            tmp.path().join("key.pem").display().to_string(),
        ),
    )
    .expect("config");
    let mut child = Command::new(common::BIN)
        .args(["run", "--config", cfg.to_str().expect("utf-8")])
        .env("LOGWARDEN_API_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("d.log")).expect("log"))
        .spawn()
        .expect("start");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                    ureq::tls::Certificate::from_pem(cert_pem.as_bytes()).expect("pem"),
                ])))
                .build(),
        )
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let https = |path: &str| {
        let url = format!("https://localhost:{}{path}", tls_addr.port());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match agent.get(&url).header("authorization", &format!("Bearer {TOKEN}")).call() {
                Ok(r) => return r,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{url}: {e}"),
            }
        }
    };
    let r = https("/health");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000; includeSubDomains; preload");
    let r = https("/api/v1/search?q=*");
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("strict-transport-security"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    // Plain HTTP: a 301 to the same path on the TLS port; /health still answers for probes.
    let r = request(plain_addr, "GET", "/api/v1/search?q=status:500", Some(TOKEN), &[], b"").expect("plain");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://127.0.0.1:{}/api/v1/search?q=status:500", tls_addr.port()).as_str())
    );
    assert_eq!(r.header("strict-transport-security"), None, "no HSTS over plain HTTP");
    let r = request(plain_addr, "GET", "/health", None, &[], b"").expect("plain health");
    assert_eq!(r.status, 200);
    let _ = child.kill();
    let _ = child.wait();

    // Behind a proxy: production without native TLS trusts X-Forwarded-Proto from 127.0.0.1 only.
    let cfg2 = tmp.path().join("proxy.toml");
    std::fs::write(
        &cfg2,
        format!(
            "data_dir = {:?}\n[api]\nmode = \"production\"\ntrusted_proxies = [\"127.0.0.0/8\"]\nslow_query_ms = 0\n",
            tmp.path().join("data2").display().to_string()
        ),
    )
    .expect("config");
    let d = Daemon::start(&["--config", cfg2.to_str().expect("utf-8")], &tmp.path().join("d2.log"));
    fn proto(p: &str) -> [(&str, &str); 2] {
        [("x-forwarded-proto", p), ("x-forwarded-host", "logs.example.com")]
    }
    let r = request(d.addr, "GET", "/api/v1/search?q=*", Some(TOKEN), &proto("http"), b"").expect("request");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://logs.example.com/api/v1/search?q=*"));
    let r = request(d.addr, "GET", "/api/v1/search?q=*", Some(TOKEN), &proto("https"), b"").expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("strict-transport-security").is_some());
    let r = request(d.addr, "GET", "/api/v1/search?q=*", Some(TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 301, "plain HTTP in production");
    // slow_query_ms = 0: every search is logged as slow, with its duration and not its words.
    let log = std::fs::read_to_string(&d.log).expect("log");
    assert!(log.lines().any(|l| l.contains("slow search") && l.contains("took_ms=")), "{log}");
    drop(d);

    // In development an untrusted peer's header changes nothing.
    let d = daemon_with_read_token(&tmp.path().join("dev"));
    let r = request(d.addr, "GET", "/api/v1/search?q=*", Some(TOKEN), &proto("https"), b"").expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);
}

/// The OpenAPI document lists every endpoint the router serves, each with its errors.
#[test]
fn openapi_document_covers_every_endpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = daemon_with_read_token(tmp.path());
    let r = request(d.addr, "GET", "/api/v1/openapi.json", Some(READ_TOKEN), &[], b"").expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    let doc: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let mut ops: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            ops.push(format!("{} {path}", method.to_uppercase()));
            if path != "/health" {
                for code in ["400", "401", "403", "429"] {
                    assert!(op["responses"][code].is_object(), "{method} {path} does not document {code}");
                }
            }
        }
    }
    ops.sort();
    assert_eq!(
        ops,
        [
            "GET /api/v1/alerts",
            "GET /api/v1/events/{id}/context",
            "GET /api/v1/fields/{field}/top",
            "GET /api/v1/openapi.json",
            "GET /api/v1/search",
            "GET /api/v1/search/export",
            "GET /api/v1/security-report",
            "GET /api/v1/stats",
            "GET /api/v1/stats/slow",
            "GET /api/v1/stats/timeseries",
            "GET /api/v1/tail",
            "GET /health",
            "GET /health/detailed",
            "GET /metrics",
            "POST /api/v1/search",
        ]
    );
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let search = &doc["paths"]["/api/v1/search"]["get"];
    let params: Vec<&str> =
        search["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(params, ["q", "from", "to", "limit", "sort", "cursor", "fields"]);
}
