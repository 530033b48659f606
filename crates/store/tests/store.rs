//! End-to-end tests of the store through its public API, on temporary folders.

mod common;

use std::time::Duration;

use common::*;
use model::{KeyValue, SpanKind, TraceBatch};
use store::{DependencyLink, Operation, Store, StoreConfig, TraceQuery};

fn records(batches: &[TraceBatch]) -> Vec<model::SpanRecord> {
    batches
        .iter()
        .flat_map(|b| b.clone().into_records())
        .collect()
}

#[tokio::test]
async fn append_then_read_back_exactly_from_head_block_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let b = rich_batch(1, t0);
    let expected = sorted(records(std::slice::from_ref(&b)));
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        store.append(b.clone()).await.unwrap();
        let got = store.trace(tid(1)).await.unwrap().unwrap();
        assert_eq!(got.trace_id, tid(1));
        assert_eq!(got.spans, expected, "from the head");

        store.flush().await.unwrap();
        let st = store.stats();
        assert_eq!((st.blocks, st.head_spans), (1, 0));
        let got = store.trace(tid(1)).await.unwrap().unwrap();
        assert_eq!(got.spans, expected, "from the block");
        assert!(store.trace(tid(2)).await.unwrap().is_none());
    }
    let store = Store::open(config(dir.path())).await.unwrap();
    let got = store.trace(tid(1)).await.unwrap().unwrap();
    assert_eq!(got.spans, expected, "after reopen");
    assert_eq!(
        store.stats().head_spans,
        0,
        "covered WAL must not be replayed"
    );
}

#[tokio::test]
async fn append_otlp_journals_the_received_bytes_and_replays_them_by_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let good = rich_batch(7, t0);
    // As a receiver got it: the good spans plus one with a 5-byte trace id.
    let mut request = wire::otlp::to_request(&good);
    let mut bad = request.resource_spans[0].scope_spans[0].spans[0].clone();
    bad.trace_id = vec![1; 5];
    request.resource_spans[0].scope_spans[0].spans.push(bad);
    let body = prost::Message::encode_to_vec(&request);
    let decoded = wire::otlp::decode_protobuf(&body).unwrap();
    assert_eq!(decoded.rejected_spans, 1);
    assert_eq!(decoded.batch, good);
    let expected = sorted(records(std::slice::from_ref(&good)));
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        store
            .append_otlp(decoded.batch, bytes::Bytes::from(body))
            .await
            .unwrap();
        assert_eq!(store.trace(tid(7)).await.unwrap().unwrap().spans, expected);
        // Dropped without flush: only the WAL holds the spans.
    }
    let store = Store::open(config(dir.path())).await.unwrap();
    let got = store.trace(tid(7)).await.unwrap().expect("replayed");
    assert_eq!(
        got.spans, expected,
        "replay keeps the good spans, leaves out the bad one"
    );
}

#[tokio::test]
async fn wal_replay_after_crash_without_flush() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let batches: Vec<_> = (0..5)
        .map(|i| batch("svc", vec![span(i, 1, None, "op", t0 + i, 100)]))
        .collect();
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        for b in &batches {
            store.append(b.clone()).await.unwrap();
        }
        // dropped without flush: only the WAL holds the spans
    }
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(store.stats().head_spans, 5);
    for i in 0..5 {
        let t = store.trace(tid(i)).await.unwrap().unwrap();
        assert_eq!(t.spans, records(&batches[i as usize..=i as usize]));
    }
    assert_eq!(store.services().await.unwrap(), vec!["svc".to_owned()]);
    // appends continue in a new segment; a second crash replays both generations
    store
        .append(batch("svc", vec![span(9, 1, None, "op", t0, 1)]))
        .await
        .unwrap();
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(store.stats().head_spans, 6);
}

/// Offsets where each record of a segment ends.
fn record_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
        ends.push(at);
    }
    ends
}

async fn three_appends_then_crash(dir: &std::path::Path) -> std::path::PathBuf {
    let store = Store::open(config(dir)).await.unwrap();
    let t0 = now();
    for i in 1..=3 {
        store
            .append(batch("svc", vec![span(i, i, None, "op", t0, 10)]))
            .await
            .unwrap();
    }
    drop(store);
    let segs = wal_segments(dir);
    assert_eq!(segs.len(), 1);
    segs[0].clone()
}

