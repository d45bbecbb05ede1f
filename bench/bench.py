#!/usr/bin/env python3
"""simplevisor side by side with the supervisors it replaces, measured in the same run.

Run by `bench/run` (which installs the peers and builds the static binary). Every figure is a
median over RUNS runs; every comparison is a ratio of figures taken in this run. Prints a
markdown table for docs/benchmarks.md. Only 127.0.0.1 is used; every process started is
stopped by its pid.
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import ssl
import base64
import http.server
import threading

RUNS = int(os.environ.get("RUNS", "5"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SV = os.environ.get("SIMPLEVISOR", os.path.join(ROOT, f"target/{os.uname().machine}-unknown-linux-gnu/release/simplevisor"))
BAO = os.environ.get("BAO", os.path.join(ROOT, ".venv/bin/bao"))
SUPERVISORD = os.environ.get("SUPERVISORD", os.path.join(ROOT, ".tmp/bench-venv/bin/supervisord"))
ROWS = []


def row(what, value, peers, target, ok):
    ROWS.append((what, value, peers, target, "met" if ok else "**missed**"))
    print(f"  {what}: {value} | {peers} | target {target}: {'met' if ok else 'MISSED'}", file=sys.stderr)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def descendants(pid):
    out = []
    for c in children(pid):
        out.append(c)
        out.extend(descendants(c))
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def stop(proc, sig=signal.SIGTERM, timeout=15):
    """Stops a process we started, by pid, then whatever is left of its process group."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    kill_group(proc.pid)


