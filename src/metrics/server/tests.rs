//! The server driven as the event loop drives it: one epoll, real loopback sockets, clients
//! in the same thread (non-blocking), and a clock that tests can move forward.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent};

use super::*;

const BASE: u64 = 100;

struct Rig {
    epoll: Epoll,
    server: MetricsServer,
    /// Added to the real clock, to reach deadlines without waiting for them.
    skew: Duration,
    /// The body `/metrics` is answered with.
    metrics: Vec<u8>,
    /// Requests the caller was handed.
    handed: Vec<Route>,
}

impl Rig {
    fn new() -> Rig {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), BASE).unwrap();
        server.register(&epoll).unwrap();
        Rig {
            epoll,
            server,
            skew: Duration::ZERO,
            metrics: b"simplevisor_up 1\n".to_vec(),
            handed: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        Instant::now() + self.skew
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(self.server.local_addr()).unwrap();
        stream.set_nonblocking(true).unwrap();
        Client {
            stream,
            received: Vec::new(),
            eof: false,
        }
    }

    /// One turn of the event loop: wait up to `ms`, handle what is ready, expire.
    fn turn(&mut self, ms: u16) {
        let mut events = [EpollEvent::empty(); 16];
        let count = self.epoll.wait(&mut events, ms).unwrap();
        for event in &events[..count] {
            let token = event.data();
            if token == self.server.listener_token() {
                assert_eq!(self.server.accept(&self.epoll, self.now()), None);
            } else if let Some(slot) = self.server.slot_of(token)
                && let Some((slot, request)) = self.server.on_ready(slot, &self.epoll, self.now())
            {
                self.handed.push(request.route);
                let response = match request.route {
                    Route::Metrics => Response {
                        status: Status::Ok,
                        content_type: super::super::exposition::CONTENT_TYPE,
                        body: self.metrics.clone(),
                    },
                    route => super::super::answer(route, None, || unreachable!()),
                };
                self.server.answer(slot, response, &self.epoll);
            }
        }
        self.server.expire(self.now(), &self.epoll);
    }

    /// Turns until `done` holds, for at most 5 s.
    fn turn_until(&mut self, mut done: impl FnMut(&mut Rig) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(self) {
            assert!(Instant::now() < deadline, "condition not met within 5 s");
            self.turn(10);
        }
    }

    /// Sends `request` on `client` and turns until one whole response has come.
    fn exchange(&mut self, client: &mut Client, request: &[u8]) -> Answer {
        client.send(request);
        self.response(client)
    }

    fn response(&mut self, client: &mut Client) -> Answer {
        let mut answer = None;
        self.turn_until(|_| {
            client.receive();
            answer = client.take_response();
            answer.is_some()
        });
        answer.unwrap()
    }

    /// Turns until `client` sees its connection closed.
    fn closed(&mut self, client: &mut Client) {
        self.turn_until(|_| {
            client.receive();
            client.eof
        });
    }
}

struct Client {
    stream: TcpStream,
    received: Vec<u8>,
    /// End of file or reset: the server closed the connection.
    eof: bool,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.set_nonblocking(false).unwrap();
        self.stream.write_all(bytes).unwrap();
        self.stream.set_nonblocking(true).unwrap();
    }

    fn receive(&mut self) {
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.eof = true;
                    return;
                }
            }
        }
    }

    /// The first whole response received (a `HEAD` response is taken as having no body: the
    /// tests then check that the next bytes are the next response).
    fn take_response(&mut self) -> Option<Answer> {
        self.take(false)
    }

    fn take_head_response(&mut self) -> Option<Answer> {
        self.take(true)
    }

    fn take(&mut self, head: bool) -> Option<Answer> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head_len) = response.parse(&self.received).unwrap() else {
            return None;
        };
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap();
        let status = response.code.unwrap();
        let body_len = if head { 0 } else { length };
        if self.received.len() < head_len + body_len {
            return None;
        }
        let body = self.received[head_len..head_len + body_len].to_vec();
        self.received.drain(..head_len + body_len);
        Some(Answer {
            status,
            headers,
            body,
        })
    }
}

#[test]
fn an_idle_listener_has_no_deadline_and_an_idle_connection_is_closed_after_5_s() {
    let mut rig = Rig::new();
    assert_eq!(rig.server.next_deadline(), None);
    let mut client = rig.connect();
    rig.turn_until(|rig| rig.server.open_connections() == 1);
    let deadline = rig.server.next_deadline().unwrap();
    assert!(deadline > Instant::now() + IDLE - Duration::from_secs(1));
    assert!(deadline <= Instant::now() + IDLE);
    rig.turn(0);
    assert_eq!(rig.server.open_connections(), 1);
    rig.skew = IDLE;
    rig.closed(&mut client);
    assert_eq!(rig.server.open_connections(), 0);
    assert_eq!(rig.server.next_deadline(), None);
    assert_eq!(rig.server.connections.capacity(), 0);
}