#[tokio::test]
async fn torn_or_garbled_wal_tail_keeps_earlier_records() {
    for damage in ["truncate", "garble", "garbage"] {
        let dir = tempfile::tempdir().unwrap();
        let seg = three_appends_then_crash(dir.path()).await;
        let bytes = std::fs::read(&seg).unwrap();
        let ends = record_ends(&bytes);
        assert_eq!(ends.len(), 3);
        match damage {
            "truncate" => std::fs::write(&seg, &bytes[..bytes.len() - 3]).unwrap(),
            "garble" => {
                let mut b = bytes.clone();
                let n = b.len();
                b[n - 2] ^= 0x5a;
                std::fs::write(&seg, b).unwrap();
            }
            _ => {
                let mut b = bytes.clone();
                b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2]);
                std::fs::write(&seg, b).unwrap();
            }
        }
        let store = Store::open(config(dir.path())).await.unwrap();
        assert!(store.trace(tid(1)).await.unwrap().is_some(), "{damage}");
        assert!(store.trace(tid(2)).await.unwrap().is_some(), "{damage}");
        let third = store.trace(tid(3)).await.unwrap().is_some();
        assert_eq!(third, damage == "garbage", "{damage}");
        let len = std::fs::metadata(&seg).unwrap().len() as usize;
        let want = if damage == "garbage" {
            ends[2]
        } else {
            ends[1]
        };
        assert_eq!(len, want, "{damage}: damaged tail truncated");
    }
}

#[tokio::test]
async fn corrupt_crc_in_the_middle_record_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let seg = three_appends_then_crash(dir.path()).await;
    let mut bytes = std::fs::read(&seg).unwrap();
    let ends = record_ends(&bytes);
    // flip a byte of the second record's stored CRC
    bytes[ends[0] + 5] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    assert!(store.trace(tid(1)).await.unwrap().is_some());
    assert!(store.trace(tid(2)).await.unwrap().is_none());
    assert!(store.trace(tid(3)).await.unwrap().is_some());
}

