"""A deterministic CSV of historical events, as a customer's export would look.

The same seed and size always give the same bytes: lead ids, e-mail aliases, a mix of
eight event types, timestamps over one year, and one bad row in every thousand.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

EVENT_TYPES = (
    "page_view",
    "email_open",
    "email_click",
    "form_submit",
    "webinar_attend",
    "demo_request",
    "pricing_view",
    "unsubscribe",
)
# Page views dominate, as in real engagement data.
EVENT_WEIGHTS = (40, 20, 10, 8, 6, 3, 10, 3)
HEADER = "lead_id,email,event_type,timestamp\r\n"
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
BAD_ROW_EVERY = 1000


def generate_csv(size_bytes: int, *, seed: int = 42, leads: int = 20_000) -> bytes:
    """CSV text of at most ``size_bytes`` bytes (CRLF line ends, header first)."""
    rng = random.Random(seed)
    out = [HEADER]
    total = len(HEADER)
    n = 0
    while True:
        n += 1
        lead = rng.randrange(leads)
        event_type = rng.choices(EVENT_TYPES, EVENT_WEIGHTS)[0]
        when = YEAR_START + timedelta(seconds=rng.randrange(365 * 24 * 3600))
        timestamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        if n % BAD_ROW_EVERY == 0:
            timestamp = "2025-13-01"  # not RFC 3339: counted in errors, the rest go on
        # Half the rows name the lead, half only its e-mail alias.
        lead_id = f"ld_bench{lead:06d}" if rng.random() < 0.5 else ""
        line = f"{lead_id},lead{lead}@example.com,{event_type},{timestamp}\r\n"
        if total + len(line) > size_bytes:
            return "".join(out).encode()
        out.append(line)
        total += len(line)