def kill_group(pgid):
    """Peers' helpers (s6-supervise, runsv) may outlive their parent: end the whole group."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    time.sleep(0.1)


def sleepers(marker):
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


def kill_sleepers(marker):
    for pid in sleepers(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def sv_config(tmp, config, name="simplevisor.json"):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def ten_sleepers(seconds="1000"):
    return {"jobs": {"main": [{"name": f"s{i}", "cmd": ["sleep", seconds]} for i in range(10)]}}


def median(xs):
    return statistics.median(xs)


# ---------------------------------------------------------------- peers' supervision trees

def service_dirs(tmp, kind, n, marker):
    """A scan directory of n services `sleep <marker>`, the layout s6 and runit share."""
    scan = os.path.join(tmp, kind)
    os.makedirs(scan)
    for i in range(n):
        d = os.path.join(scan, f"s{i}")
        os.makedirs(d)
        with open(os.path.join(d, "run"), "w") as f:
            f.write(f"#!/bin/sh\nexec sleep {marker}\n")
        os.chmod(os.path.join(d, "run"), 0o755)
    return scan


def s6_tree(tmp, n, marker):
    return ["s6-svscan", service_dirs(tmp, "s6", n, marker)]


def runit_tree(tmp, n, marker):
    return ["runsvdir", "-P", service_dirs(tmp, "runit", n, marker)]


def supervisord_tree(tmp, n, marker):
    conf = os.path.join(tmp, "supervisord.conf")
    with open(conf, "w") as f:
        f.write(f"[supervisord]\nnodaemon=true\nlogfile={tmp}/sd.log\npidfile={tmp}/sd.pid\n")
        for i in range(n):
            f.write(f"[program:s{i}]\ncommand=sleep {marker}\nstopwaitsecs=10\n")
    return [SUPERVISORD, "-c", conf]


def tree_rss(proc, own_names):
    """RSS of the supervisor and its own helper processes (s6-supervise, runsv), not the jobs."""
    total = rss_kib(proc.pid)
    for pid in descendants(proc.pid):
        if comm(pid) in own_names:
            total += rss_kib(pid)
    return total


# ---------------------------------------------------------------- measurements

PROGRAM = {
    "tini (1 child)": "tini", "tini-static (1 child)": "tini-static", "dumb-init (1 child)": "dumb-init", "s6-svscan + 10 s6-supervise": "s6-svscan",
    "runsvdir + 10 runsv": "runsvdir", "supervisord (10 programs)": SUPERVISORD,
}


def idle_memory():
    results = {}
    marker = "1000.123"
    peers = {
        "simplevisor (10 jobs)": None,
        "tini (1 child)": lambda tmp: ["tini", "-s", "--", "sleep", marker],
        # The fair peer for a FROM scratch image: static, like simplevisor.
        "tini-static (1 child)": lambda tmp: ["tini-static", "-s", "--", "sleep", marker],
        "dumb-init (1 child)": lambda tmp: ["dumb-init", "sleep", marker],
        "s6-svscan + 10 s6-supervise": lambda tmp: s6_tree(tmp, 10, marker),
        "runsvdir + 10 runsv": lambda tmp: runit_tree(tmp, 10, marker),
        "supervisord (10 programs)": lambda tmp: supervisord_tree(tmp, 10, marker),
    }
    own = {"s6-supervise", "runsv"}
    for name, argv in peers.items():
        if argv is not None and not shutil.which(PROGRAM[name]):
            continue
        samples = []
        for _ in range(RUNS):
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
                if argv is None:
                    cfg = sv_config(tmp, ten_sleepers(marker))
                    cmd = [SV, "--no-vault", "--config", cfg]
                else:
                    cmd = argv(tmp)
                p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                time.sleep(2.0)
                samples.append(tree_rss(p, own))
                stop(p)
                kill_sleepers(marker)
        results[name] = median(samples)
    sv = results["simplevisor (10 jobs)"]
    tini = results.get("tini-static (1 child)", 0)
    peers_text = ", ".join(f"{k} {v / 1024:.2f} MiB" for k, v in results.items() if not k.startswith("simplevisor"))
    row("Idle RSS, 10 jobs `sleep 1000`", f"{sv / 1024:.2f} MiB", peers_text,
        "≤ tini-static's RSS with one child", tini > 0 and sv <= tini)
    return results


def binary_size():
    size = os.path.getsize(SV)
    tini = os.path.getsize("/usr/bin/tini-static") if os.path.exists("/usr/bin/tini-static") else 0
    row("Static stripped binary with TLS", f"{size / 1e6:.2f} MB", f"tini-static {tini / 1e6:.2f} MB (no TLS, no logs, one child)",
        "≤ 3.5 MB", size <= 3.5e6)


def time_to_exit(proc, timeout=20):
    t = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc, signal.SIGKILL)
        return None
    return (time.perf_counter() - t) * 1000


def shutdown():
    marker = "1000.456"
    results = {}
    peers = {
        "simplevisor": None,
        "tini": lambda tmp: ["tini", "-s", "--", "sleep", marker],
        "dumb-init": lambda tmp: ["dumb-init", "sleep", marker],
        "s6-svscan": lambda tmp: s6_tree(tmp, 10, marker),
        "runsvdir": lambda tmp: runit_tree(tmp, 10, marker),
        "supervisord": lambda tmp: supervisord_tree(tmp, 10, marker),
    }
    for name, argv in peers.items():
        samples, left = [], 0
        for _ in range(RUNS):
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
                if argv is None:
                    cmd = [SV, "--no-vault", "--config", sv_config(tmp, ten_sleepers(marker))]
                else:
                    cmd = argv(tmp)
                    if not shutil.which(cmd[0]):
                        break
                p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                time.sleep(1.5)
                ms = time_to_exit(p)
                time.sleep(0.2)
                left += len(sleepers(marker))
                kill_group(p.pid)
                kill_sleepers(marker)
                if ms is not None:
                    samples.append(ms)
        if samples:
            results[name] = (median(samples), left)
    sv, _ = results["simplevisor"]
    peers_text = ", ".join(
        f"{k} {v:.1f} ms" + (f" ({n} jobs left running)" if n else "")
        for k, (v, n) in results.items() if k != "simplevisor")
    row("Shutdown, SIGTERM to exit, 10 prompt jobs", f"{sv:.1f} ms", peers_text, "≤ 10 ms", sv <= 10)

    # One job that ignores TERM, stop-timeout 1 s: exit ≤ 1 s + 50 ms, and the job SIGKILLed.
    over, killed = [], 0
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            cfg = sv_config(tmp, {"jobs": {"main": [{"name": "stubborn", "stop-timeout": "1s",
                                  "cmd": ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.2; done"]}]}})
            p = subprocess.Popen([SV, "--no-vault", "--config", cfg], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            p.stdout.readline()
            p.stdout.readline()
            ms = time_to_exit(p)
            out = p.stdout.read().decode()
            killed += "job stubborn was killed by signal KILL" in out
            over.append(ms - 1000)
    m = median(over)
    row("Shutdown with one job ignoring TERM", f"stop-timeout + {m:.1f} ms, SIGKILLed {killed}/{RUNS}",
        "s6 and runit never kill it", "≤ stop-timeout + 50 ms, SIGKILLed", m <= 50 and killed == RUNS)


def spawn_cost():
    n = 200
    sv_t, sh_t = [], []
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        cfg = sv_config(tmp, {"jobs": {"init": [{"name": f"t{i}", "cmd": ["/bin/true"]} for i in range(n)]}})
        for _ in range(RUNS):
            t = time.perf_counter()
            subprocess.run(["sh", "-c", f"i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"], check=True)
            sh_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run([SV, "--no-vault", "--config", cfg], stdout=subprocess.DEVNULL, check=True)
            sv_t.append(time.perf_counter() - t)
    ratio = median(sv_t) / median(sh_t)
    row("Spawn cost, 200 init jobs `/bin/true`", f"{median(sv_t) * 1000:.0f} ms ({ratio:.2f}× the shell loop)",
        f"shell loop {median(sh_t) * 1000:.0f} ms", "≤ 1.5× a shell loop", ratio <= 1.5)


def zombies():
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        cfg = sv_config(tmp, {"jobs": {
            "init": [{"name": "orphans", "cmd": ["sh", "-c", "for i in $(seq 50); do sh -c 'sleep 0.2 &'; done"]}],
            "main": [{"name": "count", "restart": "never", "cmd": ["sh", "-c",
                      "sleep 1; echo zombies=$(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l)"]}]}})
        out = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", SV, "--no-vault", "--config", cfg],
                             capture_output=True, timeout=30).stdout.decode()
    records = [json.loads(line) for line in out.splitlines()]
    reaped = sum(1 for r in records if str(r["message"]).startswith("reaped orphan process"))
    counts = [r["message"] for r in records if r["process"] == "count"]
    left = int(counts[0].split("=")[1]) if counts else -1
    row("Zombies: 50 orphans as PID 1", f"{left} left, {reaped} reaped", "", "0 left", left == 0 and reaped >= 50)


# ---------------------------------------------------------------- Vault

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bao:
    def __init__(self, tmp):
        self.port = free_port()
        self.addr = f"https://127.0.0.1:{self.port}"
        self.ca = os.path.join(tmp, "vault-ca.pem")
        self.proc = subprocess.Popen(
            [BAO, "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={tmp}", "-dev-root-token-id=root",
             f"-dev-listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 30
        while True:
            try:
                if os.path.exists(self.ca):
                    self.api("GET", "sys/health")
                    break
            except Exception:
                pass
            if time.time() > deadline:
                raise RuntimeError("OpenBao did not start")
            time.sleep(0.1)

    def api(self, method, path, data=None):
        ctx = ssl.create_default_context(cafile=self.ca)
        req = urllib.request.Request(f"{self.addr}/v1/{path}", method=method,
                                     data=json.dumps(data).encode() if data is not None else None,
                                     headers={"X-Vault-Token": "root"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            body = r.read()
            return json.loads(body) if body else {}

    def approle(self, period):
        self.api("POST", "sys/auth/approle", {"type": "approle"})
        self.api("PUT", "sys/policies/acl/sv", {"policy": 'path "*" { capabilities = ["create","read","update","delete","list","sudo"] }'})
        self.api("POST", "auth/approle/role/sv", {"token_policies": ["sv"], "token_period": period})
        role = self.api("GET", "auth/approle/role/sv/role-id")["data"]["role_id"]
        secret = self.api("POST", "auth/approle/role/sv/secret-id")["data"]["secret_id"]
        return role, secret

    def close(self):
        stop(self.proc)


class Postgres:
    def __init__(self, tmp):
        bins = sorted(d for d in os.listdir("/usr/lib/postgresql"))
        self.bin = f"/usr/lib/postgresql/{bins[-1]}/bin"
        self.dir = os.path.join(tmp, "pg")
        os.makedirs(self.dir)
        shutil.chown(self.dir, "postgres", "postgres")
        self.password = "benchpw"
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write(self.password)
        shutil.chown(pw, "postgres", "postgres")
        self.port = free_port()
        self.run("initdb", "-D", f"{self.dir}/data", "-U", "postgres", "--auth-local=trust",
                 "--auth-host=scram-sha-256", f"--pwfile={pw}", "--no-sync")
        self.run("pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-o",
                 f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "-w", "start")

    def run(self, tool, *args):
        subprocess.run(["runuser", "-u", "postgres", "--", f"{self.bin}/{tool}", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def close(self):
        self.run("pg_ctl", "-D", f"{self.dir}/data", "-m", "immediate", "stop")


def vault_figures():
    if not (os.path.exists(BAO) and os.path.isdir("/usr/lib/postgresql")):
        row("Vault figures", "not measured", "OpenBao or PostgreSQL missing (scripts/setup)", "", False)
        return
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        os.chmod(tmp, 0o755)
        bao, pg = Bao(tmp), None
        try:
            pg = Postgres(tmp)
            role_id, secret_id = bao.approle("20s")
            bao.api("POST", "sys/mounts/database", {"type": "database"})
            bao.api("POST", "database/config/pg", {
                "plugin_name": "postgresql-database-plugin",
                "connection_url": f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{pg.port}/postgres?sslmode=disable",
                "username": "postgres", "password": pg.password, "allowed_roles": "*"})
            for i in range(3):
                bao.api("POST", f"database/roles/r{i}", {
                    "db_name": "pg", "default_ttl": "9s", "max_ttl": "1h",
                    "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"]})
            bao.api("POST", "sys/mounts/kv", {"type": "kv", "options": {"version": "2"}})
            for i in range(3):
                bao.api("POST", f"kv/data/app{i}", {"data": {"key": f"value{i}"}})
            env = dict(os.environ, VAULT_ADDR=bao.addr, VAULT_CACERT=bao.ca, VAULT_ROLE_ID=role_id,
                       VAULT_SECRET_ID=secret_id)
            env.pop("VAULT_TOKEN", None)

            # Memory: token + three database leases renewing over HTTPS.
            cfg = sv_config(tmp, {"env": {"vault-replace": ["A", "B", "C"]},
                                  "jobs": {"main": [{"name": "app", "cmd": ["sleep", "1000.789"]}]}}, "mem.json")
            menv = dict(env, A="db:r0:Password", B="db:r1:Password", C="db:r2:Password")
            p = subprocess.Popen([SV, "--config", cfg], env=menv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            samples, renewals = [], 0
            t0 = time.time()
            os.set_blocking(p.stdout.fileno(), False)
            buf = b""
            while time.time() - t0 < 20:
                time.sleep(1)
                chunk = p.stdout.read() or b""
                buf += chunk
                samples.append(rss_kib(p.pid))
            renewals = buf.count(b"renewed the lease")
            token_renewals = buf.count(b"renewed the token")
            stop(p)
            kill_sleepers("1000.789")
            peak = max(samples)
            row("RSS with Vault: token + 3 leases renewing over HTTPS",
                f"{median(samples) / 1024:.2f} MiB median, {peak / 1024:.2f} MiB peak over 20 s",
                f"{renewals} lease and {token_renewals} token renewals seen", "≤ 4 MiB", peak <= 4096)

            # Start-up: exec to first main job started, AppRole login + three KV secrets.
            cfg = sv_config(tmp, {"env": {"vault-replace": ["A", "B", "C"]},
                                  "jobs": {"main": [{"name": "app", "cmd": ["sleep", "1000.789"]}]}}, "start.json")
            senv = dict(env, A="secret:app0:key", B="secret:app1:key", C="secret:app2:key")
            times = []
            for _ in range(RUNS * 2):
                t = time.perf_counter()
                p = subprocess.Popen([SV, "--config", cfg], env=senv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                for line in p.stdout:
                    if b"job app started" in line:
                        times.append((time.perf_counter() - t) * 1000)
                        break
                stop(p)
                kill_sleepers("1000.789")
            m = median(times)
            row("Start-up with Vault (AppRole, 3 KV secrets, HTTPS)", f"{m:.1f} ms to the first job started",
                "OpenBao agent exec mode ~2.2 s (reference)", "≤ 100 ms", m <= 100)
        finally:
            bao.close()
            if pg:
                pg.close()


# ---------------------------------------------------------------- Login methods

def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True).stdout


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Pki:
    """A CA, a server certificate for 127.0.0.1, a client certificate and an RSA key that signs
    RS256 JWTs, all made with the openssl CLI in `tmp`."""

    def __init__(self, tmp):
        self.tmp = tmp
        f = lambda name: os.path.join(tmp, name)
        self.ca, self.ca_key = f("ca.pem"), f("ca-key.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", self.ca_key, "-out", self.ca, "-subj", "/CN=bench-ca", "-days", "1")
        self.server, self.server_key = self.issue("server", "subjectAltName=IP:127.0.0.1")
        self.client, self.client_key = self.issue("client", "extendedKeyUsage=clientAuth")
        self.jwt_key, self.jwt_pub = f("jwt-key.pem"), f("jwt-pub.pem")
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", self.jwt_key)
        openssl("pkey", "-in", self.jwt_key, "-pubout", "-out", self.jwt_pub)

    def issue(self, name, ext):
        key, csr, cert, extfile = (os.path.join(self.tmp, f"{name}{s}") for s in ("-key.pem", ".csr", ".pem", ".ext"))
        with open(extfile, "w") as out:
            out.write(ext + "\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                "-out", csr, "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
                "-out", cert, "-days", "1", "-extfile", extfile)
        return cert, key

    def jwt(self, claims):
        now = int(time.time())
        claims = dict(claims, iat=now - 60, nbf=now - 60, exp=now + 3600)
        head = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        body = b64url(json.dumps(claims).encode())
        signature = openssl("dgst", "-sha256", "-sign", self.jwt_key, data=f"{head}.{body}".encode())
        return f"{head}.{body}.{b64url(signature)}"


class TokenReview(http.server.BaseHTTPRequestHandler):
    """Answers OpenBao's TokenReview requests: TOKENS maps a token to (namespace, account)."""
    TOKENS = {}

    def do_POST(self):
        spec = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))).get("spec", {})
        known = self.TOKENS.get(spec.get("token"))
        status = ({"authenticated": True, "user": {"username": f"system:serviceaccount:{known[0]}:{known[1]}",
                                                    "uid": "u", "groups": []}}
                  if known else {"authenticated": False})
        body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                           "spec": spec, "status": status}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class BaoHttps(Bao):
    """A dev server whose API is served over HTTPS with the Pki's server certificate."""

    def __init__(self, tmp, pki):
        self.port = free_port()
        self.addr = f"https://127.0.0.1:{self.port}"
        self.ca = pki.ca
        listener = os.path.join(tmp, "listener.hcl")
        with open(listener, "w") as out:
            out.write(f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
                      f'  cluster_address = "127.0.0.1:{free_port()}"\n'
                      f'  tls_cert_file = "{pki.server}"\n  tls_key_file = "{pki.server_key}"\n}}\n')
        dev = free_port()
        self.proc = subprocess.Popen(
            [BAO, "server", "-dev", "-dev-root-token-id=root", "-dev-no-store-token",
             f"-dev-listen-address=127.0.0.1:{dev}", f"-config={listener}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env=dict(os.environ, HOME=tmp))
        deadline = time.time() + 30
        while True:
            try:
                self.api("GET", "sys/health")
                break
            except Exception:
                pass
            if time.time() > deadline:
                raise RuntimeError("OpenBao did not start")
            time.sleep(0.1)


def login_figures():
    """Start-up time per login method (exec to the first main job started, 3 KV secrets, over
    HTTPS with a CA made here), and RSS with cert login (mutual TLS) renewing."""
    if not os.path.exists(BAO) or not shutil.which("openssl"):
        row("Start-up per login method", "not measured", "OpenBao or openssl missing", "", False)
        return
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        os.chmod(tmp, 0o755)
        pki = Pki(tmp)
        review = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenReview)
        threading.Thread(target=review.serve_forever, daemon=True).start()
        bao = BaoHttps(tmp, pki)
        try:
            role_id, secret_id = bao.approle("1h")
            bao.api("POST", "sys/mounts/kv", {"type": "kv", "options": {"version": "2"}})
            for i in range(3):
                bao.api("POST", f"kv/data/app{i}", {"data": {"key": f"value{i}"}})
            bao.api("POST", "sys/auth/jwt", {"type": "jwt"})
            with open(pki.jwt_pub) as f:
                bao.api("POST", "auth/jwt/config", {"jwt_validation_pubkeys": [f.read()]})
            bao.api("POST", "auth/jwt/role/sv", {"role_type": "jwt", "user_claim": "sub", "bound_subject": "sv",
                                                 "bound_audiences": ["bench"], "token_policies": ["sv"],
                                                 "token_period": "1h"})
            bao.api("POST", "sys/auth/kubernetes", {"type": "kubernetes"})
            with open(pki.ca) as f:
                bao.api("POST", "auth/kubernetes/config", {
                    "kubernetes_host": f"http://127.0.0.1:{review.server_address[1]}",
                    "kubernetes_ca_cert": f.read(), "disable_local_ca_jwt": True})
            bao.api("POST", "auth/kubernetes/role/sv", {"bound_service_account_names": ["sv"],
                                                        "bound_service_account_namespaces": ["bench"],
                                                        "token_policies": ["sv"], "token_period": "1h"})
            bao.api("POST", "sys/auth/cert", {"type": "cert"})
            with open(pki.ca) as f:
                bao.api("POST", "auth/cert/certs/sv", {"certificate": f.read(), "token_policies": ["sv"],
                                                       "token_period": "6s"})
            files = {name: os.path.join(tmp, name) for name in ("jwt", "sa-token", "secret-id", "token")}
            sa = pki.jwt({"sub": "system:serviceaccount:bench:sv",
                          "kubernetes.io": {"namespace": "bench", "serviceaccount": {"name": "sv", "uid": "u"}}})
            TokenReview.TOKENS[sa] = ("bench", "sv")
            token = bao.api("POST", "auth/token/create", {"policies": ["sv"], "period": "1h"})["auth"]["client_token"]
            for name, text in (("jwt", pki.jwt({"sub": "sv", "aud": "bench"})), ("sa-token", sa),
                               ("secret-id", secret_id), ("token", token)):
                with open(files[name], "w") as out:
                    out.write(text)
            base = dict(os.environ, VAULT_ADDR=bao.addr, VAULT_CACERT=pki.ca,
                        A="secret:app0:key", B="secret:app1:key", C="secret:app2:key")
            for key in ("VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"):
                base.pop(key, None)
            mtls = dict(VAULT_CLIENT_CERT=pki.client, VAULT_CLIENT_KEY=pki.client_key)
            methods = [
                ("approle (VAULT_ROLE_ID + VAULT_SECRET_ID)", None, dict(VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id)),
                ("approle, secret-id-file", {"method": "approle", "secret-id-file": files["secret-id"]},
                 dict(VAULT_ROLE_ID=role_id)),
                ("token-file", {"method": "token", "token-file": files["token"]}, {}),
                ("kubernetes", {"method": "kubernetes", "role": "sv", "jwt-file": files["sa-token"]}, {}),
                ("jwt", {"method": "jwt", "role": "sv", "jwt-file": files["jwt"]}, {}),
                ("cert (mutual TLS)", {"method": "cert", "name": "sv"}, mtls),
            ]
            figures = []
            for label, auth, extra in methods:
                config = {"env": {"vault-replace": ["A", "B", "C"]},
                          "jobs": {"main": [{"name": "app", "cmd": ["sleep", "1000.789"]}]}}
                if auth:
                    config["vault"] = {"auth": auth}
                cfg = sv_config(tmp, config, "login.json")
                times = []
                for _ in range(RUNS * 2):
                    t = time.perf_counter()
                    p = subprocess.Popen([SV, "--config", cfg], env=dict(base, **extra),
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                    for line in p.stdout:
                        if b"job app started" in line:
                            times.append((time.perf_counter() - t) * 1000)
                            break
                    stop(p)
                    kill_sleepers("1000.789")
                figures.append(f"{label} {median(times):.1f} ms" if times else f"{label} failed")
            ok = all(f.endswith(" ms") and float(f.split()[-2]) <= 100 for f in figures)
            row("Start-up per login method, 3 KV secrets over HTTPS", "; ".join(figures),
                "", "≤ 100 ms each", ok)

            # Memory: cert login over mutual TLS, the token (period 6 s) renewing.
            cfg = sv_config(tmp, {"env": {"vault-replace": ["A", "B", "C"]}, "vault": {"auth": {"method": "cert"}},
                                  "jobs": {"main": [{"name": "app", "cmd": ["sleep", "1000.789"]}]}}, "mtls.json")
            p = subprocess.Popen([SV, "--config", cfg], env=dict(base, **mtls), stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
            os.set_blocking(p.stdout.fileno(), False)
            samples, buf, t0 = [], b"", time.time()
            while time.time() - t0 < 20:
                time.sleep(1)
                buf += p.stdout.read() or b""
                samples.append(rss_kib(p.pid))
            stop(p)
            kill_sleepers("1000.789")
            row("RSS with cert login over mutual TLS, token renewing", f"{median(samples) / 1024:.2f} MiB median, "
                f"{max(samples) / 1024:.2f} MiB peak over 20 s", f"{buf.count(b'renewed the token')} token renewals",
                "≤ 4 MiB", max(samples) <= 4096)
        finally:
            bao.close()
            review.shutdown()


def log_relay():
    script = os.path.join(ROOT, "bench", "log-relay")
    out = subprocess.run([script, SV], capture_output=True, text=True, env=dict(os.environ, RUNS=str(RUNS)))
    text = out.stdout + out.stderr
    line = next((l for l in text.splitlines() if "simplevisor > out" in l), "")
    cat = next((l for l in text.splitlines() if "cat file > out" in l), "")
    ok_check = "every line exactly once and in order: ok" in text
    ratio = float(line.split("(")[1].split("x")[0]) if "(" in line else 99
    row("Log relay, 2,000,000 lines of 100 bytes", line.split("out", 1)[1].strip() if line else "failed",
        f"cat file > out {cat.split('out', 1)[1].strip() if cat else '?'}; every line once: {ok_check}",
        "≤ 3× `cat file > out`", ratio <= 3 and ok_check)


def context_switches(pid):
    """Voluntary + involuntary context switches of every thread of `pid` (wake-ups)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def wait_for_status(sock, pred, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run([SV, "status", "--json", "--socket", sock], capture_output=True, text=True)
        if out.returncode == 0 and pred(json.loads(out.stdout)):
            return True
        time.sleep(0.05)
    return False


def round_trips(argv, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return median(times) * 1000


def control_figures():
    marker = "1000.456"
    all_running = lambda s: all(j["state"] == "running" for j in s["jobs"])
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        sock = os.path.join(tmp, "sv.sock")
        cfg = ten_sleepers(marker)
        cfg["control-socket"] = sock
        p = subprocess.Popen([SV, "--no-vault", "--config", sv_config(tmp, cfg)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_status(sock, all_running)
        sv_ms = round_trips([SV, "status", "--socket", sock], 100)
        time.sleep(2)
        before = context_switches(p.pid)
        time.sleep(30)
        wakeups = context_switches(p.pid) - before
        stop(p)
        kill_sleepers(marker)
    ctl_ms = None
    supervisorctl = os.path.join(os.path.dirname(SUPERVISORD), "supervisorctl")
    if os.path.exists(supervisorctl):
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            conf = os.path.join(tmp, "supervisord.conf")
            with open(conf, "w") as f:
                f.write(f"[supervisord]\nnodaemon=true\nlogfile={tmp}/sd.log\npidfile={tmp}/sd.pid\n"
                        f"[unix_http_server]\nfile={tmp}/sd.sock\n"
                        "[rpcinterface:supervisor]\n"
                        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
                        f"[supervisorctl]\nserverurl=unix://{tmp}/sd.sock\n")
                for i in range(10):
                    f.write(f"[program:s{i}]\ncommand=sleep {marker}\n")
            p = subprocess.Popen([SUPERVISORD, "-c", conf], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(3)
            ctl_ms = round_trips([supervisorctl, "-c", conf, "status"], 20)
            stop(p)
            kill_sleepers(marker)
    row("`simplevisor status` round trip, 10 jobs (median of 100 calls, client start included)",
        f"{sv_ms:.1f} ms", f"`supervisorctl status` {ctl_ms:.0f} ms (median of 20)" if ctl_ms else "",
        "answers within 1 s", sv_ms < 1000)
    row("Wake-ups when idle, 10 jobs, control socket on, no readiness check pending (30 s)",
        f"{wakeups} context switches", "", "0", wakeups == 0)

    # RSS added by the control socket.
    rss = {}
    for label, socket_path in [("off", ""), ("on", None)]:
        samples = []
        for _ in range(RUNS):
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
                cfg = ten_sleepers(marker)
                cfg["control-socket"] = socket_path if socket_path is not None else os.path.join(tmp, "sv.sock")
                p = subprocess.Popen([SV, "--no-vault", "--config", sv_config(tmp, cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                time.sleep(2.0)
                samples.append(rss_kib(p.pid))
                stop(p)
                kill_sleepers(marker)
        rss[label] = median(samples)
    added = rss["on"] - rss["off"]
    row("RSS added by the control socket (10 jobs, idle)", f"{added} KiB ({rss['off']} → {rss['on']} KiB)",
        "", "< 64 KiB", added < 64)

    # 1,000 main jobs.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        sock = os.path.join(tmp, "sv.sock")
        cfg = {"control-socket": sock,
               "jobs": {"main": [{"name": f"s{i}", "cmd": ["sleep", marker]} for i in range(1000)]}}
        t = time.perf_counter()
        p = subprocess.Popen([SV, "--no-vault", "--config", sv_config(tmp, cfg)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_status(sock, all_running, timeout=120)
        started = time.perf_counter() - t
        big_ms = round_trips([SV, "status", "--json", "--socket", sock], 20)
        big_rss = rss_kib(p.pid)
        t = time.perf_counter()
        stop(p)
        down = time.perf_counter() - t
        kill_sleepers(marker)
    row("1,000 main jobs: all running / `status --json` round trip / RSS / shutdown",
        f"{started:.2f} s / {big_ms:.1f} ms / {big_rss / 1024:.2f} MiB / {down:.2f} s", "",
        "status < 50 ms", big_ms < 50)


def main():
    only = sys.argv[1:]
    steps = [("size", binary_size), ("memory", idle_memory), ("shutdown", shutdown), ("spawn", spawn_cost),
             ("zombies", zombies), ("vault", vault_figures), ("login", login_figures),
             ("logs", log_relay), ("control", control_figures)]
    for name, fn in steps:
        if not only or name in only:
            print(f"{name} ...", file=sys.stderr)
            fn()
    print("| measurement | simplevisor | peers, same run | target | |")
    print("|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
