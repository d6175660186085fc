"""What a webhook is: its body, its signature, and where it may be sent.

Used by the trigger service to deliver, and by the gateway to check a trigger's URL and
show its signing secret when the trigger is created or its secret rotated.

**Signing** follows Standard Webhooks (https://www.standardwebhooks.com), so that a
receiver verifies with an off-the-shelf library: ``webhook-id`` (the firing id, the same
on every retry), ``webhook-timestamp`` (the attempt's, in Unix seconds) and
``webhook-signature``, ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` once for each
active secret, separated by spaces. Every trigger has signing secrets of its own, so
that the receiver of one trigger cannot forge the webhooks of another. A secret is
derived from the service-wide key ``LEADVIBE_WEBHOOK_SECRET``, the trigger id and the
secret's version (an HMAC), so no signing secret is stored in the database: a trigger
row holds only its current version and, during a rollover, the previous one and when it
expires. Version 0 is the secret of the scheme before (the same key bytes, then shown as
URL-safe base64 without padding); triggers created before migration 0006 also keep the
old ``X-LeadVibe-Signature`` header while that secret is active (docs/triggers.md).

**Destinations.** A webhook URL is ``http`` or ``https``, without credentials. A URL whose
host resolves to any address in a special-purpose range (private, loopback, link-local,
shared, documentation, benchmarking, reserved, multicast, and the IPv6 forms that embed
an IPv4 address: IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) is refused: by the
gateway when the trigger is created or changed, and again when each delivery connects,
to the very address that was checked (a DNS answer that changed since creation cannot
point a webhook at an internal service). ``LEADVIBE_ALLOW_PRIVATE_WEBHOOKS`` allows
loopback and RFC 1918 addresses (local receivers) and nothing else: link-local addresses
such as the cloud metadata service are refused whatever the settings. What the tenant is
told is that the host "is not a public address"; which address and why goes to the log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import math
import socket
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import httpx
import msgspec
from standardwebhooks import Webhook

log = logging.getLogger(__name__)

ID_HEADER = "webhook-id"
"""The firing id, also ``id`` in the body: a receiver de-duplicates on it (retries resend it)."""
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
LEGACY_SIGNATURE_HEADER = "X-LeadVibe-Signature"
"""The signature of the scheme before (body only), kept for triggers made before 0006."""
ATTEMPT_HEADER = "X-LeadVibe-Attempt"
USER_AGENT = "LeadVibe-Webhooks/1"
MAX_URL_LENGTH = 2048
SECRET_PREFIX = "whsec_"


def signing_key(service_key: str, trigger_id: str, version: int = 0) -> bytes:
    """The key bytes of version ``version`` of the trigger's signing secret.

    Version 0 is derived as before migration 0006, so a trigger's first secret keeps its
    key bytes across the change of scheme; a rotation moves to the next version.
    """
    message = f"trigger:{trigger_id}" if version == 0 else f"trigger:{trigger_id}:v{version}"
    return hmac.new(service_key.encode(), message.encode(), "sha256").digest()


def signing_secret(service_key: str, trigger_id: str, version: int = 0) -> str:
    """The secret as a receiver configures it: ``whsec_`` + standard base64 of the key."""
    return SECRET_PREFIX + base64.b64encode(signing_key(service_key, trigger_id, version)).decode()


def legacy_signing_secret(service_key: str, trigger_id: str) -> str:
    """Version 0 as it was shown before 0006: URL-safe base64 without padding."""
    key = signing_key(service_key, trigger_id, 0)
    return SECRET_PREFIX + base64.urlsafe_b64encode(key).decode().rstrip("=")


def standard_secret(secret: str) -> str:
    """A secret of the scheme before (URL-safe, unpadded) re-encoded as Standard Webhooks'.

    The key bytes are the same; a standard secret is returned unchanged.
    """
    encoded = secret.removeprefix(SECRET_PREFIX).replace("-", "+").replace("_", "/")
    return SECRET_PREFIX + encoded + "=" * (-len(encoded) % 4)


def legacy_signature(legacy_secret: str, body: bytes) -> str:
    """The ``X-LeadVibe-Signature`` of the scheme before: ``sha256=<hex HMAC of the body>``,
    keyed with the text of the secret as it was shown."""
    return "sha256=" + hmac.new(legacy_secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(
    *,
    msg_id: str,
    timestamp: float,
    body: bytes,
    secrets: Sequence[str],
    legacy_secret: str | None = None,
) -> dict[str, str]:
    """The signing headers of one attempt: one ``v1`` signature per active secret."""
    when = datetime.fromtimestamp(math.floor(timestamp), UTC)
    text = body.decode()
    headers = {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(math.floor(timestamp)),
        SIGNATURE_HEADER: " ".join(Webhook(s).sign(msg_id, when, text) for s in secrets),
    }
    if legacy_secret is not None:
        headers[LEGACY_SIGNATURE_HEADER] = legacy_signature(legacy_secret, body)
    return headers


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
    """A webhook URL or address that may not receive webhooks; the message says why.

    The message is shown to the tenant: it never names a resolved address.
    """


NOT_PUBLIC = "is not a public address; webhooks go to public addresses only"


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


_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# The kinds LEADVIBE_ALLOW_PRIVATE_WEBHOOKS allows (local receivers); never link-local.
_LOCAL_KINDS = frozenset({"loopback", "private"})

# IANA's IPv4 Special-Purpose Address Registry (RFC 6890 and later), every entry refused,
# including the few marked globally reachable (AS112, AMT): no webhook receiver is there.
_IPV4_SPECIAL: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "this-network"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "shared (carrier-grade NAT)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "IETF protocol assignment"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.31.196.0/24"), "AS112"),
    (_V4("192.52.193.0/24"), "AMT"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("192.175.48.0/24"), "AS112"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),  # includes the broadcast address
)

_MAPPED = _V6("::ffff:0:0/96")
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")
_GLOBAL_UNICAST = _V6("2000::/3")

# IANA's IPv6 Special-Purpose Address Registry, and the deprecated ranges; the first
# match names the kind. The forms that embed an IPv4 address are judged before this.
_IPV6_SPECIAL: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("::/96"), "IPv4-compatible (deprecated)"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001::/32"), "Teredo"),
    (_V6("2001::/23"), "IETF protocol assignment"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("5f00::/16"), "segment routing"),
    (_V6("fc00::/7"), "unique-local"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated)"),
    (_V6("ff00::/8"), "multicast"),
)


def _ipv4_problem(ip: ipaddress.IPv4Address, *, allow_private: bool) -> str | None:
    for network, kind in _IPV4_SPECIAL:
        if ip in network:
            return None if allow_private and kind in _LOCAL_KINDS else kind
    return None if ip.is_global else "non-public"


def _ipv6_problem(ip: ipaddress.IPv6Address, *, allow_private: bool) -> str | None:
    if ip in _MAPPED:  # how a dual-stack socket writes an IPv4 address: judged as one
        assert ip.ipv4_mapped is not None
        problem = _ipv4_problem(ip.ipv4_mapped, allow_private=allow_private)
        return problem and f"IPv4-mapped {problem}"
    # Translated or tunnelled IPv4: the IPv4 address must be public, whatever the settings.
    if ip in _NAT64:
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        problem = _ipv4_problem(embedded, allow_private=False)
        return problem and f"NAT64 of a {problem} IPv4 address"
    if ip.sixtofour is not None:
        problem = _ipv4_problem(ip.sixtofour, allow_private=False)
        if problem:
            return f"6to4 of a {problem} IPv4 address"
    for network, kind in _IPV6_SPECIAL:
        if ip in network:
            return None if allow_private and kind in _LOCAL_KINDS else kind
    if ip not in _GLOBAL_UNICAST:
        return "reserved"
    return None if ip.is_global else "non-public"


def address_problem(address: str, *, allow_private: bool) -> str | None:
    """What kind of non-public address ``address`` is, or None if webhooks may go there.

    For the log only: a tenant is told no more than :data:`NOT_PUBLIC`.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope id is no part of it
    if isinstance(ip, ipaddress.IPv6Address):
        return _ipv6_problem(ip, allow_private=allow_private)
    return _ipv4_problem(ip, allow_private=allow_private)


