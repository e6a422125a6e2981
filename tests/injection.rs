//! Log injection: lines crafted to look like two events, to carry terminal escape sequences or
//! to smuggle a JSON field are each stored as one event with their real fields, and shown
//! safely by the API (JSON-escaped), the command line (control characters escaped) and the
//! daemon's own log. The dashboard side (HTML in log text) is in tests/dashboard.rs.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, Daemon, TOKEN, logs_dir, request};

const ESC: char = '\u{1b}';

/// Each entry: a line as an attacker would get it written, and how many events it must be.
fn crafted() -> Vec<String> {
    vec![
        // A JSON line whose user agent carries an escaped newline and a whole second event.
        r#"{"time":"2026-11-29T10:00:00Z","method":"GET","url":"/inj/json","status":200,"responseTime":5,"userAgent":"curl\r\n{\"time\":\"2026-11-29T10:00:01Z\",\"method\":\"GET\",\"url\":\"/admin/forged\",\"status\":200}"}"#.to_string(),
        // A combined line with a carriage return and a fake combined line in its user agent
        // (a terminal printing it raw would show only the forged request).
        "10.0.0.1 - - [29/Nov/2026:10:00:02 +0000] \"GET /inj/cr HTTP/1.1\" 200 5 \"-\" \"Mozilla\r10.6.6.6 - - [29/Nov/2026:10:00:02 +0000] GET /admin/forged 200\" 0.010".to_string(),
        // Terminal escapes in the path (clear screen, red text) and a slow duration, so the
        // daemon's slow-request warning carries the route into its own log.
        format!("10.0.0.2 - - [29/Nov/2026:10:00:03 +0000] \"GET /inj/ansi{ESC}[2J{ESC}[31mOWNED HTTP/1.1\" 200 5 \"-\" \"{ESC}]0;title{ESC}\\\\x\" 9.500"),
        // A user agent that would close the string and add fields to naively built JSON.
        r#"10.0.0.3 - - [29/Nov/2026:10:00:04 +0000] "GET /inj/field HTTP/1.1" 200 5 "-" "x\", \"status\": 500, \"admin\": \"true" 0.010"#.to_string(),
    ]
}

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run logwarden");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_no_control(what: &str, text: &str) {
    let bad: Vec<char> = text.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(bad.is_empty(), "{what} shows raw control characters {bad:?}:\n{text}");
}

#[test]
fn crafted_lines_are_one_event_each_and_are_shown_safely() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = logs_dir(tmp.path());
    let mut text = crafted().join("\n");
    text.push('\n');
    std::fs::write(logs.join("app.log"), text).expect("write the log");
    let d = Daemon::tailing(tmp.path(), &glob);
    let n = crafted().len() as u64;
    assert_eq!(d.wait_total("*", n, Duration::from_secs(30)), n);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.total("*"), n, "one event per line, none forged");
    assert_eq!(d.total(r#"path:"/admin/forged""#), 0, "the smuggled request is not an event");

    // The API: the fields are the line's own, and the JSON carries no raw control character.
    let reply = request(d.addr, "GET", "/api/v1/search?q=*&limit=10", Some(TOKEN), &[], &[]).expect("search");
    assert_eq!(reply.status, 200);
    assert!(!reply.body.contains(ESC) && !reply.body.contains('\r'), "the API escapes control characters");
    let hits: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    let by_path = |p: &str| -> serde_json::Value {
        hits["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .find(|h| h["path"].as_str().is_some_and(|x| x.starts_with(p)))
            .unwrap_or_else(|| panic!("no event for {p}: {hits}"))
            .clone()
    };
    let json = by_path("/inj/json");
    assert!(json["user_agent"].as_str().expect("ua").contains("/admin/forged"), "kept inside the one event");
    assert_eq!(by_path("/inj/cr")["status"], 200);
    let ansi = by_path("/inj/ansi");
    assert!(ansi["path"].as_str().expect("path").contains(ESC), "stored as written, escaped only when shown");
    let field = by_path("/inj/field");
    assert_eq!(field["status"], 200, "the smuggled status is not a field");
    assert!(field.get("admin").is_none(), "no smuggled field");

    // The daemon's own log (the slow-request warning names the route): escapes escaped.
    let daemon_log = std::fs::read_to_string(&d.log).expect("daemon log");
    assert!(daemon_log.contains("slow request"), "{daemon_log}");
    assert_no_control("the daemon's log", &daemon_log);
    d.stop();

    // The command line: one line per event, control characters escaped.
    let data = tmp.path().join("data");
    let data = data.to_str().expect("utf-8");
    let out = run(&["search", "--data-dir", data, "--from", "2026-11-29T00:00:00Z", "--limit", "10", "*"]);
    assert_no_control("logwarden search", &out);
    assert_eq!(out.lines().count() as u64, n + 1, "one line per event and the summary:\n{out}");
    assert!(out.contains(r"\u{1b}[2J"), "the escape is shown, not run:\n{out}");
    let out = run(&["stats", "--data-dir", data, "--from", "2026-11-29T00:00:00Z", "--to", "2026-11-30T00:00:00Z"]);
    assert_no_control("logwarden stats", &out);
}
