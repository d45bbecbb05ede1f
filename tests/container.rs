//! simplevisor as the entrypoint of a real container runtime: Podman (as root, with `runc`)
//! builds examples/Dockerfile's `FROM scratch` image (the static binary, a static busybox for
//! the jobs' shell, `/etc/passwd`, `/etc/group`, examples/scratch.json) and runs it. What
//! `unshare` cannot show is checked here: the runtime's own stop clock and `SIGKILL`, its log
//! driver reading our stdout, its health checks, a read-only root, a non-root user, and
//! catatonit (`--init`) as PID 1 above us.
//!
//! One image is built for all scenarios, which run in sequence in one test; every container
//! and the image are removed at the end, also when a scenario fails.

mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::{TempDir, has_interpreter, is_root, require, secs, static_binary};
use serde_json::Value;

const BUSYBOX: &str = "/bin/busybox";

/// `podman --runtime runc ARGS`: these machines have hybrid cgroups, which Podman's default
/// runtime (crun) refuses.
fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(["--runtime", "runc"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `podman ARGS`, which must succeed: its stdout.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn podman_present() -> bool {
    ["podman", "runc"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn static_busybox() -> bool {
    std::fs::read(BUSYBOX).is_ok_and(|elf| elf.starts_with(b"\x7fELF") && !has_interpreter(&elf))
}

fn unique(label: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("simplevisor-test-{label}-{}-{n}", std::process::id())
}

/// The image, removed on drop.
struct Image {
    name: String,
    context: TempDir,
}

/// Scenario configurations, mounted at /configs.
const CONFIGS: &[(&str, &str)] = &[
    (
        "signals.json",
        r#"{"env": {"pass": ["PATH"]}, "stop-timeout": "2s", "jobs": {"main": [
            {"name": "polite", "cmd": ["/bin/busybox", "sh", "-c",
              "trap 'echo polite got TERM; exit 0' TERM; trap 'echo polite got HUP' HUP; echo polite up; while :; do /bin/busybox sleep 0.1; done"]},
            {"name": "stubborn", "cmd": ["/bin/busybox", "sh", "-c",
              "trap 'echo stubborn ignores TERM' TERM; echo stubborn up; while :; do /bin/busybox sleep 0.1; done"]},
            {"name": "orphans", "cmd": ["/bin/busybox", "sh", "-c",
              "for i in 1 2 3 4 5; do (/bin/busybox sleep 0.5 &); done; echo orphans made; exec /bin/busybox sleep 1000"]}
        ]}}"#,
    ),
    (
        "health.json",
        r#"{"env": {"pass": ["PATH"]}, "restart-backoff": {"initial": "1m", "max": "1m"},
            "jobs": {"main": [{"name": "web", "cmd": ["/bin/busybox", "sleep", "1000"],
              "ready": {"exec": ["/bin/busybox", "test", "-e", "/run/ready"], "interval": "200ms"}}]}}"#,
    ),
    (
        "unprivileged.json",
        r#"{"env": {"pass": ["PATH"]}, "control-socket": "/run/simplevisor/control.sock",
            "jobs": {"main": [
              {"name": "web", "cmd": ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"],
               "ready": {"tcp": "127.0.0.1:8080"}},
              {"name": "writer", "cmd": ["/bin/busybox", "sh", "-c",
               "/bin/busybox touch /written 2>/dev/null || echo the root is read-only; echo uid $(/bin/busybox id -u); exec /bin/busybox sleep 1000"]}
            ]}}"#,
    ),
    (
        "essential.json",
        r#"{"jobs": {"main": [
            {"name": "app", "cmd": ["/bin/busybox", "sh", "-c", "echo working; /bin/busybox sleep 0.3; exit 7"], "essential": true},
            {"name": "helper", "cmd": ["/bin/busybox", "sleep", "1000"]}
        ]}}"#,
    ),
];

