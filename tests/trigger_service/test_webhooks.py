"""Webhook signing and where webhooks may go: pure functions, no network (but DNS of
literals and ``localhost``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from trigger_service.webhooks import (
    ID_HEADER,
    LEGACY_SIGNATURE_HEADER,
    NOT_PUBLIC,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RefusedDestination,
    address_problem,
    check_url,
    checked_addresses,
    legacy_signing_secret,
    signing_key,
    signing_secret,
    standard_secret,
    url_problem,
    webhook_headers,
)

BODY = b'{"id":"fir_1","type":"trigger.fired"}'


def test_each_trigger_has_its_own_stable_signing_secrets() -> None:
    a = signing_secret("service-key", "trg_a")
    assert a.startswith("whsec_")
    assert base64.b64decode(a.removeprefix("whsec_"), validate=True) == signing_key(
        "service-key", "trg_a"
    )
    assert a == signing_secret("service-key", "trg_a")
    assert a != signing_secret("service-key", "trg_b")
    assert a != signing_secret("other-key", "trg_a")
    rotated = {signing_secret("service-key", "trg_a", v) for v in range(5)}
    assert len(rotated) == 5


def test_version_0_keeps_the_key_of_the_scheme_before() -> None:
    # What the gateway showed before migration 0006, computed as it was then.
    digest = hmac.new(b"service-key", b"trigger:trg_a", "sha256").digest()
    old = "whsec_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert legacy_signing_secret("service-key", "trg_a") == old
    # The standard form has the same key bytes, and is what the old text converts to.
    assert standard_secret(old) == signing_secret("service-key", "trg_a")
    assert standard_secret(signing_secret("k", "t", 3)) == signing_secret("k", "t", 3)


def test_the_old_text_of_a_secret_does_not_decode_in_the_library() -> None:
    """Why the secrets' encoding changed: URL-safe base64 decodes to other key bytes."""
    for n in range(20):  # some digests happen to have no '-' or '_'
        old = legacy_signing_secret("service-key", f"trg_{n}")
        if "-" in old or "_" in old.removeprefix("whsec_"):
            break
    headers = webhook_headers(
        msg_id="fir_1",
        timestamp=time.time(),
        body=BODY,
        secrets=[signing_secret("service-key", f"trg_{n}")],
    )
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(BODY, headers)
    Webhook(standard_secret(old)).verify(BODY, headers)


def test_headers_verify_with_the_standardwebhooks_library() -> None:
    secret = signing_secret("service-key", "trg_a")
    now = time.time()
    headers = webhook_headers(msg_id="fir_1", timestamp=now, body=BODY, secrets=[secret])
    assert headers[ID_HEADER] == "fir_1"
    assert headers[TIMESTAMP_HEADER] == str(int(now))
    assert headers[SIGNATURE_HEADER].startswith("v1,")
    assert LEGACY_SIGNATURE_HEADER not in headers
    assert Webhook(secret).verify(BODY, headers) == {"id": "fir_1", "type": "trigger.fired"}
    # The signature covers the id, the timestamp and the body.
    for changed in (
        {ID_HEADER: "fir_2"},
        {TIMESTAMP_HEADER: str(int(now) - 1)},
    ):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(BODY, {**headers, **changed})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"fir_1", b"fir_9"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing_secret("service-key", "trg_b")).verify(BODY, headers)


def test_a_captured_delivery_is_refused_later() -> None:
    secret = signing_secret("service-key", "trg_a")
    old = webhook_headers(msg_id="fir_1", timestamp=time.time() - 3600, body=BODY, secrets=[secret])
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, old)


def test_during_a_rollover_both_secrets_verify() -> None:
    new, previous = (signing_secret("k", "trg_a", v) for v in (1, 0))
    headers = webhook_headers(
        msg_id="fir_1", timestamp=time.time(), body=BODY, secrets=[new, previous]
    )
    signatures = headers[SIGNATURE_HEADER].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    Webhook(new).verify(BODY, headers)
    Webhook(previous).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing_secret("k", "trg_a", 2)).verify(BODY, headers)


def test_the_legacy_header_is_the_old_body_signature() -> None:
    old = legacy_signing_secret("k", "trg_a")
    headers = webhook_headers(
        msg_id="fir_1",
        timestamp=time.time(),
        body=BODY,
        secrets=[signing_secret("k", "trg_a")],
        legacy_secret=old,
    )
    expected = hmac.new(old.encode(), BODY, hashlib.sha256).hexdigest()
    assert headers[LEGACY_SIGNATURE_HEADER] == f"sha256={expected}"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.example.com/leadvibe", None),
        ("http://203.0.113.7:8080/x?y=1", None),
        ("ftp://example.com/", "must be an http or https URL"),
        ("example.com/hook", "must be an http or https URL"),
        ("https://user:pw@example.com/", "must not carry credentials"),
        ("https:///nohost", "has no host"),
        ("https://example.com/" + "a" * 3000, "is longer than 2048 characters"),
    ],
)
def test_url_form(url: str, problem: str | None) -> None:
    found = url_problem(url)
    assert found == problem or (problem is not None and found is not None and problem in found)


