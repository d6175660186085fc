"""Webhook signing and where webhooks may go: pure functions, no network."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from trigger_service.webhooks import (
    RefusedDestination,
    address_problem,
    check_url,
    checked_addresses,
    signature,
    signing_secret,
    url_problem,
)


def test_each_trigger_has_its_own_stable_signing_secret() -> None:
    a = signing_secret("service-key", "trg_a")
    assert a.startswith("whsec_")
    assert a == signing_secret("service-key", "trg_a")
    assert a != signing_secret("service-key", "trg_b")
    assert a != signing_secret("other-key", "trg_a")


def test_signature_is_the_hmac_sha256_of_the_body() -> None:
    body = b'{"id":"fir_1"}'
    expected = hmac.new(b"whsec_x", body, hashlib.sha256).hexdigest()
    assert signature("whsec_x", body) == f"sha256={expected}"


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


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("0.0.0.0", "private"),
        ("224.0.0.1", "non-public"),  # multicast
        ("fd00::1", "private"),
    ],
)
def test_non_public_addresses_are_refused_unless_allowed(address: str, kind: str) -> None:
    problem = address_problem(address, allow_private=False)
    assert problem is not None
    assert f"a {kind} address" in problem
    assert address_problem(address, allow_private=True) is None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(address, allow_private=False) is None


def test_a_host_with_any_private_address_is_refused() -> None:
    with pytest.raises(RefusedDestination, match=r"10\.0\.0\.1"):
        checked_addresses(["93.184.216.34", "10.0.0.1"], allow_private=False)
    assert checked_addresses(["93.184.216.34"], allow_private=False) == ["93.184.216.34"]


async def test_check_url_resolves_the_host() -> None:
    await check_url("http://127.0.0.1:9/hook", allow_private=True)
    await check_url("http://93.184.216.34/hook", allow_private=False)
    with pytest.raises(RefusedDestination, match="loopback"):
        await check_url("http://localhost:8080/hook", allow_private=False)
    with pytest.raises(RefusedDestination, match="link-local"):
        await check_url("http://[fe80::1]/hook", allow_private=False)
    with pytest.raises(RefusedDestination, match="does not resolve"):
        await check_url("http://no-such-host.invalid/hook", allow_private=True)
