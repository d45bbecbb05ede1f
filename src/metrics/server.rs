//! The metrics listener's server side, driven by the event loop's epoll like the control
//! socket: it owns the listening TCP socket and the open connections (each registered in the
//! caller's epoll under its own token) and does HTTP/1.1 on them; it decides nothing about jobs.
//!
//! How the caller drives it (one thread, level-triggered epoll):
//!
//! 1. [`MetricsServer::bind`]`(addr, base)`, then [`MetricsServer::register`] (the listening
//!    socket goes into the epoll under token `base`; connection `slot` is `base + 1 + slot`,
//!    so tokens `base..=base + 64` are the server's).
//! 2. Event for token `base`: [`MetricsServer::accept`]; log the record it may return.
//! 3. Event for a token with [`MetricsServer::slot_of`]`(token) == Some(slot)`:
//!    [`MetricsServer::on_ready`]; when it returns a request, answer it with
//!    [`MetricsServer::answer`] before waiting on the epoll again (`super::answer` builds the
//!    response).
//! 4. Wait no longer than [`MetricsServer::next_deadline`] (`None` while no connection is open
//!    and accepting is not paused: an idle listener costs no wakeup), and call
//!    [`MetricsServer::expire`] after every wait.
//!
//! Limits, so that nothing a client does can stall the loop or grow memory: at most
//! [`MAX_CONNECTIONS`] connections (more are closed at once); a request over
//! [`super::http::MAX_REQUEST`] bytes is answered with 431 (or 413) and the connection closed;
//! a connection without a complete request within [`IDLE`] of its opening or of its last
//! request is closed, and so is one whose answer is not read by then. One answer at a time:
//! while an answer is being written nothing more is read, so a client that sends and never
//! reads holds one answer and what the kernel buffers, until its deadline. Reads per wakeup
//! are bounded, and a request is parsed only when its head may be complete, so a client
//! sending a byte at a time costs a read each, not a parse each.

use std::io::{ErrorKind, IoSlice, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use nix::sys::socket::{MsgFlags, SockaddrStorage, sendmsg};

use super::http::{Buffer, MAX_REQUEST, Method, Parse, Response, Status};
use super::{HttpRequest, Route};
use crate::time::later;

/// A connection must bring a complete request within this of its opening or of its last
/// request, and read its answer within this of its request.
pub const IDLE: Duration = Duration::from_secs(5);

/// Connections open at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// After accepting fails (out of descriptors, say), accepting stops for this long: the
/// level-triggered listener would otherwise be reported ready again at once, forever.
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Bytes read at once, and the most reads of one discarded stream per wakeup.
const CHUNK: usize = 4096;
const DRAIN_READS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request, or waiting for one.
    Reading,
    /// A request was handed to the caller; its answer is awaited.
    Answering,
    /// Writing an answer.
    Writing,
    /// The last answer is written and our side shut down: reading (and dropping) what the
    /// peer still sends until it closes, so that closing does not reset the connection
    /// before the peer has read the answer.
    Draining,
}

/// What a step of a connection leaves.
#[must_use]
enum Next {
    Keep,
    Close,
}

struct Connection {
    stream: TcpStream,
    token: u64,
    phase: Phase,
    input: Buffer,
    /// The answer being written: its status line and headers, then its body; `written`
    /// counts bytes of both.
    output: Vec<u8>,
    body: Vec<u8>,
    written: usize,
    deadline: Instant,
    interest: EpollFlags,
    /// The request being answered is a `HEAD`: the answer has no body.
    head: bool,
    /// Close once the answer is written.
    close: bool,
    /// The peer shut down its sending side (a read returned 0).
    peer_done: bool,
}

/// The listening socket and its connections; see the module documentation.
pub struct MetricsServer {
    listener: TcpListener,
    address: SocketAddr,
    /// The listener's epoll token; connection slot `n` is `base + 1 + n`.
    base: u64,
    connections: Vec<Option<Connection>>,
    /// Accepting is paused until then (see [`ACCEPT_PAUSE`]).
    paused_until: Option<Instant>,
}