# Loopback and RFC 1918: refused, unless LEADVIBE_ALLOW_PRIVATE_WEBHOOKS (local receivers).
LOCAL = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.5.4", "private"),
    ("172.31.255.255", "private"),
    ("192.168.0.10", "private"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
]

# Refused whatever the settings.
ALWAYS = [
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
    ("::ffff:a9fe:a9fe", "IPv4-mapped link-local"),
    # NAT64, well-known prefix: judged by the IPv4 address it translates to.
    ("64:ff9b::a9fe:a9fe", "NAT64 of a link-local IPv4 address"),
    ("64:ff9b::169.254.169.254", "NAT64 of a link-local IPv4 address"),
    ("64:ff9b::7f00:1", "NAT64 of a loopback IPv4 address"),
    ("64:ff9b::a00:1", "NAT64 of a private IPv4 address"),
    ("64:ff9b::c0a8:101", "NAT64 of a private IPv4 address"),
    ("64:ff9b:1::a00:1", "local-use NAT64"),
    ("64:ff9b:1:ffff::1", "local-use NAT64"),
    # 6to4 of a non-public IPv4 address.
    ("2002:a00:1::1", "6to4 of a private IPv4 address"),
    ("2002:7f00:1::", "6to4 of a loopback IPv4 address"),
    ("2002:a9fe:a9fe::1", "6to4 of a link-local IPv4 address"),
    ("2002:c0a8:101::1", "6to4 of a private IPv4 address"),
    # IPv4-compatible (deprecated): never a real destination.
    ("::10.0.0.1", "IPv4-compatible (deprecated)"),
    ("::127.0.0.1", "IPv4-compatible (deprecated)"),
    ("::169.254.169.254", "IPv4-compatible (deprecated)"),
    ("::8.8.8.8", "IPv4-compatible (deprecated)"),
    # Teredo, whatever it embeds.
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001::a00:1", "Teredo"),
    # Multicast, reserved, unspecified, shared, documentation, benchmarking and the rest.
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("0.0.0.0", "this-network"),
    ("0.1.2.3", "this-network"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("100.64.0.1", "shared (carrier-grade NAT)"),
    ("192.0.0.9", "IETF protocol assignment"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "discard-only"),
    ("2001:2::1", "IETF protocol assignment"),
    ("fc00::1", "unique-local"),
    ("fd00::1", "unique-local"),
    ("fec0::1", "site-local (deprecated)"),
    ("4000::1", "reserved"),
    ("::2:1", "IPv4-compatible (deprecated)"),
]


@pytest.mark.parametrize(("address", "kind"), LOCAL)
def test_local_addresses_are_refused_unless_allowed(address: str, kind: str) -> None:
    assert address_problem(address, allow_private=False) == kind
    assert address_problem(address, allow_private=True) is None


@pytest.mark.parametrize(("address", "kind"), ALWAYS)
def test_special_purpose_addresses_are_always_refused(address: str, kind: str) -> None:
    assert address_problem(address, allow_private=False) == kind
    assert address_problem(address, allow_private=True) == kind


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "::ffff:8.8.8.8",  # IPv4-mapped public
        "64:ff9b::808:808",  # NAT64 of a public address: how IPv6-only networks reach IPv4
        "2002:808:808::1",  # 6to4 of a public address
        "2606:2800:220:1:248:1893:25c8:1946",
        "2a00:1450:4001:81a::200e",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(address, allow_private=False) is None


def test_a_refusal_names_no_address_and_the_log_does(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="trigger_service.webhooks"),
        pytest.raises(RefusedDestination) as refused,
    ):
        checked_addresses(
            ["93.184.216.34", "169.254.169.254"], allow_private=True, host="hooks.example.com"
        )
    message = str(refused.value)
    assert "not a public address" in message
    assert "169.254" not in message
    assert "link-local" not in message
    assert "93.184" not in message
    assert "169.254.169.254" in caplog.text
    assert "link-local" in caplog.text
    assert checked_addresses(["93.184.216.34"], allow_private=False) == ["93.184.216.34"]


async def test_check_url_resolves_the_host() -> None:
    await check_url("http://127.0.0.1:9/hook", allow_private=True)
    await check_url("http://93.184.216.34/hook", allow_private=False)
    with pytest.raises(RefusedDestination) as refused:
        await check_url("http://localhost:8080/hook", allow_private=False)
    assert str(refused.value) == f"host 'localhost' {NOT_PUBLIC}"  # not what it resolves to
    for url in (
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/hook",
        "http://[64:ff9b::a9fe:a9fe]/hook",
        "http://[::ffff:169.254.169.254]/hook",
    ):
        with pytest.raises(RefusedDestination) as refused:
            await check_url(url, allow_private=True)
        assert str(refused.value) == f"host {httpx.URL(url).host!r} {NOT_PUBLIC}"
    with pytest.raises(RefusedDestination, match="does not resolve") as unresolved:
        await check_url("http://no-such-host.invalid/hook", allow_private=True)
    assert "Errno" not in str(unresolved.value)
