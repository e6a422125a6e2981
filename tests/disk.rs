//! Disk trouble: the data directory on a small ext4 filesystem (a loop-mounted image) that the
//! test fills up and breaks under the running daemon. Each time reading pauses with a clear
//! error in the log and in `/health`, search keeps answering, and once the disk takes writes
//! again ingestion resumes from the last commit: every line indexed exactly once, the index
//! intact. Mounting needs root (as CI runs); elsewhere the test says so and skips.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Daemon, TOKEN, line, request, wait_for};

const CHUNK: u64 = 3_000;
const IMAGE_MB: u64 = 64;

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).status().is_ok_and(|s| s.success())
}

/// An ext4 image mounted on a loop device for the test, unmounted when dropped.
struct Disk {
    image: PathBuf,
    dir: PathBuf,
}

impl Disk {
    fn mount(tmp: &Path) -> Option<Disk> {
        let disk = Disk { image: tmp.join("disk.img"), dir: tmp.join("disk") };
        fs::create_dir_all(&disk.dir).expect("mount point");
        let image = disk.image.to_str().expect("utf-8");
        let size = format!("{IMAGE_MB}M");
        // No blocks reserved for root: the daemon runs as root here and would use them.
        if run("truncate", &["-s", &size, image]) && run("mkfs.ext4", &["-q", "-F", "-m", "0", image]) && disk.attach()
        {
            return Some(disk);
        }
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI=true but an ext4 image cannot be mounted");
        eprintln!("SKIP: cannot loop-mount an ext4 image here (needs root and loop devices)");
        None
    }

    fn attach(&self) -> bool {
        let (image, dir) = (self.image.to_str().expect("utf-8"), self.dir.to_str().expect("utf-8"));
        run("mount", &["-o", "loop,errors=remount-ro", image, dir])
    }

    /// An ext4 error, as a failing disk causes: the kernel turns the filesystem read-only
    /// under the open files (`errors=remount-ro`).
    fn break_it(&self) {
        let out = Command::new("findmnt").args(["-n", "-o", "SOURCE"]).arg(&self.dir).output().expect("findmnt");
        let device = String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("/dev/").to_string();
        fs::write(format!("/sys/fs/ext4/{device}/trigger_fs_error"), "1").expect("trigger an ext4 error");
    }

    /// What an operator does after such an error: unmount, check, mount again.
    fn repair(&self) {
        assert!(run("umount", &[self.dir.to_str().expect("utf-8")]), "umount");
        let image = self.image.to_str().expect("utf-8");
        let fsck = Command::new("e2fsck").args(["-f", "-y", image]).status().expect("e2fsck");
        assert!(fsck.code().is_some_and(|c| c <= 1), "e2fsck found damage it could not repair: {fsck}");
        assert!(self.attach(), "mount again");
    }

    fn free_bytes(&self) -> u64 {
        let out = Command::new("df").args(["-B1", "--output=avail"]).arg(&self.dir).output().expect("run df");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df prints the free bytes")
    }

    /// Writes a filler file until only `leave` bytes are free (0: until the disk is full).
    fn fill(&self, leave: u64) -> PathBuf {
        let path = self.dir.join("filler");
        let mut f = OpenOptions::new().create(true).append(true).open(&path).expect("open filler");
        let block = vec![0x5au8; 64 * 1024];
        loop {
            let free = self.free_bytes();
            if free <= leave {
                break;
            }
            let n = (free - leave).min(block.len() as u64) as usize;
            if f.write_all(&block[..n]).and_then(|()| f.sync_data()).is_err() {
                break;
            }
        }
        path
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn append(path: &Path, from: u64, to: u64) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).expect("open log");
    let text: String = (from..to).map(line).collect();
    f.write_all(text.as_bytes()).expect("append");
}

fn start(tmp: &Path, data: &Path, glob: &str, min_free_mb: u64) -> Daemon {
    Daemon::with_config(tmp, &format!("[index]\nmin_free_mb = {min_free_mb}\n"), data, glob)
}

/// Waits until `/health` answers 503 "paused", and returns `/health/detailed`'s message.
fn wait_paused(d: &Daemon) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = common::http_get(d.addr, "/health").expect("health");
        if status == 503 && body.contains("\"paused\"") {
            break;
        }
        let log = fs::read_to_string(&d.log).unwrap_or_default();
        assert!(std::time::Instant::now() < deadline, "reading did not pause: {body}\nlog:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let reply = request(d.addr, "GET", "/health/detailed", Some(TOKEN), &[], &[]).expect("health");
    assert_eq!(reply.status, 503, "{}", reply.body);
    let v: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(v["ingest"]["paused"], true);
    v["message"].as_str().expect("a message").to_string()
}

