#!/usr/bin/env python3
"""Connection churn in which every connection is a client the balancer has never seen.

Each connection starts with a PROXY protocol v1 header naming a new source address (10.0.0.1,
10.0.0.2, ... in turn), then sends one HTTP/1.1 request with `Connection: close` and reads the
reply to its end. For a listener with `accept_proxy = true`, the header's address is the client:
with affinity on, every connection is a first-seen client (a miss in the affinity map; with
[twin], a Redis lookup before the node is chosen).

Usage: fresh_clients.py PORT SECONDS [--connections N] [--max-total M] [--start K]
Prints one JSON object: connections, errors, seconds, rate, p50_ms, p99_ms.
Bounded: stops after SECONDS or after M connections, whichever comes first; every
connection has a 5 s deadline.
"""
import argparse
import asyncio
import json
import time


async def one(port, index, latencies):
    src = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
    header = f"PROXY TCP4 {src} 127.0.0.1 {1024 + index % 60000} {port}\r\n"
    request = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write((header + request).encode())
        await writer.drain()
        data = await reader.read()  # to the end of the stream
        if not data.startswith(b"HTTP/1.1 200"):
            raise OSError(f"unexpected reply {data[:40]!r}")
    finally:
        writer.close()
    latencies.append(time.monotonic() - t0)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("--connections", type=int, default=50, help="concurrent connections")
    p.add_argument("--max-total", type=int, default=1_000_000)
    p.add_argument("--start", type=int, default=1, help="first source index (10.0.0.1 = 1)")
    a = p.parse_args()
    latencies, errors = [], 0
    counter = iter(range(a.start, a.start + a.max_total))
    deadline = time.monotonic() + a.seconds

    async def loop():
        nonlocal errors
        while time.monotonic() < deadline:
            index = next(counter, None)
            if index is None:
                return
            try:
                await asyncio.wait_for(one(a.port, index, latencies), 5.0)
            except (OSError, asyncio.TimeoutError):
                errors += 1

    t0 = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(a.connections)))
    seconds = time.monotonic() - t0
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3 if latencies else None

    print(json.dumps({"connections": len(latencies), "errors": errors, "seconds": seconds,
                      "rate": len(latencies) / seconds, "p50_ms": pct(0.5), "p99_ms": pct(0.99)}))


if __name__ == "__main__":
    asyncio.run(main())