async def resolve(host: str, port: int, *, timeout: float) -> list[str]:
    """The addresses ``host`` resolves to (an IP literal resolves to itself)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=timeout
        )
    except (OSError, TimeoutError) as exc:
        log.info("webhook host %r does not resolve: %r", host, exc)
        raise RefusedDestination(f"host {host!r} does not resolve") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(
    addresses: Iterable[str], *, allow_private: bool, host: str = ""
) -> list[str]:
    """``addresses`` if every one of them is allowed; RefusedDestination otherwise.

    All must pass: a host that resolves to a public and a private address is refused.
    The refusal names neither the address nor its kind; the log does.
    """
    checked = list(addresses)
    if not checked:
        raise RefusedDestination(f"host {host!r} does not resolve")
    for address in checked:
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            log.warning("webhook host %r refused: it resolves to %s, %s", host, address, problem)
            raise RefusedDestination(f"host {host!r} {NOT_PUBLIC}")
    return checked


async def check_url(url: str, *, allow_private: bool, timeout: float = 5.0) -> None:
    """Raise RefusedDestination, saying why, unless ``url`` may receive webhooks."""
    problem = url_problem(url)
    if problem:
        raise RefusedDestination(problem)
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = parsed.raw_host.decode("ascii")
    addresses = await resolve(host, port, timeout=timeout)
    checked_addresses(addresses, allow_private=allow_private, host=host)