fn wait_resumed(d: &Daemon, total: u64) {
    let seen = d.wait_total("*", total, Duration::from_secs(120));
    assert_eq!(seen, total, "ingestion did not resume; log:\n{}", fs::read_to_string(&d.log).unwrap_or_default());
    wait_for("health to recover", Duration::from_secs(30), || {
        matches!(common::http_get(d.addr, "/health"), Ok((200, _))).then_some(())
    });
}

#[test]
fn a_full_or_read_only_disk_pauses_reading_and_ingestion_resumes_without_loss() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(disk) = Disk::mount(tmp.path()) else { return };
    let data = disk.dir.join("data");
    let logs = tmp.path().join("logs");
    fs::create_dir_all(&logs).expect("logs dir");
    let glob = format!("{}/*.log", logs.display());
    let log = logs.join("access.log");

    // 1. Free space below the reserve: commits are refused before the disk is full.
    let d = start(tmp.path(), &data, &glob, 8);
    append(&log, 0, CHUNK);
    assert_eq!(d.wait_total("*", CHUNK, Duration::from_secs(60)), CHUNK);
    let filler = disk.fill(2 << 20);
    append(&log, CHUNK, 2 * CHUNK);
    let message = wait_paused(&d);
    println!("below the reserve: {message}");
    assert!(message.contains("below index.min_free_mb = 8"), "{message}");
    assert_eq!(d.total("*"), CHUNK, "search answers while paused, with what was committed");
    fs::remove_file(&filler).expect("free the space");
    wait_resumed(&d, 2 * CHUNK);

    // 2. The filesystem turns read-only under the daemon (an ext4 error); the operator stops
    //    the daemon, repairs and mounts the filesystem, and starts the daemon again.
    disk.break_it();
    append(&log, 2 * CHUNK, 3 * CHUNK);
    let message = wait_paused(&d);
    println!("read-only: {message}");
    assert!(message.to_lowercase().contains("read-only"), "{message}");
    assert_eq!(d.total("*"), 2 * CHUNK, "search answers on a read-only disk");
    d.stop();
    disk.repair();
    let d = start(tmp.path(), &data, &glob, 8);
    assert_eq!(d.wait_total("*", 3 * CHUNK, Duration::from_secs(60)), 3 * CHUNK);
    d.stop();

    // 3. No reserve: the disk fills up for real and tantivy's own writes fail (ENOSPC).
    let d = start(tmp.path(), &data, &glob, 0);
    let filler = disk.fill(0);
    append(&log, 3 * CHUNK, 4 * CHUNK);
    let message = wait_paused(&d);
    println!("disk full: {message}");
    assert!(common::http_get(d.addr, "/health").is_ok(), "the daemon keeps serving");
    fs::remove_file(&filler).expect("free the space");
    wait_resumed(&d, 4 * CHUNK);
    // Statistics were rebuilt from the index at each resumption: every request counted once.
    let stats = request(
        d.addr,
        "GET",
        "/api/v1/stats?from=2026-11-29T00:00:00Z&to=2026-11-30T00:00:00Z",
        Some(TOKEN),
        &[],
        &[],
    )
    .expect("stats");
    let stats: serde_json::Value = serde_json::from_str(&stats.body).expect("JSON");
    assert_eq!(stats["total"]["count"], 4 * CHUNK, "{stats}");
    d.kill9();

    let daemon_log = fs::read_to_string(tmp.path().join("d.log")).expect("daemon log");
    let paused = daemon_log.matches("ingestion paused").count();
    let resumed = daemon_log.matches("ingestion resumes from the last commit").count();
    println!("the daemon's log: {paused} pauses, {resumed} resumptions");
    assert!(paused >= 3 && resumed >= 2, "{daemon_log}");
    assert!(!daemon_log.contains("panicked at"), "{daemon_log}");

    // The index opens, and holds every line exactly once.
    let counts = common::seq_counts(&data.join("index"));
    let missing = (0..4 * CHUNK).filter(|s| !counts.contains_key(s)).count();
    let doubled = counts.values().filter(|c| **c > 1).count();
    println!("{} lines, {} indexed, {missing} missing, {doubled} doubled", 4 * CHUNK, counts.len());
    assert_eq!((missing, doubled), (0, 0));
}
