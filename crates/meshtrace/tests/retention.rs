//! Retention: blocks older than `--retention` disappear from disk and from queries, and newer
//! data stays.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn block_count(data: &Path) -> usize {
    std::fs::read_dir(data.join("blocks"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .count()
        })
        .unwrap_or(0)
}

fn send_envoy_like(server: &AllInOne, trace_id: &str) {
    let now = now_micros();
    let body = format!(
        r#"[{{"traceId":"{trace_id}","id":"352bff9a74ca9ad2","kind":"SERVER","name":"ingress",
            "timestamp":{now},"duration":1000,"localEndpoint":{{"serviceName":"short-lived"}}}}]"#
    );
    let url = format!("http://{}/api/v2/spans", server.addr("zipkin"));
    let a = post(&url, &["Content-Type: application/json"], body.as_bytes());
    assert_eq!(a.status, 202, "{}", a.text());
}

#[test]
fn expired_blocks_are_deleted_from_disk_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(
        dir.path(),
        &[
            "--retention",
            "4s",
            "--block-max-age",
            "1s",
            "--retention-interval",
            "200ms",
        ],
    );
    send_envoy_like(&server, "00000000000000000000000000000aaa");
    assert_eq!(get(&server.query_url("/api/traces/aaa")).status, 200);

    // The head is cut into a block within about a second...
    let cut = eventually(Duration::from_secs(15), || {
        (block_count(dir.path()) >= 1).then_some(())
    });
    assert!(cut.is_some(), "no block was written");
    assert_eq!(
        get(&server.query_url("/api/traces/aaa")).status,
        200,
        "readable from the block"
    );

    // ...and deleted once the retention has passed, from disk and from queries.
    let gone = eventually(Duration::from_secs(20), || {
        (block_count(dir.path()) == 0).then_some(())
    });
    assert!(gone.is_some(), "expired block still on disk");
    assert_eq!(get(&server.query_url("/api/traces/aaa")).status, 404);
    let services = get_json(&server.query_url("/api/services"));
    assert!(
        !services["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "short-lived"),
        "{services}"
    );

    // Fresh data is kept.
    send_envoy_like(&server, "00000000000000000000000000000bbb");
    assert_eq!(get(&server.query_url("/api/traces/bbb")).status, 200);
}
