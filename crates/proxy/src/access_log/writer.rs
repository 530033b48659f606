//! The threads that write access log lines: one per path, shared by every listener and worker
//! logging there, so that lines are never interleaved mid-line. `/dev/stdout` and `/dev/stderr`
//! are the process's own streams (opening them by path fails when they are sockets, as in
//! many containers); other paths are files opened for appending, and opened again after
//! `POST /reopen_logs` on the admin port (for logrotate).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::Batch;
use crate::stats::Stats;

/// Batches a writer holds before the next ones are dropped.
const QUEUE: usize = 64;

/// The writer threads, by path.
pub struct Writers {
    open: HashMap<String, Handle>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<Stats>,
}

/// Where one path's batches go.
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Batch>,
    stats: Arc<Stats>,
}

impl Handle {
    /// Hands `batch` over, or drops and counts it when the writer is behind.
    pub fn send(&self, batch: Batch) {
        let lines = batch.lines;
        match self.tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                Stats::add(&self.stats.access_log_dropped, lines);
            }
        }
    }
}

enum Out {
    Stdout,
    Stderr,
    File {
        path: String,
        file: File,
        /// The `reopen_logs` count it was opened at.
        opened_at: u64,
    },
}

impl Writers {
    pub fn new(stats: Arc<Stats>) -> Self {
        Writers {
            open: HashMap::new(),
            threads: Vec::new(),
            stats,
        }
    }

    /// The writer of `path`, started (and the file opened, so that a path that cannot be
    /// written is an error at start) the first time it is asked for.
    pub fn open(&mut self, path: &str) -> io::Result<Handle> {
        if let Some(h) = self.open.get(path) {
            return Ok(h.clone());
        }
        let out = match path {
            "/dev/stdout" => Out::Stdout,
            "/dev/stderr" => Out::Stderr,
            _ => Out::File {
                path: path.to_owned(),
                file: append(path)?,
                opened_at: self.stats.reopen_logs.load(Ordering::Relaxed),
            },
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let stats = self.stats.clone();
        let thread = std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || run(out, &rx, &stats))?;
        self.threads.push(thread);
        let handle = Handle {
            tx,
            stats: self.stats.clone(),
        };
        self.open.insert(path.to_owned(), handle.clone());
        Ok(handle)
    }

    /// Waits for the writers to write what they were given: once every handle is dropped
    /// (the workers are gone).
    pub fn join(self) {
        drop(self.open);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn append(path: &str) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn run(mut out: Out, rx: &mpsc::Receiver<Batch>, stats: &Stats) {
    let mut failing = false;
    for batch in rx {
        if let Out::File {
            path,
            file,
            opened_at,
        } = &mut out
        {
            let asked = stats.reopen_logs.load(Ordering::Relaxed);
            if asked != *opened_at {
                match append(path) {
                    Ok(f) => *file = f,
                    Err(e) => tracing::warn!("cannot reopen the access log {path}: {e}"),
                }
                *opened_at = asked;
            }
        }
        let written = match &mut out {
            Out::Stdout => io::stdout().lock().write_all(&batch.bytes),
            Out::Stderr => io::stderr().lock().write_all(&batch.bytes),
            Out::File { file, .. } => file.write_all(&batch.bytes),
        };
        match written {
            Ok(()) => {
                Stats::add(&stats.access_log_written, batch.lines);
                failing = false;
            }
            Err(e) => {
                Stats::add(&stats.access_log_dropped, batch.lines);
                if !failing {
                    tracing::warn!("cannot write the access log: {e}");
                }
                failing = true;
            }
        }
    }
}
