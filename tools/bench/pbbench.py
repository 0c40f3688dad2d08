"""The machinery of tools/bench/run and tools/bench/profile: backends, proxies, load, scenarios,
report. See tools/bench/run for what is measured and how.

Placement: each proxy runs one worker thread pinned (taskset) to the second CPU; the load
generators (wrk, iperf3 -c, the idle clients of this module) and the backends (nginx HTTP,
iperf3 -s, hold_backend.py) share the first CPU. Proxy CPU time is read from /proc/PID/stat
(utime + stime) before and after each scenario, so the cost per unit of work is comparable
even when the load generator, not the proxy, is the bottleneck.

Hygiene: everything listens on 127.0.0.1 on ports found free by binding port 0; every file goes
into one mktemp directory that is removed at the end; every process the bench starts runs in its
own process group, is killed at the end (also on Ctrl-C, SIGTERM or a failure) and dies with the
bench (PR_SET_PDEATHSIG) if the bench is killed hard; every wait has a deadline and every load
run is bounded in time.
"""
import argparse
import collections
import ctypes
import datetime
import errno
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
IDLE_CONNECTIONS = {True: 2000, False: 5000}  # quick, full
BIG_CHECK_CONNECTIONS = 10000

# Listener guards that never refuse the bench's client (127.0.0.1): an allow list it is in, a
# deny list it is not in, and per-client limits far above what one wrk reaches (50 concurrent,
# a few 10,000 a second).
PB_GUARDS = """allow = ["127.0.0.0/8", "10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"]
deny = ["127.0.0.66", "192.0.2.66", "2001:db8::66"]
max_client_connections = 100000
max_client_rate = "1000000/1s"
"""
# SNI routes: "localhost" (what the bench's HTTPS client sends) matches the second route, after
# an exact name and a wildcard that do not match.
PB_SNI_ROUTES = """
[[listener.route]]
sni = ["api.example.com", "*.api.example.com"]
cluster = "api"

[[listener.route]]
sni = ["localhost"]
cluster = "backend"
"""
HAPROXY_SNI = """  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend api if { req.ssl_sni -i api.example.com } || { req.ssl_sni -m end .api.example.com }
  use_backend nodes if { req.ssl_sni -i localhost }
"""
NGINX_SNI_MAP = """  map $ssl_preread_server_name $pb_upstream {{
    hostnames;
    api.example.com {backend};
    *.api.example.com {backend};
    localhost {backend};
    default {backend};
  }}
"""


class BenchError(Exception):
    pass


class Stop(Exception):
    """Raised from the SIGTERM/SIGHUP handler so that cleanup runs as for Ctrl-C."""


# --------------------------------------------------------------------------------------------
# Processes


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_bench():
    # Runs in the child between fork and exec: a bench killed with SIGKILL takes its daemons
    # along instead of leaving them listening.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


# A watchdog outlives a bench killed with SIGKILL: PR_SET_PDEATHSIG ends the processes the bench
# started itself, but not their children (nginx workers). It reads "add PGID" / "forget PGID"
# lines; at end of input without "done" it kills the groups it still knows and removes the
# temporary directory.
WATCHDOG = r"""
import os, shutil, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
groups = set()
for line in sys.stdin:
    command, _, arg = line.strip().partition(" ")
    if command == "add":
        groups.add(int(arg))
    elif command == "forget":
        groups.discard(int(arg))
    elif command == "done":
        sys.exit(0)
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


class Processes:
    """Every long-running process the bench starts; stop_all() ends them, newest first, and
    close() tells the watchdog that the bench ended in order."""

    def __init__(self, tmp):
        self.live = []
        self.watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(tmp)],
                                         stdin=subprocess.PIPE, text=True,
                                         start_new_session=True)

    def _tell(self, line):
        try:
            self.watchdog.stdin.write(line + "\n")
            self.watchdog.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def close(self):
        self._tell("done")
        try:
            self.watchdog.stdin.close()
            self.watchdog.wait(timeout=5)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            pass

    def start(self, name, args, cpus, log_path):
        log = open(log_path, "ab")
        try:
            proc = subprocess.Popen(["taskset", "-c", cpus, *args], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_bench, cwd=log_path.parent)
        finally:
            log.close()
        proc.bench_name = name
        proc.bench_log = log_path
        self.live.append(proc)
        self._tell(f"add {proc.pid}")
        return proc

    def stop(self, proc, grace=5.0):
        """SIGTERM to the process group, SIGKILL after `grace` seconds, then reaps the leader.
        The leader is reaped last: until then its pid reserves the group id, so the final
        SIGKILL to the group (nginx workers whose master went first) cannot reach anyone else."""
        if proc not in self.live:
            return
        self.live.remove(proc)
        if proc.returncode is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                if exited(proc.pid, wait):
                    break
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._tell(f"forget {proc.pid}")

    def stop_all(self):
        for proc in reversed(list(self.live)):
            self.stop(proc, grace=2.0)


def exited(pid, timeout):
    """Waits up to `timeout` seconds for child `pid` to exit, without reaping it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def run_bounded(args, timeout, cpus):
    """Runs a load generator pinned to `cpus`; killed if it outlives `timeout` seconds."""
    try:
        return subprocess.run(["taskset", "-c", cpus, *args], capture_output=True, text=True,
                              timeout=timeout, preexec_fn=_die_with_bench)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{args[0]} did not finish within {timeout:.0f} s") from e


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def cpu_seconds(pids):
    """utime + stime of all `pids` (each one's threads included), in seconds."""
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks / CLK_TCK


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, deadline_s=10.0, poll_s=0.0005):
    """Polls connect() until `port` accepts; returns the monotonic time it first did."""
    deadline = time.monotonic() + deadline_s
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return time.monotonic()
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{proc.bench_name} exited with {proc.returncode} before listening; "
                             f"log:\n{tail(proc.bench_log)}")
        if time.monotonic() > deadline:
            raise BenchError(f"{proc.bench_name if proc else 'port'} {port}: not listening "
                             f"after {deadline_s:.0f} s")
        time.sleep(poll_s)


def tail(path, lines=15):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------
# Backends and proxies