impl Image {
    /// The example image: examples/Dockerfile's last stage, with its named stages supplied
    /// from local files (`--build-context`; the tests have no registry): the static binary,
    /// the users and the site, and a static busybox.
    fn example() -> Image {
        let context = Image::stages();
        let dir = |name: &str| {
            let path = context.path().join(name);
            std::fs::create_dir_all(&path).unwrap();
            path
        };
        dir("users/etc");
        dir("users/www");
        dir("users/empty-run");
        context.write(
            "users/etc/passwd",
            "root:x:0:0:root:/root:/sbin/nologin\napp:x:1000:1000::/www:/sbin/nologin\n",
        );
        context.write("users/etc/group", "root:x:0:\napp:x:1000:\n");
        context.write("users/www/index.html", "hello from simplevisor\n");
        dir("configs");
        for (name, config) in CONFIGS {
            context.write(&format!("configs/{name}"), config);
        }
        Image::build("examples/Dockerfile", context, &["build", "users", "app"])
    }

    /// The image of examples/kubernetes/ (its Dockerfile, stages supplied as for the example).
    fn kubernetes() -> Image {
        let context = Image::stages();
        Image::build("examples/kubernetes/Dockerfile", context, &["build", "app"])
    }

    /// A directory with the stages both Dockerfiles share: `build` (the static binary) and
    /// `app` (a static busybox).
    fn stages() -> TempDir {
        let context = TempDir::new("image");
        for dir in ["build", "app/bin"] {
            std::fs::create_dir_all(context.path().join(dir)).unwrap();
        }
        std::fs::copy(static_binary(), context.path().join("build/simplevisor")).unwrap();
        std::fs::copy(BUSYBOX, context.path().join("app/bin/busybox")).unwrap();
        context
    }

    /// `podman build` of `dockerfile` (relative to the repository, which is the build context)
    /// with each of `stages` taken from the directory of that name in `context`.
    fn build(dockerfile: &str, context: TempDir, stages: &[&str]) -> Image {
        let repository = env!("CARGO_MANIFEST_DIR");
        let file = format!("{repository}/{dockerfile}");
        let stages: Vec<String> = stages
            .iter()
            .map(|stage| format!("{stage}={}", context.path().join(stage).display()))
            .collect();
        let image = Image {
            name: format!("localhost/{}", unique("image")),
            context,
        };
        let mut argv = vec!["build", "--quiet", "--file", &file, "--tag", &image.name];
        for stage in &stages {
            argv.extend(["--build-context", stage]);
        }
        argv.push(repository);
        podman_ok(&argv);
        image
    }

    /// The scenario configurations to mount at /configs, if this image has them.
    fn configs(&self) -> Option<String> {
        let dir = self.context.path().join("configs");
        dir.exists()
            .then(|| format!("{}:/configs:ro", dir.display()))
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "--force", &self.name]);
    }
}

/// A container, removed on drop (killed first if it still runs).
struct Container {
    name: String,
}

impl Container {
    /// `podman run --detach` of `image` with the options and then the arguments for simplevisor.
    fn run(image: &Image, options: &[&str], args: &[&str]) -> Container {
        let container = Container { name: unique("c") };
        let mut argv = vec!["run", "--detach", "--name", &container.name];
        // The default open-files limit of these machines cannot be raised by the runtime.
        argv.extend([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--network",
            "none",
        ]);
        let configs = image.configs();
        if let Some(configs) = &configs {
            argv.extend(["--volume", configs]);
        }
        argv.extend(options);
        argv.push(&image.name);
        argv.extend(args);
        podman_ok(&argv);
        container
    }

