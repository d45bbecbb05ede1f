//! The process-wide set-up a supervisor needs before anything else runs, one small function
//! per step, each failure named (after tini): block the handled signals so they arrive only
//! through the signalfd, ignore the few simplevisor never wants, and become a subreaper when
//! not PID 1 so orphans are re-parented to us either way.

use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::signals;

/// The blocked signal set as nix wants it.
fn handled_set() -> SigSet {
    // SAFETY: sigemptyset/sigaddset on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signo in signals::handled() {
            libc::sigaddset(&mut set, signo);
        }
        SigSet::from_sigset_t_unchecked(set)
    }
}

/// Blocks every handled signal in this thread, so that threads started later inherit the mask
/// and none of them takes a signal's default action (architecture trap 2).
pub fn block_handled_signals() -> Result<(), String> {
    handled_set()
        .thread_block()
        .map_err(|e| format!("cannot block signals (pthread_sigmask): {e}"))
}

/// `PIPE`, `TTIN` and `TTOU` are ignored by simplevisor itself (jobs get the default back).
pub fn ignore_signals() -> Result<(), String> {
    for signo in signals::IGNORED {
        // SAFETY: installing SIG_IGN has no handler code to run.
        if unsafe { libc::signal(signo, libc::SIG_IGN) } == libc::SIG_ERR {
            return Err(format!(
                "cannot ignore SIG{}: {}",
                signals::name_of(signo),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// The signalfd through which every handled signal is read.
pub fn signal_fd() -> Result<SignalFd, String> {
    SignalFd::with_flags(
        &handled_set(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .map_err(|e| format!("cannot create signalfd: {e}"))
}

/// One malloc arena for the whole process. Why: simplevisor is single-threaded but for the
/// stdout writer and short-lived Vault threads (a renewal, a revocation); glibc may give each
/// new thread an arena of its own, which keeps what was freed in it, so RSS crept up with every
/// renewal thread in long runs. Sharing the main heap costs nothing at this load. Failure only
/// means the default stays, so it is not reported.
pub fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt with an integer option, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Whether we are PID 1 (of this PID namespace).
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Not PID 1: orphans of our jobs would go to the real init; ask for them instead.
pub fn become_subreaper() -> Result<(), String> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot become a child subreaper (prctl PR_SET_CHILD_SUBREAPER): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Tells the kernel that the pages of our own binary mapped so far may be reclaimed.
///
/// Why: the kernel maps file pages around every fault (64 KiB at a time), so start-up code —
/// config parsing, validation, templates — leaves most of the binary's text resident although
/// the steady state (the event loop, the relay) needs a small part of it. After start-up those
/// pages are only cache: handing them back roughly halves the idle RSS. Pages still in use fault
/// back in from the page cache or the file. Failure is harmless (an older kernel without
/// `MADV_PAGEOUT`), so it is not reported.
pub fn release_startup_pages() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let exe = exe.to_string_lossy();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        // Only read-only mappings of the binary: never our writable data.
        if !line.ends_with(exe.as_ref()) || perms.contains('w') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: madvise on a range the kernel just reported as our own read-only mapping;
        // MADV_PAGEOUT changes residency, never contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
    }
}

/// Gives the heap's free memory back to the kernel. A large answer (`status` or a scrape of
/// thousands of jobs) is built and freed in one go; without this, its high-water mark stays
/// resident for good (measured: 3.2 MiB of RSS with 1,000 jobs became 5.1 MiB after one
/// `status`). Walking a heap of a few MiB takes microseconds.
pub fn release_free_heap() {
    // SAFETY: malloc_trim has no preconditions; it only returns free memory to the kernel.
    unsafe { libc::malloc_trim(0) };
}
