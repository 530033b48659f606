//! The demo's child processes: each component is this same `meshtrace` binary run with a
//! subcommand, as it would be deployed. A child announces its listeners on stdout
//! (`meshtrace: NAME listening on ADDR ...`); everything else it prints goes to its log file.
//!
//! Children run in their own process group, so a Ctrl-C in the terminal reaches only the demo,
//! which then stops them in an order that loses nothing (traffic, proxies and apps, collector,
//! backend). Should the demo itself die, the kernel sends them SIGTERM (`PR_SET_PDEATHSIG`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Set on every child: the demo's directory.
pub const DEMO_DIR_ENV: &str = "MESHTRACE_DEMO_DIR";

/// Why a child could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot create log file {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} exited before it was ready ({status}); the end of {log}:\n{tail}")]
    Exited {
        name: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{name} did not announce {missing:?} within {timeout:?} (see {log})")]
    NotReady {
        name: String,
        missing: Vec<String>,
        timeout: Duration,
        log: PathBuf,
    },
    #[error("{name} announced no listener called {listener:?}")]
    NoListener { name: String, listener: String },
}

/// A running child `meshtrace` process.
pub struct Child {
    name: String,
    child: tokio::process::Child,
    addrs: HashMap<String, SocketAddr>,
    log: PathBuf,
}

impl Child {
    /// Starts `exe ARGS`, logging to `logs/{name}.log`, and waits until it announced every
    /// listener in `expect`.
    pub async fn start(
        exe: &Path,
        name: &str,
        args: &[OsString],
        expect: &[&str],
        logs: &Path,
        timeout: Duration,
    ) -> Result<Child, ProcessError> {
        let log = logs.join(format!("{name}.log"));
        let log_err = |source| ProcessError::Log {
            path: log.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(log_err)?;
        let stderr = file.try_clone().map_err(log_err)?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // Marks the process as part of this demo (for `ps e`, and tests looking for leftovers).
            .env(DEMO_DIR_ENV, logs.parent().unwrap_or(logs))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: between fork and exec only async-signal-safe work is allowed; `prctl` is a
        // single system call and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            name: name.to_owned(),
            source,
        })?;
        let (tx, mut announced) = mpsc::unbounded_channel();
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(copy_stdout(stdout, tokio::fs::File::from_std(file), tx));
        }

        let mut addrs = HashMap::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while let Some(missing) = missing(expect, &addrs) {
            match tokio::time::timeout_at(deadline, announced.recv()).await {
                Ok(Some((listener, addr))) => {
                    addrs.insert(listener, addr);
                }
                Ok(None) => {
                    // Stdout closed: the child is exiting.
                    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
                        .await
                        .map(|s| s.map_or_else(|e| e.to_string(), |s| s.to_string()))
                        .unwrap_or_else(|_| "still running, stdout closed".into());
                    return Err(ProcessError::Exited {
                        name: name.to_owned(),
                        status,
                        tail: tail(&log),
                        log,
                    });
                }
                Err(_) => {
                    return Err(ProcessError::NotReady {
                        name: name.to_owned(),
                        missing,
                        timeout,
                        log,
                    })
                }
            }
        }
        Ok(Child {
            name: name.to_owned(),
            child,
            addrs,
            log,
        })
    }

    /// The component's name (its log file is `{name}.log`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The address the child announced for `listener`.
    pub fn addr(&self, listener: &str) -> Result<SocketAddr, ProcessError> {
        self.addrs
            .get(listener)
            .copied()
            .ok_or_else(|| ProcessError::NoListener {
                name: self.name.clone(),
                listener: listener.to_owned(),
            })
    }

    /// SIGTERM, then waits up to `grace` for a clean exit, then SIGKILL.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::warn!("{} did not stop within {grace:?}: killed", self.name);
                let _ = self.child.kill().await;
                None
            }
        }
    }
}

/// The listeners of `expect` not announced yet, or `None` when all are.
fn missing(expect: &[&str], addrs: &HashMap<String, SocketAddr>) -> Option<Vec<String>> {
    let m: Vec<String> = expect
        .iter()
        .filter(|e| !addrs.contains_key(**e))
        .map(|e| (*e).to_owned())
        .collect();
    (!m.is_empty()).then_some(m)
}

/// Copies the child's stdout to its log, passing announcements (`meshtrace: NAME listening on
/// ADDR ...`) to the starter.
async fn copy_stdout(
    stdout: tokio::process::ChildStdout,
    mut log: tokio::fs::File,
    announced: mpsc::UnboundedSender<(String, SocketAddr)>,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(a) = announcement(&line) {
            let _ = announced.send(a);
        }
        let _ = log.write_all(line.as_bytes()).await;
        let _ = log.write_all(b"\n").await;
    }
    let _ = log.flush().await;
}

/// Parses `meshtrace: NAME listening on ADDR ...`.
pub fn announcement(line: &str) -> Option<(String, SocketAddr)> {
    let mut words = line.strip_prefix("meshtrace: ")?.split_whitespace();
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some(name), Some("listening"), Some("on"), Some(addr)) => {
            Some((name.to_owned(), addr.parse().ok()?))
        }
        _ => None,
    }
}

/// The last lines of a log file, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_parsed_and_other_lines_ignored() {
        assert_eq!(
            announcement("meshtrace: otlp-grpc listening on 127.0.0.1:4317 (OTLP/gRPC)"),
            Some(("otlp-grpc".into(), "127.0.0.1:4317".parse().unwrap()))
        );
        assert_eq!(
            announcement("meshtrace: query listening on [::1]:16686 (web UI)"),
            Some(("query".into(), "[::1]:16686".parse().unwrap()))
        );
        for other in [
            "meshtrace: data in ./meshtrace-data (retention 14days)",
            "meshtrace: query listening on an unknown address (x)",
            "2026-11-21T08:00:00Z INFO pipeline traces running",
            "",
        ] {
            assert_eq!(announcement(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn a_child_that_exits_early_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let err = Child::start(
            Path::new("/bin/sh"),
            "failing",
            &[
                "-c".into(),
                "echo 'cannot listen on 127.0.0.1:1: denied' >&2; exit 3".into(),
            ],
            &["query"],
            dir.path(),
            Duration::from_secs(10),
        )
        .await
        .err()
        .expect("must fail");
        let text = err.to_string();
        assert!(
            text.contains("failing exited before it was ready"),
            "{text}"
        );
        assert!(
            text.contains("cannot listen on 127.0.0.1:1: denied"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_child_is_ready_when_it_announced_every_listener_and_stops_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        // The trap comes first: the child is stopped as soon as it has announced itself.
        let script = "trap 'exit 0' TERM; \
                      echo 'meshtrace: a listening on 127.0.0.1:5 (x)'; echo noise; \
                      echo 'meshtrace: b listening on 127.0.0.1:6 (y)'; \
                      while :; do sleep 0.05; done";
        let child = Child::start(
            Path::new("/bin/sh"),
            "two",
            &["-c".into(), script.into()],
            &["a", "b"],
            dir.path(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(child.addr("a").unwrap().port(), 5);
        assert_eq!(child.addr("b").unwrap().port(), 6);
        assert!(child.addr("c").is_err());
        let status = child.stop(Duration::from_secs(10)).await.expect("exited");
        assert!(status.success(), "{status}");
        let log = std::fs::read_to_string(dir.path().join("two.log")).unwrap();
        assert!(log.contains("noise"), "{log}");
    }
}