#[tokio::test]
async fn undecodable_wal_payload_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let seg = three_appends_then_crash(dir.path()).await;
    let mut bytes = std::fs::read(&seg).unwrap();
    // a well-framed record whose payload is not OTLP
    let junk = [0xffu8; 7];
    bytes.extend_from_slice(&(junk.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&junk).to_le_bytes());
    bytes.extend_from_slice(&junk);
    std::fs::write(&seg, &bytes).unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(store.stats().head_spans, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_cut_by_span_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.block_max_spans = 100;
    let store = Store::open(cfg.clone()).await.unwrap();
    let t0 = now();
    for i in 0..25u64 {
        let spans = (0..10)
            .map(|j| {
                span(
                    i % 7,
                    i * 10 + j + 1,
                    None,
                    &format!("op{}", j % 3),
                    t0 + i * 10 + j,
                    50,
                )
            })
            .collect();
        store.append(batch("svc", spans)).await.unwrap();
    }
    assert!(
        eventually(10, || store.stats().blocks >= 2).await,
        "{:?}",
        store.stats()
    );
    // covered WAL segments are gone; what remains belongs to the live head
    assert!(eventually(5, || wal_segments(dir.path()).len() <= 2).await);
    let all = store.trace(tid(3)).await.unwrap().unwrap();
    let want = (0..25u64).filter(|i| i % 7 == 3).count() * 10;
    assert_eq!(all.spans.len(), want);
    let found = store
        .find_traces(&TraceQuery {
            service: Some("svc".into()),
            operation: Some("op1".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 7);
    let total: usize = found.iter().map(|t| t.spans.len()).sum();
    assert_eq!(total, 250, "whole traces are returned");
    drop(store);
    // reopening: blocks plus the replayed live head, no span twice
    let store = Store::open(cfg).await.unwrap();
    let total: usize = {
        let mut n = 0;
        for i in 0..7 {
            n += store.trace(tid(i)).await.unwrap().unwrap().spans.len();
        }
        n
    };
    assert_eq!(total, 250);
}

#[tokio::test]
async fn trace_split_across_head_and_blocks_merges_and_dedups() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let t0 = now();
    let a = batch("frontend", vec![span(1, 1, None, "root", t0, 1000)]);
    let b = batch("backend", vec![span(1, 2, Some(1), "child", t0 + 10, 500)]);
    let c = batch("db", vec![span(1, 3, Some(2), "query", t0 + 20, 100)]);
    store.append(a.clone()).await.unwrap();
    store.flush().await.unwrap();
    store.append(b.clone()).await.unwrap();
    store.flush().await.unwrap();
    store.append(c.clone()).await.unwrap();
    // the same span again (a client retry): stored twice, returned once
    store.append(c.clone()).await.unwrap();
    assert_eq!(store.stats().blocks, 2);
    let t = store.trace(tid(1)).await.unwrap().unwrap();
    assert_eq!(t.spans, sorted(records(&[a.clone(), b.clone(), c.clone()])));
    store.flush().await.unwrap();
    let t = store.trace(tid(1)).await.unwrap().unwrap();
    assert_eq!(t.spans, sorted(records(&[a, b, c])));

    let found = store
        .find_traces(&TraceQuery {
            service: Some("db".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].spans.len(), 3);
    let deps = store
        .dependencies(t0 + 1_000_000, 10_000_000)
        .await
        .unwrap();
    assert_eq!(
        deps,
        vec![
            DependencyLink {
                parent: "backend".into(),
                child: "db".into(),
                call_count: 1,
                error_count: 0
            },
            DependencyLink {
                parent: "frontend".into(),
                child: "backend".into(),
                call_count: 1,
                error_count: 0
            },
        ]
    );
}

async fn search_fixture(store: &Store, t0: u64) {
    let mut s1 = span(1, 1, None, "GET /cart", t0, 5_000_000);
    s1.attributes = vec![
        KeyValue::new("http.status_code", 200i64),
        KeyValue::new("http.method", "GET"),
    ];
    let mut s2 = span(2, 2, None, "POST /pay", t0 + 1_000, 50_000_000);
    s2.attributes = vec![KeyValue::new("http.status_code", 500i64)];
    s2.status.code = model::StatusCode::Error;
    let mut s3 = span(3, 3, None, "GET /cart", t0 + 2_000, 1_000_000);
    s3.events = vec![model::Event {
        time_unix_nano: t0 + 2_500,
        name: "log".into(),
        attributes: vec![KeyValue::new("user.id", "u-42")],
        dropped_attributes_count: 0,
    }];
    s3.kind = SpanKind::Client;
    let s4 = span(3, 4, Some(3), "SELECT", t0 + 3_000, 100);
    store.append(batch("web", vec![s1, s2])).await.unwrap();
    store.append(batch("web", vec![s3])).await.unwrap();
    store.append(batch("db", vec![s4])).await.unwrap();
}

async fn ids(store: &Store, q: TraceQuery) -> Vec<u64> {
    store
        .find_traces(&q)
        .await
        .unwrap()
        .iter()
        .map(|t| t.trace_id.low())
        .collect()
}

async fn check_searches(store: &Store, t0: u64) {
    let q = |f: &dyn Fn(&mut TraceQuery)| {
        let mut q = TraceQuery::default();
        f(&mut q);
        q
    };
    // newest first by latest matching span start
    assert_eq!(ids(store, q(&|_| {})).await, vec![3, 2, 1]);
    assert_eq!(
        ids(store, q(&|q| q.service = Some("web".into()))).await,
        vec![3, 2, 1]
    );
    assert_eq!(
        ids(store, q(&|q| q.service = Some("db".into()))).await,
        vec![3]
    );
    assert_eq!(
        ids(store, q(&|q| q.service = Some("nope".into()))).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        ids(store, q(&|q| q.operation = Some("GET /cart".into()))).await,
        vec![3, 1]
    );
    assert_eq!(
        ids(
            store,
            q(&|q| {
                q.service = Some("db".into());
                q.operation = Some("GET /cart".into());
            })
        )
        .await,
        Vec::<u64>::new(),
        "one span must satisfy every condition"
    );
    assert_eq!(
        ids(
            store,
            q(&|q| q.tags = vec![("http.status_code".into(), "500".into())])
        )
        .await,
        vec![2]
    );
    assert_eq!(
        ids(
            store,
            q(&|q| q.tags = vec![("error".into(), "true".into())])
        )
        .await,
        vec![2]
    );
    assert_eq!(
        ids(
            store,
            q(&|q| q.tags = vec![("host.name".into(), "node-1".into())])
        )
        .await,
        vec![3, 2, 1],
        "resource attributes match"
    );
    assert_eq!(
        ids(
            store,
            q(&|q| q.tags = vec![("user.id".into(), "u-42".into())])
        )
        .await,
        vec![3],
        "event attributes match"
    );
    assert_eq!(
        ids(
            store,
            q(&|q| q.tags = vec![
                ("http.method".into(), "GET".into()),
                ("http.status_code".into(), "200".into()),
            ])
        )
        .await,
        vec![1]
    );
    assert_eq!(
        ids(
            store,
            q(&|q| q.tags = vec![("span.kind".into(), "client".into())])
        )
        .await,
        vec![3]
    );
    assert_eq!(
        ids(
            store,
            q(&|q| q.min_duration = Some(Duration::from_millis(2)))
        )
        .await,
        vec![2, 1]
    );
    assert_eq!(
        ids(
            store,
            q(&|q| q.max_duration = Some(Duration::from_millis(2)))
        )
        .await,
        vec![3]
    );
    assert_eq!(
        ids(
            store,
            q(&|q| {
                q.start_unix_nano = Some(t0 + 500);
                q.end_unix_nano = Some(t0 + 1_500);
            })
        )
        .await,
        vec![2]
    );
    assert_eq!(ids(store, q(&|q| q.limit = 2)).await, vec![3, 2]);
    let found = store
        .find_traces(&q(&|q| q.service = Some("db".into())))
        .await
        .unwrap();
    assert_eq!(found[0].spans.len(), 2, "whole trace returned");

    assert_eq!(store.services().await.unwrap(), vec!["db", "web"]);
    let ops = store.operations("web", None).await.unwrap();
    assert_eq!(
        ops,
        vec![
            Operation {
                name: "GET /cart".into(),
                span_kind: SpanKind::Server
            },
            Operation {
                name: "GET /cart".into(),
                span_kind: SpanKind::Client
            },
            Operation {
                name: "POST /pay".into(),
                span_kind: SpanKind::Server
            },
        ]
    );
    let ops = store
        .operations("web", Some(SpanKind::Client))
        .await
        .unwrap();
    assert_eq!(ops.len(), 1);
    assert!(store.operations("nope", None).await.unwrap().is_empty());
    let deps = store.dependencies(t0 + 10_000, 20_000).await.unwrap();
    assert_eq!(
        deps,
        vec![DependencyLink {
            parent: "web".into(),
            child: "db".into(),
            call_count: 1,
            error_count: 0
        }]
    );
}

#[tokio::test]
async fn search_in_head_then_in_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let t0 = now();
    search_fixture(&store, t0).await;
    check_searches(&store, t0).await;
    store.flush().await.unwrap();
    assert_eq!(store.stats().head_spans, 0);
    check_searches(&store, t0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_blocks_from_disk_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.retention = Duration::from_secs(1);
    cfg.retention_interval = Duration::from_millis(100);
    let store = Store::open(cfg).await.unwrap();
    let t0 = now();
    store
        .append(batch("svc", vec![span(1, 1, None, "op", t0, 10)]))
        .await
        .unwrap();
    // a span that ended long ago is invisible even in the head
    store
        .append(batch(
            "svc",
            vec![span(2, 1, None, "op", t0 - 10_000_000_000, 10)],
        ))
        .await
        .unwrap();
    assert!(store.trace(tid(2)).await.unwrap().is_none());
    assert_eq!(
        store
            .find_traces(&TraceQuery::default())
            .await
            .unwrap()
            .len(),
        1
    );
    store.flush().await.unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert!(store.trace(tid(1)).await.unwrap().is_some());
    assert!(eventually(5, || store.stats().blocks == 0).await);
    assert!(store.trace(tid(1)).await.unwrap().is_none());
    // Queries stop seeing the block first; its files go right after.
    assert!(
        eventually(5, || block_dirs(dir.path()).is_empty()).await,
        "block deleted from disk"
    );
    // Counted once the files are gone, a moment after the directory disappears.
    assert!(
        eventually(5, || store.stats().blocks_deleted == 1).await,
        "{:?}",
        store.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_budget_deletes_oldest_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let mut sizes = Vec::new();
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        for i in 0..3u64 {
            let spans = (0..50)
                .map(|j| span(i, j + 1, None, "op", t0 + j, 10))
                .collect();
            store.append(batch("svc", spans)).await.unwrap();
            store.flush().await.unwrap();
            sizes.push(store.stats().block_bytes - sizes.iter().sum::<u64>());
        }
    }
    let mut cfg = config(dir.path());
    cfg.max_disk_bytes = Some(sizes[2] + 10);
    cfg.retention_interval = Duration::from_millis(50);
    let store = Store::open(cfg).await.unwrap();
    assert!(
        eventually(5, || store.stats().blocks == 1).await,
        "{:?}",
        store.stats()
    );
    assert!(store.trace(tid(0)).await.unwrap().is_none());
    assert!(store.trace(tid(1)).await.unwrap().is_none());
    assert_eq!(store.trace(tid(2)).await.unwrap().unwrap().spans.len(), 50);
    // Queries stop seeing a block first; its files go right after.
    assert!(
        eventually(5, || block_dirs(dir.path()).len() == 1).await,
        "{:?}",
        block_dirs(dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let (tasks, per_task) = (32u64, 20u64);
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        let mut handles = Vec::new();
        for t in 0..tasks {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for i in 0..per_task {
                    let spans = (0..5)
                        .map(|j| span(t * 1000 + i, j + 1, None, "op", t0 + j, 10))
                        .collect();
                    store.append(batch("svc", spans)).await.unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let st = store.stats();
        assert_eq!(st.spans_appended, tasks * per_task * 5);
        assert!(st.wal_fsyncs <= tasks * per_task, "{st:?}");
    }
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(store.stats().head_spans, tasks * per_task * 5);
    for t in 0..tasks {
        for i in 0..per_task {
            let tr = store.trace(tid(t * 1000 + i)).await.unwrap().unwrap();
            assert_eq!(tr.spans.len(), 5);
        }
    }
}

#[tokio::test]
async fn incomplete_block_is_cleaned_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        store
            .append(batch("svc", vec![span(1, 1, None, "op", now(), 10)]))
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let partial = dir.path().join("blocks/00000000000000000001-deadbeef");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("data.parquet"), b"half a file").unwrap();
    let staging_only = dir.path().join("blocks/00000000000000000002-deadbeef");
    std::fs::create_dir_all(&staging_only).unwrap();
    std::fs::write(staging_only.join("data.parquet#1"), b"staged").unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    assert!(!partial.exists());
    assert!(!staging_only.exists());
    assert_eq!(block_dirs(dir.path()).len(), 1);
    assert!(store.trace(tid(1)).await.unwrap().is_some());
}

#[tokio::test]
async fn empty_batches_and_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).await.unwrap();
    store.append(TraceBatch::default()).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.stats().blocks, 0);
    assert!(store.trace(tid(1)).await.unwrap().is_none());
    assert!(store
        .find_traces(&TraceQuery::default())
        .await
        .unwrap()
        .is_empty());
    assert!(store.services().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_cut_by_age_and_metrics_in_stats() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.block_max_age = Duration::from_millis(200);
    let store = Store::open(cfg).await.unwrap();
    store
        .append(batch("svc", vec![span(1, 1, None, "op", now(), 10)]))
        .await
        .unwrap();
    let st = store.stats();
    assert_eq!(
        (st.head_spans, st.head_traces, st.spans_appended),
        (1, 1, 1)
    );
    assert!(st.wal_bytes > 0 && st.wal_fsyncs >= 1);
    assert!(eventually(5, || store.stats().blocks == 1).await);
    let st = store.stats();
    assert_eq!(st.head_spans, 0);
    assert!(st.block_bytes > 0);
    // The block is registered first; the segment it covers is deleted right after.
    assert!(
        eventually(5, || store.stats().wal_bytes == 0).await,
        "the covered segment was deleted"
    );
    assert!(store.trace(tid(1)).await.unwrap().is_some());
}

#[tokio::test]
async fn a_failed_cut_is_retried_without_rotating_the_live_head_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let t0 = now();
    store.append(rich_batch(1, t0)).await.unwrap();

    // Storage breaks: the blocks folder becomes a file (fails even for root).
    let blocks = dir.path().join("blocks");
    std::fs::remove_dir_all(&blocks).unwrap();
    std::fs::write(&blocks, b"not a folder").unwrap();
    assert!(store.flush().await.is_err(), "the cut cannot be written");
    let segments_after_failure = wal_segments(dir.path()).len();

    // Appends go on into the live head; the background retries (about one a second) must
    // rewrite only the pending head, not turn the live one into more segments.
    for i in 0..5u64 {
        store.append(rich_batch(10 + i, t0)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(wal_segments(dir.path()).len(), segments_after_failure);
    assert!(
        store.trace(tid(1)).await.unwrap().is_some(),
        "pending head stays readable"
    );

    // Storage comes back: the pending head becomes a block, its segment goes.
    std::fs::remove_file(&blocks).unwrap();
    std::fs::create_dir(&blocks).unwrap();
    assert!(
        eventually(10, || !block_dirs(dir.path()).is_empty()).await,
        "the retry wrote the block"
    );
    assert!(store.trace(tid(1)).await.unwrap().is_some());
    assert!(store.trace(tid(12)).await.unwrap().is_some());
    store.flush().await.unwrap();
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    for t in [1, 10, 14] {
        assert!(
            store.trace(tid(t)).await.unwrap().is_some(),
            "trace {t} after reopen"
        );
    }
}
