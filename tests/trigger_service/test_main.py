"""``python -m trigger_service`` refuses to start without what it needs, naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"LEADVIBE_WEBHOOK_SECRET": ""}, "LEADVIBE_WEBHOOK_SECRET is not set"),
        ({"LEADVIBE_WEBHOOK_TIMEOUT": "soon"}, "LEADVIBE_WEBHOOK_TIMEOUT must be a number"),
        ({"DATABASE_URL": ""}, "DATABASE_URL is not set"),
    ],
)
def test_a_missing_or_malformed_setting_stops_it_at_once(
    overrides: dict[str, str], message: str
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "LEADVIBE_WEBHOOK_SECRET": "key",
        **overrides,
    }
    done = subprocess.run(
        [sys.executable, "-m", "trigger_service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr
