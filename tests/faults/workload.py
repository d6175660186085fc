"""What the fault suite imports, what it should score, and the poison it puts on the topic.

Pure values: the CSV, the rulesets, each lead's expected score computed here from the rows
and the rules (not read back from the system), the trigger threshold, the poison records.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import Alias, LeadEvent, encode

ROWS = 100_000
LEADS = 10_000
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
SECOND_HALF = datetime(2025, 7, 1, tzinfo=UTC)
EVENT_TYPES = ("page_view", "email_open", "email_click", "form_submit", "webinar_attend", "demo")
WEIGHTS = (40, 25, 12, 8, 10, 5)

RULESETS: list[dict[str, Any]] = [
    {
        "name": "engagement",
        "rules": [
            {"event_type": "page_view", "points": 1},
            {"event_type": "email_open", "points": 2},
            {"event_type": "email_click", "points": 3},
            {"event_type": "form_submit", "points": 8},
            {"event_type": "demo", "points": 20},
        ],
    },
    {
        # Dated: counts for events of the second half of the year only.
        "name": "second-half",
        "starts_at": SECOND_HALF.isoformat().replace("+00:00", "Z"),
        "rules": [
            {"event_type": "webinar_attend", "points": 12},
            {"event_type": "page_view", "points": 1},
        ],
    },
]

FIRING_SHARE = 0.05
"""About this share of the leads reach the trigger's threshold, and fire once each."""


@dataclass(frozen=True)
class Row:
    lead_id: str
    email: str
    event_type: str
    timestamp: datetime


def rows(seed: int = 12) -> list[Row]:
    rng = random.Random(seed)
    made = []
    for _ in range(ROWS):
        lead = rng.randrange(LEADS)
        # Half the rows also name the lead's e-mail: its alias is attached on the way.
        email = f"lead{lead}@example.com" if rng.random() < 0.5 else ""
        event_type = rng.choices(EVENT_TYPES, WEIGHTS)[0]
        when = YEAR_START + timedelta(seconds=rng.randrange(365 * 24 * 3600))
        made.append(Row(f"ld_f{lead:05d}", email, event_type, when))
    return made


def csv_file(rows: list[Row]) -> bytes:
    lines = ["lead_id,email,event_type,timestamp"]
    lines += [
        f"{r.lead_id},{r.email},{r.event_type},{r.timestamp.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        for r in rows
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def points(row: Row) -> int:
    """The row's points under RULESETS, computed here: a ruleset with ``starts_at`` counts
    for events from that time on."""
    total = 0
    for ruleset in RULESETS:
        starts = ruleset.get("starts_at")
        if starts is not None and row.timestamp < datetime.fromisoformat(starts):
            continue
        total += sum(r["points"] for r in ruleset["rules"] if r["event_type"] == row.event_type)
    return total


def expected_scores(rows: list[Row]) -> dict[str, int]:
    scores: Counter[str] = Counter()
    for row in rows:
        scores[row.lead_id] += points(row)
    return dict(scores)


def threshold(scores: dict[str, int]) -> int:
    """A score that about FIRING_SHARE of the leads reach."""
    ranked = sorted(scores.values(), reverse=True)
    return ranked[int(len(ranked) * FIRING_SHARE)] + 1


# Poison: records the scorer cannot apply, each of which must end in the dead letters
# (and nothing else).

UNDECODABLE = b"\xff\xfe not an event at all \x00"

OVERFLOW_LEAD = "ld_overflow"
OVERFLOW_SCORE = 2**63 - 10
"""The score the overflow lead is given before the import: one more event overflows a
bigint (the largest score Postgres and the scorer can store)."""


def huge_event(unit_id: str, size: int = 1_000_000) -> bytes:
    """An event of about ``size`` bytes whose aliases all normalise to nothing (phones
    without a digit): it has no identity, so the scorer rejects it, and its dead letter,
    the original bytes and more, would be over Kafka's 1 MiB limit were it not cut."""
    no_digit = Alias("phone", "not available")  # 40 bytes as JSON
    event = LeadEvent(
        event_id="ev_poison_huge",
        unit_id=unit_id,
        aliases=(no_digit,) * (size // 41),
        event_type="page_view",
        timestamp=SECOND_HALF,
        source="api",
    )
    return encode(event)


def overflowing_event(unit_id: str) -> bytes:
    """A demo for the lead whose score is OVERFLOW_SCORE: 20 points more do not fit."""
    event = LeadEvent(
        event_id="ev_poison_overflow",
        unit_id=unit_id,
        lead_id=OVERFLOW_LEAD,
        event_type="demo",
        timestamp=SECOND_HALF,
        source="api",
    )
    return encode(event)
