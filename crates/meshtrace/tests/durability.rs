//! What was acknowledged survives: `kill -9` and restart, a torn WAL tail, SIGTERM and restart.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::json;

/// Sends `n` traces of 3 spans each over OTLP/HTTP JSON; returns their ids once all were acked.
fn send_traces(server: &AllInOne, n: usize, tag: &str) -> Vec<String> {
    let url = format!("http://{}/v1/traces", server.addr("otlp-http"));
    let now = now_micros() * 1000;
    (0..n)
        .map(|i| {
            let trace_id = format!("{:016x}{:016x}", 0xd0d0_0000u64 + i as u64, now ^ (i as u64 * 7919));
            let spans: Vec<_> = (1..=3u64)
                .map(|s| {
                    json!({
                        "traceId": trace_id, "spanId": format!("{:016x}", s),
                        "parentSpanId": if s == 1 { String::new() } else { format!("{:016x}", s - 1) },
                        "name": format!("{tag}-op{s}"), "kind": 2,
                        "startTimeUnixNano": (now + s * 1000).to_string(),
                        "endTimeUnixNano": (now + 1_000_000).to_string(),
                    })
                })
                .collect();
            let body = json!({"resourceSpans": [{
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "durable"}}]},
                "scopeSpans": [{"spans": spans}]
            }]});
            let a = post(&url, &["Content-Type: application/json"], &serde_json::to_vec(&body).unwrap());
            assert_eq!(a.status, 200, "{}", a.text());
            trace_id
        })
        .collect()
}

fn assert_all_stored(server: &AllInOne, ids: &[String]) {
    for id in ids {
        let a = get(&server.query_url(&format!("/api/traces/{id}")));
        assert_eq!(a.status, 200, "trace {id} lost: {}", a.text());
        assert_eq!(
            a.json()["data"][0]["spans"].as_array().unwrap().len(),
            3,
            "trace {id} incomplete"
        );
    }
}

fn wal_segments(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .expect("wal folder exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn acknowledged_spans_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let ids = send_traces(&server, 40, "k9");
    server.kill9();

    let server = AllInOne::start(dir.path(), &[]);
    assert_all_stored(&server, &ids);
    // And it keeps taking data after recovery.
    let more = send_traces(&server, 5, "after");
    assert_all_stored(&server, &more);
}

#[test]
fn a_torn_wal_tail_is_cut_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let ids = send_traces(&server, 20, "torn");
    server.kill9();

    // A crash mid-append: a record header promising more bytes than were written.
    let segments = wal_segments(dir.path());
    let last = segments.last().expect("a WAL segment");
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    f.write_all(&[0x00, 0x10, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x0a, 0x01])
        .unwrap();
    drop(f);

    let server = AllInOne::start(dir.path(), &[]);
    assert_all_stored(&server, &ids);
    let more = send_traces(&server, 5, "after-torn");
    server.kill9();
    let server = AllInOne::start(dir.path(), &[]);
    assert_all_stored(&server, &ids);
    assert_all_stored(&server, &more);
}

#[test]
fn sigterm_flushes_to_a_block_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let ids = send_traces(&server, 10, "term");
    assert_eq!(server.terminate(), Some(0));
    let blocks = std::fs::read_dir(dir.path().join("blocks"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(blocks >= 1, "shutdown wrote the head to a block");

    let server = AllInOne::start(dir.path(), &[]);
    assert_all_stored(&server, &ids);
    let found = eventually(Duration::from_secs(5), || {
        let v = get_json(&server.query_url("/api/services"));
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "durable")
            .then_some(())
    });
    assert!(found.is_some(), "service list survives restart");
}
