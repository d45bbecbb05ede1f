//! The control socket (docs/operations.md): a Unix socket on which a running simplevisor
//! answers `status`, `health`, `restart`, `stop`, `start` and `signal`, one JSON line each way.
//!
//! - `protocol`: the requests and answers, as JSON (pure).
//! - `server`: the listening socket and its connections, driven by the event loop's epoll
//!   (no thread): creation (mode 0600, stale file replaced, a live one left alone, all through
//!   the directory opened once), the peer
//!   check (`SO_PEERCRED`), reading one request, writing one answer, deadlines.
//! - `client`: the command-line side, `simplevisor status` and friends.

pub mod client;
pub mod protocol;
pub mod server;
