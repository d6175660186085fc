"""Run the scorer: ``python -m scorer`` (settings from the environment; SIGTERM drains).

``LEADVIBE_SCORER_BATCH`` sets the most records per batch (default ``MAX_RECORDS``),
``LEADVIBE_SCORER_STATE_ENTRIES`` the most leads and alias owners held in memory (default
``scorer.state.CAPACITY``).
"""

from __future__ import annotations

import gc
import logging
import os
import sys

import uvloop

from leadvibe.service import configure_logging
from leadvibe.settings import Settings, SettingsError
from scorer.service import MAX_RECORDS, run
from scorer.state import CAPACITY

log = logging.getLogger("scorer")


def tune_garbage_collector() -> None:
    """Scan the objects of a batch in hand once or twice, not dozens of times.

    A batch keeps hundreds of thousands of objects alive until it commits. With the
    default thresholds they were promoted to the old generation within milliseconds, and
    full collections then scanned the whole batch again and again: about a third of the
    scorer's CPU. Young collections stay frequent (cheap, and their objects still in the
    cache); the middle generation is collected every 10 million allocations or so, by when
    the batches it held are gone. What is alive at start is frozen out of collections.
    """
    gc.freeze()
    gc.set_threshold(2000, 5000, 10)


def main() -> int:
    try:
        settings = Settings.from_env()
        max_records = int(os.environ.get("LEADVIBE_SCORER_BATCH", "") or MAX_RECORDS)
        entries = int(os.environ.get("LEADVIBE_SCORER_STATE_ENTRIES", "") or CAPACITY)
    except (SettingsError, ValueError) as exc:
        print(f"scorer: {exc}", file=sys.stderr)
        return 2
    configure_logging("scorer", settings)
    log.info(
        "scoring %s into %s as group member (batches of up to %d)",
        settings.topics.events,
        settings.database_url_redacted,
        max_records,
    )
    tune_garbage_collector()
    uvloop.run(run(settings, max_records=max_records, state_entries=entries))
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
