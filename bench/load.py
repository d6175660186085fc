"""A closed-loop HTTP load generator: N clients, each one keep-alive connection sending the
same request again as soon as the answer arrives, for a given time (ApacheBench's ``-k -c N
-t S``, in Python so that ``make bench`` needs nothing more than the project).

Each client is an asyncio protocol that writes a request prepared once and reads the answer
with no more parsing than its status line and Content-Length: about 15 µs of Python per
request, so the generator takes a fraction of a core at the rates measured here (the
gateway, on the same machine, gets the rest). The answer's body is kept only for the
status codes of failures, so a run can say what went wrong.

    python -m bench.load http://127.0.0.1:8000/leads?limit=1 -c 32 -t 30 \
        -H "Authorization: Bearer $TOKEN"
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import uvloop


@dataclass
class LoadResult:
    """One run: every answer's latency, and the statuses of those that were not 2xx."""

    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    """Seconds from writing a request to reading its whole answer, of the 2xx answers."""
    failures: Counter[int] = field(default_factory=Counter)
    """Status code → answers that were not 2xx (0: the connection failed)."""
    sample_failure: str = ""
    """The first failed answer's head and body, to say why."""

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(self.failures.values())

    @property
    def rate(self) -> float:
        """2xx answers per second."""
        return self.ok / self.seconds

    def percentile(self, p: float) -> float:
        """Seconds below which ``p`` percent of the 2xx answers came (0 if none)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    def summary(self) -> str:
        mean = statistics.fmean(self.latencies) if self.latencies else 0.0
        return (
            f"{self.rate:,.0f} requests/s, p50 {self.percentile(50) * 1000:.1f} ms, "
            f"p99 {self.percentile(99) * 1000:.1f} ms, mean {mean * 1000:.1f} ms, "
            f"{self.ok:,} ok, {self.errors} errors {dict(self.failures) or ''}".rstrip()
        )


def request_bytes(
    method: str, url: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
) -> tuple[str, int, bytes]:
    """(host, port, the request's bytes) of an http:// URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"an http:// URL with a host, not {url!r}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return parts.hostname, parts.port or 80, head + body


class _Client(asyncio.Protocol):
    """One connection sending ``request`` again on every complete answer, until ``stop``."""

    def __init__(self, request: bytes, result: LoadResult, stop_at: float) -> None:
        self.request = request
        self.result = result
        self.stop_at = stop_at
        self.buffer = bytearray()
        self.sent = 0.0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        now = time.perf_counter()
        status = int(head[9:12])
        if 200 <= status < 300:
            self.result.latencies.append(now - self.sent)
        else:
            self.result.failures[status] += 1
            if not self.result.sample_failure:
                self.result.sample_failure = bytes(self.buffer[: end + 4 + length]).decode(
                    errors="replace"
                )
        del self.buffer[: end + 4 + length]
        assert self.transport is not None
        if now >= self.stop_at or b"connection: close" in head.lower():
            self.transport.close()
        else:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _one_client(
    host: str, port: int, request: bytes, result: LoadResult, stop_at: float
) -> None:
    loop = asyncio.get_running_loop()
    while time.perf_counter() < stop_at:
        try:
            _, client = await loop.create_connection(
                lambda: _Client(request, result, stop_at), host, port
            )
        except OSError:
            result.failures[0] += 1
            await asyncio.sleep(0.05)
            continue
        await client.closed
        if client.buffer:  # the server closed mid-answer
            result.failures[0] += 1


async def run_load(
    url: str,
    *,
    clients: int,
    seconds: float,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> LoadResult:
    """``clients`` connections sending the request for ``seconds``; every answer measured."""
    host, port, request = request_bytes(method, url, headers, body)
    result = LoadResult(clients=clients, seconds=seconds)
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(
        *(_one_client(host, port, request, result, stop_at) for _ in range(clients))
    )
    result.seconds = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("-c", "--clients", type=int, default=32)
    p.add_argument("-t", "--seconds", type=float, default=10.0)
    p.add_argument("-m", "--method", default="GET")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    p.add_argument("-d", "--data", help="the body, or @file")
    args = p.parse_args(argv)
    headers = [tuple(h.split(":", 1)) for h in args.header]
    headers = [(name.strip(), value.strip()) for name, value in headers]
    body = b""
    if args.data:
        is_file = args.data.startswith("@")
        body = Path(args.data[1:]).read_bytes() if is_file else args.data.encode()
    result = uvloop.run(
        run_load(
            args.url,
            clients=args.clients,
            seconds=args.seconds,
            method=args.method,
            headers=headers,
            body=body,
        )
    )
    print(result.summary())
    if result.sample_failure:
        print("first failure:\n" + result.sample_failure[:600], file=sys.stderr)
    return 0 if not result.errors else 1


if __name__ == "__main__":
    sys.exit(main())
