//! No secret reaches disk: lines carrying passwords, tokens, card numbers, SSNs, JWTs and keys
//! are searchable by their other fields, and not one planted secret appears in any file under
//! the data directory (the index, the ClickHouse spool, the alert outbox), in search results,
//! or in the daemon's own log. The sink and the alert receiver are unreachable, so what they
//! would have been sent stays on disk to be scanned.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::Daemon;

/// Each secret is unique so that finding it anywhere means it leaked.
const SECRETS: &[&str] = &[
    "Hunter2Planted91x",
    "tok_PlantedRefresh77q",
    "4539578763621486",
    "4916-3385-0618-1154",
    "078-05-1120",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.PlantedSig55",
    "AKIAPLANTEDKEY12345Z",
    "PlantedBearer0123456789",
    "PlantedCookieValue42",
    "PlantedDbPass88",
];
/// In a failing request of now, which the alert carries among its sample events.
const ALERT_SECRET: &str = "PlantedAlertPass61";

fn lines() -> Vec<String> {
    let s = SECRETS;
    let ts = "29/Nov/2026:10:00:00 +0000";
    vec![
        format!(r#"10.1.0.1 - - [{ts}] "GET /login?user=alice&password={} HTTP/1.1" 200 10 "-" "ua-one" 0.010"#, s[0]),
        format!(
            r#"10.1.0.2 - - [{ts}] "POST /api/auth/refresh?refreshToken={} HTTP/1.1" 200 10 "-" "ua-two" 0.010"#,
            s[1]
        ),
        format!(r#"10.1.0.3 - - [{ts}] "GET /pay?amount=5&note=card%20{} HTTP/1.1" 200 10 "-" "ua-three" 0.010"#, s[2]),
        format!(r#"10.1.0.4 - - [{ts}] "GET /pay?cc={} HTTP/1.1" 200 10 "-" "ua-four" 0.010"#, s[3]),
        format!(r#"10.1.0.5 - - [{ts}] "GET /verify?id={} HTTP/1.1" 200 10 "-" "ua-five" 0.010"#, s[4]),
        format!(
            r#"10.1.0.6 - - [{ts}] "GET /session HTTP/1.1" 200 10 "https://app.example.com/?jwt={}" "ua-six" 0.010"#,
            s[5]
        ),
        format!(
            r#"{{"time":"2026-11-29T10:00:00Z","method":"GET","url":"/keys","status":200,"ip":"10.1.0.7","apiKey":"{}","headers":{{"authorization":"Bearer {}","cookie":"sid={}"}}}}"#,
            s[6], s[7], s[8]
        ),
        format!(
            r#"time=2026-11-29T10:00:00Z method=GET path=/db status=500 ip=10.1.0.8 dsn=postgres://app:{}@db.internal/app"#,
            s[9]
        ),
    ]
}

fn files_containing(dir: &Path, needle: &[u8], out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_containing(&path, needle, out);
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            out.push(path.display().to_string());
        }
    }
}

#[test]
fn planted_secrets_never_reach_disk_results_or_logs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = common::logs_dir(tmp.path());
    let (data, daemon_log) = (tmp.path().join("data"), tmp.path().join("d.log"));
    // Port 9 on loopback refuses: events wait in the spool, notifications in the outbox.
    let rules = tmp.path().join("alerts.toml");
    std::fs::write(
        &rules,
        "[[alert]]\nname = \"AnyFailure\"\nkind = \"error_rate\"\nper = \"route\"\nwindow = \"1h\"\nthreshold = 0\nmin_requests = 1\n",
    )
    .expect("rules");
    let config = format!(
        "[clickhouse]\nenabled = true\nurl = \"http://127.0.0.1:9\"\n[alerts]\nevaluation_interval = \"300ms\"\nrules_file = {rules:?}\n[[alerts.receivers]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n"
    );
    let d = Daemon::with_config(tmp.path(), &config, &data, &glob);

    let mut f = OpenOptions::new().create(true).append(true).open(logs.join("app.log")).expect("open");
    for l in lines() {
        writeln!(f, "{l}").expect("write");
    }
    // A failure now, with a secret, so that the alert fires with it among its samples.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    writeln!(
        f,
        r#"{{"time":{now},"method":"GET","url":"/boom?password={ALERT_SECRET}","status":500,"ip":"10.1.0.9"}}"#
    )
    .expect("write");
    f.flush().expect("flush");
    let n = lines().len() as u64 + 1;
    assert_eq!(d.wait_total("*", n, Duration::from_secs(30)), n);

    // Searchable by their other fields.
    for (query, expect) in [
        ("client_ip:10.1.0.1", 1),
        (r#"path:"/login""#, 1),
        ("user_agent:three", 1),
        (r#"path:"/pay""#, 2),
        (r#"path:"/keys""#, 1),
        ("status:500", 2),
    ] {
        assert_eq!(d.total(query), expect, "{query}");
    }
    assert_eq!(d.total("REDACTED"), n, "every line had something redacted");

    // Not searchable, not returned.
    let all = d.search("*", 100).to_string();
    for secret in SECRETS {
        assert!(!all.contains(secret), "{secret} is in search results");
        let phrase = format!("\"{secret}\"");
        assert_eq!(d.total(&phrase), 0, "{secret} is in the term index");
    }
    // The alert fired, and its notification waits in the outbox with samples.
    let state = data.join("alerts").join("state.json");
    common::wait_for("the alert's notification in the outbox", Duration::from_secs(30), || {
        std::fs::read_to_string(&state).ok().filter(|s| s.contains("AnyFailure") && s.contains("/boom"))
    });
    d.stop();
    let mut spooled = Vec::new();
    files_containing(&data.join("spool"), b"/login", &mut spooled);
    assert!(!spooled.is_empty(), "the events wait in the spool");

    let log = std::fs::read_to_string(&daemon_log).expect("daemon log");
    assert!(log.contains("following file"), "the daemon log was captured");
    for secret in SECRETS {
        let mut found = Vec::new();
        files_containing(&data, secret.as_bytes(), &mut found);
        assert!(found.is_empty(), "{secret} found on disk in {found:?}");
        assert!(!log.contains(secret), "{secret} is in the daemon's log");
    }
    let mut found = Vec::new();
    files_containing(&data, ALERT_SECRET.as_bytes(), &mut found);
    assert!(found.is_empty(), "the alert's sample secret found on disk in {found:?}");
    assert!(!log.contains(ALERT_SECRET));
}