class Bench:
    """One benchmark run: its backends, the proxy instances in front of them, the measured runs
    (`samples`) and what `summarize()` makes of them (`results`). `args` carries quick, threads,
    affinity, targets and binary; every file goes under `tmp`."""

    def __init__(self, args, tmp):
        self.args = args
        self.quick = args.quick
        self.tmp = tmp
        self.procs = Processes(tmp)
        cpus = sorted(os.sched_getaffinity(0))
        self.notes = []
        if len(cpus) < 2:
            self.load_cpu = self.proxy_cpu = str(cpus[0])
            self.notes.append("Only one CPU available: proxies share it with the load generators.")
        else:
            self.load_cpu, self.proxy_cpu = str(cpus[0]), str(cpus[1])
        if len(cpus) > args.threads:
            self.multi_cpus = ",".join(str(c) for c in cpus[1:args.threads + 1])
        else:
            self.multi_cpus = ",".join(str(c) for c in cpus)
            self.notes.append(
                f"Proto Balance --threads {args.threads} runs on CPUs {self.multi_cpus}: this "
                f"machine has {len(cpus)} CPUs, so its threads share CPU {self.load_cpu} with the "
                "load generators and backends; scaling is bounded by that.")
        # The bench's own work (idle clients) is load generation: keep it off the proxy CPU.
        os.sched_setaffinity(0, {int(self.load_cpu)})
        # Full mode: three shorter rounds, targets rotated each round, rather than one long
        # run each, so that a burst of background load does not land on one target only.
        self.rounds = 1 if self.quick else 3
        self.durations = {
            "churn": 3 if self.quick else 5,
            "rr": 3 if self.quick else 5,
            "bulk": 2 if self.quick else 4,
            "affinity": 3 if self.quick else 4,
            "warmup": 1 if self.quick else 2,
        }
        self.start_reps = 3 if self.quick else 7
        self.results = {}  # target -> metric -> value, filled by summarize()
        self.samples = {}  # (target, scenario) -> one dict per measured run
        self.errors = []

    # ---- backends -------------------------------------------------------------------------

    def start_backends(self):
        self.http_port = free_port()
        self.pp_port = free_port()  # the same server, expecting a PROXY header first
        d = self.tmp / "nginx-backend"
        d.mkdir()
        tls = ""
        if getattr(self.args, "sni", False):
            # The same server terminating TLS (a self-signed P-256 certificate made here), for
            # the SNI scenario: the proxies carry the ClientHello through untouched.
            self.tls_port = free_port()
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                            "-subj", "/CN=localhost", "-keyout", str(d / "key.pem"),
                            "-out", str(d / "cert.pem")],
                           capture_output=True, timeout=30, check=True)
            tls = (f"    listen 127.0.0.1:{self.tls_port} ssl backlog=4096;\n"
                   f"    ssl_certificate {d}/cert.pem;\n"
                   f"    ssl_certificate_key {d}/key.pem;\n")
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        (d / "nginx.conf").write_text(f"""
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {limit};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {limit}; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{self.http_port} backlog=4096;
    listen 127.0.0.1:{self.pp_port} proxy_protocol backlog=4096;
{tls}    location / {{ return 200 "proto balance bench\\n"; }}
  }}
}}
""")
        self.http_backend = self.procs.start(
            "nginx HTTP backend",
            ["nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf")],
            self.load_cpu, d / "stdout.log")
        wait_listening(self.http_port, self.http_backend)

        self.iperf_port = free_port()
        self.iperf_server = self.procs.start(
            "iperf3 server", ["iperf3", "-s", "-p", str(self.iperf_port), "-B", "127.0.0.1"],
            self.load_cpu, self.tmp / "iperf3-server.log")
        wait_listening(self.iperf_port, self.iperf_server)

    def restart_iperf_server(self):
        """A fresh iperf3 server on the same port, for when the old one is stuck in a test
        that a proxy broke off."""
        self.procs.stop(self.iperf_server, grace=2.0)
        self.iperf_server = self.procs.start(
            "iperf3 server", ["iperf3", "-s", "-p", str(self.iperf_port), "-B", "127.0.0.1"],
            self.load_cpu, self.tmp / "iperf3-server.log")
        wait_listening(self.iperf_port, self.iperf_server)
        time.sleep(1.0)  # the readiness probe above is a test the server must first drop

    def start_hold_backend(self):
        port_file = self.tmp / f"hold-{time.monotonic_ns()}.port"
        proc = self.procs.start("hold backend",
                                [sys.executable, str(HERE / "hold_backend.py"), str(port_file)],
                                self.load_cpu, self.tmp / "hold-backend.log")
        deadline = time.monotonic() + 10
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"hold backend did not start:\n{tail(proc.bench_log)}")
            time.sleep(0.01)
        return proc, int(port_file.read_text())

    # ---- proxies --------------------------------------------------------------------------

    def launch(self, target, backend_port, threads=1, affinity=None, tag="", wrapper=(),
               binary=None, proxy_protocol=None, guards=None, sni=None, twin=None,
               accept_proxy=False, half_close=None):
        """Starts one proxy instance in front of `backend_port` (not yet waited for), under
        `wrapper` (e.g. a valgrind command line) if given. `binary` replaces the Proto Balance
        binary (the baseline); `proxy_protocol` ("v2") makes the proxy send a PROXY header to
        the node. `guards` (Proto Balance only; True or False) runs it from a config file with
        or without PB_GUARDS on its listener; `sni` (True or False) from a config file with or
        without SNI routes (HAProxy: req.ssl_sni, nginx: ssl_preread; False: the plain
        configuration). `twin` (Proto Balance only) is the port of a Redis on 127.0.0.1 to
        share affinity through ([twin]); `accept_proxy` makes its listener expect a PROXY
        header in; `half_close` (True or False) runs Proto Balance from a config file with that
        [[cluster]] half_close, and nginx with `proxy_half_close on` (True). Returns
        (proc, port, pids_fn)."""
        port = free_port()
        d = self.tmp / f"{target}{tag}-{port}"
        d.mkdir()
        cpus = self.proxy_cpu if threads == 1 else self.multi_cpus
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if target == "haproxy":
            # maxconn left to HAProxy: it derives it from the descriptor limit.
            (d / "haproxy.cfg").write_text(f"""
global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend bench
  bind 127.0.0.1:{port}
""" + (HAPROXY_SNI if sni else "") + f"""  default_backend nodes
backend nodes
  server n1 127.0.0.1:{backend_port}{" send-proxy-v2" if proxy_protocol else ""}
""" + (f"backend api\n  server n1 127.0.0.1:{backend_port}\n" if sni else ""))
            args = ["haproxy", "-db", "-f", str(d / "haproxy.cfg")]
        elif target == "nginx":
            (d / "nginx.conf").write_text(f"""
load_module {NGINX_STREAM_MODULE};
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {limit};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {limit}; }}
stream {{
""" + (NGINX_SNI_MAP.format(backend=f"127.0.0.1:{backend_port}") if sni else "") + f"""
  server {{
    listen 127.0.0.1:{port} backlog=4096;
""" + ("    ssl_preread on;\n    proxy_pass $pb_upstream;\n" if sni else
       f"    proxy_pass 127.0.0.1:{backend_port};\n") + """
    proxy_connect_timeout 5s;
    proxy_timeout 1h;
""" + ("    proxy_half_close on;\n" if half_close else "") + """  }
}
""")
            args = ["nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf")]
        elif target == "pb":
            binary = binary or self.binary
            if (affinity is None and proxy_protocol is None and guards is None and sni is None
                    and twin is None and not accept_proxy and half_close is None):
                args = [str(binary), "--listen", f"127.0.0.1:{port}",
                        "--node", f"127.0.0.1:{backend_port}", "--threads", str(threads)]
            else:
                cfg = self.pb_config(d, port, backend_port, threads, affinity, proxy_protocol,
                                     guards=guards, sni=sni, twin=twin,
                                     accept_proxy=accept_proxy, half_close=half_close)
                args = [str(binary), "--config", str(cfg)]
        else:
            raise ValueError(target)
        proc = self.procs.start(f"{target}{tag}", [*wrapper, *args], cpus, d / "stdout.log")
        multi = target == "nginx"

        def pids():
            return [proc.pid] + (children_of(proc.pid) if multi else [])

        return proc, port, pids

    def pb_config(self, d, port, backend_port, threads, affinity, proxy_protocol=None,
                  guards=None, sni=None, twin=None, accept_proxy=False, half_close=None):
        (d / "var").mkdir(exist_ok=True)
        cfg = d / "pb.toml"
        cfg.write_text(f"""[service]
threads = {threads}
state_dir = "var"
""" + (f"""
[twin]
redis = "127.0.0.1:{twin}"
instance = "{d.name}"
""" if twin else "") + f"""
[[listener]]
name = "bench"
listen = "127.0.0.1:{port}"
cluster = "backend"
""" + ("accept_proxy = true\n" if accept_proxy else "") + (PB_GUARDS if guards else "") + (
            PB_SNI_ROUTES if sni else "") + f"""
[[cluster]]
name = "backend"
algorithm = "round_robin"
connect_timeout = "3s"
idle_timeout = "1h"
""" + (f"half_close = {'true' if half_close else 'false'}\n" if half_close is not None else "") + ("""
[cluster.affinity]
enabled = true
""" if affinity else "") + f"""
[[cluster.node]]
name = "n1"
address = "127.0.0.1:{backend_port}"
""" + (f'proxy_protocol = "{proxy_protocol}"\n' if proxy_protocol else "") + (f"""
[[cluster]]
name = "api"
algorithm = "round_robin"
connect_timeout = "3s"
idle_timeout = "1h"

[[cluster.node]]
name = "a1"
address = "127.0.0.1:{backend_port}"
""" if sni else ""))
        return cfg

    def start_proxy(self, target, backend_port, **kw):
        proc, port, pids = self.launch(target, backend_port, **kw)
        wait_listening(port, proc)
        if target == "nginx":
            self.wait_workers(proc, pids)
        return proc, port, pids

    @staticmethod
    def wait_workers(proc, pids, deadline_s=5.0):
        deadline = time.monotonic() + deadline_s
        while len(pids()) < 2:
            if time.monotonic() > deadline:
                raise BenchError(f"{proc.bench_name}: no worker process after {deadline_s} s")
            time.sleep(0.001)

    # ---- load -----------------------------------------------------------------------------

    def wrk(self, port, duration, close, label, connections=50, tls=False):
        """wrk against `port`; `tls`: HTTPS to https://localhost:PORT/, so that the ClientHello
        carries the server name "localhost" (wrk sends the URL's host as SNI)."""
        args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "2s", "--latency"]
        if close:
            args += ["-H", "Connection: close"]
        args.append(f"https://localhost:{port}/" if tls else f"http://127.0.0.1:{port}/")
        out = run_bounded(args, duration + 30, self.load_cpu)
        text = out.stdout
        m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
        rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
        if out.returncode != 0 or not m or not rps:
            raise BenchError(f"wrk ({label}) failed: {out.stdout}{out.stderr}")
        result = {"requests": int(m.group(1)), "rate": float(rps.group(1))}
        for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
            scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
            result[f"p{pct}_ms"] = float(value) * scale
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                           text)
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        if errors and any(int(x) for x in errors.groups()):
            self.errors.append(f"{label}: wrk socket errors: {errors.group(0)[15:]}")
        if bad:
            self.errors.append(f"{label}: {bad.group(1)} non-2xx/3xx responses")
        return result

    def iperf(self, port, duration, streams, label):
        args = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(duration),
                "-P", str(streams), "-J", "--connect-timeout", "3000"]
        for attempt in range(5):
            out = run_bounded(args, duration + 30, self.load_cpu)
            try:
                data = json.loads(out.stdout)
            except json.JSONDecodeError:
                data = {"error": out.stdout[-500:] + out.stderr[-500:]}
            if "error" not in data:
                received = data["end"]["sum_received"]
                return {"bytes": received["bytes"], "gbits": received["bits_per_second"] / 1e9}
            # The server takes a moment after a test before it takes the next one, and the
            # readiness probe of a proxy just started in front of it (a connection that the
            # proxy carries on to the server and that closes at once) can still occupy it.
            transient = ("busy", "closed unexpectedly", "reset by peer")
            if any(t in str(data["error"]) for t in transient) and attempt < 4:
                log(f"iperf3 ({label}): {data['error']}; restarting the iperf3 server, retrying")
                self.restart_iperf_server()
                continue
            raise BenchError(f"iperf3 ({label}) failed: {data['error']}; server log:\n"
                             f"{tail(self.iperf_server.bench_log, 8)}")
        raise BenchError(f"iperf3 ({label}): server stayed busy")

    def measure(self, pids, fn):
        """Runs fn() and returns (its result, proxy CPU seconds used, wall seconds)."""
        before = cpu_seconds(pids()) if pids else 0.0
        t0 = time.monotonic()
        result = fn()
        wall = time.monotonic() - t0
        after = cpu_seconds(pids()) if pids else 0.0
        return result, after - before, wall

    # ---- scenarios ------------------------------------------------------------------------

    def churn(self, target, port, pids, duration=None, key_prefix="", tls=False):
        dur = duration or self.durations["churn"]
        res, cpu, wall = self.measure(
            pids, lambda: self.wrk(port, dur, True, f"{target} {key_prefix}churn", tls=tls))
        self.record(target, key_prefix + "churn", res["requests"], cpu if pids else None, wall,
                    res["rate"])

    def request_response(self, target, port, pids, key_prefix=""):
        res, cpu, wall = self.measure(
            pids, lambda: self.wrk(port, self.durations["rr"], False, f"{target} {key_prefix}rr"))
        self.record(target, key_prefix + "rr", res["requests"], cpu if pids else None, wall,
                    res["rate"], p50=res.get("p50_ms"), p99=res.get("p99_ms"))

    def bulk(self, target, port, pids, streams, key_prefix=""):
        res, cpu, wall = self.measure(
            pids, lambda: self.iperf(port, self.durations["bulk"], streams,
                                     f"{target} {key_prefix}bulk x{streams}"))
        self.record(target, f"{key_prefix}bulk{streams}", res["bytes"], cpu if pids else None,
                    wall, res["gbits"])

    def record(self, target, name, units, cpu, wall, rate, **extra):
        self.last_recorded = (target, name)
        self.samples.setdefault((target, name), []).append(
            dict(units=units, cpu=cpu, wall=wall, rate=rate, **extra))
        unit = "Gbit/s" if "bulk" in name else "conn/s" if name.endswith("churn") else "req/s"
        busy = "" if cpu is None else f", proxy CPU busy {cpu / wall * 100:.0f}%"
        p99 = f", p99 {extra['p99']:.2f} ms" if extra.get("p99") is not None else ""
        log(f"  {target:8s} {name:14s} {rate:12,.1f} {unit}{p99}{busy}")

    def summarize(self):
        """Rates and latencies: median over the rounds. Costs: total proxy CPU over total work,
        which weights every connection, request or byte alike."""
        for (target, name), runs in self.samples.items():
            r = self.results.setdefault(target, {})
            rate = statistics.median(x["rate"] for x in runs)
            units = sum(x["units"] for x in runs)
            wall = sum(x["wall"] for x in runs)
            cpu = None if runs[0]["cpu"] is None else sum(x["cpu"] for x in runs)
            for q in ("p50", "p99"):
                values = [x[q] for x in runs if x.get(q) is not None]
                if values or name.endswith("rr"):
                    r[f"{name}_{q}"] = statistics.median(values) if values else None
            if name.endswith("churn"):
                r[name + "_cps"] = rate
                if cpu is not None:
                    r[name + "_cpu_ms_10k"] = cpu * 1e3 * 1e4 / units
                    r[name + "_cpu_util"] = cpu / wall
            elif name.endswith("rr"):
                r[name + "_rps"] = rate
                if cpu is not None:
                    r[name + "_cpu_us_req"] = cpu * 1e6 / units
                    r[name + "_cpu_util"] = cpu / wall
            else:  # bulkN
                r[name + "_gbits"] = rate
                if cpu is not None:
                    r[name + "_cpu_gb"] = cpu / (units / 1e9)

    def idle(self, target, count, key):
        """Holds `count` idle connections through a fresh instance; records RSS per connection,
        how many were held and the proxy's CPU use while holding them."""
        hold_proc, hold_port = self.start_hold_backend()
        proc, port, pids = self.start_proxy(target, hold_port)
        try:
            # Warm up one-time allocations (first buffers, pools) so they are not counted per
            # connection.
            self.open_idle(port, 200, deadline_s=20)[0].close_all()
            time.sleep(0.3)
            base = rss_kib(pids())
            held, failed = self.open_idle(port, count, deadline_s=60 if count > 5000 else 40)
            time.sleep(0.5)  # let the proxy finish what the last greetings started
            after = rss_kib(pids())
            _, cpu, wall = self.measure(pids, lambda: time.sleep(2.0))
            r = self.results.setdefault(target, {})
            r[f"{key}_held"] = len(held.socks)
            r[f"{key}_asked"] = count
            if held.socks:
                r[f"{key}_kib_per_conn"] = (after - base) / len(held.socks)
            r[f"{key}_rss_mib"] = after / 1024
            r[f"{key}_idle_cpu"] = cpu / wall
            if failed:
                kinds = ", ".join(f"{n} {k}" for k, n in failed.most_common())
                self.errors.append(f"{target}, {count:,} idle connections: "
                                   f"{sum(failed.values())} not carried through to the backend "
                                   f"({kinds}).")
            held.close_all()
        finally:
            self.procs.stop(proc)
            self.procs.stop(hold_proc)

    def open_idle(self, port, count, deadline_s, batch=250):
        """Opens `count` connections to `port` in batches and waits for each backend greeting.
        Returns (Held, Counter of failures by kind: closed, error, silent)."""
        held = Held()
        failed = collections.Counter()
        deadline = time.monotonic() + deadline_s
        sel = selectors.DefaultSelector()
        done = 0
        while done < count:
            if time.monotonic() > deadline:
                failed["not tried"] += count - done
                break
            n = min(batch, count - done)
            pending = 0
            for _ in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                sel.register(s, selectors.EVENT_READ)
                pending += 1
            done += n
            # A batch gets at most 5 s: a SYN dropped by a full queue is retried after 1 s and
            # 3 s; a connection still silent then waits in a queue the proxy does not serve.
            batch_deadline = min(deadline, time.monotonic() + 5)
            while pending and time.monotonic() < batch_deadline:
                for key, _ in sel.select(timeout=0.2):
                    s = key.fileobj
                    sel.unregister(s)
                    pending -= 1
                    try:
                        data = s.recv(1)
                        kind = None if data == b"h" else "closed"
                    except OSError as e:
                        kind = f"error {errno.errorcode.get(e.errno, e.errno)}"
                    if kind is None:
                        held.socks.append(s)
                    else:
                        failed[kind] += 1
                        s.close()
            for key in list(sel.get_map().values()):  # still silent at the batch deadline
                sel.unregister(key.fileobj)
                key.fileobj.close()
                failed["silent"] += 1
        sel.close()
        return held, failed

    def start_time(self, target):
        """Time from spawning the proxy to its port accepting, and its RSS right then (summed
        over master and worker for nginx, whose worker is waited for)."""
        times, rss = [], []
        for _ in range(self.start_reps):
            t0 = time.monotonic()
            proc, port, pids = self.launch(target, self.http_port, tag="-start")
            t1 = wait_listening(port, proc, poll_s=0.0002)
            if target == "nginx":
                self.wait_workers(proc, pids)
            rss.append(rss_kib(pids()))
            times.append((t1 - t0) * 1e3)
            self.procs.stop(proc)
        r = self.results.setdefault(target, {})
        r["start_ms"] = statistics.median(times)
        r["start_rss_mib"] = statistics.median(rss) / 1024

    def start_floor(self):
        """The same measurement for a minimal program that only listens (nc -l): what spawning
        through Popen and taskset and polling cost by themselves."""
        if shutil.which("nc") is None:
            return
        times = []
        for _ in range(self.start_reps):
            port = free_port()
            t0 = time.monotonic()
            proc = self.procs.start("nc -l", ["nc", "-l", "127.0.0.1", str(port)], self.proxy_cpu,
                                    self.tmp / "nc.log")
            times.append((wait_listening(port, proc, poll_s=0.0002) - t0) * 1e3)
            self.procs.stop(proc)
        self.notes.append(f"Start times include spawning: a minimal listener (`nc -l`) started "
                          f"the same way is listening after {statistics.median(times):.1f} ms "
                          "(median).")

    # ---- the run --------------------------------------------------------------------------

    def run(self):
        targets = self.args.targets
        self.binary = Path(self.args.binary)
        if "pb" in targets and not os.access(self.binary, os.X_OK):
            raise BenchError(f"{self.binary} not found: run tools/bench/setup.sh first")
        self.start_backends()
        proxies = [t for t in ("haproxy", "nginx", "pb") if t in targets]
        if getattr(self.args, "variants_only", False):
            if self.args.guards and "pb" in targets:
                self.guard_variants()
            if self.args.sni:
                self.sni_variants(proxies)
            if self.args.twin and "pb" in targets:
                self.twin_variants()
            return

        log("start: time to listening and RSS")
        for t in proxies:
            self.start_time(t)
        if proxies:
            self.start_floor()

        # Throughput instances stay up together (idle ones cost nothing) so that each scenario
        # runs through all targets back to back, under the same background load.
        inst = {"direct": (None, self.http_port, None)} if "direct" in targets else {}
        for t in proxies:
            inst[t] = self.start_proxy(t, self.http_port)
        order = [t for t in ("direct", "haproxy", "nginx", "pb") if t in inst]
        for t in order:  # warm-up, not measured
            self.wrk(inst[t][1], self.durations["warmup"], True, f"{t} warm-up")
        for rnd in range(self.rounds):
            log(f"connection churn, round {rnd + 1}/{self.rounds}")
            for t in rotated(order, rnd):
                self.churn(t, inst[t][1], inst[t][2])
        for rnd in range(self.rounds):
            log(f"request/response, round {rnd + 1}/{self.rounds}")
            for t in rotated(order, rnd):
                self.request_response(t, inst[t][1], inst[t][2])
        bulk_inst = {}
        for t in order:
            if t == "direct":
                bulk_inst[t] = (None, self.iperf_port, None)
            else:
                bulk_inst[t] = self.start_proxy(t, self.iperf_port, tag="-bulk")
        # The readiness probe of each proxy reached the iperf3 server as a control connection
        # that closed at once; a test started while the server is still tearing that down
        # fails, so let it settle.
        time.sleep(1.0)
        for rnd in range(self.rounds):
            log(f"bulk, round {rnd + 1}/{self.rounds}")
            for streams in (1, 4):
                for t in rotated(order, rnd):
                    self.bulk(t, bulk_inst[t][1], bulk_inst[t][2], streams)
        for t in order:
            if bulk_inst[t][0] is not None:
                self.procs.stop(bulk_inst[t][0])

        if "pb" in targets:
            self.pb_variants(inst["pb"])
        if self.args.proxy_protocol:
            self.proxy_protocol_variants(inst)
        if getattr(self.args, "guards", False) and "pb" in targets:
            self.guard_variants()
        if getattr(self.args, "sni", False):
            self.sni_variants(proxies)
        if getattr(self.args, "twin", False) and "pb" in targets:
            self.twin_variants()
        if self.args.baseline and "pb" in targets:
            self.baseline_variants(inst["pb"])
        for t in proxies:
            self.procs.stop(inst[t][0])

        count = IDLE_CONNECTIONS[self.quick]
        log(f"idle connections ({count})")
        for t in proxies:
            self.idle(t, count, "idle")
        if not self.quick:
            log(f"{BIG_CHECK_CONNECTIONS} concurrent connections")
            for t in proxies:
                self.idle(t, BIG_CHECK_CONNECTIONS, "big")

    def pb_variants(self, pb_inst):
        t = self.args.threads
        log(f"Proto Balance with --threads {t}")
        proc, port, pids = self.start_proxy("pb", self.http_port, threads=t, tag=f"-t{t}")
        self.wrk(port, self.durations["warmup"], True, f"pb threads {t} warm-up")
        # Alternate 1 and N threads so both see the same background load.
        for _ in range(self.rounds):
            self.churn("pb", pb_inst[1], pb_inst[2], key_prefix="t1_")
            self.churn("pb", port, pids, key_prefix="tN_")
        for _ in range(self.rounds):
            self.request_response("pb", pb_inst[1], pb_inst[2], key_prefix="t1_")
            self.request_response("pb", port, pids, key_prefix="tN_")
        self.procs.stop(proc)

        if not self.args.affinity:
            self.notes.append("Affinity on/off was not measured (run with --affinity).")
            return
        log("Proto Balance affinity on / off")
        probe = self.tmp / "affinity-check"
        probe.mkdir()
        cfg = self.pb_config(probe, free_port(), self.http_port, 1, True)
        check = subprocess.run([str(self.binary), "--check", "--config", str(cfg)],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            msg = (check.stdout + check.stderr).strip().replace("\n", "; ")
            msg = msg.replace(str(probe) + "/", "")
            self.notes.append(f"Affinity on: skipped, this protobalance rejects "
                              f"[cluster.affinity] enabled = true ({msg}).")
            return
        off = self.start_proxy("pb", self.http_port, affinity=False, tag="-aff-off")
        on = self.start_proxy("pb", self.http_port, affinity=True, tag="-aff-on")
        for inst in (off, on):
            self.wrk(inst[1], self.durations["warmup"], True, "pb affinity warm-up")
        for _ in range(self.rounds):  # interleaved: background load hits both alike
            self.churn("pb", off[1], off[2], self.durations["affinity"], "aff_off_")
            self.churn("pb", on[1], on[2], self.durations["affinity"], "aff_on_")
        self.procs.stop(on[0])
        self.procs.stop(off[0])
        db = on[0].bench_log.parent / "var" / "protobalance.db"
        rows = None
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                    rows = con.execute("SELECT count(*) FROM affinity").fetchone()[0]
            except sqlite3.Error:
                rows = None
        if rows:
            self.notes.append(f"Affinity on: the daemon wrote {rows} affinity row(s) to SQLite "
                              "(one client, 127.0.0.1: every connection after the first is a "
                              "hit in the in-memory map).")
        else:
            self.notes.append("Affinity on: the binary accepts the key, but wrote no affinity "
                              "row to SQLite during the run, so this build does not yet take "
                              "the affinity path; the row measures configuration mode only.")


    def proxy_protocol_variants(self, inst):
        """PROXY protocol v2 out against off, for Proto Balance and HAProxy: the same nginx
        backend server, on a second port that expects the header. Interleaved per round."""
        log("PROXY protocol v2 out / off")
        pairs = []
        for t in ("haproxy", "pb"):
            if t in inst:
                v2 = self.start_proxy(t, self.pp_port, proxy_protocol="v2", tag="-v2")
                self.wrk(v2[1], self.durations["warmup"], True, f"{t} v2 warm-up")
                pairs.append((t, inst[t], v2))
        for _ in range(self.rounds):
            for t, off, v2 in pairs:
                self.churn(t, off[1], off[2], key_prefix="pp_off_")
                self.churn(t, v2[1], v2[2], key_prefix="pp_v2_")
        for _t, _off, v2 in pairs:
            self.procs.stop(v2[0])

    def guard_variants(self):
        """Proto Balance from a config file with and without PB_GUARDS on its listener (allow and
        deny lists, per-client limits set high enough never to refuse), interleaved per round;
        both count in the same way, so the ratio is the guards' cost per connection."""
        log("Proto Balance listener guards off / on")
        pair = {key: self.start_proxy("pb", self.http_port, guards=key == "guards_on_",
                                      tag="-" + key.rstrip("_"))
                for key in ("guards_off_", "guards_on_")}
        for key, i in pair.items():
            self.wrk(i[1], self.durations["warmup"], True, f"pb {key}warm-up")
        for rnd in range(max(self.rounds, 2)):
            for key in rotated(list(pair), rnd):
                self.churn("pb", pair[key][1], pair[key][2], key_prefix=key)
        for i in pair.values():
            self.procs.stop(i[0])

    def sni_variants(self, proxies):
        """HTTPS churn (a full TLS handshake with the backend per connection, the ClientHello
        naming "localhost") through each proxy with and without SNI routing (Proto Balance
        [[listener.route]], HAProxy req.ssl_sni, nginx ssl_preread), interleaved per round."""
        log("SNI routing off / on (HTTPS churn)")
        insts = {}
        for t in proxies:
            for on in (False, True):
                key = f"sni_{'on' if on else 'off'}_"
                insts[(t, key)] = self.start_proxy(t, self.tls_port, sni=on,
                                                   tag="-" + key.rstrip("_"))
        for (t, key), i in insts.items():
            self.wrk(i[1], self.durations["warmup"], True, f"{t} {key}warm-up", tls=True)
        order = list(insts)
        for rnd in range(max(self.rounds, 2)):
            for t, key in rotated(order, rnd):
                self.churn(t, insts[(t, key)][1], insts[(t, key)][2], key_prefix=key, tls=True)
        for i in insts.values():
            self.procs.stop(i[0])

    def twin_variants(self):
        """Proto Balance with affinity on, [twin] off against on (a redis-server started here,
        no persistence), interleaved per round. Returning clients: wrk churn from one address,
        every connection after the first a hit in the in-memory map (no Redis round trip).
        First-seen clients: fresh_clients.py, a PROXY v1 header naming a new address on every
        connection (listener with accept_proxy), so every connection is a miss: with [twin], a
        Redis lookup before the node is chosen, then the decision written and published."""
        log("Proto Balance [twin] off / on (returning and first-seen clients)")
        redis_port = free_port()
        redis = self.procs.start(
            "redis-server", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"],
            self.load_cpu, self.tmp / "redis.log")
        wait_listening(redis_port, redis)
        insts = {
            "twin_off_": self.start_proxy("pb", self.http_port, affinity=True, tag="-twin-off"),
            "twin_on_": self.start_proxy("pb", self.http_port, affinity=True, twin=redis_port,
                                         tag="-twin-on"),
            "fresh_off_": self.start_proxy("pb", self.http_port, affinity=True,
                                           accept_proxy=True, tag="-fresh-off"),
            "fresh_on_": self.start_proxy("pb", self.http_port, affinity=True, twin=redis_port,
                                          accept_proxy=True, tag="-fresh-on"),
        }
        for key in ("twin_off_", "twin_on_"):
            self.wrk(insts[key][1], self.durations["warmup"], True, f"pb {key}warm-up")
        rounds = max(self.rounds, 2)
        for rnd in range(rounds):
            for key in rotated(["twin_off_", "twin_on_"], rnd):
                self.redis_measured(redis, key, lambda k=key: self.churn(
                    "pb", insts[k][1], insts[k][2], self.durations["affinity"], k))
        seconds = self.durations["affinity"]
        start = 1  # every connection of the whole run names a new source address
        for rnd in range(rounds):
            for key in rotated(["fresh_off_", "fresh_on_"], rnd):
                res = self.redis_measured(redis, key, lambda k=key, s=start: self.fresh_churn(
                    insts[k][1], insts[k][2], seconds, s, f"pb {k}churn"))
                start += res["connections"] + res["errors"] + 1
        for i in insts.values():
            self.procs.stop(i[0])
        keys = subprocess.run(["redis-cli", "-p", str(redis_port), "--raw", "dbsize"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        self.notes.append(f"[twin]: the shared Redis held {keys} key(s) at the end (affinity "
                          "entries of the first-seen clients, one per connection through the "
                          "instance with [twin], and the returning client's).")
        self.procs.stop(redis)

    def redis_measured(self, redis, key, fn):
        """Runs fn() and records the Redis server's CPU over it as target "redis"."""
        before, t0 = cpu_seconds([redis.pid]), time.monotonic()
        result = fn()
        wall = time.monotonic() - t0
        name = self.last_recorded[1]
        runs = self.samples[self.last_recorded]
        self.samples.setdefault(("redis", name), []).append(
            dict(units=runs[-1]["units"], cpu=cpu_seconds([redis.pid]) - before, wall=wall,
                 rate=runs[-1]["rate"]))
        return result

    def fresh_churn(self, port, pids, seconds, start, label):
        """fresh_clients.py against `port` (50 concurrent connections), recorded as churn."""
        script = Path(__file__).with_name("fresh_clients.py")

        def go():
            out = run_bounded([sys.executable, str(script), str(port), str(seconds),
                               "--start", str(start)], seconds + 30, self.load_cpu)
            try:
                return json.loads(out.stdout)
            except json.JSONDecodeError as e:
                raise BenchError(f"{label}: {out.stdout}{out.stderr}") from e

        res, cpu, wall = self.measure(pids, go)
        if res["errors"]:
            self.errors.append(f"{label}: {res['errors']} connection(s) failed")
        self.record("pb", label.split()[-1], res["connections"], cpu, wall, res["rate"],
                    p50=res["p50_ms"], p99=res["p99_ms"])
        return res

    def baseline_variants(self, pb_inst):
        """This binary against --baseline (main before a change), interleaved per round:
        churn and req/resp with one thread and with --threads N, bulk with 1 and 4 streams."""
        base = Path(self.args.baseline)
        t = self.args.threads
        log(f"baseline {base} against this binary")
        insts = {
            "base_": self.start_proxy("pb", self.http_port, binary=base, tag="-base"),
            "cur_": pb_inst,
            f"base_t{t}_": self.start_proxy("pb", self.http_port, binary=base, threads=t,
                                            tag=f"-base-t{t}"),
            f"cur_t{t}_": self.start_proxy("pb", self.http_port, threads=t, tag=f"-cur-t{t}"),
        }
        for key, i in insts.items():
            self.wrk(i[1], self.durations["warmup"], True, f"pb {key}warm-up")
        for _ in range(self.rounds):
            for key, i in insts.items():
                self.churn("pb", i[1], i[2], key_prefix=key)
        for _ in range(self.rounds):
            for key in ("base_", "cur_"):
                self.request_response("pb", insts[key][1], insts[key][2], key_prefix=key)
        for key in ("base_t", "cur_t"):
            self.procs.stop(insts[f"{key}{t}_"][0])
        self.procs.stop(insts["base_"][0])
        bulk = {"base_": self.start_proxy("pb", self.iperf_port, binary=base, tag="-base-bulk"),
                "cur_": self.start_proxy("pb", self.iperf_port, tag="-cur-bulk")}
        time.sleep(1.0)  # as in run(): let the iperf3 server drop the readiness probes
        for _ in range(self.rounds):
            for streams in (1, 4):
                for key, i in bulk.items():
                    self.bulk("pb", i[1], i[2], streams, key_prefix=key)
        for i in bulk.values():
            self.procs.stop(i[0])


def rotated(items, n):
    n %= len(items)
    return items[n:] + items[:n]


class Held:
    def __init__(self):
        self.socks = []

    def close_all(self):
        for s in self.socks:
            s.close()
        self.socks = []


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Report

NAMES = {"direct": "direct (no proxy)", "haproxy": "HAProxy", "nginx": "nginx",
         "pb": "Proto Balance"}


def fmt(v, kind):
    if v is None:
        return "—"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "1":
        return f"{v:,.1f}"
    if kind == "2":
        return f"{v:,.2f}"
    if kind == "3":
        return f"{v:,.3f}"
    if kind == "pct":
        return f"{v * 100:.0f}%"
    return str(v)


def report(bench, header):
    R = bench.results
    cols = [t for t in ("direct", "haproxy", "nginx", "pb") if t in R]
    lines = header + [""]
    table = []  # the main table, left out with --variants-only
    table.append("| Scenario | Metric | " + " | ".join(NAMES[c] for c in cols) +
                 " | Target (Proto Balance) | Met |")
    table.append("|---|---|" + "---:|" * len(cols) + "---|---|")

    def get(t, k):
        return R.get(t, {}).get(k)

    def row(scenario, metric, key, kind, target="", check=None):
        hap = get("haproxy", key)
        cells = []
        for c in cols:
            v = get(c, key)
            cell = fmt(v, kind)
            if v is not None and hap and c != "haproxy":
                cell += f" ({v / hap:.2f}×)"
            cells.append(cell)
        met = ""
        pb = get("pb", key)
        if check and pb is not None:
            met = check(pb, hap)
        table.append(f"| {scenario} | {metric} | " + " | ".join(cells) + f" | {target} | {met} |")

    def ratio_check(limit, higher_is_better):
        def check(pb, hap):
            if not hap:
                return "—"
            r = pb / hap
            if higher_is_better:
                return "yes" if r >= limit else f"**no** ({r:.2f}×, needs {limit:.2f}×)"
            return "yes" if r <= limit else f"**no** ({r:.2f}×, needs ≤ {limit:.2f}×)"
        return check

    def abs_check(limit, unit):
        return lambda pb, _hap: ("yes" if pb <= limit else
                                 f"**no** ({pb:.1f} {unit} > {limit} {unit})")

    row("churn", "connections/s", "churn_cps", "int", "≥ 1.05× HAProxy", ratio_check(1.05, True))
    row("churn", "proxy CPU ms per 10k conn.", "churn_cpu_ms_10k", "int")
    row("churn", "proxy CPU busy", "churn_cpu_util", "pct")
    row("req/resp", "requests/s", "rr_rps", "int", "≥ 1.05× HAProxy", ratio_check(1.05, True))
    row("req/resp", "p50 latency ms", "rr_p50", "3")
    row("req/resp", "p99 latency ms", "rr_p99", "3", "≤ HAProxy", ratio_check(1.0, False))
    row("req/resp", "proxy CPU µs per request", "rr_cpu_us_req", "1")
    row("req/resp", "proxy CPU busy", "rr_cpu_util", "pct")
    for s in (1, 4):
        row(f"bulk {s} stream{'s' if s > 1 else ''}", "Gbit/s", f"bulk{s}_gbits", "1")
        row(f"bulk {s} stream{'s' if s > 1 else ''}", "proxy CPU-s per GB", f"bulk{s}_cpu_gb",
            "3", "≤ 0.9× HAProxy", ratio_check(0.9, False))
    n = IDLE_CONNECTIONS[bench.quick]
    row(f"idle ({n:,} conn.)", "proxy RSS KiB per conn.", "idle_kib_per_conn", "2", "≤ 2 KiB",
        abs_check(2.0, "KiB"))
    row(f"idle ({n:,} conn.)", "connections held", "idle_held", "int")
    if any("big_asked" in R.get(c, {}) for c in cols):
        row(f"{BIG_CHECK_CONNECTIONS:,} concurrent", "connections held", "big_held", "int",
            f"{BIG_CHECK_CONNECTIONS:,}",
            lambda pb, _h: "yes" if pb >= BIG_CHECK_CONNECTIONS else
            (f"fd limit ({BIG_CHECK_CONNECTIONS - pb:,} short)" if bench.fd_bound else
             f"**no** ({BIG_CHECK_CONNECTIONS - pb:,} short)"))
        row(f"{BIG_CHECK_CONNECTIONS:,} concurrent", "proxy RSS KiB per conn.",
            "big_kib_per_conn", "2")
        row(f"{BIG_CHECK_CONNECTIONS:,} concurrent", "proxy RSS MiB", "big_rss_mib", "1")
        row(f"{BIG_CHECK_CONNECTIONS:,} concurrent", "proxy CPU busy while idle", "big_idle_cpu",
            "pct")
    row("start", "ms to listening (median)", "start_ms", "1", "≤ 20 ms", abs_check(20, "ms"))
    row("start", "RSS MiB when listening", "start_rss_mib", "1", "≤ 8 MiB", abs_check(8, "MiB"))

    if not getattr(bench.args, "variants_only", False):
        lines += table
    pb = R.get("pb", {})
    extra = []
    if "aff_on_churn_cps" in pb:
        r = pb["aff_on_churn_cps"] / pb["aff_off_churn_cps"]
        extra.append(f"| affinity | connections/s, off → on | "
                     f"{pb['aff_off_churn_cps']:,.0f} → {pb['aff_on_churn_cps']:,.0f} "
                     f"({r:.2f}×) | ≥ 0.95× | "
                     f"{'yes' if r >= 0.95 else f'**no** ({r:.2f}×)'} |")
        if "aff_on_churn_cpu_ms_10k" in pb:
            extra.append(f"| affinity | proxy CPU ms per 10k conn., off → on | "
                         f"{pb['aff_off_churn_cpu_ms_10k']:,.0f} → "
                         f"{pb['aff_on_churn_cpu_ms_10k']:,.0f} | | |")
    if "tN_churn_cps" in pb:
        t = bench.args.threads
        for key, label in (("churn_cps", "connections/s"), ("rr_rps", "requests/s")):
            a, b = pb.get("t1_" + key), pb.get("tN_" + key)
            if a and b:
                extra.append(f"| --threads {t} | {label}, 1 → {t} threads | "
                             f"{a:,.0f} → {b:,.0f} "
                             f"({b / a:.2f}×) | report | |")
        for key, label in (("churn_cpu_util", "churn proxy CPU busy"),
                           ("rr_cpu_util", "req/resp proxy CPU busy")):
            a, b = pb.get("t1_" + key), pb.get("tN_" + key)
            if a is not None and b is not None:
                extra.append(f"| --threads {t} | {label}, 1 → {t} threads | "
                             f"{a * 100:.0f}% → {b * 100:.0f}% | | |")
    for t in ("pb", "haproxy"):
        r = R.get(t, {})
        if "pp_v2_churn_cpu_ms_10k" in r:
            a, b = r["pp_off_churn_cpu_ms_10k"], r["pp_v2_churn_cpu_ms_10k"]
            ok = "yes" if b <= a * 1.05 else f"**no** ({b / a:.2f}×)"
            extra.append(f"| PROXY v2 out ({NAMES[t]}) | proxy CPU ms per 10k conn., off → v2 | "
                         f"{a:,.0f} → {b:,.0f} ({b / a:.2f}×) | "
                         f"{'≤ 1.05×' if t == 'pb' else ''} | {ok if t == 'pb' else ''} |")
            extra.append(f"| PROXY v2 out ({NAMES[t]}) | connections/s, off → v2 | "
                         f"{r['pp_off_churn_cps']:,.0f} → {r['pp_v2_churn_cps']:,.0f} | | |")
    if "guards_on_churn_cpu_ms_10k" in pb:
        a, b = pb["guards_off_churn_cpu_ms_10k"], pb["guards_on_churn_cpu_ms_10k"]
        ok = "yes" if b <= a * 1.03 else f"**no** ({b / a:.2f}×)"
        extra.append(f"| guards | proxy CPU ms per 10k conn., off → on | {a:,.0f} → {b:,.0f} "
                     f"({b / a:.2f}×) | ≤ 1.03× | {ok} |")
        extra.append(f"| guards | connections/s, off → on | {pb['guards_off_churn_cps']:,.0f} → "
                     f"{pb['guards_on_churn_cps']:,.0f} | | |")
    redis = R.get("redis", {})
    if "twin_on_churn_cps" in pb:
        a, b = pb["twin_off_churn_cps"], pb["twin_on_churn_cps"]
        ok = "yes" if b >= a * 0.95 else f"**no** ({b / a:.2f}×)"
        extra.append(f"| [twin], returning clients | connections/s, off → on | {a:,.0f} → "
                     f"{b:,.0f} ({b / a:.2f}×) | ≥ 0.95× | {ok} |")
        a, b = pb["twin_off_churn_cpu_ms_10k"], pb["twin_on_churn_cpu_ms_10k"]
        extra.append(f"| [twin], returning clients | proxy CPU ms per 10k conn., off → on | "
                     f"{a:,.0f} → {b:,.0f} ({b / a:.2f}×) | | |")
        if "twin_on_churn_cpu_ms_10k" in redis:
            extra.append(f"| [twin], returning clients | Redis CPU ms per 10k conn. | "
                         f"{redis['twin_on_churn_cpu_ms_10k']:,.0f} | | |")
    if "fresh_on_churn_cps" in pb:
        a, b = pb["fresh_off_churn_cpu_ms_10k"], pb["fresh_on_churn_cpu_ms_10k"]
        extra.append(f"| [twin], first-seen clients | proxy CPU ms per 10k conn., off → on | "
                     f"{a:,.0f} → {b:,.0f} ({b / a:.2f}×) | report | |")
        if "fresh_on_churn_cpu_ms_10k" in redis:
            extra.append(f"| [twin], first-seen clients | Redis CPU ms per 10k conn. | "
                         f"{redis['fresh_on_churn_cpu_ms_10k']:,.0f} | report | |")
        extra.append(f"| [twin], first-seen clients | connections/s, off → on | "
                     f"{pb['fresh_off_churn_cps']:,.0f} → {pb['fresh_on_churn_cps']:,.0f} | | |")
        for q in ("p50", "p99"):
            a, b = pb.get(f"fresh_off_churn_{q}"), pb.get(f"fresh_on_churn_{q}")
            if a is not None and b is not None:
                extra.append(f"| [twin], first-seen clients | connection {q} ms (connect to "
                             f"reply's end), off → on | {a:.2f} → {b:.2f} | report | |")
    for t in ("pb", "haproxy", "nginx"):
        r = R.get(t, {})
        if "sni_on_churn_cpu_ms_10k" in r:
            a, b = r["sni_off_churn_cpu_ms_10k"], r["sni_on_churn_cpu_ms_10k"]
            extra.append(f"| SNI routing ({NAMES[t]}) | proxy CPU ms per 10k TLS conn., "
                         f"off → on | {a:,.0f} → {b:,.0f} ({b / a:.2f}×) | report | |")
            extra.append(f"| SNI routing ({NAMES[t]}) | TLS connections/s, off → on | "
                         f"{r['sni_off_churn_cps']:,.0f} → {r['sni_on_churn_cps']:,.0f} | | |")
    t = bench.args.threads
    for key, label, kind in (("churn_cpu_ms_10k", "proxy CPU ms per 10k conn.", "int"),
                             ("churn_cps", "connections/s", "int"),
                             (f"t{t}_churn_cps", f"connections/s, --threads {t}", "int"),
                             (f"t{t}_churn_cpu_ms_10k",
                              f"proxy CPU ms per 10k conn., --threads {t}", "int"),
                             ("rr_cpu_us_req", "proxy CPU µs per request", "1"),
                             ("rr_rps", "requests/s", "int"),
                             ("bulk1_cpu_gb", "bulk 1 stream CPU-s per GB", "3"),
                             ("bulk1_gbits", "bulk 1 stream Gbit/s", "1"),
                             ("bulk4_cpu_gb", "bulk 4 streams CPU-s per GB", "3"),
                             ("bulk4_gbits", "bulk 4 streams Gbit/s", "1")):
        a, b = pb.get("base_" + key), pb.get("cur_" + key)
        if a is not None and b is not None:
            extra.append(f"| baseline → this binary | {label} | {fmt(a, kind)} → {fmt(b, kind)}"
                         f" ({b / a:.2f}×) | | |")
    if extra:
        lines += ["", "Proto Balance variants (measured back to back in the same run):", "",
                  "| Variant | Metric | Proto Balance | Target | Met |", "|---|---|---|---|---|"]
        lines += extra
    notes = bench.notes + bench.errors
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def first_line(args):
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def busy_seconds():
    """user + nice + system time of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    return (int(fields[0]) + int(fields[1]) + int(fields[2])) / CLK_TCK


def own_seconds():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def raise_descriptor_limit():
    """Thousands of connections: client sockets in this process, two descriptors per connection
    in the proxies (which inherit the limit). Raises the soft limit to 65,536 or, without the
    privilege for that, to the hard limit; returns the result."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(doc):
    p = argparse.ArgumentParser(description=doc.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(doc.split("\n")[1:]))
    p.add_argument("--quick", action="store_true",
                   help="short runs, 2,000 idle connections (< 2 min)")
    p.add_argument("--threads", type=int, default=2,
                   help="worker threads of the Proto Balance scaling variant (default 2)")
    p.add_argument("--affinity", action="store_true",
                   help="also measure Proto Balance with [cluster.affinity] enabled = true")
    p.add_argument("--out", help="also write the Markdown report to this file")
    p.add_argument("--binary", default=str(ROOT / "build/bench/bin/protobalance"),
                   help="protobalance binary (default: build/bench/bin/protobalance)")
    p.add_argument("--proxy-protocol", action="store_true",
                   help="also measure PROXY protocol v2 out against off (Proto Balance, HAProxy)")
    p.add_argument("--guards", action="store_true",
                   help="also measure Proto Balance with listener guards (allow/deny, "
                        "per-client limits that never refuse) against none")
    p.add_argument("--sni", action="store_true",
                   help="also measure HTTPS churn with SNI routing against none (Proto Balance "
                        "[[listener.route]], HAProxy req.ssl_sni, nginx ssl_preread)")
    p.add_argument("--twin", action="store_true",
                   help="also measure Proto Balance with affinity shared through Redis ([twin]) "
                        "against affinity alone, for returning and for first-seen clients")
    p.add_argument("--variants-only", action="store_true",
                   help="with --guards, --sni and/or --twin: measure only those variants")
    p.add_argument("--baseline", metavar="PATH",
                   help="another protobalance binary (main before a change), measured back to "
                        "back with this one")
    p.add_argument("--targets", default="direct,haproxy,nginx,pb",
                   help="comma-separated subset of direct,haproxy,nginx,pb")
    args = p.parse_args()
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not set(args.targets) <= {"direct", "haproxy", "nginx", "pb"} or args.threads < 1:
        p.error("bad --targets or --threads")
    for tool in ("taskset", "wrk", "iperf3", "nginx", "haproxy") + (
            ("redis-server", "redis-cli") if args.twin else ()):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} not found: run tools/bench/setup.sh first")
    if args.baseline and not os.access(args.baseline, os.X_OK):
        p.error(f"--baseline {args.baseline}: not an executable file")
    if "nginx" in args.targets and not os.path.exists(NGINX_STREAM_MODULE):
        sys.exit(f"bench: {NGINX_STREAM_MODULE} missing: run tools/bench/setup.sh first")

    nofile = raise_descriptor_limit()

    def on_signal(signo, _frame):
        raise Stop(signal.Signals(signo).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    busy0, own0, wall0 = busy_seconds(), own_seconds(), time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="pb-bench."))
    bench = Bench(args, tmp)
    bench.fd_bound = nofile < 2 * BIG_CHECK_CONNECTIONS + 100
    if bench.fd_bound:
        bench.notes.append(
            f"RLIMIT_NOFILE here is {nofile:,} and cannot be raised (hard limit), so a proxy "
            f"can hold at most about {(nofile - 50) // 2:,} relayed connections (two descriptors "
            "each).")
    try:
        bench.run()
        bench.summarize()
    except KeyboardInterrupt:
        log("interrupted: stopping everything the bench started")
        sys.exit(130)
    except Stop as e:
        log(f"{e}: stopping everything the bench started")
        sys.exit(143)
    except BenchError as e:
        log(f"failed: {e}")
        sys.exit(1)
    finally:
        bench.procs.stop_all()
        bench.procs.close()
        shutil.rmtree(tmp, ignore_errors=True)

    wall = time.monotonic() - wall0
    foreign = max(0.0, (busy_seconds() - busy0) - (own_seconds() - own0))
    ncpu = os.cpu_count() or 1
    git = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    built = ""
    if "pb" in args.targets:
        mtime = datetime.datetime.fromtimestamp(os.stat(args.binary).st_mtime,
                                                datetime.timezone.utc)
        built = f", binary built {mtime:%Y-%m-%d %H:%M} UTC"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                            "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    header = [
        f"Run {started:%Y-%m-%d %H:%M} UTC, `{' '.join(['tools/bench/run'] + sys.argv[1:])}` "
        f"({'quick' if args.quick else 'full'} mode, {wall:.0f} s).",
        f"Machine: {ncpu} CPUs ({cpu_model()}), kernel {platform.release()}. "
        f"Proxies pinned to CPU {bench.proxy_cpu}, load generators and backends to CPU "
        f"{bench.load_cpu}.",
        f"Versions: {first_line(['haproxy', '-v'])}; {first_line(['nginx', '-v'])}; "
        f"{first_line(['wrk', '-v'])}; {first_line(['iperf3', '-v'])}; Proto Balance checkout "
        f"{git}{' with uncommitted changes' if dirty else ''}{built}.",
        f"Background load: load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} "
        f"after; processes outside the bench used about {foreign:.0f} CPU-s of the "
        f"{wall * ncpu:.0f} available during the run ({foreign / (wall * ncpu) * 100:.0f}%).",
        f"Each scenario: {bench.rounds} round(s) per target, targets rotated between rounds; "
        f"churn {bench.durations['churn']} s and req/resp {bench.durations['rr']} s per round "
        f"(wrk -t1 -c50), bulk {bench.durations['bulk']} s per stream count (iperf3). Rates and "
        f"latencies are medians over rounds, CPU costs are totals over rounds; ratios in "
        f"parentheses are to HAProxy in the same run.",
    ]
    text = report(bench, header)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


