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
//!
//! Once started, [`release_startup_code`] takes the code that only starting needed (the binary
//! carries every other subcommand too) out of the proxy's resident set.

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

/// Takes this program's own code and read-only data out of the process's page tables once the
/// proxy has started; returns how many bytes of mappings were released.
///
/// The one binary carries the store, the query API, the UI and the collector too, and starting
/// (argument parsing, YAML, runtime set-up) touches code the proxy never runs again: about 9 MB of
/// the binary was resident in an idle proxy, counted in its RSS although it is clean page cache
/// (`RssFile`). Dropping the mappings' page-table entries (`MADV_DONTNEED`) leaves the page cache
/// as it is; the code the proxy runs from then on is mapped again on first use, by minor faults
/// (measured: `RssFile` 10.3 → 5.9 MB idle, 11.2 → 8.5 MB after a max-rate run; see
/// BENCHMARKS.md). The kernel itself reclaims such pages the same way under memory pressure.
///
/// Only mappings of the executable that are not writable and hold no private (copied-on-write)
/// page are released: for those, every page is the file's own, so nothing is lost. The
/// relocated read-only data (`RELRO`) holds copied pages and is left alone.
pub fn release_startup_code() -> std::io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        let exe = std::fs::read_link("/proc/self/exe")?;
        let exe = exe.to_string_lossy();
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        let mut released = 0;
        for m in file_mappings(&smaps, &exe) {
            if m.writable || m.anonymous_kb != 0 {
                continue;
            }
            // SAFETY: the range is a whole mapping of this process (page-aligned, as the kernel
            // reports it); it is a private, read-only mapping of the executable without private
            // pages, so MADV_DONTNEED only drops page-table entries of clean page-cache pages,
            // which the next access maps again. No Rust object lives in it.
            let r = unsafe {
                libc::madvise(
                    m.start as *mut libc::c_void,
                    m.end - m.start,
                    libc::MADV_DONTNEED,
                )
            };
            if r == 0 {
                released += m.end - m.start;
            }
        }
        return Ok(released);
    }
    #[allow(unreachable_code)]
    Ok(0)
}

/// One mapping of a file, from `/proc/self/smaps`.
#[derive(Debug, PartialEq)]
struct FileMapping {
    start: usize,
    end: usize,
    writable: bool,
    /// Private (copied-on-write or anonymous) pages in it.
    anonymous_kb: u64,
}

/// The mappings of `path` in an smaps listing; ones that cannot be read are left out.
fn file_mappings(smaps: &str, path: &str) -> Vec<FileMapping> {
    let mut found = Vec::new();
    let mut current: Option<FileMapping> = None;
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                // A mapping's header: range, permissions, offset, device, inode, path.
                found.extend(current.take());
                let perms = fields.next().unwrap_or("");
                let mapped = fields.nth(3).unwrap_or("");
                if mapped == path && fields.next().is_none() {
                    current = Some(FileMapping {
                        start,
                        end,
                        writable: perms.as_bytes().get(1) != Some(&b'-'),
                        anonymous_kb: 0,
                    });
                }
                continue;
            }
        }
        if let (Some(m), "Anonymous:") = (current.as_mut(), first) {
            // An unreadable count is taken as "has private pages": the mapping is left alone.
            m.anonymous_kb = fields.next().and_then(|n| n.parse().ok()).unwrap_or(1);
        }
    }
    found.extend(current);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_program_mappings_with_their_private_pages() {
        let smaps = "\
55aa45719000-55aa45d9c000 r--p 00000000 08:01 123 /usr/bin/meshtrace
Size:               6668 kB
Anonymous:             0 kB
55aa45d9c000-55aa4702c000 r-xp 00682000 08:01 123 /usr/bin/meshtrace
Anonymous:             0 kB
55aa4702c000-55aa4710c000 r--p 01911000 08:01 123 /usr/bin/meshtrace
Anonymous:           896 kB
55aa4710c000-55aa47113000 rw-p 019f0000 08:01 123 /usr/bin/meshtrace
Anonymous:            28 kB
55aa47113000-55aa47200000 rw-p 00000000 00:00 0 
Anonymous:           100 kB
7f0000000000-7f0000001000 r-xp 00000000 08:01 99 /usr/bin/meshtrace (deleted)
Anonymous:             0 kB
7f0000001000-7f0000002000 r-xp 00000000 08:01 98 /usr/lib/libc.so.6
Anonymous:             0 kB
";
        let m = file_mappings(smaps, "/usr/bin/meshtrace");
        let summary: Vec<(usize, bool, u64)> = m
            .iter()
            .map(|m| (m.end - m.start, m.writable, m.anonymous_kb))
            .collect();
        assert_eq!(
            summary,
            [
                (0x683000, false, 0),
                (0x1290000, false, 0),
                (0xe0000, false, 896),
                (0x7000, true, 28),
            ]
        );
    }

    #[test]
    fn releasing_the_startup_code_keeps_the_program_running() {
        let released = release_startup_code().unwrap();
        if cfg!(target_os = "linux") {
            assert!(released > 0);
        }
        // Code and constant data still work (mapped again on use).
        let v: Vec<String> = (0..1000).map(|i| format!("{i:x}")).collect();
        assert_eq!(v[255], "ff");
    }
}
