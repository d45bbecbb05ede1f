//! The control socket's server side, driven by the event loop: it owns the listening socket and
//! the open connections (each registered in the loop's epoll under its own token), and turns
//! bytes into [`Request`]s and answers back into bytes. It decides nothing about jobs.
//!
//! Never fatal: any failure to create the socket becomes a warning and simplevisor runs
//! without one. Only peers whose uid is ours or root are served (`SO_PEERCRED`).

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::AtFlags;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::UnlinkatFlags;
use serde_json::Value;

use super::protocol::{MAX_REQUEST, Request, refusal};
use crate::time::later;

/// A request and its answer must be done within this (a client that connects and says
/// nothing must not hold a slot).
const DEADLINE: Duration = Duration::from_secs(1);
/// Connections open at once; more are closed at once.
const MAX_CONNECTIONS: usize = 32;

/// At most one record per this long for each kind of refused connection.
const RECORD_EVERY: Duration = Duration::from_secs(1);

/// Refused connections, counted so that a client connecting in a loop cannot flood the log:
/// the first after a quiet second is recorded at once, those within the next second are
/// summed up in one record when it is over. Pure: the caller passes the time.
#[derive(Debug, Default)]
struct Refusals {
    pending: u64,
    quiet_until: Option<Instant>,
}

impl Refusals {
    /// One more refusal at `now`: how many to record now, if a record is due.
    fn refused(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        self.tick(now)
    }

    /// How many to record now, once the quiet second is over and some are pending.
    fn tick(&mut self, now: Instant) -> Option<u64> {
        if self.pending == 0 || self.quiet_until.is_some_and(|until| now < until) {
            return None;
        }
        self.quiet_until = Some(later(now, RECORD_EVERY));
        Some(std::mem::take(&mut self.pending))
    }

    /// When a pending summary is due.
    fn due(&self) -> Option<Instant> {
        (self.pending > 0).then_some(self.quiet_until).flatten()
    }
}

/// A request to answer, from connection `slot`, by a peer with uid `uid`.
pub struct Incoming {
    pub slot: usize,
    pub uid: u32,
    pub request: Result<Request, String>,
}

struct Connection {
    stream: UnixStream,
    uid: u32,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    deadline: Instant,
    /// A request was read: waiting for its answer, or writing it.
    answered: bool,
    /// A peer that may not control us: its request is read (so that closing does not reset
    /// the connection) and answered with a refusal.
    refused: bool,
}

pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    /// The socket's directory, opened once at start, and the socket's name in it.
    dir: OwnedFd,
    name: std::ffi::OsString,
    /// Device and inode of the socket file we bound (none if it could not be seen).
    created: Option<(libc::dev_t, libc::ino_t)>,
    own_uid: u32,
    /// Epoll token of connection slot 0; slot `n` is `base + n`.
    base: u64,
    connections: Vec<Option<Connection>>,
    /// Connections closed at once because every slot was taken.
    over_limit: Refusals,
    /// Peers refused for their uid, and the last such uid.
    wrong_uid: Refusals,
    last_wrong_uid: u32,
}

impl ControlServer {
    /// Listens on `path`, replacing a stale socket file; the error (a warning to log) when
    /// another process answers there or the socket cannot be made.
    ///
    /// The socket's directory may be writable by others (a user's directory, a sticky
    /// `/tmp`), so every step after opening it goes through the directory's descriptor, never
    /// the path again: a directory swapped for a symlink later cannot redirect us, the socket
    /// path's last component is never followed, and nothing but the socket we bound is
    /// removed.
    pub fn bind(path: &Path, base: u64) -> Result<ControlServer, String> {
        let shown = path.display();
        let cannot = |what: &str, e: &dyn std::fmt::Display| {
            format!("cannot {what} the control socket {shown}: {e}; running without one")
        };
        let name = path
            .file_name()
            .ok_or_else(|| format!("{shown} names no file; running without a control socket (set control-socket to a file path)"))?
            .to_os_string();
        let parent = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let dir: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(parent)
            .map_err(|e| cannot("open the directory of", &e))?
            .into();
        // The path of the socket through our descriptor of its directory (bind and connect
        // take a path); without /proc, the path as given (then the directory is trusted).
        let through_dir = {
            let via = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(&name);
            if via.as_os_str().len() < 108 && Path::new("/proc/self/fd").is_dir() {
                via
            } else {
                path.to_path_buf()
            }
        };
        match stat_at(&dir, &name) {
            Ok(stat) if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK => {
                return Err(format!(
                    "{shown} exists and is not a socket; running without a control socket (remove it or set control-socket)"
                ));
            }
            Ok(_) => {
                if answers(&through_dir) {
                    return Err(format!(
                        "another simplevisor answers on {shown}; running without a control socket (give each one its own control-socket)"
                    ));
                }
                // Nobody listens: left behind by a simplevisor that was killed. unlinkat
                // removes the entry itself, never what a symlink there points to.
                nix::unistd::unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| cannot("replace the stale file of", &e))?;
            }
            Err(_) => {}
        }
        // Mode 0600 from the start, set by bind itself: no moment in which another user could
        // connect, and no chmod through a path that could have been swapped meanwhile.
        // SAFETY: umask only changes the process's file-creation mask; no other thread
        // creates files at this point.
        let previous = unsafe { libc::umask(0o177) };
        let listener = UnixListener::bind(&through_dir);
        // SAFETY: as above, restoring the mask.
        unsafe { libc::umask(previous) };
        let listener = listener.map_err(|e| cannot("create", &e))?;
        // What we created, to recognise it at exit: if the entry was already swapped, this is
        // what took its place in the same directory, and that directory is all we ever touch.
        let created = stat_at(&dir, &name)
            .ok()
            .filter(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFSOCK)
            .map(|stat| (stat.st_dev, stat.st_ino));
        listener
            .set_nonblocking(true)
            .map_err(|e| cannot("make non-blocking", &e))?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            dir,
            name,
            created,
            // SAFETY: geteuid has no preconditions.
            own_uid: unsafe { libc::geteuid() },
            base,
            connections: Vec::new(),
            over_limit: Refusals::default(),
            wrong_uid: Refusals::default(),
            last_wrong_uid: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn listener_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Whether `token` is one of our connections'; its slot.
    pub fn slot_of(&self, token: u64) -> Option<usize> {
        let slot = token.checked_sub(self.base)?;
        usize::try_from(slot).ok().filter(|&s| s < MAX_CONNECTIONS)
    }

