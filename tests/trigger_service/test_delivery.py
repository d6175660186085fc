"""The delivery policy and the webhook body: pure parts of webhook delivery."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from leadvibe.settings import SettingsError
from trigger_service.delivery import DeliveryPolicy, webhook_body
from trigger_service.store import FiringRow
from trigger_service.webhooks import encode_body

FIRING = FiringRow(
    firing_id="fir_1",
    unit_id="ou_a",
    trigger_id="trg_a",
    lead_id="ld_a",
    event_id="ev_a",
    event_type="demo_request",
    occurred_at=datetime(2025, 6, 15, 10, 30, tzinfo=UTC),
    score_threshold=100,
    score_before=90,
    score_after=140,
    once=True,
    fired_at=datetime(2025, 6, 15, 10, 31, 2, 500000, tzinfo=UTC),
)


def test_backoff_doubles_up_to_the_cap_and_stops_at_the_limit() -> None:
    policy = DeliveryPolicy(backoff_base=10, backoff_max=60, max_attempts=5)
    assert [policy.retry_delay(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]
    assert policy.retry_delay(1, jitter=0.5) == pytest.approx(10.5)
    assert policy.after(1, ok=False) == ("pending", 10)
    assert policy.after(4, ok=False) == ("pending", 60)
    assert policy.after(5, ok=False) == ("failed", 0)
    assert policy.after(3, ok=True) == ("delivered", 0)


def test_the_default_schedule_retries_for_hours() -> None:
    policy = DeliveryPolicy()
    total = sum(policy.retry_delay(n) for n in range(1, policy.max_attempts))
    assert 3 * 3600 < total < 4 * 3600


def test_policy_from_the_environment() -> None:
    policy = DeliveryPolicy.from_env(
        {"LEADVIBE_WEBHOOK_TIMEOUT": "2.5", "LEADVIBE_WEBHOOK_MAX_ATTEMPTS": "3"}
    )
    assert (policy.timeout, policy.max_attempts) == (2.5, 3)
    assert policy.backoff_base == DeliveryPolicy().backoff_base
    fair = DeliveryPolicy.from_env(
        {"LEADVIBE_WEBHOOK_PER_UNIT": "3", "LEADVIBE_WEBHOOK_PER_TRIGGER": "1"}
    )
    assert (fair.per_unit, fair.per_trigger) == (3, 1)
    with pytest.raises(SettingsError, match="LEADVIBE_WEBHOOK_PER_UNIT must be above 0"):
        DeliveryPolicy.from_env({"LEADVIBE_WEBHOOK_PER_UNIT": "0"})
    with pytest.raises(SettingsError, match="LEADVIBE_WEBHOOK_MAX_ATTEMPTS must be an integer"):
        DeliveryPolicy.from_env({"LEADVIBE_WEBHOOK_MAX_ATTEMPTS": "many"})
    with pytest.raises(SettingsError, match="LEADVIBE_WEBHOOK_TIMEOUT must be above 0"):
        DeliveryPolicy.from_env({"LEADVIBE_WEBHOOK_TIMEOUT": "0"})


def test_the_body_is_built_from_the_firing_alone() -> None:
    body = encode_body(webhook_body(FIRING))
    assert body == encode_body(webhook_body(FIRING))  # every attempt sends the same bytes
    assert msgspec.json.decode(body) == {
        "id": "fir_1",
        "type": "trigger.fired",
        "unit_id": "ou_a",
        "trigger": {"id": "trg_a", "score_threshold": 100, "fire_mode": "once"},
        "lead": {"id": "ld_a"},
        "event": {"id": "ev_a", "type": "demo_request", "timestamp": "2025-06-15T10:30:00Z"},
        "score_before": 90,
        "score_after": 140,
        "fired_at": "2025-06-15T10:31:02.500000Z",
    }
