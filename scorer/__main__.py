"""Run the scorer: ``python -m scorer`` (settings from the environment; SIGTERM drains).

``LEADVIBE_SCORER_BATCH`` sets the most records per batch (default ``MAX_RECORDS``).
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

log = logging.getLogger("scorer")


def tune_garbage_collector() -> None:
    """Collect cycles rarely: a batch allocates hundreds of thousands of short-lived objects.

    With the default thresholds a collection runs every 700 allocations, and the older
    generations (which grow with every batch in hand) are scanned again and again: about
    half of the scorer's CPU. The scorer's records and rows do not form reference cycles,
    so they are freed when the batch ends either way; what is alive at start is frozen out
    of every collection.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


def main() -> int:
    configure_logging()
    try:
        settings = Settings.from_env()
        max_records = int(os.environ.get("LEADVIBE_SCORER_BATCH", "") or MAX_RECORDS)
    except (SettingsError, ValueError) as exc:
        print(f"scorer: {exc}", file=sys.stderr)
        return 2
    log.info(
        "scoring %s into %s as group member (batches of up to %d)",
        settings.topics.events,
        settings.database_url_redacted,
        max_records,
    )
    tune_garbage_collector()
    uvloop.run(run(settings, max_records=max_records))
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