    /// Accepts every pending connection. Returns the records to write (refused peers).
    pub fn accept(&mut self, epoll: &Epoll, now: Instant) -> Vec<String> {
        let mut records = Vec::new();
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    records.push(format!("control socket: accept failed: {e}"));
                    break;
                }
            };
            let uid = match getsockopt(&stream, PeerCredentials) {
                Ok(cred) => cred.uid(),
                Err(e) => {
                    records.push(format!(
                        "control socket: cannot read the peer's credentials: {e}"
                    ));
                    continue;
                }
            };
            let refused = uid != self.own_uid && uid != 0;
            if refused {
                self.last_wrong_uid = uid;
                if let Some(count) = self.wrong_uid.refused(now) {
                    records.push(self.wrong_uid_record(count));
                }
            }
            let Some(slot) = self.free_slot() else {
                if let Some(count) = self.over_limit.refused(now) {
                    records.push(over_limit_record(count));
                }
                continue;
            };
            let set_up = stream
                .set_nonblocking(true)
                .map_err(|e| format!("cannot make it non-blocking: {e}"))
                .and_then(|()| {
                    epoll
                        .add(
                            &stream,
                            EpollEvent::new(EpollFlags::EPOLLIN, self.base + slot as u64),
                        )
                        .map_err(|e| format!("cannot watch it (epoll_ctl): {e}"))
                });
            if let Err(reason) = set_up {
                // Closed unanswered: the client sees the connection end, the log says why.
                records.push(format!(
                    "control socket: a connection from uid {uid} was closed unanswered: {reason}"
                ));
                continue;
            }
            self.connections[slot] = Some(Connection {
                stream,
                uid,
                input: Vec::new(),
                output: Vec::new(),
                written: 0,
                deadline: later(now, DEADLINE),
                answered: false,
                refused,
            });
        }
        records
    }

    fn wrong_uid_record(&self, count: u64) -> String {
        let (uid, own) = (self.last_wrong_uid, self.own_uid);
        match count {
            1 => format!(
                "control socket: refused a peer with uid {uid} (only uid {own} and root are served)"
            ),
            n => format!(
                "control socket: refused {n} peers in the last second, the last with uid {uid} (only uid {own} and root are served)"
            ),
        }
    }

    fn free_slot(&mut self) -> Option<usize> {
        if let Some(slot) = self.connections.iter().position(Option::is_none) {
            return Some(slot);
        }
        if self.connections.len() < MAX_CONNECTIONS {
            self.connections.push(None);
            return Some(self.connections.len() - 1);
        }
        None
    }

    /// Connection `slot` is readable (or writable): reads its request, or goes on writing
    /// its answer. Returns the request once a whole line has come.
    pub fn on_ready(&mut self, slot: usize, epoll: &Epoll) -> Option<Incoming> {
        let connection = self.connections.get_mut(slot)?.as_mut()?;
        if connection.answered {
            self.flush(slot, epoll);
            return None;
        }
        let mut chunk = [0u8; 4096];
        loop {
            match connection.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    connection.input.extend_from_slice(&chunk[..n]);
                    if connection.input.contains(&b'\n') || connection.input.len() > MAX_REQUEST {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(slot, epoll);
                    return None;
                }
            }
        }
        connection.answered = true;
        let uid = connection.uid;
        if connection.refused {
            let answer = refusal(
                1,
                &format!("permission denied: uid {uid} may not control this simplevisor"),
            );
            self.answer(slot, &answer, epoll);
            return None;
        }
        let request = match connection.input.iter().position(|&b| b == b'\n') {
            Some(end) => Request::parse(&connection.input[..end]),
            None if connection.input.len() > MAX_REQUEST => Err("the request is too long".into()),
            None if connection.input.is_empty() => {
                self.close(slot, epoll);
                return None;
            }
            None => Request::parse(&connection.input),
        };
        Some(Incoming { slot, uid, request })
    }

    /// Sends `answer` on connection `slot`, then closes it.
    pub fn answer(&mut self, slot: usize, answer: &Value, epoll: &Epoll) {
        let Some(Some(connection)) = self.connections.get_mut(slot) else {
            return;
        };
        connection.output = format!("{answer}\n").into_bytes();
        connection.written = 0;
        let _ = epoll.modify(
            &connection.stream,
            &mut EpollEvent::new(EpollFlags::EPOLLOUT, self.base + slot as u64),
        );
        self.flush(slot, epoll);
    }

    fn flush(&mut self, slot: usize, epoll: &Epoll) {
        let Some(Some(connection)) = self.connections.get_mut(slot) else {
            return;
        };
        while connection.written < connection.output.len() {
            match connection
                .stream
                .write(&connection.output[connection.written..])
            {
                Ok(n) => connection.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if !connection.output.is_empty() || connection.written > 0 {
            self.close(slot, epoll);
        }
    }

    fn close(&mut self, slot: usize, epoll: &Epoll) {
        if let Some(connection) = self.connections.get_mut(slot).and_then(Option::take) {
            let _ = epoll.delete(&connection.stream);
        }
    }

    /// Closes connections past their deadline. Returns the records that are due (summaries
    /// of refused connections).
    pub fn expire(&mut self, now: Instant, epoll: &Epoll) -> Vec<String> {
        for slot in 0..self.connections.len() {
            if self.connections[slot]
                .as_ref()
                .is_some_and(|c| c.deadline <= now)
            {
                self.close(slot, epoll);
            }
        }
        let mut records = Vec::new();
        if let Some(count) = self.over_limit.tick(now) {
            records.push(over_limit_record(count));
        }
        if let Some(count) = self.wrong_uid.tick(now) {
            records.push(self.wrong_uid_record(count));
        }
        records
    }

    /// The earliest deadline: of a connection, or of a summary of refusals; only while there
    /// is one, so an idle supervisor has no timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        let connections = self.connections.iter().flatten().map(|c| c.deadline);
        connections
            .chain(self.over_limit.due())
            .chain(self.wrong_uid.due())
            .min()
    }
}

