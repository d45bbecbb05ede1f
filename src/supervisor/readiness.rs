//! Readiness checks (docs/operations.md), the shell side: the machine decides when a check runs
//! and when it has taken too long; this module runs it without ever blocking the event loop.
//!
//! - `tcp`: a non-blocking `connect`, watched for `EPOLLOUT`; passed when it succeeds.
//! - `http`: the same connection, then a minimal `GET` and the status line of the answer;
//!   passed on 2xx.
//! - `exec`: a child started by the event loop (with the job's identity and environment,
//!   output discarded) and reaped by the same reaper; passed when it exits 0. It leads a
//!   session and process group of its own, which gets `SIGKILL` whenever the check ends
//!   (passed, failed, timed out, cancelled, at exit), so that nothing it started outlives it;
//!   while it runs, the group is known to the panic path too. A descendant that makes a session
//!   of its own (`setsid`) leaves the group: it is killed as well if the check is still running
//!   when it ends (found by parentage in `/proc`), but not once the check has exited and it was
//!   re-parented to us: nothing then ties it to the check.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrStorage, connect, getsockopt, socket,
    sockopt::SocketError,
};

use super::machine::JobId;
use super::reaper;
use super::termination::Termination;
use crate::logs::Logger;

/// The most of an HTTP answer read while looking for its status line.
const MAX_HTTP_HEAD: usize = 8 * 1024;

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub job: JobId,
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub detail: String,
}

/// What a reaped pid was, as far as checks are concerned.
pub enum Reaped {
    /// An exec check finished.
    Check(Outcome),
    /// A check that was cancelled (killed): nothing to report.
    Cancelled,
    /// Not a check's.
    NotOurs,
}

enum Check {
    Connect { socket: OwnedFd, http: Option<Http> },
    Exec { pid: i32 },
}

struct Http {
    request: Vec<u8>,
    written: usize,
    answer: Vec<u8>,
}

/// The checks in flight, one per job at most.
pub struct Checks {
    /// Epoll token of job 0's check socket; job `n`'s is `base + n`.
    base: u64,
    running: HashMap<JobId, Check>,
    /// Exec checks killed by a cancel, reaped without a report.
    cancelled: HashSet<i32>,
    /// For a kill that failed: processes may be left, which must not go unsaid.
    logger: Logger,
}

impl Checks {
    pub fn new(base: u64, logger: Logger) -> Checks {
        Checks {
            base,
            running: HashMap::new(),
            cancelled: HashSet::new(),
            logger,
        }
    }

    /// The job whose check socket has epoll token `token`.
    pub fn job_of_token(&self, token: u64) -> Option<JobId> {
        let job = usize::try_from(token.checked_sub(self.base)?).ok()?;
        matches!(self.running.get(&job), Some(Check::Connect { .. })).then_some(job)
    }

    /// Starts a `tcp` check (`path` `None`) or an `http` one (`GET path`) to `addr`. An
    /// outcome when it ends at once.
    pub fn start_connect(
        &mut self,
        job: JobId,
        addr: SocketAddr,
        path: Option<&str>,
        epoll: &Epoll,
    ) -> Option<Outcome> {
        let failed = |detail: String| {
            Some(Outcome {
                job,
                passed: false,
                detail,
            })
        };
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::Inet,
            SocketAddr::V6(_) => AddressFamily::Inet6,
        };
        let socket = match socket(
            family,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        ) {
            Ok(socket) => socket,
            Err(e) => return failed(format!("cannot create a socket: {e}")),
        };
        match connect(socket.as_raw_fd(), &SockaddrStorage::from(addr)) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(e) => return failed(format!("connecting to {addr}: {e}")),
        }
        let token = self.base + job as u64;
        if let Err(e) = epoll.add(socket.as_fd(), EpollEvent::new(EpollFlags::EPOLLOUT, token)) {
            return failed(format!("cannot watch the check's socket (epoll_ctl): {e}"));
        }
        let http = path.map(|path| Http {
            request: format!(
                "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: simplevisor\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
            written: 0,
            answer: Vec::new(),
        });
        self.running.insert(job, Check::Connect { socket, http });
        None
    }

    /// An exec check's child was started (leading its own process group).
    pub fn track_exec(&mut self, job: JobId, pid: i32) {
        reaper::track_group(pid);
        self.running.insert(job, Check::Exec { pid });
    }

    /// `SIGKILL` to the check's process group (and, while `pid` still runs, to every
    /// descendant of it, which includes those that left the group): the check is over.
    fn kill_group(&self, pid: i32, running: bool) {
        let descendants = if running {
            descendants_of(pid)
        } else {
            Vec::new()
        };
        if let Err(e) = reaper::signal_group(pid, libc::SIGKILL) {
            self.logger.error(&format!(
                "cannot kill the process group {pid} of a readiness check: {e}; processes it started may be left running"
            ));
        }
        for descendant in descendants {
            // SAFETY: kill(2); an already gone process is fine (ESRCH).
            unsafe { libc::kill(descendant, libc::SIGKILL) };
        }
        reaper::forget_group(pid);
    }

    /// The check socket of `job` is ready: goes on, and ends it when there is an outcome.
    pub fn on_ready(&mut self, job: JobId, epoll: &Epoll) -> Option<Outcome> {
        let Some(Check::Connect { socket, http }) = self.running.get_mut(&job) else {
            return None;
        };
        let result = advance(socket, http.as_mut(), epoll, self.base + job as u64);
        let (passed, detail) = result?;
        self.cancel(job, epoll);
        Some(Outcome {
            job,
            passed,
            detail,
        })
    }

    /// A child was reaped: an exec check's outcome, a cancelled check, or not ours.
    pub fn on_reaped(&mut self, pid: i32, how: Termination) -> Reaped {
        if self.cancelled.remove(&pid) {
            return Reaped::Cancelled;
        }
        let job = self.running.iter().find_map(|(job, check)| {
            matches!(check, Check::Exec { pid: p } if *p == pid).then_some(*job)
        });
        let Some(job) = job else {
            return Reaped::NotOurs;
        };
        self.running.remove(&job);
        self.kill_group(pid, false);
        Reaped::Check(Outcome {
            job,
            passed: how.success(),
            detail: if how.success() {
                String::new()
            } else {
                format!("the check {}", how.describe())
            },
        })
    }

    /// Abandons the check of `job`: closes its socket, or kills its child (reaped silently).
    pub fn cancel(&mut self, job: JobId, epoll: &Epoll) {
        match self.running.remove(&job) {
            Some(Check::Connect { socket, .. }) => {
                let _ = epoll.delete(socket.as_fd());
            }
            Some(Check::Exec { pid }) => {
                self.kill_group(pid, true);
                self.cancelled.insert(pid);
            }
            None => {}
        }
    }

    /// Abandons every check (at exit).
    pub fn cancel_all(&mut self, epoll: &Epoll) {
        let jobs: Vec<JobId> = self.running.keys().copied().collect();
        for job in jobs {
            self.cancel(job, epoll);
        }
    }
}

