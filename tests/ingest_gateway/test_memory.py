"""A 10 MB import through a real gateway process: its peak memory stays under 150 MB RSS.

The gateway runs as ``python -m ingest_gateway`` (uvicorn, uvloop, httptools), as in
production; the peak is the kernel's high-water mark of its resident set (VmHWM).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.processes import free_port
from leadvibe.settings import Settings
from tests.conftest import Tenant
from tests.gateway import gateway_environment
from tests.ingest_gateway.helpers import published_count
from tests.ingest_gateway.test_imports import FILE_LIMIT, csv_of_size
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

RSS_LIMIT_MB = 150


def memory_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


@pytest.fixture
def gateway_process(settings: Settings) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = gateway_environment(settings, port)
    process = subprocess.Popen([sys.executable, "-m", "ingest_gateway"], env=env)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
async def test_peak_memory_of_a_10_mb_import_stays_under_150_mb(
    gateway_process: tuple[subprocess.Popen[bytes], str], tenant: Tenant, settings: Settings
) -> None:
    process, url = gateway_process
    data, rows = csv_of_size(FILE_LIMIT)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:

        async def health() -> int:
            try:
                return (await client.get("/health")).status_code
            except httpx.TransportError:
                return 0

        await wait_for(health, until=lambda status: status == 200, what="the gateway to start")
        before = memory_mb(process.pid, "VmRSS")
        started = time.perf_counter()
        response = await client.post(
            "/import", headers=tenant.headers, files={"file": ("events.csv", data)}
        )
        elapsed = time.perf_counter() - started
    assert response.status_code == 202, response.text
    assert response.json()["imported"] == rows
    peak = memory_mb(process.pid, "VmHWM")
    print(
        f"gateway RSS {before:.0f} MB idle, peak {peak:.0f} MB during a 10 MB import of "
        f"{rows} rows over HTTP in {elapsed:.2f} s ({rows / elapsed:,.0f} rows/s)"
    )
    assert peak < RSS_LIMIT_MB
    assert await published_count(settings) == rows
