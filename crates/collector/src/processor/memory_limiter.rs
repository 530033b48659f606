//! `memory_limiter`: refuses data with a retryable error (receivers answer 429 /
//! RESOURCE_EXHAUSTED) while the process's memory is above the soft limit (`limit - spike`),
//! so a burst is pushed back to senders instead of growing memory until the kernel kills us.
//! Memory is the resident set size, read every `check_interval` (Linux `/proc/self/statm`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::config::MemoryLimiter;

const MIB: u64 = 1024 * 1024;

pub struct Limiter {
    over: Arc<AtomicBool>,
    pub soft_limit: u64,
    pub rss: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Limiter {
    /// Starts the periodic check. `None` when the limit cannot be worked out (no total memory
    /// known for a percentage limit).
    pub fn start(name: &str, cfg: &MemoryLimiter) -> Option<Self> {
        let (limit, spike) = if cfg.limit_mib > 0 {
            let spike = if cfg.spike_limit_mib > 0 {
                cfg.spike_limit_mib
            } else {
                cfg.limit_mib / 5
            };
            (cfg.limit_mib * MIB, spike * MIB)
        } else {
            let total = total_memory()?;
            let spike = if cfg.spike_limit_percentage > 0 {
                cfg.spike_limit_percentage
            } else {
                cfg.limit_percentage / 5
            };
            (total / 100 * cfg.limit_percentage, total / 100 * spike)
        };
        let soft_limit = limit.saturating_sub(spike);
        let over = Arc::new(AtomicBool::new(false));
        let rss = Arc::new(AtomicU64::new(0));
        let (o, r, interval, name) = (
            over.clone(),
            rss.clone(),
            cfg.check_interval,
            name.to_owned(),
        );
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let now = resident_bytes().unwrap_or(0);
                r.store(now, Ordering::Relaxed);
                let was = o.swap(now > soft_limit, Ordering::Relaxed);
                if was != (now > soft_limit) {
                    if now > soft_limit {
                        tracing::warn!(processor = %name, rss_mib = now / MIB, soft_limit_mib = soft_limit / MIB, "memory above the soft limit: refusing data");
                    } else {
                        tracing::info!(processor = %name, rss_mib = now / MIB, "memory below the soft limit again: accepting data");
                    }
                }
            }
        });
        Some(Self {
            over,
            soft_limit,
            rss,
            task,
        })
    }

    /// True while data must be refused.
    pub fn refusing(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn total_memory() -> Option<u64> {
    // A cgroup (container) limit first, then the machine's memory.
    if let Ok(s) = std::fs::read_to_string("/sys/fs/cgroup/memory.max") {
        if let Ok(v) = s.trim().parse::<u64>() {
            return Some(v);
        }
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn refuses_above_the_soft_limit() {
        let cfg = MemoryLimiter {
            check_interval: Duration::from_millis(10),
            limit_mib: 2,
            spike_limit_mib: 1,
            ..Default::default()
        };
        let l = Limiter::start("m", &cfg).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            l.rss.load(Ordering::Relaxed) > MIB,
            "a test process uses more than 1 MiB"
        );
        assert!(l.refusing());
        let cfg = MemoryLimiter {
            check_interval: Duration::from_millis(10),
            limit_mib: 1 << 20,
            ..Default::default()
        };
        let l = Limiter::start("m", &cfg).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!l.refusing());
    }
}
