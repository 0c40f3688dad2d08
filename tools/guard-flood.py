#!/usr/bin/env python3
"""Flood a rate-limited listener from many distinct client addresses and sample the daemon's RSS.

Shows that the per-client state of max_client_rate stays bounded: clients come from
127.x.y.z (100,000 distinct sources by default), each opens one connection, sends one byte and
closes. The listener has max_client_rate = "1/1h" (so no client's entry becomes quiet during the
run: the worst case for the table) and a [listener.validate] that the byte fails, so no node is
ever contacted (the figure is the guards' own, not the relay's). The daemon's VmRSS is printed
every STEP clients; it must level off once the table is full (65,536 clients per listener).

Usage: tools/guard-flood.py [BINARY] [CLIENTS] [MAX_SECONDS]
       (BINARY defaults to build/bin/protobalance; bounded by MAX_SECONDS, default 300)
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

binary = sys.argv[1] if len(sys.argv) > 1 else "build/bin/protobalance"
clients = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
max_seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 300.0
step = max(1, clients // 10)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def source(n):
    # 127.0.0.2 onwards: never 127.0.0.1 or a .0/.255 host part.
    n += 2
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


with tempfile.TemporaryDirectory() as work:
    config = os.path.join(work, "pb.toml")
    with open(config, "w") as f:
        f.write(
            """[service]
threads = 1
state_dir = "state"
[[listener]]
name = "flood"
listen = "127.0.0.1:0"
cluster = "c"
max_client_rate = "1/1h"
[listener.validate]
timeout = "1s"
expect = '^never'
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:9"
"""
        )
    daemon = subprocess.Popen(
        [binary, "--config", config, "--log-level", "info"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 15
        while port is None and time.monotonic() < deadline:
            line = daemon.stderr.readline()
            if not line:
                break
            match = re.search(r"listener flood on \S+:(\d+)", line)
            if match:
                port = int(match.group(1))
        if port is None:
            sys.exit("the daemon did not report its listener")
        # Keep reading its log so that it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in daemon.stderr], daemon=True).start()
        print(f"clients  VmRSS_KiB  seconds")
        print(f"{0:>7}  {rss_kib(daemon.pid):>9}  {0:>7.1f}")
        started = time.monotonic()
        done = 0
        for n in range(clients):
            if time.monotonic() - started > max_seconds:
                print(f"stopped at the time bound ({max_seconds:.0f} s)")
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            try:
                s.bind((source(n), 0))
                s.connect(("127.0.0.1", port))
                s.send(b"x")
            except OSError:
                pass
            finally:
                s.close()  # linger 0: a reset, no TIME_WAIT left on the client side
            done = n + 1
            if done % step == 0:
                time.sleep(0.2)  # let the daemon catch up with its accept queue
                print(f"{done:>7}  {rss_kib(daemon.pid):>9}  {time.monotonic() - started:>7.1f}")
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
