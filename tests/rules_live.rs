//! Rules in the running daemon: events are tagged as they are indexed, a rule file added to
//! `rules.dir` is picked up without a restart, and an invalid change is rejected with its file,
//! line and rule while the previous rules stay in force.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use common::Daemon;

const CUSTOM: &str = r#"
[[rule]]
id = "custom-internal-path"
name = "Internal admin path"
family = "policy"
severity = "HIGH"
score = 5
targets = ["path"]
transforms = ["lowercase"]
patterns = ['^/internal/']
examples = ["/internal/admin"]
counter_examples = ["/interns"]
"#;

fn append(path: &std::path::Path, lines: &[String]) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).expect("open");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
}

fn req(n: u32, target: &str, ua: &str) -> String {
    format!(r#"198.51.100.{n} - - [29/Nov/2026:10:00:{n:02} +0000] "GET {target} HTTP/1.1" 200 10 "-" "{ua}" 0.010"#)
}

#[test]
fn rules_tag_events_and_reload_without_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    let rules = tmp.path().join("rules.d");
    std::fs::create_dir_all(&logs).expect("mkdir");
    std::fs::create_dir_all(&rules).expect("mkdir");
    let cfg = tmp.path().join("lw.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[[sources]]\ninclude = [{:?}]\nread_from = \"beginning\"\n[rules]\ndir = {:?}\n",
            tmp.path().join("data").display().to_string(),
            format!("{}/*.log", logs.display()),
            rules.display().to_string(),
        ),
    )
    .expect("config");
    let daemon_log = tmp.path().join("d.log");
    let d = Daemon::start(&["--config", cfg.to_str().expect("utf-8")], &daemon_log);
    let log = logs.join("access.log");
    append(
        &log,
        &[
            req(1, "/products?id=1%27%20OR%20%271%27=%271", "Mozilla/5.0"),
            req(2, "/internal/admin", "Mozilla/5.0"),
            req(3, "/", "sqlmap/1.7"),
        ],
    );
    assert_eq!(d.wait_total("*", 3, Duration::from_secs(20)), 3);
    assert_eq!(d.total("attack:true"), 2);
    let hit = &d.search("family:sqli", 1)["hits"][0];
    assert_eq!(hit["severity"], "CRITICAL");
    assert!(hit["anomalies"].as_array().is_some_and(|a| a.iter().any(|r| r == "sqli-tautology")), "{hit}");
    let m =
        hit["matches"].as_array().and_then(|ms| ms.iter().find(|m| m["rule"] == "sqli-tautology")).expect("a match");
    assert_eq!(m["target"], "query");
    assert!(m["excerpt"].as_str().is_some_and(|e| e.contains("' or '1'='1")), "decoded excerpt: {m}");
    assert_eq!(d.total("anomalies:custom-internal-path"), 0, "not loaded yet");

    // A new rule file is picked up while the daemon runs.
    std::fs::write(rules.join("policy.toml"), CUSTOM).expect("write rule");
    let mut seen = 0;
    for i in 0..100 {
        append(&log, &[req(10 + i % 40, "/internal/admin", "Mozilla/5.0")]);
        std::thread::sleep(Duration::from_millis(150));
        seen = d.total("anomalies:custom-internal-path");
        if seen > 0 {
            break;
        }
    }
    assert!(seen > 0, "the added rule was never applied");

    // An invalid change is rejected, named, and the previous rules keep working.
    std::fs::write(rules.join("broken.toml"), "[[rule]]\nid = \"broken\"\nname = \"b\"\nfamily = \"x\"\nseverity = \"HIGH\"\nscore = 1\ntargets = [\"path\"]\npatterns = [\"(\"]\n").expect("write");
    std::thread::sleep(Duration::from_millis(800));
    let before = d.total("anomalies:custom-internal-path");
    append(&log, &[req(60, "/internal/again", "Mozilla/5.0")]);
    assert!(
        d.wait_total("anomalies:custom-internal-path", before + 1, Duration::from_secs(20)) > before,
        "previous rules still apply"
    );
    d.stop();
    let text = std::fs::read_to_string(&daemon_log).expect("log");
    assert!(text.contains("broken.toml:1: rule `broken`"), "the rejected file is named in the log");
    assert!(text.contains("keeping the previous rules"));
}
