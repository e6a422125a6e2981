//! Nothing lost, nothing doubled: 200,000 lines appended while the log is rotated by rename
//! twice and by copytruncate once, and the daemon is killed with SIGKILL twice and restarted.
//! Afterwards every line is in the index exactly once.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{Daemon, line};

const TOTAL: u64 = 200_000;
const CHUNK: u64 = 2_000;

fn append(path: &Path, from: u64, to: u64) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).expect("open log");
    let mut buf = String::new();
    for seq in from..to {
        buf.push_str(&line(seq));
    }
    f.write_all(buf.as_bytes()).expect("append");
}

fn rename_rotate(dir: &Path) {
    if dir.join("access.log.1").exists() {
        fs::rename(dir.join("access.log.1"), dir.join("access.log.2")).expect("rotate .1 to .2");
    }
    fs::rename(dir.join("access.log"), dir.join("access.log.1")).expect("rotate log to .1");
}

fn copy_truncate(dir: &Path) {
    fs::copy(dir.join("access.log"), dir.join("access.log.ct")).expect("copy");
    OpenOptions::new().write(true).open(dir.join("access.log")).expect("open").set_len(0).expect("truncate");
}

#[test]
fn rotation_truncation_and_sigkill_lose_and_double_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    fs::create_dir_all(&logs).expect("mkdir");
    let data = tmp.path().join("data");
    let daemon_log = tmp.path().join("daemon.log");
    let glob = format!("{}/access.log*", logs.display());
    let args = ["--data-dir", data.to_str().expect("utf-8 path"), "--tail", &glob, "--read-from", "beginning"];
    let log = logs.join("access.log");

    let mut daemon = Some(Daemon::start(&args, &daemon_log));
    let mut kills = 0;
    let mut seq = 0;
    while seq < TOTAL {
        append(&log, seq, seq + CHUNK);
        seq += CHUNK;
        match seq {
            40_000 | 90_000 => rename_rotate(&logs),
            120_000 => copy_truncate(&logs),
            60_000 | 140_000 => {
                daemon.take().expect("running").kill9();
                kills += 1;
            }
            70_000 | 150_000 => daemon = Some(Daemon::start(&args, &daemon_log)),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    assert_eq!(kills, 2);
    let d = daemon.take().expect("running at the end");
    let seen = d.wait_total("*", TOTAL, Duration::from_secs(180));
    // Give a duplicate, if any, the chance to show up before counting.
    std::thread::sleep(Duration::from_secs(2));
    let total = d.total("*");
    d.stop();
    println!("indexed {total} events for {TOTAL} lines (saw {seen} when waiting)");

    let counts = common::seq_counts(&data.join("index"));
    let missing: Vec<u64> = (0..TOTAL).filter(|s| !counts.contains_key(s)).collect();
    let doubled: Vec<(u64, u32)> = counts.iter().filter(|(_, c)| **c > 1).map(|(s, c)| (*s, *c)).collect();
    println!(
        "missing {} (first {:?}), doubled {} (first {:?})",
        missing.len(),
        missing.first(),
        doubled.len(),
        doubled.first()
    );
    assert!(missing.is_empty(), "lost {} lines, e.g. {:?}", missing.len(), &missing[..missing.len().min(10)]);
    assert!(doubled.is_empty(), "doubled {} lines, e.g. {:?}", doubled.len(), &doubled[..doubled.len().min(10)]);
    assert_eq!(total, TOTAL);
}
