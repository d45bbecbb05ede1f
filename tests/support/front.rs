//! A small HTTP front for OpenBao on 127.0.0.1. It forwards every request to the real server,
//! except:
//! - `GET /v1/aws/creds/<role>`, answered in Vault's shape (OpenBao has no AWS engine), and the
//!   revocation of those stub leases;
//! - everything, while [`Front::set_broken`] is on: a 503 as from a sealed or failing Vault;
//! - every connection, while [`Front::set_mode`] says so: reset at once, or accepted, read and
//!   never answered (a black hole), as from a Vault behind a broken network.
//!
//! It counts the connections and requests it sees, so tests can check the request rate
//! simplevisor causes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const AWS_LEASE_PREFIX: &str = "aws/creds/";

/// What the front does with a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Serve it (forward, or play a broken Vault with [`Front::set_broken`]).
    #[default]
    Pass,
    /// Reset it at once (TCP RST), as from a crashed Vault or a firewall.
    Reset,
    /// Read the request and never answer, holding the connection open.
    BlackHole,
}

#[derive(Default)]
struct State {
    mode: Mutex<Mode>,
    connections: AtomicUsize,
    broken: AtomicBool,
    /// Only requests whose path starts with this are broken (when set).
    broken_prefix: Mutex<Option<String>>,
    stopping: AtomicBool,
    requests: AtomicUsize,
    /// Request lines seen (method and path), in order.
    seen: Mutex<Vec<String>>,
    /// Stub AWS lease ids revoked.
    revoked: Mutex<Vec<String>>,
}

pub struct Front {
    pub port: u16,
    pub addr: String,
    state: Arc<State>,
}

impl Front {
    /// A front for the plain-HTTP server at `upstream` (`127.0.0.1:<port>`).
    pub fn start(upstream: String) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind front");
        let port = listener.local_addr().expect("front addr").port();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&shared);
                let upstream = upstream.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &upstream, &shared);
                });
            }
        });
        Front {
            port,
            addr: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Connections accepted so far, in every mode.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn set_broken(&self, broken: bool) {
        self.state.broken.store(broken, Ordering::SeqCst);
    }

    /// Breaks only the requests whose path (`/v1/...`) starts with `prefix`; `None` repairs.
    pub fn set_broken_prefix(&self, prefix: Option<&str>) {
        *self.state.broken_prefix.lock().unwrap() = prefix.map(str::to_string);
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<String> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn revoked_aws_leases(&self) -> Vec<String> {
        self.state.revoked.lock().unwrap().clone()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut client: TcpStream, upstream: &str, state: &State) -> std::io::Result<()> {
    state.connections.fetch_add(1, Ordering::SeqCst);
    let mode = *state.mode.lock().unwrap();
    if mode == Mode::Reset {
        reset(client);
        return Ok(());
    }
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (head, body) = read_request(&mut client)?;
    if mode == Mode::BlackHole {
        // Hold it (unanswered) until the front goes away or a minute has passed.
        for _ in 0..600 {
            if state.stopping.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        return Ok(());
    }
    let request_line = head.lines().next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    state.requests.fetch_add(1, Ordering::SeqCst);
    state.seen.lock().unwrap().push(format!("{method} {path}"));

    let prefix_broken = state
        .broken_prefix
        .lock()
        .unwrap()
        .as_deref()
        .is_some_and(|prefix| path.starts_with(prefix));
    if state.broken.load(Ordering::SeqCst) || prefix_broken {
        return respond(
            &mut client,
            503,
            r#"{"errors":["Vault is sealed (test front)"]}"#,
        );
    }
    if let Some(role) = path.strip_prefix("/v1/aws/creds/") {
        let answer = serde_json::json!({
            "request_id": "stub",
            "lease_id": format!("{AWS_LEASE_PREFIX}{role}/stub-lease"),
            "renewable": false,
            "lease_duration": 3600,
            "data": {
                "access_key": "AKIASTUBKEYID0001",
                "secret_key": "stub-secret-key-value",
                "security_token": null
            }
        });
        return respond(&mut client, 200, &answer.to_string());
    }
    if path == "/v1/sys/leases/revoke" {
        let body_text = String::from_utf8_lossy(&body);
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&body_text)
            && let Some(id) = value["lease_id"].as_str()
            && id.starts_with(AWS_LEASE_PREFIX)
        {
            state.revoked.lock().unwrap().push(id.to_string());
            return respond(&mut client, 204, "");
        }
    }
    // Forward, one request per connection.
    let mut server = TcpStream::connect(upstream)?;
    let mut forwarded = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if line.is_empty() {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    server.write_all(forwarded.as_bytes())?;
    server.write_all(&body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    client.write_all(&answer)?;
    Ok(())
}

/// Closes `stream` with a TCP reset instead of an orderly close (SO_LINGER with a zero timeout).
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

/// The request head (up to the blank line) and its `Content-Length` body.
pub fn read_request(stream: &mut impl Read) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

pub fn respond(stream: &mut impl Write, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}
