"""Settings, read once from the environment into a frozen object.

A missing required setting fails at start with its name. Secrets never appear in reprs.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from leadvibe.logs import LOG_FORMATS, LogFormat
from schemas.topics import DEFAULT_TOPICS, Topics


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names it."""


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str
    database_url: str = field(repr=False)
    topics: Topics = DEFAULT_TOPICS
    """Topic names; LEADVIBE_TOPIC_NAMESPACE (default ``leadvibe``) sets their prefix."""
    events_partitions: int = 6
    """Partitions of the events and scored topics, used when creating them."""
    webhook_secret: str = field(default="", repr=False)
    """HMAC key for webhook signatures."""
    allow_private_webhooks: bool = False
    """Allow webhook URLs on loopback or RFC 1918 addresses (local runs and tests)."""
    health_port: int | None = None
    """LEADVIBE_HEALTH_PORT: where a consumer process serves ``GET /health`` on 127.0.0.1
    (unset: it serves none)."""
    replication_factor: int = 1
    """Replicas of each topic partition, used when creating topics (production: 3)."""
    min_insync_replicas: int = 1
    """Replicas that must have a record before an acks=all send succeeds (production: 2)."""
    gateway_instance: str = ""
    """This gateway's name among several (host:port by default); see docs/api.md."""
    max_triggers_per_unit: int = 100
    """The most triggers a unit may have (LEADVIBE_MAX_TRIGGERS_PER_UNIT)."""
    webhook_secret_rollover: int = 86400
    """Seconds a rotated-out signing secret keeps signing (LEADVIBE_WEBHOOK_SECRET_ROLLOVER)."""
    uploads_per_unit: int = 2
    """Imports a unit may have in progress at once (LEADVIBE_UPLOADS_PER_UNIT); 429 beyond."""
    uploads_in_all: int = 8
    """Imports the gateway takes at once from all units (LEADVIBE_UPLOADS_IN_ALL); 429 beyond."""
    body_idle_timeout: float = 20.0
    """Seconds a request body may send nothing (LEADVIBE_BODY_IDLE_SECONDS); 408 beyond."""
    body_timeout: float = 120.0
    """Seconds of waiting for one request body in all (LEADVIBE_BODY_SECONDS); 408 beyond."""
    token_cache_seconds: float = 1.0
    """Seconds a gateway process trusts a token's principal without asking the database
    (LEADVIBE_TOKEN_CACHE_SECONDS, 0: ask every time): a revocation or a unit switch
    takes effect in every process within it."""
    access_log: bool = False
    """A log line per request (LEADVIBE_ACCESS_LOG; off: at high rates it costs more than
    the request)."""
    ingest_buffer_bytes: int = 32 * 1024 * 1024
    """Bytes of live events a gateway process holds unacknowledged by Kafka
    (LEADVIBE_INGEST_BUFFER_MB, default 32); past it requests wait, then get 429."""
    gateway_processes: int = 1
    """Gateway processes sharing the port (LEADVIBE_GATEWAY_PROCESSES: a number, or ``auto``
    for one per core this process may run on; ``make run`` and compose: ``auto``); see
    ingest_gateway/processes.py."""
    ingest_wait_seconds: float = 2.0
    """Seconds a live request waits for room in that buffer before its 429
    (LEADVIBE_INGEST_WAIT_SECONDS)."""
    log_format: LogFormat = "text"
    """LEADVIBE_LOG_FORMAT: ``text`` lines (default) or ``json`` lines (leadvibe/logs.py)."""

    @property
    def database_url_redacted(self) -> str:
        return _redact(self.database_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise SettingsError(f"{name} is not set; see README.md, Configuration")
            return value

        def integer(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
            if value < 1:
                raise SettingsError(f"{name} must be at least 1, got {value}")
            return value

        def seconds(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
            if not 0 <= value <= 3600:
                raise SettingsError(f"{name} must be between 0 and 3600 seconds, got {raw!r}")
            return value

        def boolean(name: str) -> bool:
            raw = env.get(name, "").strip().lower()
            if raw in ("", "0", "false", "no"):
                return False
            if raw in ("1", "true", "yes"):
                return True
            raise SettingsError(f"{name} must be true or false, got {raw!r}")

        log_format = env.get("LEADVIBE_LOG_FORMAT", "").strip().lower() or "text"
        if log_format not in LOG_FORMATS:
            raise SettingsError(f"LEADVIBE_LOG_FORMAT must be text or json, got {log_format!r}")
        replication_factor = integer("LEADVIBE_REPLICATION_FACTOR", 1)
        min_insync_replicas = integer("LEADVIBE_MIN_INSYNC_REPLICAS", 1)
        if min_insync_replicas > replication_factor:
            raise SettingsError(
                f"LEADVIBE_MIN_INSYNC_REPLICAS ({min_insync_replicas}) is above "
                f"LEADVIBE_REPLICATION_FACTOR ({replication_factor}): "
                "no acks=all send could ever succeed"
            )
        return cls(
            kafka_bootstrap_servers=required("KAFKA_BOOTSTRAP_SERVERS"),
            database_url=required("DATABASE_URL"),
            topics=Topics(env.get("LEADVIBE_TOPIC_NAMESPACE", "").strip() or "leadvibe"),
            events_partitions=integer("LEADVIBE_EVENTS_PARTITIONS", 6),
            webhook_secret=env.get("LEADVIBE_WEBHOOK_SECRET", ""),
            allow_private_webhooks=boolean("LEADVIBE_ALLOW_PRIVATE_WEBHOOKS"),
            health_port=integer("LEADVIBE_HEALTH_PORT", 0) or None,
            replication_factor=replication_factor,
            min_insync_replicas=min_insync_replicas,
            gateway_instance=env.get("LEADVIBE_GATEWAY_INSTANCE", "").strip()
            or f"{socket.gethostname()}:{env.get('LEADVIBE_PORT', '').strip() or '8000'}",
            max_triggers_per_unit=integer("LEADVIBE_MAX_TRIGGERS_PER_UNIT", 100),
            webhook_secret_rollover=integer("LEADVIBE_WEBHOOK_SECRET_ROLLOVER", 86400),
            uploads_per_unit=integer("LEADVIBE_UPLOADS_PER_UNIT", 2),
            uploads_in_all=integer("LEADVIBE_UPLOADS_IN_ALL", 8),
            body_idle_timeout=integer("LEADVIBE_BODY_IDLE_SECONDS", 20),
            body_timeout=integer("LEADVIBE_BODY_SECONDS", 120),
            token_cache_seconds=seconds("LEADVIBE_TOKEN_CACHE_SECONDS", 1.0),
            access_log=boolean("LEADVIBE_ACCESS_LOG"),
            ingest_buffer_bytes=integer("LEADVIBE_INGEST_BUFFER_MB", 32) * 1024 * 1024,
            gateway_processes=len(os.sched_getaffinity(0))
            if env.get("LEADVIBE_GATEWAY_PROCESSES", "").strip().lower() == "auto"
            else integer("LEADVIBE_GATEWAY_PROCESSES", 1),
            ingest_wait_seconds=seconds("LEADVIBE_INGEST_WAIT_SECONDS", 2.0),
            log_format="json" if log_format == "json" else "text",
        )
