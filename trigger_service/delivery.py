"""Webhook delivery: signed POSTs from the durable queue of firings, retried with backoff.

Runs beside the consume loop, never inside its transaction: the consumer only records a
firing as pending (and NOTIFYs on commit); this worker claims due firings, posts them
concurrently, and logs every attempt. Claims go round-robin across the units with due
firings, and a unit holds at most ``per_unit`` of the ``concurrency`` slots (a trigger at
most ``per_trigger``), for at most ``timeout`` seconds each: a unit whose receivers hang
or whose backlog is huge cannot delay the webhooks of the others. Failed firings wait out
their backoff in the table, not in memory: scoring and other triggers' webhooks go on.
A restarted service finds its pending firings where it left them; one that was claimed
when the service died is due again when its lease ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

from leadvibe.settings import SettingsError
from trigger_service import store
from trigger_service.store import AttemptResult, Delivery, DeliveryStatus, FiringRow
from trigger_service.webhooks import (
    ATTEMPT_HEADER,
    USER_AGENT,
    EventRef,
    LeadRef,
    RefusedDestination,
    TriggerRef,
    WebhookBody,
    checked_addresses,
    encode_body,
    legacy_signing_secret,
    resolve,
    signing_secret,
    webhook_headers,
)

log = logging.getLogger(__name__)

# Errors of the database connection: the worker waits and carries on.
_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard webhooks are tried. The defaults retry for about three and a half hours."""

    timeout: float = 10.0
    """Seconds an attempt may take in all (resolving, connecting, sending, the answer)."""
    max_attempts: int = 12
    backoff_base: float = 10.0
    """Seconds before the second attempt; each later wait doubles, up to ``backoff_max``."""
    backoff_max: float = 3600.0
    concurrency: int = 32
    """Attempts in flight at once, in all."""
    per_unit: int = 4
    """Attempts in flight at once for one unit, so one tenant cannot take all (free slots
    go round-robin across units, the least busy first)."""
    per_trigger: int = 2
    """Attempts in flight at once for one trigger, so one slow receiver cannot take all of
    its unit's (a unit's triggers take turns the same way)."""
    idle_poll: float = 2.0
    """Longest sleep between looks at the queue when nothing wakes the worker."""

    @property
    def lease(self) -> float:
        """Seconds a claim lasts: a claimed firing never recorded is due again after this."""
        return 2 * self.timeout + 1

    def retry_delay(self, attempt: int, jitter: float = 0.0) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (from 1).

        ``jitter`` in [0, 1) lengthens the wait by up to a tenth, so that firings that
        failed together do not all come back in the same instant.
        """
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** (attempt - 1))
        return delay * (1 + jitter / 10)

    def after(self, attempt: int, ok: bool, jitter: float = 0.0) -> tuple[DeliveryStatus, float]:
        """The firing's status after attempt ``attempt``, and the wait before the next."""
        if ok:
            return "delivered", 0.0
        if attempt >= self.max_attempts:
            return "failed", 0.0
        return "pending", self.retry_delay(attempt, jitter)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeliveryPolicy:
        """The policy with overrides from ``LEADVIBE_WEBHOOK_*`` variables (see the README)."""
        env = os.environ if environ is None else environ
        default = cls()

        def number(name: str, value: float, *, whole: bool = False) -> Any:
            raw = env.get(name, "").strip()
            if not raw:
                return value
            try:
                parsed = int(raw) if whole else float(raw)
            except ValueError:
                kind = "an integer" if whole else "a number"
                raise SettingsError(f"{name} must be {kind}, got {raw!r}") from None
            if parsed <= 0:
                raise SettingsError(f"{name} must be above 0, got {raw!r}")
            return parsed

        return cls(
            timeout=number("LEADVIBE_WEBHOOK_TIMEOUT", default.timeout),
            max_attempts=number("LEADVIBE_WEBHOOK_MAX_ATTEMPTS", default.max_attempts, whole=True),
            backoff_base=number("LEADVIBE_WEBHOOK_RETRY_BASE", default.backoff_base),
            backoff_max=number("LEADVIBE_WEBHOOK_RETRY_MAX", default.backoff_max),
            concurrency=number("LEADVIBE_WEBHOOK_CONCURRENCY", default.concurrency, whole=True),
            per_trigger=number("LEADVIBE_WEBHOOK_PER_TRIGGER", default.per_trigger, whole=True),
            per_unit=number("LEADVIBE_WEBHOOK_PER_UNIT", default.per_unit, whole=True),
        )


