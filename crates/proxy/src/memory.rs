//! Keeping the proxy's memory small: it runs as a sidecar next to every service, so its resident
//! memory is paid once per pod.
//!
//! The global allocator (mimalloc) asks the kernel for transparent huge pages on its arenas
//! (`madvise(MADV_HUGEPAGE)`), so each 2 MiB region a thread's heap touches, however little of it
//! is used, becomes 2 MiB of resident memory: that was most of the proxy's RSS (measured: 25 MB
//! after a max-rate run with tracing off, 14 MB with huge pages off; see BENCHMARKS.md). The
//! proxy has no use for them. Turning them off (`prctl(PR_SET_THP_DISABLE)`) only applies to
//! memory touched afterwards, and by the time the proxy subcommand runs, the main thread and the
//! runtime's threads have touched theirs; so [`restart_without_huge_pages`] turns them off and
//! runs the same program again (`execve` keeps the setting, the process id and the open files),
//! once, before the proxy has read its configuration or opened a socket.

use std::ffi::OsString;

/// Set on the restarted process, so that it never restarts again.
const RESTARTED: &str = "MESHTRACE_PROXY_THP_OFF";

/// Makes sure this process runs with transparent huge pages off from its start. Returns when they
/// already were off (or cannot be turned off: then the error is given, for logging, and the proxy
/// runs with them); otherwise does not return, the program starting again with `args`.
pub fn restart_without_huge_pages(args: impl IntoIterator<Item = OsString>) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;

        // SAFETY: PR_GET_THP_DISABLE and PR_SET_THP_DISABLE take integers, no pointers.
        if unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } == 1 {
            return Ok(());
        }
        // SAFETY: as above.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if std::env::var_os(RESTARTED).is_some() {
            return Ok(());
        }
        let mut args = args.into_iter();
        let arg0 = args.next().unwrap_or_default();
        let err = std::process::Command::new(std::env::current_exe()?)
            .arg0(arg0)
            .args(args)
            .env(RESTARTED, "1")
            .exec();
        // Still here: the restart failed, huge pages stay on for what was touched already.
        return Err(err);
    }
    #[allow(unreachable_code)]
    Ok(())
}
