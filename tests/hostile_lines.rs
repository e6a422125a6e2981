//! Bad input loses nothing: partial lines, 5 MiB lines, NUL bytes, invalid UTF-8 and garbage
//! are indexed as flagged or unparsed events, and the daemon keeps running.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use common::{Daemon, line};

#[test]
fn hostile_lines_are_kept_flagged_and_the_daemon_survives() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (logs, glob) = common::logs_dir(tmp.path());
    let d = Daemon::tailing(tmp.path(), &glob);
    let path = logs.join("app.log");
    let mut f = OpenOptions::new().create(true).append(true).open(&path).expect("open");

    f.write_all(line(1).as_bytes()).expect("write");
    // Half a line, then a pause long enough for several reads, then the rest.
    let half = line(2);
    f.write_all(&half.as_bytes()[..30]).expect("write");
    f.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(800));
    f.write_all(&half.as_bytes()[30..]).expect("write");
    // A 5 MiB line (cut at 1 MiB and flagged), NUL bytes, invalid UTF-8, terminal escapes,
    // and a line that is not a log line at all.
    let mut huge = line(3).trim_end().to_string().into_bytes();
    huge.extend(std::iter::repeat_n(b'A', 5 * 1024 * 1024));
    huge.push(b'\n');
    f.write_all(&huge).expect("write");
    f.write_all(line(4).replace("loadgen", "load\0gen").as_bytes()).expect("write");
    let (before, after) = line(5).split_once("loadgen").map(|(a, b)| (a.to_string(), b.to_string())).expect("ua");
    let bad_utf8 = [before.as_bytes(), b"load\xff\xfe\xc3gen", after.as_bytes()].concat();
    f.write_all(&bad_utf8).expect("write");
    f.write_all(b"\x1b[31mthis is not a request log line\x1b[0m\n").expect("write");
    f.write_all(line(6).as_bytes()).expect("write");
    f.flush().expect("flush");

    assert_eq!(d.wait_total("*", 7, Duration::from_secs(30)), 7, "every line is an event");
    assert_eq!(d.total("flags:truncated"), 1);
    assert_eq!(d.total("flags:nul"), 1);
    assert_eq!(d.total("flags:invalid_utf8"), 1);
    assert_eq!(d.total("unparsed:true"), 1);
    assert_eq!(d.total(r#"path:"/item/2""#), 1, "the partial line became one event once complete");
    assert_eq!(d.total(r#"path:"/item/3""#), 1, "the cut line still parsed");
    assert_eq!(d.total(r#"path:"/item/6""#), 1, "lines after the hostile ones are read");

    let hit = &d.search("flags:truncated", 1)["hits"][0];
    let raw = hit["raw"].as_str().expect("raw kept");
    assert_eq!(raw.len(), 1024 * 1024, "cut at max_line_bytes");
    let unparsed = &d.search("unparsed:true", 1)["hits"][0];
    assert!(unparsed["parse_error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(unparsed["raw"].as_str().expect("raw").contains("not a request log line"));

    let (status, body) = common::http_get(d.addr, "/health").expect("health");
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).expect("json");
    let per_file = &health["sources"][path.to_str().expect("utf-8")];
    assert_eq!(per_file["records"], 7, "{body}");
    assert_eq!(per_file["parse_errors"], 1, "unparsed lines are counted per source: {body}");
    assert_eq!(per_file["format"], "combined");
    d.stop();
}
