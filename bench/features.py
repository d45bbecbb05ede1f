#!/usr/bin/env python3
"""The newer features measured: reload of 1,000 jobs, their memory, the metrics listener
(scrape time, idle wakeups, memory), and a rotation to 10 jobs on their reload-signal.

Run by `bench/run features` (which builds the static binary and installs what it needs), or
directly: `python3 bench/features.py [reload|metrics|rotation ...]`. Prints a markdown table for
docs/benchmarks.md. Only 127.0.0.1 is used; every process started is stopped by its pid.
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import ssl
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SV = os.environ.get(
    "SIMPLEVISOR",
    os.path.join(ROOT, "target", f"{os.uname().machine}-unknown-linux-gnu", "release", "simplevisor"),
)
BAO = os.environ.get("BAO", os.path.join(ROOT, ".venv/bin/bao"))
RUNS = int(os.environ.get("RUNS", "5"))
ROWS = []


def row(what, value, target, ok):
    ROWS.append((what, value, target, "met" if ok else "**missed**"))
    print(f"  {what}: {value} (target {target}: {'met' if ok else 'MISSED'})", file=sys.stderr)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_anon_kib(pid):
    """Resident anonymous memory (heap, stacks): what the process itself allocated, without
    the binary's pages, which come and go with the page cache and other processes mapping
    the same file."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def switches(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if "ctxt_switches" in line:
                    total += int(line.split()[1])
    return total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Supervisor:
    """simplevisor on a config, its records read on a thread."""

    def __init__(self, config, env=None, args=("--no-vault",)):
        self.dir = tempfile.mkdtemp(prefix="sv-bench-")
        self.config_path = os.path.join(self.dir, "simplevisor.json")
        self.socket = os.path.join(self.dir, "ctl.sock")
        config = dict(config, **{"control-socket": self.socket})
        self.config = config
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.records = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [SV, "--config", self.config_path, *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env or {"PATH": os.environ["PATH"]},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            record = json.loads(line)
            with self.lock:
                self.records.append((time.monotonic(), record))

    def rewrite(self, config):
        config = dict(config, **{"control-socket": self.socket})
        with open(self.config_path, "w") as f:
            json.dump(config, f)

    def request(self, command):
        """One request on the control socket; the answer and the seconds it took."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.socket)
            t0 = time.monotonic()
            s.sendall(json.dumps({"command": command}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return json.loads(data), time.monotonic() - t0

    def ctl(self, *args):
        return subprocess.run([SV, *args, "--socket", self.socket], capture_output=True, text=True)

    def status(self):
        out = self.ctl("status", "--json")
        return json.loads(out.stdout) if out.returncode == 0 else None

    def wait(self, what, pred, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = pred()
            if value:
                return value
            time.sleep(0.05)
        raise SystemExit(f"timed out waiting for {what}")

    def first_record(self, pred, since=0):
        with self.lock:
            for at, record in self.records:
                if at >= since and pred(record):
                    return at
        return None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def sleepers(n, version=1):
    return [{"name": f"job{i}", "cmd": ["sleep", f"{1000000 + version}"]} for i in range(n)]


def all_running(sv, n):
    s = sv.status()
    return s if s and sum(j["state"] == "running" for j in s["jobs"]) == n else None


def bench_reload():
    n = 1000
    answers, restarts, rss = [], [], []
    for _ in range(RUNS):
        config = {"jobs": {"main": sleepers(n)}}
        sv = Supervisor(config)
        before = sv.wait("1,000 jobs running", lambda: all_running(sv, n), timeout=120)
        time.sleep(2)
        rss.append(rss_kib(sv.proc.pid))
        pids = {j["name"]: j["pid"] for j in before["jobs"]}
        jobs = sleepers(n)
        jobs[500]["cmd"] = ["sleep", "2000000"]
        sv.rewrite({"jobs": {"main": jobs}})
        t0 = time.monotonic()
        answer, took = sv.request("reload")
        assert answer.get("ok"), answer
        restarted = sv.wait(
            "job500 restarted",
            lambda: sv.first_record(
                lambda r: r["process"] == "internal"
                and r["message"].startswith("job job500 started"),
                since=t0,
            ),
        )
        after = sv.wait("all running again", lambda: all_running(sv, n))
        moved = [j["name"] for j in after["jobs"] if j["pid"] != pids[j["name"]]]
        assert moved == ["job500"], moved
        answers.append(took * 1000)
        restarts.append((restarted - t0) * 1000)
        sv.stop()
    answer, restart = statistics.median(answers), statistics.median(restarts)
    row(
        "reload of 1,000 jobs, one changed: request to answer on the control socket",
        f"{answer:.1f} ms",
        "≤ 20 ms",
        answer <= 20,
    )
    row(
        "reload of 1,000 jobs: `reload` to the changed job's new start",
        f"{restart:.1f} ms",
        "(stop of the old one included)",
        True,
    )
    row("reload: the 999 others untouched (same pid)", "yes", "yes", True)
    mib = statistics.median(rss) / 1024
    row("RSS with 1,000 sleeping jobs", f"{mib:.2f} MiB", "≤ 4 MiB", mib <= 4)


def scrape(port):
    """One GET /metrics on a raw socket: milliseconds to the first byte of the answer (the
    server renders the whole body before it answers), to the last, and the bytes."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        t0 = time.monotonic()
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        first = None
        size = 0
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            if first is None:
                first = time.monotonic()
            size += len(chunk)
        done = time.monotonic()
    return (first - t0) * 1000, (done - t0) * 1000, size


def bench_metrics():
    n = 1000
    port = free_port()
    sv = Supervisor({"metrics-listen": f"127.0.0.1:{port}", "jobs": {"main": sleepers(n)}})
    sv.wait("1,000 jobs running", lambda: all_running(sv, n), timeout=120)
    samples = [scrape(port) for _ in range(50)]
    first = statistics.median(s[0] for s in samples)
    whole = statistics.median(s[1] for s in samples)
    row(
        f"scrape of /metrics with 1,000 jobs ({samples[0][2] // 1024} KiB): request to the answer's first byte (server side: snapshot, render, /proc)",
        f"{first:.2f} ms",
        "≤ 2 ms server side",
        first <= 2,
    )
    row("the same, to the last byte (the client reading 0.9 MB on loopback)", f"{whole:.2f} ms", "", True)
    sv.stop()

    # Idle: wakeups and memory with and without the listener, 3 jobs, no client.
    figures = {False: [], True: []}
    for _ in range(RUNS):
        for listen in (False, True):
            config = {"jobs": {"main": sleepers(3)}}
            if listen:
                config["metrics-listen"] = f"127.0.0.1:{free_port()}"
            sv = Supervisor(config)
            sv.wait("3 jobs", lambda: all_running(sv, 3))
            time.sleep(2)
            before = switches(sv.proc.pid)
            time.sleep(10)
            wakeups = switches(sv.proc.pid) - before
            figures[listen].append((wakeups, rss_anon_kib(sv.proc.pid)))
            sv.stop()
    wakeups = max(w for w, _ in figures[True])
    row(
        "idle wakeups in 10 s with metrics-listen set and no client (most of the runs)",
        str(wakeups),
        "0",
        wakeups == 0,
    )
    with_listener = statistics.median(r for _, r in figures[True])
    without = statistics.median(r for _, r in figures[False])
    added = with_listener - without
    row(
        "idle anonymous RSS (heap, stacks) with the listener, 3 jobs (without it)",
        f"{with_listener} KiB ({without} KiB): {added:+} KiB",
        "≤ 64 KiB added",
        added <= 64,
    )


class Bao:
    """An OpenBao dev server over HTTPS (its own CA) on loopback."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sv-bench-bao-")
        self.proc = subprocess.Popen(
            [BAO, "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={self.dir}",
             "-dev-root-token-id=root", f"-dev-listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ca = os.path.join(self.dir, "vault-ca.pem")
        deadline = time.monotonic() + 30
        while True:
            try:
                self.api("GET", "sys/health")
                return
            except (OSError, ssl.SSLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def api(self, method, path, body=None):
        context = ssl.create_default_context(cafile=self.ca)
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.port}/v1/{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"X-Vault-Token": "root"},
        )
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            data = answer.read()
            return json.loads(data) if data else None

    def env(self):
        return {
            "PATH": os.environ["PATH"],
            "VAULT_ADDR": f"https://127.0.0.1:{self.port}",
            "VAULT_CACERT": self.ca,
            "VAULT_TOKEN": "root",
        }

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def bench_rotation():
    bao = Bao()
    try:
        bao.api("POST", "sys/mounts/kv", {"type": "kv", "options": {"version": "2"}})
        for k in range(3):
            bao.api("POST", f"kv/data/s{k}", {"data": {"v": f"value-{k}"}})
        tmp = tempfile.mkdtemp(prefix="sv-bench-files-")
        files = [
            {"path": os.path.join(tmp, f"f{i}"), "template": "{{ .S%d }}" % (i % 3)} for i in range(5)
        ]
        jobs = [
            {
                "name": f"j{i}",
                "reload-signal": "HUP",
                "cmd": ["sh", "-c", f"trap 'echo j{i} got HUP' HUP; echo up; while :; do sleep 1; done"],
            }
            for i in range(10)
        ]
        config = {
            "env": {"pass": ["PATH"], "vault-replace": ["S0", "S1", "S2"]},
            "files": files,
            "jobs": {"main": jobs},
        }
        env = dict(bao.env(), S0="secret:s0:v", S1="secret:s1:v", S2="secret:s2:v")
        sv = Supervisor(config, env=env, args=())
        sv.wait("10 jobs", lambda: all_running(sv, 10))
        durations = []
        for _ in range(RUNS * 4):
            t0 = time.monotonic()
            out = sv.ctl("rotate")
            assert out.returncode == 0, out.stderr

            def last_hup():
                with sv.lock:
                    got = [at for at, r in sv.records if at >= t0 and r["message"].endswith("got HUP")]
                return max(got) if len(got) == 10 else None

            durations.append((sv.wait("10 HUPs", last_hup) - t0) * 1000)
            time.sleep(0.2)
        ms = statistics.median(durations)
        row(
            "rotation of 3 secrets and 5 files to 10 jobs on reload-signal over HTTPS: `rotate` to the last job's HUP record",
            f"{ms:.1f} ms",
            "≤ 50 ms",
            ms <= 50,
        )
        sv.stop()

        # 20 files and a certificate renewed (re-issued) before it expires, under restart.
        bao.api("POST", "sys/mounts/pki", {"type": "pki", "config": {"max_lease_ttl": "87600h"}})
        bao.api("POST", "pki/root/generate/internal", {"common_name": "bench root", "ttl": "87600h"})
        bao.api("POST", "pki/roles/web", {"allowed_domains": "example.com", "allow_subdomains": True,
                                           "ttl": "40s", "max_ttl": "40s", "not_before_duration": "5s"})
        files = [
            {"path": os.path.join(tmp, f"cert{i}"), "template": "{{ .CERT }}{{ .KEY }}"} for i in range(20)
        ]
        config = {
            "env": {"pass": ["PATH"], "vault-replace": ["CERT", "KEY"]},
            "vault": {"on-lease-expiry": "restart"},
            "files": files,
            "jobs": {"main": [dict(j, cmd=["sh", "-c", "trap '' HUP; while :; do sleep 1; done"]) for j in jobs]},
        }
        env = dict(bao.env(), CERT="pki:web/www.example.com:Certificate", KEY="pki:web/www.example.com:PrivateKey")
        sv = Supervisor(config, env=env, args=())
        sv.wait("10 jobs", lambda: all_running(sv, 10))
        sv.wait(
            "two certificate renewals",
            lambda: sum(1 for _, r in sv.records if r["message"].startswith("rotation done")) >= 2,
            timeout=120,
        )
        time.sleep(2)
        rss = rss_kib(sv.proc.pid)
        row("RSS with 20 files and a certificate re-issued twice (10 jobs)", f"{rss / 1024:.2f} MiB",
            "≤ 4 MiB", rss <= 4096)
        sv.stop()
    finally:
        bao.stop()


def main():
    which = sys.argv[1:] or ["reload", "metrics", "rotation"]
    for name in which:
        print(f"{name}:", file=sys.stderr)
        globals()[f"bench_{name}"]()
    print("| measurement | value | target | |")
    print("|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
