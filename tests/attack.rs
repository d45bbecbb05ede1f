//! What an attacker on the same machine tried against a running simplevisor, through the
//! binary: the control socket and its directory, requests, exec readiness checks, credential
//! files. Each test is the regression test of one finding (docs/reliability.md).

mod harness;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use harness::control::ctl;
use harness::{BIN, Supervisor, TempDir, run, secs};

/// Starts simplevisor (without Vault) on `config` with its control socket at `socket`.
fn start(config: &str, socket: &Path) -> Supervisor {
    let mut value: Value = serde_json::from_str(config).unwrap();
    value["control-socket"] = Value::String(socket.display().to_string());
    run(&value.to_string()).arg("--no-vault").start()
}

/// Sends `request` as it is (one line) and returns the answer.
fn raw(socket: &Path, request: &str) -> Value {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(secs(5.0))).unwrap();
    stream.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|_| panic!("not JSON: {answer:?}"))
}

/// Polls `status --json` until `pred` holds.
fn wait_status(socket: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + secs(15.0);
    loop {
        let out = ctl(socket, &["status", "--json"]);
        if out.code == 0 {
            let value: Value = serde_json::from_str(&out.stdout).unwrap();
            if pred(&value) {
                return value;
            }
        }
        assert!(Instant::now() < deadline, "{what}: never ({})", out.stderr);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn state_of(status: &Value, name: &str) -> String {
    status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .map(|j| j["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// A one-shot control server: answers the first request with `answer` and hands the request
/// back.
fn answer_once(socket: PathBuf, answer: Value) -> std::thread::JoinHandle<Value> {
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        (&stream)
            .write_all(format!("{answer}\n").as_bytes())
            .unwrap();
        serde_json::from_str(&line).unwrap()
    })
}

#[test]
fn reload_and_rotate_print_the_lines_of_the_answer() {
    let dir = TempDir::new("attack-reload");
    for command in ["reload", "rotate"] {
        let socket = dir.path().join(format!("{command}-ok.sock"));
        let server = answer_once(
            socket.clone(),
            serde_json::json!({"ok": true, "lines": ["web: restarted", "api: started"]}),
        );
        let out = ctl(&socket, &[command]);
        assert_eq!(
            server.join().unwrap(),
            serde_json::json!({"command": command})
        );
        assert_eq!(out.code, 0, "{command}: {}", out.stderr);
        assert_eq!(out.stdout, "web: restarted\napi: started\n");

        let socket = dir.path().join(format!("{command}-refused.sock"));
        let server = answer_once(
            socket.clone(),
            serde_json::json!({"ok": false, "code": 1, "error": "line 3: bad\nline 9: worse"}),
        );
        let out = ctl(&socket, &[command]);
        server.join().unwrap();
        assert_eq!(out.code, 1);
        assert_eq!(out.stdout, "");
        assert!(
            out.stderr.contains("line 3: bad\nline 9: worse"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn duplicate_keys_and_wrong_types_are_usage_errors() {
    let dir = TempDir::new("attack-strict");
    let socket = dir.path().join("sv.sock");
    let mut sv = start(
        r#"{"jobs": {"main": [{"name": "web", "cmd": ["sleep", "100"]}]}}"#,
        &socket,
    );
    wait_status(&socket, "web running", |s| state_of(s, "web") == "running");
    for request in [
        r#"{"command":"status","command":"stop","jobs":["web"]}"#,
        r#"{"command":"stop","jobs":["nope"],"jobs":["web"]}"#,
        r#"{"command":"health","live":"yes"}"#,
        r#"{"command":"stop","jobs":["web"],"force":true}"#,
    ] {
        let answer = raw(&socket, request);
        assert_eq!(answer["ok"], false, "{request}: {answer}");
        assert_eq!(answer["code"], 2, "{request}: {answer}");
    }
    let status = wait_status(&socket, "status", |_| true);
    assert_eq!(state_of(&status, "web"), "running", "nothing was stopped");
    sv.wait_message("internal", "is given twice in the request", secs(5.0));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
}

/// A listening socket with a full backlog, as any local user can leave at the socket path.
/// Returns the listener and the connections that fill it (all closed on drop).
fn clogged_socket(path: &Path) -> Vec<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let address = |path: &Path| {
        // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (slot, byte) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *slot = *byte as libc::c_char;
        }
        addr
    };
    let socket = |flags: i32| {
        // SAFETY: socket(2) with constant arguments; the fd is owned at once.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | flags, 0) };
        assert!(fd >= 0);
        // SAFETY: fd is a fresh descriptor nobody else owns.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let addr = address(path);
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let listener = socket(0);
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    let bound = unsafe {
        libc::bind(
            listener.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    assert_eq!(bound, 0);
    // SAFETY: listen(2) on our own socket.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let mut fds = vec![listener];
    loop {
        let client = socket(libc::SOCK_NONBLOCK);
        // SAFETY: as for bind.
        let rc = unsafe {
            libc::connect(
                client.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        if rc != 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN),
                "the backlog is full"
            );
            break;
        }
        fds.push(client);
        assert!(fds.len() < 1000, "the backlog never filled");
    }
    fds
}

#[test]
fn a_clogged_socket_at_the_path_neither_blocks_start_up_nor_signals() {
    let dir = TempDir::new("attack-clogged");
    let socket = dir.path().join("sv.sock");
    let _clog = clogged_socket(&socket);
    let started = Instant::now();
    let mut sv = start(
        r#"{"jobs": {"main": [{"name": "web", "cmd": ["sleep", "100"]}]}}"#,
        &socket,
    );
    sv.wait_message("internal", "another simplevisor answers on", secs(5.0));
    sv.wait_message("internal", "job web started", secs(5.0));
    assert!(
        started.elapsed() < secs(2.0),
        "start-up took {:?}",
        started.elapsed()
    );
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(5.0)), 0);
    assert!(socket.exists(), "the other socket is not ours to remove");
}

/// Waits for `name` to be created in `dir`, then runs `then`, in a thread blocked in
/// `read(2)` on an inotify descriptor so that it reacts as soon as the kernel reports the
/// creation. Returns whether it happened.
fn on_create(
    dir: &Path,
    name: &str,
    then: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<bool> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: inotify_init1 with constant flags.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(fd >= 0);
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: fd is our inotify descriptor, c_dir a valid C string.
    assert!(unsafe { libc::inotify_add_watch(fd, c_dir.as_ptr(), libc::IN_CREATE) } >= 0);
    let name = name.to_string();
    std::thread::spawn(move || {
        on_cpu_0();
        let mut buffer = [0u8; 4096];
        let mut seen = false;
        while !seen {
            // SAFETY: reading into our own buffer of its length.
            let n = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
            if n <= 0 {
                break;
            }
            let mut at = 0;
            while at + 16 <= n as usize {
                let len = u32::from_ne_bytes(buffer[at + 12..at + 16].try_into().unwrap()) as usize;
                let entry = &buffer[at + 16..at + 16 + len];
                let entry = entry.split(|&b| b == 0).next().unwrap_or(&[]);
                seen |= entry == name.as_bytes();
                at += 16 + len;
            }
        }
        if seen {
            then();
        }
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(fd) };
        seen
    })
}

/// Pins the calling thread to CPU 0.
fn on_cpu_0() {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity on the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[test]
fn a_socket_swapped_for_a_symlink_at_once_does_not_change_the_target_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("attack-chmod");
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let precious = victim.join("precious");
    std::fs::write(&precious, "root's\n").unwrap();
    std::fs::set_permissions(&precious, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sockets = dir.path().join("sockets");
    std::fs::create_dir(&sockets).unwrap();
    let socket = sockets.join("sv.sock");
    // The attack won 13 starts in 30 before the fix: several starts make a miss unlikely.
    for round in 0..5 {
        let (from, to, target) = (
            socket.clone(),
            sockets.join(format!("moved{round}")),
            precious.clone(),
        );
        let swapper = on_create(&sockets, "sv.sock", move || {
            std::fs::rename(&from, &to).unwrap();
            std::os::unix::fs::symlink(&target, &from).unwrap();
        });
        let mut sv = start(
            r#"{"jobs": {"main": [{"name": "web", "cmd": ["sleep", "100"]}]}}"#,
            &socket,
        );
        sv.wait_message("internal", "job web started", secs(5.0));
        assert!(swapper.join().unwrap(), "the socket was never created");
        sv.signal(libc::SIGTERM);
        assert_eq!(sv.wait_exit(secs(5.0)), 0);
        let mode = std::fs::metadata(&precious).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o644,
            "round {round}: the symlink's target was chmod'ed"
        );
        assert!(precious.exists(), "round {round}: the target was removed");
        let _ = std::fs::remove_file(&socket);
    }
}

#[test]
fn a_directory_swapped_for_a_symlink_does_not_make_exit_remove_another_file() {
    let dir = TempDir::new("attack-rmdir");
    let sockets = dir.path().join("sockets");
    std::fs::create_dir(&sockets).unwrap();
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let precious = victim.join("sv.sock");
    std::fs::write(&precious, "root's\n").unwrap();
    let socket = sockets.join("sv.sock");
    let mut sv = start(
        r#"{"jobs": {"main": [{"name": "web", "cmd": ["sleep", "100"]}]}}"#,
        &socket,
    );
    wait_status(&socket, "web running", |s| state_of(s, "web") == "running");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(&socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is made with mode 0600");
    let moved = dir.path().join("moved");
    std::fs::rename(&sockets, &moved).unwrap();
    std::os::unix::fs::symlink(&victim, &sockets).unwrap();
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(5.0)), 0);
    assert!(
        precious.exists(),
        "a file of the socket's name elsewhere was removed"
    );
    assert!(
        !moved.join("sv.sock").exists(),
        "its own socket, in the directory it was created in, is removed"
    );
}

/// Starts a job whose `exec` readiness check runs `script`, lets the check run for a while,
/// and checks that at most `in_flight` processes with `marker` exist at any time, and none
/// once simplevisor has exited on SIGTERM.
fn check_leaves_nothing(script: &str, marker: &str, timeout: &str) {
    let config = serde_json::json!({"jobs": {"main": [{
        "name": "web",
        "cmd": ["sleep", "100"],
        "ready": {"exec": ["sh", "-c", script], "interval": "200ms", "timeout": timeout}
    }]}});
    let mut sv = run(&config.to_string()).arg("--no-vault").start();
    sv.wait_message("internal", "job web started", secs(5.0));
    // Long enough for several checks; every 10 ms, what is left.
    let watch_until = Instant::now() + secs(2.0);
    let mut most = 0;
    while Instant::now() < watch_until {
        most = most.max(harness::processes_with(marker).len());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        most <= 1,
        "{most} processes of the checks were alive at once: {script}"
    );
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(5.0)), 0);
    let deadline = Instant::now() + secs(2.0);
    while !harness::processes_with(marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = harness::processes_with(marker);
    for &pid in &left {
        // SAFETY: kill(2) of what this test made simplevisor leave behind.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        left.is_empty(),
        "left behind after exit: {left:?} ({script})"
    );
}

#[test]
fn an_exec_check_leaves_no_background_process() {
    // The quotes keep the marker out of the shell's own command line.
    check_leaves_nothing("sleep 98''71 & exit 1", "sleep 9871", "1s");
}

#[test]
fn an_exec_check_that_times_out_leaves_not_even_a_setsid_child() {
    check_leaves_nothing("setsid sleep 98''72 & sleep 9873", "sleep 9872", "300ms");
}

#[test]
fn a_panic_kills_the_process_group_of_a_running_exec_check() {
    let config = serde_json::json!({"jobs": {"main": [{
        "name": "web",
        "cmd": ["sleep", "100"],
        "ready": {"exec": ["sh", "-c", "sleep 98''74 & sleep 9875"], "timeout": "60s"}
    }]}});
    let mut sv = run(&config.to_string())
        .arg("--no-vault")
        .env("SIMPLEVISOR_TEST_PANIC_ON_USR2", "1")
        .start();
    sv.wait_message("internal", "job web started", secs(5.0));
    let deadline = Instant::now() + secs(5.0);
    while harness::processes_with("sleep 9874").is_empty() {
        assert!(Instant::now() < deadline, "the check never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    sv.signal(libc::SIGUSR2);
    assert_ne!(sv.wait_exit(secs(10.0)), 0);
    let deadline = Instant::now() + secs(2.0);
    while !harness::processes_with("sleep 9874").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = harness::processes_with("sleep 9874");
    for &pid in &left {
        // SAFETY: kill(2) of what this test made simplevisor leave behind.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        left.is_empty(),
        "the check's group outlived a panic: {left:?}"
    );
}

/// Runs the binary with `args` and `env`, killing it (and failing) if it takes longer than
/// `limit`; its exit status and its output, stdout and stderr together.
fn bounded(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (i32, String) {
    use std::process::Stdio;
    let dir = TempDir::new("attack-bounded");
    let out = dir.path().join("out");
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("simplevisor {args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&out).unwrap()
        + &std::fs::read_to_string(dir.path().join("err")).unwrap();
    (status.code().unwrap_or(-1), text)
}

#[test]
fn bad_credential_files_fail_check_and_run_at_once_naming_the_file() {
    let dir = TempDir::new("attack-credentials");
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let sparse = dir.path().join("sparse");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let crlf = dir.path().join("crlf");
    std::fs::write(&crlf, "s.first-half\r\nX-Injected: 1\n").unwrap();
    let cases = [
        (PathBuf::from("/dev/zero"), "is a device"),
        (fifo, "is a FIFO"),
        (sparse, "larger than 64 KiB"),
        (crlf, "control character"),
    ];
    let auths = [
        ("token-file", serde_json::json!({"method": "token"})),
        ("secret-id-file", serde_json::json!({"method": "approle"})),
        (
            "jwt-file",
            serde_json::json!({"method": "jwt", "role": "app"}),
        ),
        (
            "jwt-file",
            serde_json::json!({"method": "kubernetes", "role": "app"}),
        ),
    ];
    for (file, why) in &cases {
        for (key, auth) in &auths {
            let mut auth = auth.clone();
            auth[key] = Value::String(file.display().to_string());
            let config = serde_json::json!({
                "env": {"vault-replace": ["K"]},
                "jobs": {"main": [{"cmd": ["sleep", "100"]}]},
                "vault": {"auth": auth, "startup-timeout": "60s"}
            });
            let path = dir.path().join("simplevisor.json");
            std::fs::write(&path, config.to_string()).unwrap();
            let env = [
                ("VAULT_ADDR", "http://127.0.0.1:1"),
                ("VAULT_ROLE_ID", "role"),
                ("K", "secret:app:key"),
            ];
            let named = format!("vault.auth.{key} {}: ", file.display());
            for command in ["check", "run"] {
                let (code, out) = bounded(
                    &[command, "--config", path.to_str().unwrap()],
                    &env,
                    secs(5.0),
                );
                assert_ne!(code, 0, "{command} {key} {}: {out}", file.display());
                assert!(
                    out.contains(&named) && out.contains(why),
                    "{command} {key} {}: {out}",
                    file.display()
                );
                assert!(!out.contains("first-half"), "the content is never shown");
            }
        }
    }
}

/// A credential file that turns bad while simplevisor runs (a FIFO in place of the token
/// file) makes the next login fail at once, like any failed login, instead of hanging.
#[test]
fn a_bad_credential_file_at_a_re_login_is_a_failed_login() {
    let Some(bao) = support::bao::Bao::start() else {
        return;
    };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", serde_json::json!({"key": "kv-value"}));
    bao.policy(
        "app",
        r#"path "kv/data/*" { capabilities = ["read"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }"#,
    );
    let dir = TempDir::new("attack-relogin");
    let token_file = dir.path().join("vault-token");
    let token = bao.token(&["app"], "6s", "1h");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = serde_json::json!({
        "env": {"pass": ["PATH", "K"], "vault-replace": ["K"]},
        "jobs": {"main": [{"name": "app", "cmd": ["sh", "-c", "echo up; exec sleep 100"]}]},
        "vault": {
            "auth": {"method": "token", "token-file": token_file},
            "on-lease-expiry": "restart",
            "startup-timeout": "60s"
        }
    });
    let mut env = bao.env();
    env.push(("K".into(), "secret:app:key".into()));
    let mut sv = harness::start_with_env(&config, &env);
    sv.wait_message("app", "up", secs(15.0));
    std::fs::remove_file(&token_file).unwrap();
    nix::unistd::mkfifo(&token_file, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    bao.api(
        "POST",
        "auth/token/revoke",
        serde_json::json!({ "token": token }),
    );
    assert_eq!(sv.wait_exit(secs(20.0)), 1, "{}", sv.dump());
    let expected = format!("vault.auth.token-file {}: is a FIFO", token_file.display());
    assert!(
        sv.messages("internal")
            .iter()
            .any(|m| m.contains(&expected)),
        "{}",
        sv.dump()
    );
}

/// A client of the allowed uid keeps every slot taken and connects in a loop: the refusals
/// make at most one record a second, with the count.
#[test]
fn refused_connections_make_at_most_one_record_a_second() {
    let dir = TempDir::new("attack-flood");
    let socket = dir.path().join("sv.sock");
    let mut sv = start(
        r#"{"jobs": {"main": [{"name": "web", "cmd": ["sleep", "100"]}]}}"#,
        &socket,
    );
    wait_status(&socket, "web running", |s| state_of(s, "web") == "running");
    let flood_for = secs(3.0);
    let started = Instant::now();
    let mut holders: Vec<UnixStream> = Vec::new();
    let mut refreshed = started - secs(1.0);
    let mut attempts = 0u64;
    while started.elapsed() < flood_for {
        // Idle connections are cut after a second: take every slot again, often.
        if refreshed.elapsed() > secs(0.3) {
            holders.clear();
            holders.extend((0..40).filter_map(|_| UnixStream::connect(&socket).ok()));
            refreshed = Instant::now();
        }
        if UnixStream::connect(&socket).is_ok() {
            attempts += 1;
        }
    }
    drop(holders);
    let flood_secs = started.elapsed().as_secs_f64();
    let is_refusal = |r: &Value| {
        r["process"] == "internal"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("too many connections at once"))
    };
    // The summary of the last second comes a second after the flood.
    std::thread::sleep(Duration::from_millis(1500));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    let records: Vec<&str> = sv
        .seen
        .iter()
        .filter(|r| is_refusal(r))
        .filter_map(|r| r["message"].as_str())
        .collect();
    let closed: u64 = records
        .iter()
        .map(|m| {
            if m.contains("one was closed") {
                1
            } else {
                m.split("); ")
                    .nth(1)
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no count in {m:?}"))
            }
        })
        .sum();
    assert!(
        records.len() as f64 <= flood_secs + 2.0,
        "{} records in {flood_secs:.1}s ({attempts} connections): {records:?}",
        records.len()
    );
    assert!(
        closed > 100,
        "{closed} refusals counted of {attempts} connections: {records:?}"
    );
}

/// What held in the attack, kept: an idle client and a slow one are cut after a second, and
/// a huge request is refused as too long without being read whole.
#[test]
fn idle_slow_and_huge_requests_are_cut_short() {
    let dir = TempDir::new("attack-slow");
    let socket = dir.path().join("sv.sock");
    let mut sv = start(
        r#"{"jobs": {"main": [{"name": "web", "cmd": ["sleep", "100"]}]}}"#,
        &socket,
    );
    wait_status(&socket, "web running", |s| state_of(s, "web") == "running");

    let idle = UnixStream::connect(&socket).unwrap();
    idle.set_read_timeout(Some(secs(5.0))).unwrap();
    let began = Instant::now();
    let mut answer = Vec::new();
    let _ = (&idle).read_to_end(&mut answer);
    assert!(
        answer.is_empty() && began.elapsed() < secs(2.0),
        "idle: {:?}",
        began.elapsed()
    );

    let mut slow = UnixStream::connect(&socket).unwrap();
    let began = Instant::now();
    while slow.write_all(b" ").is_ok() && began.elapsed() < secs(5.0) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(began.elapsed() < secs(2.5), "slow: {:?}", began.elapsed());

    let huge = UnixStream::connect(&socket).unwrap();
    huge.set_read_timeout(Some(secs(5.0))).unwrap();
    let writer = huge.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let block = vec![b'x'; 1024 * 1024];
        for _ in 0..10 {
            if (&writer).write_all(&block).is_err() {
                break;
            }
        }
    });
    let mut answer = String::new();
    let _ = (&huge).read_to_string(&mut answer);
    drop(huge);
    sender.join().unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{answer:?}"));
    assert_eq!(answer["code"], 2, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("too long"),
        "{answer}"
    );
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(5.0)), 0);
}
