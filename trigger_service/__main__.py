"""Run the trigger service: ``python -m trigger_service`` (settings from the environment)."""

from __future__ import annotations

import logging
import sys

import uvloop

from leadvibe.service import configure_logging
from leadvibe.settings import Settings, SettingsError
from trigger_service.delivery import DeliveryPolicy
from trigger_service.service import run

log = logging.getLogger("trigger_service")


def main() -> int:
    try:
        settings = Settings.from_env()
        policy = DeliveryPolicy.from_env()
        if not settings.webhook_secret:
            raise SettingsError("LEADVIBE_WEBHOOK_SECRET is not set; webhooks cannot be signed")
    except SettingsError as exc:
        print(f"trigger_service: {exc}", file=sys.stderr)
        return 2
    configure_logging("trigger_service", settings)
    log.info("consuming %s, database %s", settings.topics.scored, settings.database_url_redacted)
    uvloop.run(run(settings, policy=policy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