#[test]
fn a_connection_stays_open_for_more_requests_and_pipelined_ones_are_answered_in_order() {
    let mut rig = Rig::new();
    let mut client = rig.connect();
    let first = rig.exchange(&mut client, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(first.body, b"simplevisor_up 1\n");
    assert_eq!(first.header("connection"), None);
    let second = rig.exchange(&mut client, b"GET /livez HTTP/1.1\r\n\r\n");
    assert_eq!((second.status, &second.body[..]), (200, &b"live\n"[..]));

    client
        .send(b"GET /readyz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET /livez HTTP/1.1\r\n\r\n");
    let statuses: Vec<u16> = (0..3).map(|_| rig.response(&mut client).status).collect();
    assert_eq!(statuses, [200, 404, 200]);
    assert_eq!(
        rig.handed,
        [Route::Metrics, Route::Live, Route::Ready, Route::Live]
    );
    assert!(!client.eof);
    assert_eq!(rig.server.open_connections(), 1);
}

#[test]
fn a_head_request_gets_the_headers_without_the_body() {
    let mut rig = Rig::new();
    rig.metrics = vec![b'x'; 10_000];
    let mut client = rig.connect();
    client.send(b"HEAD /metrics HTTP/1.1\r\n\r\n");
    let mut answer = None;
    rig.turn_until(|_| {
        client.receive();
        answer = client.take_head_response();
        answer.is_some()
    });
    let answer = answer.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-length"), Some("10000"));
    // No body came: the next bytes are the next answer.
    let next = rig.exchange(&mut client, b"GET /livez HTTP/1.1\r\n\r\n");
    assert_eq!(next.body, b"live\n");
}

#[test]
fn unknown_paths_are_404_and_other_methods_405_and_the_connection_goes_on() {
    let mut rig = Rig::new();
    let mut client = rig.connect();
    let missing = rig.exchange(&mut client, b"GET /metrics/ HTTP/1.1\r\n\r\n");
    assert_eq!(missing.status, 404);
    let post = rig.exchange(
        &mut client,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd",
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let get = rig.exchange(&mut client, b"GET /readyz HTTP/1.1\r\n\r\n");
    assert_eq!(get.status, 200);
    assert_eq!(rig.handed, [Route::Ready]);
}

#[test]
fn connection_close_and_http_1_0_are_answered_then_closed() {
    let mut rig = Rig::new();
    for request in [
        &b"GET /livez HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET /livez HTTP/1.0\r\n\r\n",
    ] {
        let mut client = rig.connect();
        let answer = rig.exchange(&mut client, request);
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("connection"), Some("close"));
        rig.closed(&mut client);
    }
    rig.turn_until(|rig| rig.server.open_connections() == 0);
}

#[test]
fn an_oversized_request_is_431_or_413_then_closed() {
    let mut rig = Rig::new();
    let mut client = rig.connect();
    let mut long = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
    long.resize(MAX_REQUEST + 100, b'a');
    let answer = rig.exchange(&mut client, &long);
    assert_eq!(answer.status, 431);
    rig.closed(&mut client);

    let mut client = rig.connect();
    let answer = rig.exchange(
        &mut client,
        b"POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n",
    );
    assert_eq!(answer.status, 413);
    rig.closed(&mut client);
    assert!(rig.handed.is_empty());
}

#[test]
fn garbage_is_400_then_closed() {
    let mut rig = Rig::new();
    for garbage in [
        &b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"[..],
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET / SPDY/3\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
    ] {
        let mut client = rig.connect();
        let answer = rig.exchange(&mut client, garbage);
        assert_eq!(answer.status, 400, "{garbage:?}");
        rig.closed(&mut client);
    }
    assert!(rig.handed.is_empty());
}

#[test]
fn a_request_sent_a_byte_at_a_time_is_answered() {
    let mut rig = Rig::new();
    let mut client = rig.connect();
    let request = b"\r\nGET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n\r\n";
    for byte in request {
        client.send(&[*byte]);
        rig.turn(1);
    }
    let answer = rig.response(&mut client);
    assert_eq!(answer.status, 200);
    assert_eq!(rig.handed, [Route::Live]);
}

#[test]
fn a_client_that_does_not_read_is_closed_at_its_deadline_and_stalls_no_one() {
    let mut rig = Rig::new();
    // Far more than the socket buffers hold, so the answer cannot be written at once.
    rig.metrics = vec![b'x'; 32 << 20];
    let mut stuck = rig.connect();
    stuck.send(b"GET /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n");
    rig.turn_until(|rig| rig.handed.len() == 1);
    for _ in 0..10 {
        rig.turn(1);
    }
    // Another client is served meanwhile.
    rig.metrics = b"small\n".to_vec();
    let mut other = rig.connect();
    let answer = rig.exchange(&mut other, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(answer.body, b"small\n");
    // Its own, and the other client's: the stuck client's second request was not read.
    assert_eq!(rig.handed.len(), 2);
    rig.skew = IDLE;
    rig.turn_until(|rig| rig.server.open_connections() == 0);
    stuck.receive();
    assert!(stuck.received.len() < 32 << 20);
}

#[test]
fn at_most_64_connections_are_kept_and_the_rest_closed_at_once() {
    let mut rig = Rig::new();
    let mut clients: Vec<Client> = (0..MAX_CONNECTIONS).map(|_| rig.connect()).collect();
    rig.turn_until(|rig| rig.server.open_connections() == MAX_CONNECTIONS);
    let mut extra: Vec<Client> = (0..6).map(|_| rig.connect()).collect();
    for client in &mut extra {
        rig.closed(client);
    }
    assert_eq!(rig.server.open_connections(), MAX_CONNECTIONS);
    // The kept ones are served; once one goes, a new one is kept.
    let answer = rig.exchange(&mut clients[63], b"GET /livez HTTP/1.1\r\n\r\n");
    assert_eq!(answer.status, 200);
    drop(clients.remove(0));
    rig.turn_until(|rig| rig.server.open_connections() == MAX_CONNECTIONS - 1);
    let mut late = rig.connect();
    let answer = rig.exchange(&mut late, b"GET /livez HTTP/1.1\r\n\r\n");
    assert_eq!(answer.status, 200);
    assert_eq!(rig.server.open_connections(), MAX_CONNECTIONS);
}

#[test]
fn half_closed_sockets_get_their_answer_or_are_closed() {
    let mut rig = Rig::new();
    let mut client = rig.connect();
    client.send(b"GET /readyz HTTP/1.1\r\n\r\n");
    client.stream.shutdown(Shutdown::Write).unwrap();
    let answer = rig.response(&mut client);
    assert_eq!((answer.status, &answer.body[..]), (200, &b"ready\n"[..]));
    rig.closed(&mut client);

    // Half a request, then nothing more will come.
    let mut client = rig.connect();
    client.send(b"GET /readyz HTTP/1.1\r\nHost:");
    client.stream.shutdown(Shutdown::Write).unwrap();
    rig.closed(&mut client);
    assert!(client.received.is_empty());

    // Nothing at all.
    let mut client = rig.connect();
    client.stream.shutdown(Shutdown::Write).unwrap();
    rig.closed(&mut client);
    rig.turn_until(|rig| rig.server.open_connections() == 0);
    assert_eq!(rig.handed, [Route::Ready]);
}

#[test]
fn a_client_reset_mid_answer_is_closed() {
    let mut rig = Rig::new();
    rig.metrics = vec![b'x'; 8 << 20];
    let mut client = rig.connect();
    client.send(b"GET /metrics HTTP/1.1\r\n\r\n");
    rig.turn_until(|rig| rig.handed.len() == 1);
    // SO_LINGER 0: closing resets the connection.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and option of the right size.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&client.stream),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as u32,
        );
    }
    drop(client);
    rig.turn_until(|rig| rig.server.open_connections() == 0);
}