impl MetricsServer {
    /// Listens on `addr` (non-blocking, close-on-exec); the error, saying what to change,
    /// when the address cannot be had.
    pub fn bind(addr: SocketAddr, base: u64) -> Result<MetricsServer, String> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            format!("cannot serve metrics on {addr}: {e}; free the port or change metrics-listen")
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make the metrics listener on {addr} non-blocking: {e}"))?;
        // The address asked for may have port 0: the one the kernel chose is the one to show.
        let address = listener.local_addr().unwrap_or(addr);
        Ok(MetricsServer {
            listener,
            address,
            base,
            connections: Vec::new(),
            paused_until: None,
        })
    }

    /// Where the listener listens (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    pub fn listener_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The epoll token of the listening socket (`base` of [`MetricsServer::bind`]).
    pub fn listener_token(&self) -> u64 {
        self.base
    }

    /// Watches the listening socket in `epoll` under [`MetricsServer::listener_token`].
    pub fn register(&self, epoll: &Epoll) -> Result<(), String> {
        epoll
            .add(
                &self.listener,
                EpollEvent::new(EpollFlags::EPOLLIN, self.base),
            )
            .map_err(|e| format!("cannot watch the metrics listener (epoll_ctl): {e}"))
    }

    /// Whether `token` is one of our connections'; its slot.
    pub fn slot_of(&self, token: u64) -> Option<usize> {
        let slot = token.checked_sub(self.base)?.checked_sub(1)?;
        usize::try_from(slot).ok().filter(|&s| s < MAX_CONNECTIONS)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.iter().flatten().count()
    }

    /// Accepts every pending connection. Returns a record to log when accepting failed (then
    /// accepting pauses for a second); a connection over the limit is closed without one, so
    /// that a client cannot flood the log.
    pub fn accept(&mut self, epoll: &Epoll, now: Instant) -> Option<String> {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    self.pause(epoll, now);
                    return Some(format!(
                        "metrics: cannot accept a connection on {}: {e}; accepting again in {}s",
                        self.address,
                        ACCEPT_PAUSE.as_secs()
                    ));
                }
            };
            let Some(slot) = self.free_slot() else {
                continue;
            };
            let token = self.base + 1 + slot as u64;
            if stream.set_nonblocking(true).is_err()
                || epoll
                    .add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, token))
                    .is_err()
            {
                continue;
            }
            self.connections[slot] = Some(Connection {
                stream,
                token,
                phase: Phase::Reading,
                input: Buffer::default(),
                output: Vec::new(),
                body: Vec::new(),
                written: 0,
                deadline: later(now, IDLE),
                interest: EpollFlags::EPOLLIN,
                head: false,
                close: false,
                peer_done: false,
            });
        }
    }

    /// Takes the listener out of the epoll (an empty interest would still report a hang-up).
    fn pause(&mut self, epoll: &Epoll, now: Instant) {
        if epoll.delete(&self.listener).is_ok() {
            self.paused_until = Some(later(now, ACCEPT_PAUSE));
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

    /// Connection `slot` is ready: reads, parses, or goes on writing or draining. Returns a
    /// request the caller must answer with [`MetricsServer::answer`]; other requests (unknown
    /// paths, other methods, malformed or oversized ones) are answered here.
    pub fn on_ready(
        &mut self,
        slot: usize,
        epoll: &Epoll,
        now: Instant,
    ) -> Option<(usize, HttpRequest)> {
        let connection = self.connections.get_mut(slot)?.as_mut()?;
        let (next, request) = connection.on_ready(epoll, now);
        if let Next::Close = next {
            self.close(slot, epoll);
        }
        request.map(|route| (slot, HttpRequest { route }))
    }

    /// Sends `response` on connection `slot` (for the request [`MetricsServer::on_ready`]
    /// returned); the connection then waits for the next request, or closes.
    pub fn answer(&mut self, slot: usize, response: Response, epoll: &Epoll) {
        let Some(Some(connection)) = self.connections.get_mut(slot) else {
            return;
        };
        if connection.phase != Phase::Answering {
            return;
        }
        if let Next::Close = connection.respond(response, epoll) {
            self.close(slot, epoll);
        }
    }

    fn close(&mut self, slot: usize, epoll: &Epoll) {
        if let Some(connection) = self.connections.get_mut(slot).and_then(Option::take) {
            let _ = epoll.delete(&connection.stream);
        }
        if self.connections.iter().all(Option::is_none) {
            // Nothing kept while no client is connected.
            self.connections = Vec::new();
        }
    }

    /// Closes connections past their deadline, and accepts again after a pause.
    pub fn expire(&mut self, now: Instant, epoll: &Epoll) {
        for slot in 0..self.connections.len() {
            if self.connections[slot]
                .as_ref()
                .is_some_and(|c| c.deadline <= now)
            {
                self.close(slot, epoll);
            }
        }
        if self.paused_until.is_some_and(|until| until <= now) {
            if self.register(epoll).is_ok() {
                self.paused_until = None;
            } else {
                self.paused_until = Some(later(now, ACCEPT_PAUSE));
            }
        }
    }

    /// The earliest deadline: only while connections are open or accepting is paused, so an
    /// idle listener needs no timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.connections
            .iter()
            .flatten()
            .map(|c| c.deadline)
            .chain(self.paused_until)
            .min()
    }
}

impl Connection {
    fn on_ready(&mut self, epoll: &Epoll, now: Instant) -> (Next, Option<Route>) {
        match self.phase {
            // Nothing is read until the request has its answer (one answer at a time).
            Phase::Answering => (Next::Keep, None),
            Phase::Writing => (self.flush(epoll), None),
            Phase::Draining => (self.drain(), None),
            Phase::Reading => self.read_request(epoll, now),
        }
    }

