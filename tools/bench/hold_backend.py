#!/usr/bin/env python3
"""A backend that accepts TCP connections and holds them open, for the idle-connection scenario.

Usage: hold_backend.py PORT_FILE
Listens on 127.0.0.1 on a free port and writes the port number to PORT_FILE once it listens.
Every accepted connection gets one greeting byte ("h"), so a client behind a proxy knows the
proxy has connected through to here; after that the connection is held until the peer closes
it (then it is closed here too, so a proxy that passes the FIN on can end the session).
Exits on SIGTERM or SIGINT, or when its parent (the bench) goes away.
"""
import os
import selectors
import signal
import socket
import sys


def main() -> int:
    port_file = sys.argv[1]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    listener.setblocking(False)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(listener.getsockname()[1]))
    os.replace(tmp, port_file)  # the bench never sees a half-written number

    stop = False

    def on_signal(_signo, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parent = os.getppid()
    held = set()
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    while not stop and os.getppid() == parent:
        for key, _mask in sel.select(timeout=0.5):
            if key.fileobj is not listener:
                # Bytes or an end of stream from a held connection: drop the bytes, close on EOF.
                conn = key.fileobj
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    held.discard(conn)
                    conn.close()
                continue
            # Accept everything queued: thousands of connections arrive in bursts.
            while True:
                try:
                    conn, _addr = listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # out of descriptors: keep what we hold, try again later
                    break
                try:
                    conn.setblocking(False)
                    conn.send(b"h")
                except OSError:
                    conn.close()
                    continue
                held.add(conn)
                sel.register(conn, selectors.EVENT_READ)
    for conn in held:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