    /// Every line simplevisor wrote to stdout, as the runtime's log driver kept it.
    fn records(&self) -> Vec<Value> {
        let out = podman_ok(&["logs", &self.name]);
        out.lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("podman logs: not a JSON record ({e}): {line}"))
            })
            .collect()
    }

    fn logs(&self) -> String {
        text(&podman(&["logs", &self.name]).stdout)
    }

    /// Waits until a record of `process` contains `text`; returns all records so far.
    fn wait_record(&self, process: &str, text: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.records();
            if records.iter().any(|r| is(r, process, text)) {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no record of {process} containing {text:?} within {timeout:?}:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn exec(&self, options: &[&str], command: &[&str]) -> Output {
        let mut argv = vec!["exec"];
        argv.extend(options);
        argv.push(&self.name);
        argv.extend(command);
        podman(&argv)
    }

    /// `podman stop -t SECONDS`: how long it took and the container's exit code.
    fn stop(&self, seconds: u32) -> (Duration, i64) {
        let started = Instant::now();
        podman_ok(&["stop", "--time", &seconds.to_string(), &self.name]);
        let took = started.elapsed();
        (took, self.exit_code())
    }

    fn exit_code(&self) -> i64 {
        self.inspect("{{.State.ExitCode}}")
            .parse()
            .unwrap_or_else(|e| panic!("{}: exit code: {e}", self.name))
    }

    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
            .trim()
            .to_string()
    }

    /// `podman top` rows: pid, ppid, state, user, comm, args.
    fn top(&self) -> Vec<Vec<String>> {
        podman_ok(&[
            "top", &self.name, "pid", "ppid", "state", "user", "comm", "args",
        ])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
    }

    /// The states of every process in the container's PID namespace, read from its /proc.
    fn proc_states(&self) -> Vec<String> {
        let out = self.exec(&[], &[BUSYBOX, "sh", "-c", "cat /proc/[0-9]*/stat"]);
        text(&out.stdout)
            .lines()
            .filter_map(|l| l.rsplit_once(") ").map(|(_, rest)| rest[..1].to_string()))
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}

fn is(record: &Value, process: &str, text: &str) -> bool {
    record["process"] == process && record["message"].as_str().is_some_and(|m| m.contains(text))
}

/// The position of the first record of `process` containing `text`.
fn position(records: &[Value], process: &str, text: &str) -> usize {
    records
        .iter()
        .position(|r| is(r, process, text))
        .unwrap_or_else(|| panic!("no record of {process} containing {text:?} in {records:#?}"))
}

/// The example image as shipped (examples/scratch.json): records through `podman logs`, and
/// `podman stop` with the example's `shutdown-delay`.
fn example_records_and_stop(image: &Image) {
    // Where the example's configuration is meant to be checked: in the image.
    let check = Container::run(image, &[], &["check", "--no-vault"]);
    let code = podman_ok(&["wait", &check.name]);
    assert_eq!(
        code.trim(),
        "0",
        "{}",
        text(&podman(&["logs", &check.name]).stderr)
    );
    let c = Container::run(image, &[], &[]);
    c.wait_record("internal", "job web is ready", secs(20.0));
    let out = c.exec(
        &[],
        &[BUSYBOX, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
    );
    assert_eq!(text(&out.stdout), "hello from simplevisor\n");
    let health = c.exec(&[], &["/simplevisor", "health"]);
    assert!(health.status.success(), "{}", c.logs());
    // The example delays the stop by its shutdown-delay (5 s) so that traffic drains. (Podman
    // runs no exec session, health checks included, in a stopping container, so `health`
    // cannot be asked meanwhile; the record says it fails.)
    let (took, code) = c.stop(20);
    assert_eq!(code, 0, "{}", c.logs());
    assert!(took >= secs(4.9) && took < secs(12.0), "took {took:?}");
    let records = c.records();
    for record in &records {
        let keys: Vec<&String> = record.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["message", "process", "stream", "time"], "{record}");
    }
    position(&records, "config-check", "/simplevisor.json: OK");
    position(
        &records,
        "internal",
        "job config-check exited with status 0",
    );
    position(&records, "internal", "received TERM; health now fails");
    let last = records.last().unwrap();
    assert!(
        is(last, "internal", "simplevisor exits with status 0"),
        "{last}"
    );
}

/// `podman stop -t 5` against a stop-timeout of 2 s: every job gets TERM, the one ignoring it
/// is SIGKILLed by simplevisor after 2 s, long before the runtime's own SIGKILL at 5 s, and the
/// exit status is 0. With `-t 1` the runtime's SIGKILL comes first: exit 137.
fn stop_timing_and_order(image: &Image, init: bool) {
    let options: &[&str] = if init { &["--init"] } else { &[] };
    let c = Container::run(image, options, &["--config", "/configs/signals.json"]);
    c.wait_record("stubborn", "stubborn up", secs(20.0));
    c.wait_record("polite", "polite up", secs(5.0));
    if init {
        // catatonit is PID 1, simplevisor its child.
        let top = c.top();
        let simplevisor = top
            .iter()
            .find(|row| row[4] == "simplevisor")
            .unwrap_or_else(|| panic!("no simplevisor in {top:?}"));
        assert_eq!(simplevisor[1], "1", "{top:?}");
        let pid1 = top.iter().find(|row| row[0] == "1").unwrap();
        assert_ne!(pid1[4], "simplevisor", "{top:?}");
    }
    let (took, code) = c.stop(5);
    assert_eq!(code, 0, "{}", c.logs());
    assert!(took >= secs(1.9) && took < secs(5.0), "took {took:?}");
    let records = c.records();
    let polite = position(&records, "polite", "polite got TERM");
    let stubborn = position(&records, "stubborn", "stubborn ignores TERM");
    let killed = position(
        &records,
        "internal",
        "job stubborn was killed by signal KILL",
    );
    let exit = position(&records, "internal", "simplevisor exits with status 0");
    assert!(polite < killed && stubborn < killed && killed < exit);
    // No job left behind: each one's end is recorded before simplevisor exits.
    for job in ["polite", "stubborn", "orphans"] {
        let ended = records.iter().position(|r| {
            is(r, "internal", &format!("job {job} exited"))
                || is(r, "internal", &format!("job {job} was killed"))
        });
        assert!(ended.is_some_and(|at| at < exit), "{job}: {records:#?}");
    }

    let c = Container::run(image, options, &["--config", "/configs/signals.json"]);
    c.wait_record("stubborn", "stubborn up", secs(20.0));
    let (took, code) = c.stop(1);
    assert_eq!(code, 137, "the runtime's SIGKILL: {}", c.logs());
    assert!(took < secs(4.0), "took {took:?}");
}

/// `podman kill -s HUP` reaches the jobs; orphans re-parented to simplevisor are reaped, no
/// zombie is left in the runtime's PID namespace.
fn signals_and_orphans(image: &Image, init: bool) {
    let options: &[&str] = if init { &["--init"] } else { &[] };
    let c = Container::run(image, options, &["--config", "/configs/signals.json"]);
    c.wait_record("polite", "polite up", secs(20.0));
    c.wait_record("orphans", "orphans made", secs(5.0));
    podman_ok(&["kill", "--signal", "HUP", &c.name]);
    c.wait_record("polite", "polite got HUP", secs(5.0));
    c.wait_record("internal", "received HUP; forwarded to", secs(5.0));
    // The five orphans exit after 0.5 s; then none of them, and no zombie, may be left.
    let deadline = Instant::now() + secs(10.0);
    loop {
        let top = c.top();
        let orphans = top
            .iter()
            .filter(|row| row.last().is_some_and(|a| a == "0.5"));
        let zombies = top.iter().filter(|row| row[2] == "Z").count();
        let states = c.proc_states();
        if orphans.count() == 0 && zombies == 0 && !states.iter().any(|s| s == "Z") {
            assert!(states.len() >= 4, "/proc of the container: {states:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphans or zombies left: {top:?} {states:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = c.records();
    assert!(
        records
            .iter()
            .any(|r| is(r, "internal", "reaped") && is(r, "internal", "orphan")),
        "{records:#?}"
    );
    let (_, code) = c.stop(10);
    assert_eq!(code, 0, "{}", c.logs());
}

/// A Podman health check running `simplevisor health`: starting, then healthy once the job is
/// ready, then unhealthy when the job has stopped (it waits out a 1-minute restart backoff).
fn health_check(image: &Image) {
    let c = Container::run(
        image,
        &[
            "--health-cmd",
            r#"["/simplevisor", "health"]"#,
            // No timer (it would need systemd): the test runs each check itself.
            "--health-interval",
            "0",
            "--health-retries",
            "2",
        ],
        &["--config", "/configs/health.json"],
    );
    let status = || c.inspect("{{.State.Health.Status}}");
    let check = || podman(&["healthcheck", "run", &c.name]).status.success();
    c.wait_record("internal", "job web started", secs(20.0));
    assert_eq!(status(), "starting");
    assert!(!check(), "healthy before the job is ready");
    assert_eq!(status(), "starting");
    assert!(
        c.exec(&[], &[BUSYBOX, "touch", "/run/ready"])
            .status
            .success()
    );
    let deadline = Instant::now() + secs(10.0);
    while !check() {
        assert!(Instant::now() < deadline, "never healthy:\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(), "healthy");
    let out = c.exec(&[], &["/simplevisor", "signal", "KILL", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    c.wait_record("internal", "job web was killed by signal KILL", secs(5.0));
    assert!(!check() && !check(), "still healthy:\n{}", c.logs());
    assert_eq!(status(), "unhealthy");
    let out = c.exec(&[], &["/simplevisor", "health"]);
    assert!(text(&out.stderr).contains("not ready"), "{out:?}");
}

/// A read-only root with a tmpfs for the control socket, run as uid 10001 (jobs without
/// `run-as` run as that user too).
fn read_only_and_unprivileged(image: &Image) {
    let c = Container::run(
        image,
        &[
            "--read-only",
            "--read-only-tmpfs=false",
            "--tmpfs",
            "/run/simplevisor:rw,mode=0755,U",
            "--user",
            "10001",
        ],
        &["--config", "/configs/unprivileged.json"],
    );
    c.wait_record("internal", "job web is ready", secs(20.0));
    let records = c.wait_record("writer", "uid 10001", secs(5.0));
    position(&records, "writer", "the root is read-only");
    position(
        &records,
        "internal",
        "control socket: /run/simplevisor/control.sock",
    );
    let top = c.top();
    assert!(top.iter().all(|row| row[3] == "10001"), "{top:?}");
    let socket = ["--socket", "/run/simplevisor/control.sock"];
    let status = |options: &[&str]| {
        let mut command = vec!["/simplevisor", "status"];
        command.extend(socket);
        c.exec(options, &command)
    };
    let own = status(&[]);
    assert!(own.status.success(), "{}", text(&own.stderr));
    assert!(text(&own.stdout).contains("web"), "{}", text(&own.stdout));
    let root = status(&["--user", "0"]);
    assert!(root.status.success(), "{}", text(&root.stderr));
    // Another uid is stopped by the socket's mode 0600 before simplevisor sees it.
    let other = status(&["--user", "10002"]);
    assert_eq!(other.status.code(), Some(1));
    assert!(
        text(&other.stderr).contains(
            "cannot reach simplevisor at /run/simplevisor/control.sock: Permission denied"
        ),
        "{}",
        text(&other.stderr)
    );
    let (_, code) = c.stop(10);
    assert_eq!(code, 0, "{}", c.logs());
}

/// An essential job's exit status becomes the container's, with or without catatonit.
fn exit_status(image: &Image, init: bool) {
    let options: &[&str] = if init { &["--init"] } else { &[] };
    let c = Container::run(image, options, &["--config", "/configs/essential.json"]);
    let code = podman_ok(&["wait", &c.name]);
    assert_eq!(code.trim(), "7", "{}", c.logs());
    let records = c.records();
    position(&records, "app", "working");
    position(&records, "internal", "job helper was killed by signal TERM");
    position(&records, "internal", "simplevisor exits with status 7");
}

/// The image of examples/kubernetes/ run as its Deployment runs it (uid 10001, read-only
/// root, the control socket on a tmpfs where the Deployment has an emptyDir, the same
/// arguments), without Vault: the layout under /app works and the probes answer.
fn kubernetes_example() {
    let image = Image::kubernetes();
    let c = Container::run(
        &image,
        &[
            "--read-only",
            "--read-only-tmpfs=false",
            "--tmpfs",
            "/run/simplevisor:rw,mode=0755,U",
            "--user",
            "10001",
        ],
        &["run", "--config", "/simplevisor.json"],
    );
    c.wait_record("internal", "job web is ready", secs(20.0));
    let records = c.records();
    position(&records, "migrate", "migrations applied");
    position(&records, "internal", "job migrate exited with status 0");
    for probe in [&["health"][..], &["health", "--live"]] {
        let mut command = vec!["/simplevisor"];
        command.extend(probe);
        command.extend(["--socket", "/run/simplevisor/control.sock"]);
        let out = c.exec(&[], &command);
        assert!(out.status.success(), "{probe:?}: {}", text(&out.stderr));
    }
    // The Deployment's HTTP probes and scrape, on metrics-listen (the container has no
    // network but its own loopback).
    for (path, expected) in [
        ("/readyz", "ready"),
        ("/livez", "live"),
        (
            "/metrics",
            "simplevisor_job_state{job=\"web\",kind=\"main\",state=\"running\"} 1",
        ),
    ] {
        let url = format!("http://127.0.0.1:9100{path}");
        let out = c.exec(&[], &["/bin/busybox", "wget", "-q", "-O", "-", &url]);
        assert!(out.status.success(), "{path}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(expected),
            "{path}: {}",
            text(&out.stdout)
        );
    }
    let (took, code) = c.stop(25);
    assert_eq!(code, 0, "{}", c.logs());
    assert!(took < secs(20.0), "took {took:?}");
}

#[test]
fn simplevisor_in_podman() {
    let prerequisites = [
        ("root", is_root()),
        ("podman and runc", podman_present()),
        (
            "a static busybox at /bin/busybox (busybox-static)",
            static_busybox(),
        ),
        (
            "the static binary (scripts/build-static)",
            static_binary().exists(),
        ),
    ];
    let missing: Vec<&str> = prerequisites
        .iter()
        .filter(|(_, present)| !present)
        .map(|(what, _)| *what)
        .collect();
    if !require(&missing.join(", "), missing.is_empty()) {
        return;
    }
    let image = Image::example();
    type Scenario<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let scenarios: Vec<Scenario> = vec![
        ("example", Box::new(|| example_records_and_stop(&image))),
        ("stop", Box::new(|| stop_timing_and_order(&image, false))),
        (
            "stop --init",
            Box::new(|| stop_timing_and_order(&image, true)),
        ),
        ("signals", Box::new(|| signals_and_orphans(&image, false))),
        (
            "signals --init",
            Box::new(|| signals_and_orphans(&image, true)),
        ),
        ("health", Box::new(|| health_check(&image))),
        ("read-only", Box::new(|| read_only_and_unprivileged(&image))),
        ("exit status", Box::new(|| exit_status(&image, false))),
        ("exit status --init", Box::new(|| exit_status(&image, true))),
        ("kubernetes", Box::new(kubernetes_example)),
    ];
    // Every scenario runs, so that one failure does not hide another.
    let failed: Vec<&str> = scenarios
        .iter()
        .filter_map(|(name, scenario)| {
            let started = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(scenario));
            eprintln!("{name}: {:.1} s", started.elapsed().as_secs_f64());
            result.is_err().then_some(*name)
        })
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
}