def webhook_body(firing: FiringRow) -> WebhookBody:
    """The body of a firing's webhook: built from the firing alone, so every attempt matches."""
    return WebhookBody(
        id=firing.firing_id,
        type="trigger.fired",
        unit_id=firing.unit_id,
        trigger=TriggerRef(
            id=firing.trigger_id,
            score_threshold=firing.score_threshold,
            fire_mode="once" if firing.once else "always",
        ),
        lead=LeadRef(id=firing.lead_id),
        event=EventRef(id=firing.event_id, type=firing.event_type, timestamp=firing.occurred_at),
        score_before=firing.score_before,
        score_after=firing.score_after,
        fired_at=firing.fired_at,
    )


class _CheckedBackend(AsyncNetworkBackend):
    """Connects only to addresses the settings allow, checked as the connection is made."""

    def __init__(self, inner: AsyncNetworkBackend, *, allow_private: bool) -> None:
        self._inner = inner
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> AsyncNetworkStream:
        addresses = await resolve(host, port, timeout=timeout or 10.0)
        address = checked_addresses(addresses, allow_private=self._allow_private, host=host)[0]
        # TLS still verifies and sends the host name: httpcore passes it to start_tls.
        stream: AsyncNetworkStream = await self._inner.connect_tcp(
            address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )
        return stream

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> AsyncNetworkStream:
        raise RefusedDestination("webhooks are not delivered over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def webhook_client(*, allow_private: bool, policy: DeliveryPolicy) -> httpx.AsyncClient:
    """The HTTP client of deliveries: no proxies from the environment, no redirects."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend; its pool is rebuilt around the checking one.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=policy.concurrency,
        max_keepalive_connections=policy.concurrency,
        keepalive_expiry=30.0,
        network_backend=_CheckedBackend(httpcore.AnyIOBackend(), allow_private=allow_private),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=policy.timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


async def _wait_any(events: Iterable[asyncio.Event], timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class Deliverer:
    """Claims due firings, posts them, records every attempt; until stopped.

    Attempts finished since the last look are recorded together, in one statement, and
    the queue is looked at again when one finishes, when the consumer NOTIFYs new
    firings, or after ``idle_poll`` seconds at the latest.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: httpx.AsyncClient,
        *,
        policy: DeliveryPolicy,
        service_key: str,
    ) -> None:
        self.pool = pool
        self.client = client
        self.policy = policy
        self.service_key = service_key
        self._running: dict[asyncio.Task[AttemptResult], Delivery] = {}
        self._results: list[AttemptResult] = []
        self._wake = asyncio.Event()
        self._last_unit = ""
        """The unit the last claim served last: units take turns from the one after it."""

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then let the attempts in flight finish."""
        try:
            async with self._listening():
                while not stop.is_set():
                    try:
                        await self._step(stop)
                    except _DB_ERRORS as exc:
                        log.warning("delivery queue unavailable (%s); retrying", exc)
                        await _wait_any([stop], self.policy.idle_poll)
            await self._drain()
            with suppress(*_DB_ERRORS):
                await self._record()
        finally:
            await self._abandon()

    async def _step(self, stop: asyncio.Event) -> None:
        """Record what finished, claim what is due; sleep until woken or something is due."""
        self._wake.clear()
        await self._record()
        room = self.policy.concurrency - len(self._running)
        if room > 0 and await self._claim(room) == room:
            return  # there may be more due: claim again at once
        timeout = self.policy.idle_poll
        if not self._running:  # else the next attempt to finish wakes the worker
            async with self.pool.acquire() as conn:
                until_due = await store.seconds_until_due(conn)
            if until_due is not None:
                # Due now yet not claimed: another instance holds it; look again shortly.
                timeout = min(max(until_due, 0.05), timeout)
        await _wait_any([self._wake, stop], timeout)

    async def _claim(self, room: int) -> int:
        in_flight = Counter(d.firing.trigger_id for d in self._running.values())
        unit_in_flight = Counter(d.firing.unit_id for d in self._running.values())
        async with self.pool.acquire() as conn:
            claimed = await store.claim(
                conn,
                limit=room,
                per_trigger=self.policy.per_trigger,
                in_flight=in_flight,
                lease_seconds=self.policy.lease,
                per_unit=self.policy.per_unit,
                unit_in_flight=unit_in_flight,
                after_unit=self._last_unit,
            )
        deliveries = claimed.deliveries
        if claimed.last_unit is not None:
            self._last_unit = claimed.last_unit  # the next claim starts with the unit after
        for delivery in deliveries:
            task = asyncio.create_task(self._attempt(delivery))
            self._running[task] = delivery
            task.add_done_callback(self._finished)
        return len(deliveries)

    def _finished(self, task: asyncio.Task[AttemptResult]) -> None:
        self._running.pop(task, None)
        self._wake.set()
        if task.cancelled():
            return
        if task.exception() is not None:  # a bug: the firing is due again when its lease ends
            log.error("webhook attempt failed unexpectedly", exc_info=task.exception())
            return
        self._results.append(task.result())

    async def _record(self) -> None:
        """Log the finished attempts and move their firings on, in one statement."""
        if not self._results:
            return
        results, self._results = self._results, []
        try:
            async with self.pool.acquire() as conn:
                await store.record_attempts(conn, results)
        except BaseException:
            self._results[:0] = results  # kept for the next try (their leases still hold)
            raise
        for result in results:
            if result.error is None:
                continue
            log.warning(
                "webhook %s attempt %d failed (%s); %s",
                result.firing_id,
                result.attempt,
                result.error,
                "giving up" if result.status == "failed" else "will retry",
            )

    @asynccontextmanager
    async def _listening(self) -> AsyncIterator[None]:
        """Woken by the consumer's NOTIFY when firings commit; polling covers a lost one."""

        def notified(*_: object) -> None:
            self._wake.set()

        async with self.pool.acquire() as conn:
            await conn.add_listener(store.FIRINGS_CHANNEL, notified)
            try:
                yield
            finally:
                with suppress(*_DB_ERRORS):
                    await conn.remove_listener(store.FIRINGS_CHANNEL, notified)

    async def _drain(self) -> None:
        if self._running:
            log.info("waiting for %d webhook attempt(s) in flight", len(self._running))
            await asyncio.wait(list(self._running), timeout=self.policy.timeout + 5)

    async def _abandon(self) -> None:
        """Cancel what is still in flight and make it due again now, for the next start."""
        if not self._running:
            return
        abandoned = {d.firing.firing_id for d in self._running.values()}
        for task in list(self._running):
            task.cancel()
        with suppress(*_DB_ERRORS):
            await store.release(self.pool, abandoned)

    def signing_headers(self, delivery: Delivery, body: bytes, timestamp: float) -> dict[str, str]:
        """Standard Webhooks headers signed with each of the trigger's active secrets."""
        trigger_id = delivery.firing.trigger_id
        return webhook_headers(
            msg_id=delivery.firing.firing_id,
            timestamp=timestamp,
            body=body,
            secrets=[
                signing_secret(self.service_key, trigger_id, v) for v in delivery.secret_versions
            ],
            legacy_secret=legacy_signing_secret(self.service_key, trigger_id)
            if delivery.legacy_signature
            else None,
        )

    async def _attempt(self, delivery: Delivery) -> AttemptResult:
        """POST the firing once; what happened, and what the firing's status becomes."""
        firing = delivery.firing
        body = encode_body(webhook_body(firing))
        started_at = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            **self.signing_headers(delivery, body, started_at.timestamp()),
            ATTEMPT_HEADER: str(delivery.attempt),
        }
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            async with (
                asyncio.timeout(self.policy.timeout),
                self.client.stream(
                    "POST", delivery.webhook_url, content=body, headers=headers
                ) as response,
            ):
                status_code = response.status_code  # the body is not read: no use for it
            if not 200 <= status_code < 300:
                error = f"the receiver answered HTTP {status_code}"
        except RefusedDestination as exc:
            error = f"refused: {exc}"
        except TimeoutError:
            error = f"no answer within {self.policy.timeout:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration_ms = round((time.monotonic() - started) * 1000)
        status, delay = self.policy.after(delivery.attempt, error is None, random.random())
        return AttemptResult(
            firing_id=firing.firing_id,
            attempt=delivery.attempt,
            url=delivery.webhook_url,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=status_code,
            error=error,
            status=status,
            next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay)
            if status == "pending"
            else None,
        )