fn over_limit_record(count: u64) -> String {
    match count {
        1 => format!(
            "control socket: too many connections at once (at most {MAX_CONNECTIONS}); one was closed"
        ),
        n => format!(
            "control socket: too many connections at once (at most {MAX_CONNECTIONS}); {n} were closed in the last second"
        ),
    }
}

impl Drop for ControlServer {
    /// Removes the socket, but only the very file we bound, in the directory we opened: a
    /// directory swapped for a symlink, or a socket swapped for another file, is left alone.
    fn drop(&mut self) {
        let ours = stat_at(&self.dir, &self.name)
            .is_ok_and(|stat| self.created == Some((stat.st_dev, stat.st_ino)));
        if ours {
            let _ =
                nix::unistd::unlinkat(&self.dir, self.name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// `lstat` of `name` in `dir` (a symlink is not followed).
fn stat_at(dir: &OwnedFd, name: &std::ffi::OsStr) -> nix::Result<libc::stat> {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// Whether something listens on the socket at `path`, without ever waiting: a non-blocking
/// connect either completes at once, is refused (a stale file), or finds the backlog full
/// (`EAGAIN`: someone listens but does not accept; that counts as live, as it may be a busy
/// simplevisor, and an attacker's socket must not make us wait).
fn answers(path: &Path) -> bool {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let Ok(address) = UnixAddr::new(path) else {
        return false;
    };
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    match connect(fd.as_raw_fd(), &address) {
        Ok(()) => true,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINPROGRESS) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_make_at_most_one_record_a_second_with_the_count() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut refusals = Refusals::default();
        assert_eq!(refusals.due(), None);
        assert_eq!(refusals.refused(at(0)), Some(1), "the first at once");
        for ms in 1..1000 {
            assert_eq!(refusals.refused(at(ms)), None);
        }
        assert_eq!(refusals.due(), Some(at(1000)));
        assert_eq!(refusals.tick(at(999)), None);
        assert_eq!(
            refusals.tick(at(1000)),
            Some(999),
            "then the sum, a second later"
        );
        assert_eq!(
            refusals.tick(at(5000)),
            None,
            "nothing pending, nothing said"
        );
        assert_eq!(refusals.due(), None);
        assert_eq!(
            refusals.refused(at(5000)),
            Some(1),
            "after a quiet second, at once"
        );
    }
}
