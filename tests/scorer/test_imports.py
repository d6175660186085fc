"""The seed page's two example files, imported through POST /import and checked the way a
person would: through the read API, once the scorer has applied them."""

from __future__ import annotations

import httpx
import pytest

from leadvibe.settings import Settings
from schemas import ScoredEvent
from tests.conftest import Tenant
from tests.scorer.helpers import (
    create_ruleset,
    get_json,
    import_csv,
    lead_when,
    read_topic,
    wait_applied,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("scorer")]

BY_LEAD_ID = """lead_id,event_type,timestamp
ld_abc123,page_view,2025-06-15T10:30:00Z
ld_abc123,email_open,2025-06-16T14:00:00Z
ld_def456,demo_request,2025-06-20T09:00:00Z
"""

BY_EMAIL = """email,event_type,timestamp
jane@acme.com,webinar_attend,2025-07-01T11:00:00Z
bob@example.com,form_submit,2025-07-02T15:30:00Z
"""

RULES = {
    "page_view": 1,
    "email_open": 3,
    "demo_request": 50,
    "webinar_attend": 20,
    "form_submit": 10,
}


async def test_example_csv_by_lead_id_scores_leads_never_created_before(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    ruleset = await create_ruleset(gateway, tenant, RULES, name="engagement")
    accepted = await import_csv(gateway, tenant, BY_LEAD_ID)
    assert (accepted["imported"], accepted["errors"]) == (3, 0)
    progress = await wait_applied(gateway, tenant, accepted["import_id"])
    assert progress["applied"] == 3

    abc = await get_json(gateway, tenant, "/leads/ld_abc123")
    assert abc == {
        "lead_id": "ld_abc123",
        "score": 4,
        "engagement_scores": {ruleset: 4},
        "aliases": [],
        "event_count": 2,
        "first_event_at": "2025-06-15T10:30:00Z",
        "last_event_at": "2025-06-16T14:00:00Z",
        "created_at": abc["created_at"],
    }
    leads = await get_json(gateway, tenant, "/leads")
    assert [(lead["lead_id"], lead["score"]) for lead in leads["leads"]] == [
        ("ld_def456", 50),
        ("ld_abc123", 4),
    ]
    events = await get_json(gateway, tenant, "/events")
    assert [(e["lead_id"], e["event_type"], e["timestamp"]) for e in events["events"]] == [
        ("ld_def456", "demo_request", "2025-06-20T09:00:00Z"),
        ("ld_abc123", "email_open", "2025-06-16T14:00:00Z"),
        ("ld_abc123", "page_view", "2025-06-15T10:30:00Z"),
    ]
    first = events["events"][2]
    assert (first["source"], first["import_id"], first["row"], first["points"]) == (
        "import",
        accepted["import_id"],
        2,
        1,
    )


async def test_example_csv_by_email_creates_leads_found_by_their_email(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    await create_ruleset(gateway, tenant, RULES)
    accepted = await import_csv(gateway, tenant, BY_EMAIL, skip_triggers=True)
    await wait_applied(gateway, tenant, accepted["import_id"])

    jane = await get_json(gateway, tenant, "/leads", email="Jane@Acme.com")
    bob = await get_json(gateway, tenant, "/leads", email="bob@example.com")
    assert jane["lead_id"] != bob["lead_id"]
    assert (jane["score"], jane["aliases"]) == (20, [{"kind": "email", "value": "jane@acme.com"}])
    assert (bob["score"], bob["event_count"]) == (10, 1)

    # Imported again, the same people are found again: no new leads, scores add up.
    again = await import_csv(gateway, tenant, BY_EMAIL, skip_triggers=True)
    await wait_applied(gateway, tenant, again["import_id"])
    jane = await lead_when(gateway, tenant, f"/leads/{jane['lead_id']}", event_count=2)
    assert jane["score"] == 40
    leads = await get_json(gateway, tenant, "/leads")
    assert len(leads["leads"]) == 2

    scored = await read_topic(settings, settings.topics.scored, ScoredEvent, 4)
    assert all(s.skip_triggers and s.source == "import" for s in scored)
    assert sum(s.lead_created for s in scored) == 2


async def test_every_imported_row_is_applied_and_unicode_spellings_are_one_lead(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Rows whose identities name no one are row errors, so ``applied`` reaches ``imported``."""
    csv = (
        "email,phone,event_type\n"
        ",n/a,call\n"  # names no one: a row error, not an event the scorer cannot apply
        "\u200b,+,call\n"  # neither
        "Jane@Acme.com,,open\n"
        "\uff4aane@acme.com,,open\n"  # full-width j: the same address (NFKC)
        "ja\u200bne@ACME.com,,open\n"  # a zero-width space: the same address
        ",+1 415²,call\n"  # a superscript two is no digit: +1415
        ",+1415,call\n"
    )
    response = await gateway.post(
        "/import", files={"file": ("events.csv", csv.encode())}, headers=tenant.headers
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (accepted["imported"], accepted["errors"]) == (5, 2)
    assert [e["row"] for e in accepted["error_rows"]] == [2, 3]
    progress = await wait_applied(gateway, tenant, accepted["import_id"])
    assert progress["applied"] == progress["imported"] == 5
    leads = await get_json(gateway, tenant, "/leads")
    counts = sorted((lead["aliases"][0]["value"], lead["event_count"]) for lead in leads["leads"])
    assert counts == [("+1415", 2), ("jane@acme.com", 3)]
    found = await get_json(gateway, tenant, "/leads", email="JANE\u200b@acme.com")
    assert found["aliases"] == [{"kind": "email", "value": "jane@acme.com"}]
