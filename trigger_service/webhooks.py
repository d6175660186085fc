"""What a webhook is: its body, its signature, and where it may be sent.

Used by the trigger service to deliver, and by the gateway to check a trigger's URL and
show its signing secret when the trigger is created.

**Signing.** Every trigger has a signing secret of its own, so that the receiver of one
trigger cannot forge the webhooks of another (of the same organisation or not). It is
derived from the service-wide key ``LEADVIBE_WEBHOOK_SECRET`` and the trigger id (an
HMAC), so no signing secret is stored in the database. The gateway shows it once, in the
response that creates the trigger. The ``X-LeadVibe-Signature`` header is
``sha256=`` + the hex HMAC-SHA256 of the exact body bytes under that secret.

**Destinations.** A webhook URL is ``http`` or ``https``, without credentials. Unless
``LEADVIBE_ALLOW_PRIVATE_WEBHOOKS`` is set, a URL whose host resolves to any address that
is not public (private, loopback, link-local, shared, reserved, multicast) is refused:
by the gateway when the trigger is created or changed, and again when each delivery
connects, to the very address that was checked (a DNS answer that changed since creation
cannot point a webhook at an internal service).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Iterable
from datetime import datetime

import httpx
import msgspec

SIGNATURE_HEADER = "X-LeadVibe-Signature"
FIRING_ID_HEADER = "X-LeadVibe-Firing-Id"
"""The firing's id, also in the body: a receiver de-duplicates on it (retries resend it)."""
ATTEMPT_HEADER = "X-LeadVibe-Attempt"
USER_AGENT = "LeadVibe-Webhooks/1"
MAX_URL_LENGTH = 2048


def signing_secret(service_key: str, trigger_id: str) -> str:
    """The trigger's own signing secret, derived from the service-wide key."""
    digest = hmac.new(service_key.encode(), b"trigger:" + trigger_id.encode(), "sha256").digest()
    return "whsec_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signature(secret: str, body: bytes) -> str:
    """The ``X-LeadVibe-Signature`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class TriggerRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    score_threshold: int
    fire_mode: str


class LeadRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str


class EventRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    timestamp: datetime


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON a receiver gets: one firing, the same bytes on every attempt."""

    id: str
    """The firing id: the same on every retry; receivers de-duplicate on it."""
    type: str
    unit_id: str
    trigger: TriggerRef
    lead: LeadRef
    event: EventRef
    score_before: int
    score_after: int
    fired_at: datetime


_encoder = msgspec.json.Encoder()


def encode_body(body: WebhookBody) -> bytes:
    return _encoder.encode(body)


class RefusedDestination(Exception):
    """A webhook URL or address that the settings do not allow; the message says why."""


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook URL, or None if its form is fine."""
    if len(url) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "is not a valid URL"
    if parsed.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if not parsed.host:
        return "has no host"
    if parsed.userinfo:
        return "must not carry credentials; receivers authenticate webhooks by their signature"
    return None


def address_problem(address: str, *, allow_private: bool) -> str | None:
    """Why a webhook may not connect to ``address``, or None if it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope id is no part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_private or (ip.is_global and not ip.is_multicast):
        return None
    kind = (
        "loopback"
        if ip.is_loopback
        else "link-local"
        if ip.is_link_local
        else "private"
        if ip.is_private
        else "non-public"
    )
    return f"resolves to {address}, a {kind} address; webhooks go to public addresses only"


async def resolve(host: str, port: int, *, timeout: float) -> list[str]:
    """The addresses ``host`` resolves to (an IP literal resolves to itself)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=timeout
        )
    except (OSError, TimeoutError) as exc:
        raise RefusedDestination(f"host {host!r} does not resolve ({exc})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(addresses: Iterable[str], *, allow_private: bool) -> list[str]:
    """``addresses`` if every one of them is allowed; RefusedDestination otherwise.

    All must pass: a host that resolves to a public and a private address is refused.
    """
    checked = list(addresses)
    if not checked:
        raise RefusedDestination("host resolves to no address")
    for address in checked:
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            raise RefusedDestination(problem)
    return checked


async def check_url(url: str, *, allow_private: bool, timeout: float = 5.0) -> None:
    """Raise RefusedDestination, saying why, unless ``url`` may receive webhooks."""
    problem = url_problem(url)
    if problem:
        raise RefusedDestination(problem)
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = parsed.raw_host.decode("ascii")
    checked_addresses(await resolve(host, port, timeout=timeout), allow_private=allow_private)