#[test]
fn tokens_outside_the_slots_are_not_ours() {
    let rig = Rig::new();
    assert_eq!(rig.server.slot_of(BASE), None);
    assert_eq!(rig.server.slot_of(BASE + 1), Some(0));
    assert_eq!(rig.server.slot_of(BASE + 64), Some(63));
    assert_eq!(rig.server.slot_of(BASE + 65), None);
    assert_eq!(rig.server.slot_of(0), None);
}

#[test]
fn an_address_in_use_is_an_error_saying_what_to_change() {
    let rig = Rig::new();
    let Err(error) = MetricsServer::bind(rig.server.local_addr(), 0) else {
        panic!("bound twice");
    };
    assert!(
        error.starts_with(&format!(
            "cannot serve metrics on {}: ",
            rig.server.local_addr()
        )),
        "{error}"
    );
    assert!(
        error.ends_with("free the port or change metrics-listen"),
        "{error}"
    );
}

/// A listener that fails to accept (here: shut down, so accept gives EINVAL) is not reported
/// again and again: accepting pauses for a second, with a record, then resumes.
#[test]
fn a_failing_accept_pauses_accepting_for_a_second() {
    let mut rig = Rig::new();
    let listener = std::os::fd::AsRawFd::as_raw_fd(&rig.server.listener_fd());
    // SAFETY: shutdown(2) on our own listening socket.
    assert_eq!(unsafe { libc::shutdown(listener, libc::SHUT_RD) }, 0);
    let mut events = [EpollEvent::empty(); 4];
    assert_eq!(rig.epoll.wait(&mut events, 1000u16).unwrap(), 1);
    assert_eq!(events[0].data(), BASE);
    let now = rig.now();
    let record = rig.server.accept(&rig.epoll, now).unwrap();
    assert!(
        record.starts_with(&format!(
            "metrics: cannot accept a connection on {}: ",
            rig.server.local_addr()
        )),
        "{record}"
    );
    assert!(record.ends_with("accepting again in 1s"), "{record}");
    assert_eq!(rig.server.next_deadline(), Some(now + ACCEPT_PAUSE));
    assert_eq!(rig.epoll.wait(&mut events, 0u16).unwrap(), 0);
    rig.server.expire(now + ACCEPT_PAUSE, &rig.epoll);
    assert_eq!(rig.server.next_deadline(), None);
    assert_eq!(rig.epoll.wait(&mut events, 0u16).unwrap(), 1);
}
