//! Reaping (architecture trap 3): simplevisor owns every `wait`. On each `SIGCHLD` (signals
//! coalesce, so one may stand for many exits) it collects every exited child, its jobs and
//! orphans re-parented to it alike, and it asks the kernel whether a job's process group still
//! has members.

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use super::termination::Termination;

/// Every child that has exited so far, without blocking.
pub fn reap_exited() -> Vec<(i32, Termination)> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                reaped.push((pid.as_raw(), Termination::Exited(code)))
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                reaped.push((pid.as_raw(), Termination::Signaled(signal as i32)))
            }
            // Stopped/continued children are not exits; without WUNTRACED they are not reported.
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return reaped,
            Ok(_) | Err(Errno::EINTR) => continue,
            // waitpid(-1, WNOHANG) has no other documented failure; stop rather than spin.
            Err(_) => return reaped,
        }
    }
}

/// Whether any process is left in process group `pgid` (zombies count until reaped).
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(-pgid, 0) };
    // EPERM means members exist that we may not signal: still alive.
    rc == 0 || Errno::last() != Errno::ESRCH
}

/// Sends `signal` to process group `pgid`; a group that is already gone is not an error.
pub fn signal_group(pgid: i32, signal: i32) -> Result<(), Errno> {
    if pgid <= 0 {
        return Ok(());
    }
    // SAFETY: plain kill(2) on a negative pid (a process group).
    match unsafe { libc::kill(-pgid, signal) } {
        0 => Ok(()),
        _ => match Errno::last() {
            Errno::ESRCH => Ok(()),
            other => Err(other),
        },
    }
}

/// Process groups that may still have members, for [`kill_tracked_groups`]: the last resort
/// of a panic, which must not leave jobs behind when simplevisor is not PID 1 (as PID 1 the
/// kernel kills the whole namespace anyway).
static LIVE_GROUPS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

pub fn track_group(pgid: i32) {
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
        groups.push(pgid);
    }
}

pub fn forget_group(pgid: i32) {
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
        groups.retain(|&g| g != pgid);
    }
}

/// `SIGKILL` to every tracked group. Never blocks: called from the panic hook.
pub fn kill_tracked_groups() {
    if let Ok(groups) = LIVE_GROUPS.try_lock() {
        for &pgid in groups.iter() {
            let _ = signal_group(pgid, libc::SIGKILL);
        }
    }
}
