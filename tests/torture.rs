//! A rotation storm: while lines are written steadily, the log is rotated by rename (keeping
//! three generations and deleting the oldest) and by copytruncate, alternately, every few
//! hundred milliseconds. Every line must be in the index exactly once, and no handle to a
//! deleted log may stay open.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{Daemon, line};

const ROUNDS: u64 = 30;
const CHUNK: u64 = 200;
const CHUNKS_PER_ROUND: u64 = 12;

fn append(path: &Path, from: u64, to: u64) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).expect("open log");
    let text: String = (from..to).map(line).collect();
    f.write_all(text.as_bytes()).expect("append");
}

/// Open handles of the daemon on files under `dir` that have been deleted.
fn deleted_handles(pid: u32, dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .filter(|p| p.starts_with(&dir) && p.ends_with(" (deleted)"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_rotation_storm_loses_and_doubles_nothing_and_releases_deleted_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    fs::create_dir_all(&logs).expect("mkdir");
    let glob = format!("{}/access.log*", logs.display());
    let data = tmp.path().join("data");
    let d = Daemon::start(
        &["--data-dir", data.to_str().unwrap(), "--tail", &glob, "--read-from", "beginning"],
        &tmp.path().join("d.log"),
    );
    let log = logs.join("access.log");
    let mut seq = 0;
    for round in 0..ROUNDS {
        for _ in 0..CHUNKS_PER_ROUND {
            append(&log, seq, seq + CHUNK);
            seq += CHUNK;
            std::thread::sleep(Duration::from_millis(25));
        }
        if round % 2 == 0 {
            // Rename rotation, three generations kept, the oldest deleted.
            let _ = fs::remove_file(logs.join("access.log.3"));
            for n in (1..3).rev() {
                let from = logs.join(format!("access.log.{n}"));
                if from.exists() {
                    fs::rename(&from, logs.join(format!("access.log.{}", n + 1))).expect("shift");
                }
            }
            fs::rename(&log, logs.join("access.log.1")).expect("rotate");
        } else {
            // copytruncate: the writer (this loop) is paused for the copy, as logrotate cannot
            // guarantee; the copy is kept.
            fs::copy(&log, logs.join(format!("access.log.ct{round}"))).expect("copy");
            OpenOptions::new().write(true).open(&log).expect("open").set_len(0).expect("truncate");
        }
    }
    let written = seq;
    assert_eq!(d.wait_total("*", written, Duration::from_secs(120)), written, "all lines indexed");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.total("*"), written, "and no more");
    // The oldest generations were deleted: no handle on them may remain.
    let _ = fs::remove_file(logs.join("access.log.3"));
    let _ = fs::remove_file(logs.join("access.log.2"));
    let mut left = Vec::new();
    for _ in 0..50 {
        left = deleted_handles(d.child.id(), &logs);
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(left.is_empty(), "handles to deleted logs still open: {left:?}");
    d.stop();

    let counts = common::seq_counts(&data.join("index"));
    let missing = (0..written).filter(|s| !counts.contains_key(s)).count();
    let doubled = counts.values().filter(|c| **c > 1).count();
    println!("{ROUNDS} rotations under {written} lines: {missing} missing, {doubled} doubled");
    assert_eq!((missing, doubled), (0, 0));
}

/// Twenty SIGKILLs at pseudo-random moments while a log grows and rotates: afterwards every
/// line is indexed once and the statistics equal those of a daemon that never crashed.
#[test]
fn twenty_sigkills_during_ingestion_leave_the_index_and_statistics_exact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    fs::create_dir_all(&logs).expect("mkdir");
    let glob = format!("{}/access.log*", logs.display());
    let start = |name: &str| {
        let data = tmp.path().join(name);
        Daemon::start(
            &["--data-dir", data.to_str().unwrap(), "--tail", &glob, "--read-from", "beginning"],
            &tmp.path().join(format!("{name}.log")),
        )
    };
    let log = logs.join("access.log");
    let mut d = start("crashy");
    let (mut seq, mut kills, mut rotations) = (0u64, 0, 0);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    while kills < 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // A few chunks, then a kill at a moment that depends on the generator.
        for _ in 0..(1 + x % 4) {
            append(&log, seq, seq + 500);
            seq += 500;
            std::thread::sleep(Duration::from_millis(20 + x % 60));
        }
        if x.is_multiple_of(3) {
            rotations += 1;
            fs::rename(&log, logs.join(format!("access.log.{rotations}"))).expect("rotate");
        }
        std::thread::sleep(Duration::from_millis(x % 300));
        d.kill9();
        kills += 1;
        d = start("crashy");
    }
    let written = seq;
    assert_eq!(d.wait_total("*", written, Duration::from_secs(120)), written);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(d.total("*"), written, "no line doubled");
    let clean = start("clean");
    assert_eq!(clean.wait_total("*", written, Duration::from_secs(120)), written);
    std::thread::sleep(Duration::from_secs(1));
    // 2026-11-29 10:00 to 11:00 UTC, the hour the generated lines fall in.
    let query = "/api/v1/stats?from=2026-11-29T10:00:00Z&to=2026-11-29T11:00:00Z&limit=1000";
    let (_, crashed) = common::http_get(d.addr, query).expect("stats");
    let (_, expected) = common::http_get(clean.addr, query).expect("stats");
    assert!(expected.contains(&format!("\"count\":{written}")), "{}", &expected[..expected.len().min(300)]);
    assert_eq!(crashed, expected, "statistics after 20 kills equal a crash-free run");
    println!("{kills} kills and {rotations} rotations under {written} lines: index and statistics exact");
    clean.stop();
    d.stop();
}
