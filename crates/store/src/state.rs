//! What the WAL writer, the cutter, retention and readers share.
//!
//! One lock guards the set of readable data: the live head, heads being cut (still readable
//! until their block is registered) and the open blocks. Swapping a head out and registering
//! a block are each one short write-locked step, so a reader always sees every span exactly
//! once or (briefly, between the two) in both a cutting head and a block — which reads
//! de-duplicate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::Notify;

use crate::block::Block;
use crate::head::Head;

pub(crate) struct State {
    pub head: Head,
    pub cutting: Vec<Arc<Head>>,
    pub blocks: Vec<Arc<Block>>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub spans_appended: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_segments: AtomicU64,
    pub wal_fsyncs: AtomicU64,
    pub blocks_deleted: AtomicU64,
}

impl Counters {
    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::Relaxed)
    }

    pub fn add(v: &AtomicU64, n: u64) -> u64 {
        v.fetch_add(n, Ordering::Relaxed) + n
    }

    pub fn sub(v: &AtomicU64, n: u64) -> u64 {
        let mut cur = v.load(Ordering::Relaxed);
        loop {
            let next = cur.saturating_sub(n);
            match v.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(actual) => cur = actual,
            }
        }
    }
}

pub(crate) struct Shared {
    state: RwLock<State>,
    pub counters: Counters,
    /// Woken when the head reaches its span limit.
    pub cut_needed: Notify,
    pub block_max_spans: usize,
}

impl Shared {
    pub fn new(state: State, block_max_spans: usize) -> Self {
        Self {
            state: RwLock::new(state),
            counters: Counters::default(),
            cut_needed: Notify::new(),
            block_max_spans,
        }
    }

    /// A panic while holding the lock cannot leave the state half-changed in a way readers
    /// would trip on (every write is a few assignments), so poisoning is ignored.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn publish_gauges(&self, st: &State) {
        metrics::gauge!("meshtrace_store_head_spans")
            .set((st.head.len() + st.cutting.iter().map(|h| h.len()).sum::<usize>()) as f64);
        metrics::gauge!("meshtrace_store_blocks").set(st.blocks.len() as f64);
        metrics::gauge!("meshtrace_store_block_bytes")
            .set(st.blocks.iter().map(|b| b.meta.total_bytes()).sum::<u64>() as f64);
        metrics::gauge!("meshtrace_store_wal_bytes")
            .set(Counters::get(&self.counters.wal_bytes) as f64);
    }
}
