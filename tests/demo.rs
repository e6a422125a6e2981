//! `logwarden demo` works on a fresh machine: the generator's traffic is indexed and
//! searchable, slow requests and errors are there, and planted secrets come back redacted.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Daemon};

#[test]
fn demo_indexes_generated_traffic_with_secrets_redacted() {
    let addr = common::free_addr();
    let child = Command::new(BIN)
        .args(["demo", "--listen", &addr.to_string(), "--rate", "400"])
        .env("LOGWARDEN_API_TOKEN", common::TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start demo");
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Daemon { child, addr, log: tmp.path().join("none") };
    d.wait_healthy(Duration::from_secs(30));
    assert!(d.wait_total("*", 500, Duration::from_secs(30)) >= 500);
    assert!(d.total("status:[500 TO 599]") > 0, "errors");
    assert!(d.total("duration_ms:>1000") > 0, "slow requests");
    assert!(d.total("sqlmap") + d.total("nikto") > 0, "attacks");
    assert!(d.total("attack:true AND family:scanner") > 0, "the rules tag the attack tools");
    assert!(d.total("family:traversal") > 0, "and the traversal attempts");
    let (status, body) = common::http_get(d.addr, "/api/v1/search?q=raw:*").expect("request");
    assert_eq!(status, 400, "a query the index cannot run is the client's mistake: {body}");
    assert!(d.total("REDACTED") > 0, "planted secrets were redacted");
    let all = d.search("REDACTED", 1000).to_string();
    for secret in ["Tr0ub4dor", "4111-1111-1111-1111", "078-05-1120", "AKIAIOSFODNN7EXAMPLE", "c2lnbmF0dXJl"] {
        assert!(!all.contains(secret), "{secret} came back");
    }
    d.stop();
}
