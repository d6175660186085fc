"""The consume loop's stopped partitions, without a broker: what /health reads, and a log
line per change of state rather than per retry."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asyncpg import exceptions as pg

from leadvibe.consuming import ConsumeLoop
from schemas import LeadEvent


def _loop() -> ConsumeLoop[LeadEvent]:
    none: Any = None
    return ConsumeLoop(
        consumer=none,
        producer=none,
        pool=none,
        topic="leadvibe.events",
        deadletter_topic="leadvibe.deadletter",
        group="g",
        record_type=LeadEvent,
        handler=none,
    )


def _revoked() -> Exception:
    return pg.PostgresError.new({"C": "42501", "M": "permission denied for table leads"})


def test_a_stop_is_logged_once_however_often_it_is_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = _loop()
    with caplog.at_level(logging.INFO, logger="leadvibe.consuming"):
        for _ in range(5):
            loop._stop([2], _revoked())
            loop.backoff.next_delay()
        assert len(caplog.records) == 1
        assert caplog.records[0].levelno == logging.ERROR
        assert "InsufficientPrivilegeError: permission denied" in caplog.messages[0]
        assert "nothing dead-lettered" in caplog.messages[0]

        [stopped] = loop.stopped.values()
        assert list(loop.stopped) == [2]
        assert stopped.reason == "InsufficientPrivilegeError: permission denied for table leads"
        since = stopped.since

        loop._stop([2], ConnectionRefusedError(111, "Connection refused"))  # a new cause
        assert len(caplog.records) == 2
        assert loop.stopped[2].since == since  # stopped since the first failure

        loop._resumed({2})
        assert loop.stopped == {}
        assert loop.backoff.attempts == 0
        assert len(caplog.records) == 3
        assert "leadvibe.events[2] moving again" in caplog.messages[2]


def test_a_bug_is_logged_with_its_traceback_a_dependency_without(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = _loop()
    with caplog.at_level(logging.INFO, logger="leadvibe.consuming"):
        loop._stop([0], _revoked())
        loop._stop([1], KeyError("unit_id"))
    assert not caplog.records[0].exc_info
    assert caplog.records[1].exc_info


def test_a_partition_that_moves_again_leaves_the_others_stopped() -> None:
    loop = _loop()
    loop._stop([0, 1], _revoked())
    loop.backoff.next_delay()
    loop._resumed({0})
    assert list(loop.stopped) == [1]
    assert loop.backoff.attempts == 1  # still failing somewhere: keep backing off