    fn read_request(&mut self, epoll: &Epoll, now: Instant) -> (Next, Option<Route>) {
        // A request may already be buffered behind the last one (pipelining).
        let mut parsed = self.input.parse();
        if matches!(parsed, Parse::Partial | Parse::Body(_)) {
            if let Next::Close = self.fill() {
                return (Next::Close, None);
            }
            parsed = self.input.parse();
        }
        match parsed {
            // The peer is done and sent no whole request.
            Parse::Partial | Parse::Body(_) if self.peer_done => (Next::Close, None),
            Parse::Partial | Parse::Body(_) => {
                (self.set_interest(EpollFlags::EPOLLIN, epoll), None)
            }
            Parse::Invalid(status) => {
                self.input.clear();
                self.deadline = later(now, IDLE);
                self.head = false;
                self.close = true;
                let reason = match status {
                    Status::HeadersTooLarge => {
                        "the request head is over 8 KiB or has too many headers\n"
                    }
                    Status::ContentTooLarge => "the request is over 8 KiB\n",
                    _ => "not an HTTP/1.1 request this server can read\n",
                };
                (self.respond(Response::text(status, reason), epoll), None)
            }
            Parse::Complete(head, length) => {
                self.input.consume(length);
                self.deadline = later(now, IDLE);
                self.head = head.method == Method::Head;
                self.close = !head.keep_alive || self.peer_done;
                let answer = match (head.method, Route::of(&head.path)) {
                    (Method::Other, _) => Response::text(
                        Status::MethodNotAllowed,
                        "only GET and HEAD are served here\n",
                    ),
                    (_, None) => Response::text(
                        Status::NotFound,
                        "not found; served here: /metrics, /readyz, /livez\n",
                    ),
                    (_, Some(route)) => {
                        self.phase = Phase::Answering;
                        // Until the answer, the connection is not watched at all: a level-
                        // triggered event for bytes we do not read yet would come back at once.
                        return (self.set_interest(EpollFlags::empty(), epoll), Some(route));
                    }
                };
                (self.respond(answer, epoll), None)
            }
        }
    }

    /// Reads what the socket holds, up to just over the request limit.
    fn fill(&mut self) -> Next {
        let mut chunk = [0u8; CHUNK];
        while self.input.len() <= MAX_REQUEST {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.peer_done = true;
                    break;
                }
                Ok(n) => self.input.extend(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        Next::Keep
    }

    /// Starts writing `response` (for the request just read).
    fn respond(&mut self, response: Response, epoll: &Epoll) -> Next {
        self.output = response.head(self.close);
        self.body = if self.head { Vec::new() } else { response.body };
        self.written = 0;
        self.phase = Phase::Writing;
        self.flush(epoll)
    }

    fn flush(&mut self, epoll: &Epoll) -> Next {
        let total = self.output.len() + self.body.len();
        while self.written < total {
            let parts = if self.written < self.output.len() {
                [
                    IoSlice::new(&self.output[self.written..]),
                    IoSlice::new(&self.body),
                ]
            } else {
                let offset = self.written - self.output.len();
                [IoSlice::new(&self.body[offset..]), IoSlice::new(&[])]
            };
            // MSG_NOSIGNAL: a peer gone away is an error to handle, never a SIGPIPE, whatever
            // the process's disposition of it.
            let sent = sendmsg::<SockaddrStorage>(
                self.stream.as_raw_fd(),
                &parts,
                &[],
                MsgFlags::MSG_NOSIGNAL,
                None,
            );
            match sent {
                Ok(0) => return Next::Close,
                Ok(n) => self.written += n,
                Err(Errno::EAGAIN) => return self.set_interest(EpollFlags::EPOLLOUT, epoll),
                Err(Errno::EINTR) => {}
                Err(_) => return Next::Close,
            }
        }
        self.output = Vec::new();
        self.body = Vec::new();
        self.written = 0;
        if self.close {
            if self.peer_done || self.stream.shutdown(Shutdown::Write).is_err() {
                return Next::Close;
            }
            self.phase = Phase::Draining;
            self.input.clear();
            return self.set_interest(EpollFlags::EPOLLIN, epoll);
        }
        self.phase = Phase::Reading;
        // A request already buffered: a writable socket is reported at once, which brings
        // the connection back to `on_ready` to parse it.
        let interest = if self.input.is_empty() {
            EpollFlags::EPOLLIN
        } else {
            EpollFlags::EPOLLOUT
        };
        self.set_interest(interest, epoll)
    }

    /// Reads and drops what the peer still sends; done when it closes.
    fn drain(&mut self) -> Next {
        let mut chunk = [0u8; CHUNK];
        for _ in 0..DRAIN_READS {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Next::Close,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        Next::Keep
    }

    fn set_interest(&mut self, interest: EpollFlags, epoll: &Epoll) -> Next {
        if self.interest == interest {
            return Next::Keep;
        }
        let mut event = EpollEvent::new(interest, self.token);
        if epoll.modify(&self.stream, &mut event).is_err() {
            return Next::Close;
        }
        self.interest = interest;
        Next::Keep
    }
}

#[cfg(test)]
mod tests;