/// Every process below `pid` by parentage, from `/proc` (empty without it).
fn descendants_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // Field 4 of stat, after the command name in parentheses (which may hold anything).
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(parent) = parent {
            parents.push((child, parent));
        }
    }
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|&&(_, p)| p == parent)
                .map(|&(c, _)| c),
        );
        next += 1;
    }
    found.remove(0);
    found
}

/// One step of a connect (and HTTP) check: `Some((passed, detail))` when it is over.
fn advance(
    socket: &OwnedFd,
    http: Option<&mut Http>,
    epoll: &Epoll,
    token: u64,
) -> Option<(bool, String)> {
    let Some(http) = http else {
        return Some(match getsockopt(socket, SocketError) {
            Ok(0) => (true, String::new()),
            Ok(errno) => (
                false,
                format!("connection failed: {}", Errno::from_raw(errno).desc()),
            ),
            Err(e) => (false, format!("connection failed: {e}")),
        });
    };
    if http.written < http.request.len() {
        if let Ok(errno @ 1..) = getsockopt(socket, SocketError) {
            return Some((
                false,
                format!("connection failed: {}", Errno::from_raw(errno).desc()),
            ));
        }
        loop {
            match nix::unistd::write(socket, &http.request[http.written..]) {
                Ok(n) => http.written += n,
                Err(Errno::EAGAIN) => return None,
                Err(Errno::EINTR) => continue,
                Err(e) => return Some((false, format!("sending the request: {e}"))),
            }
            if http.written == http.request.len() {
                let mut event = EpollEvent::new(EpollFlags::EPOLLIN, token);
                if let Err(e) = epoll.modify(socket.as_fd(), &mut event) {
                    return Some((false, format!("cannot watch the check's socket: {e}")));
                }
                return None;
            }
        }
    }
    let mut chunk = [0u8; 2048];
    loop {
        match nix::unistd::read(socket, &mut chunk) {
            Ok(0) => {
                return Some(status_of(&http.answer).unwrap_or((
                    false,
                    "the server closed the connection without an answer".into(),
                )));
            }
            Ok(n) => {
                http.answer.extend_from_slice(&chunk[..n]);
                if let Some(result) = status_of(&http.answer) {
                    return Some(result);
                }
                if http.answer.len() > MAX_HTTP_HEAD {
                    return Some((false, "the answer has no HTTP status line".into()));
                }
            }
            Err(Errno::EAGAIN) => return None,
            Err(Errno::EINTR) => {}
            Err(e) => return Some((false, format!("reading the answer: {e}"))),
        }
    }
}

/// The verdict from an HTTP answer's status line, once it has arrived.
fn status_of(answer: &[u8]) -> Option<(bool, String)> {
    let end = answer.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&answer[..end]);
    let mut parts = line.split(' ');
    let version = parts.next().unwrap_or("");
    let code: Option<u16> = parts.next().and_then(|c| c.parse().ok());
    Some(match code {
        Some(code) if version.starts_with("HTTP/") && (200..300).contains(&code) => {
            (true, String::new())
        }
        Some(code) if version.starts_with("HTTP/") => (false, format!("answered {code}")),
        _ => (false, "the answer is not HTTP".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_decide() {
        assert_eq!(
            status_of(b"HTTP/1.1 204 No Content\r\n"),
            Some((true, String::new()))
        );
        assert_eq!(
            status_of(b"HTTP/1.0 503 Unavailable\r\nx"),
            Some((false, "answered 503".into()))
        );
        assert_eq!(status_of(b"HTTP/1.1 200"), None, "not the whole line yet");
        assert_eq!(
            status_of(b"SSH-2.0-OpenSSH\r\n"),
            Some((false, "the answer is not HTTP".into()))
        );
    }
}
