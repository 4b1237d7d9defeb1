"""A TCP proxy on 127.0.0.1 that dies abruptly after forwarding a byte budget.

    python -m tests.support.faulty_proxy LISTEN_PORT TARGET_PORT \
        [--die-after-up N] [--die-after-down N]

It forwards every connection to 127.0.0.1:TARGET_PORT and, once N bytes have gone
client->server (up) or server->client (down) in all, ends its own process with
``os._exit``: every connection drops mid-transfer, as when a store or a node goes away.
A test restarts it on the same port to bring the "store" back.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import threading

LOCK = threading.Lock()
SENT = {"up": 0, "down": 0}


def pump(src: socket.socket, dst: socket.socket, direction: str, budget: int | None) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            with LOCK:
                SENT[direction] += len(data)
                over = budget is not None and SENT[direction] > budget
            if over:
                dst.sendall(data[: max(0, len(data) // 2)])
                os._exit(1)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("listen", type=int)
    ap.add_argument("target", type=int)
    ap.add_argument("--die-after-up", type=int)
    ap.add_argument("--die-after-down", type=int)
    a = ap.parse_args()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", a.listen))
    server.listen(64)
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(("127.0.0.1", a.target))
        threading.Thread(
            target=pump, args=(client, upstream, "up", a.die_after_up), daemon=True
        ).start()
        threading.Thread(
            target=pump, args=(upstream, client, "down", a.die_after_down), daemon=True
        ).start()


if __name__ == "__main__":
    main()
