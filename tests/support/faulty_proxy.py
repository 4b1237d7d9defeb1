"""A TCP proxy on 127.0.0.1 that shapes its connections like a distant store, or dies.

    python -m tests.support.faulty_proxy LISTEN_PORT TARGET_PORT \
        [--die-after-up N] [--die-after-down N] [--drop-range-from N]
        [--rate BYTES_PER_S] [--delay-ms MS]

It forwards every connection to 127.0.0.1:TARGET_PORT.

- ``--die-after-up`` / ``--die-after-down``: once N bytes have gone client->server
  (up) or server->client (down) in all, it ends its own process with ``os._exit``:
  every connection drops mid-transfer, as when a store or a node goes away. A test
  restarts it on the same port to bring the "store" back.
- ``--drop-range-from``: a request for a byte range that starts at N or later has its
  connection dropped before it reaches the server, every time; other requests pass.
  A concurrent download then gets exactly the parts before N, whatever the machine's
  speed (a byte budget shared by parallel streams cuts wherever the scheduler was).
- ``--rate``: each connection carries at most this many bytes per second each way
  (a per-stream cap, as a real S3 gives one TCP stream); ``--delay-ms``: the round
  trip, half of it added each way. Bytes are held until their one-way delay has
  passed and then paced to the rate, so the delay costs latency, not throughput.

It stands in for a remote S3 endpoint's network path (bandwidth per stream, round
trip); a real one adds congestion, throttling (503 SlowDown) and per-prefix limits.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOCK = threading.Lock()
SENT = {"up": 0, "down": 0}
RANGE = re.compile(rb"\r\nrange:\s*bytes=(\d+)-", re.IGNORECASE)


def asks_from(data: bytes, start: int | None) -> bool:
    """Whether ``data`` (a request's head: it fits one read) asks for a range from ``start`` on."""
    found = start is not None and RANGE.search(data)
    return bool(found) and int(found.group(1)) >= start


class Shaper:
    """Delivers ``data`` ``one_way`` seconds after it arrived, at most ``rate`` bytes/s."""

    def __init__(self, dst: socket.socket, rate: float | None, one_way: float):
        self.dst, self.rate, self.one_way = dst, rate, one_way
        self.items: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.ready = threading.Condition()
        self.free_at = 0.0  # when the pacing lets the next byte go
        threading.Thread(target=self._send, daemon=True).start()

    def put(self, data: bytes | None) -> None:
        with self.ready:
            self.items.append((time.monotonic(), data))
            self.ready.notify()

    def _send(self) -> None:
        try:
            while True:
                with self.ready:
                    while not self.items:
                        self.ready.wait()
                    arrived, data = self.items.popleft()
                wait = arrived + self.one_way - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if data is None:
                    break
                for start in range(0, len(data), 16384):
                    piece = data[start : start + 16384]
                    if self.rate:
                        now = time.monotonic()
                        self.free_at = max(self.free_at, now) + len(piece) / self.rate
                        if self.free_at - now > 0.002:
                            time.sleep(self.free_at - now)
                    self.dst.sendall(piece)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)


def pump(
    src: socket.socket,
    dst: socket.socket,
    direction: str,
    budget: int | None,
    shaper: Shaper | None,
    drop_from: int | None = None,
) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data or asks_from(data, drop_from):
                break
            with LOCK:
                SENT[direction] += len(data)
                over = budget is not None and SENT[direction] > budget
            if over:
                dst.sendall(data[: max(0, len(data) // 2)])
                os._exit(1)
            if shaper is not None:
                shaper.put(data)
            else:
                dst.sendall(data)
    except OSError:
        pass
    finally:
        if shaper is not None:
            shaper.put(None)  # the shaper closes its side once all is delivered
        else:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


class Proxy:
    """This proxy as a child process on a fixed port (restart it to bring the store back)."""

    def __init__(self, target: int, port: int | None = None):
        from tests.support.s3server import free_port

        self.port, self.target, self.proc = port or free_port(), target, None

    def start(self, **options: float) -> str:
        """Start with ``die_after_up=``, ``die_after_down=``, ``rate=``, ``delay_ms=``;
        returns the URL to give clients."""
        args = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.faulty_proxy",
                *map(str, (self.port, self.target)),
                *args,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()
            self.proc.stdout.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("listen", type=int)
    ap.add_argument("target", type=int)
    ap.add_argument("--die-after-up", type=int)
    ap.add_argument("--die-after-down", type=int)
    ap.add_argument("--drop-range-from", type=int, help="drop requests for ranges from N on")
    ap.add_argument("--rate", type=float, help="bytes per second per connection and direction")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="round trip added")
    a = ap.parse_args()
    shaped = bool(a.rate) or a.delay_ms > 0
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", a.listen))
    server.listen(128)
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(("127.0.0.1", a.target))
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for src, dst, direction, budget, drop_from in (
            (client, upstream, "up", a.die_after_up, a.drop_range_from),
            (upstream, client, "down", a.die_after_down, None),
        ):
            shaper = Shaper(dst, a.rate, a.delay_ms / 2000) if shaped else None
            threading.Thread(
                target=pump, args=(src, dst, direction, budget, shaper, drop_from), daemon=True
            ).start()


if __name__ == "__main__":
    main()
