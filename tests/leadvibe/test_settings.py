from __future__ import annotations

import os

import pytest

from leadvibe.settings import Settings, SettingsError

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "DATABASE_URL": "postgresql://u:s3cret@h/db"}


def test_reads_the_environment_once_with_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.topics.events == "leadvibe.events"
    assert settings.events_partitions == 6
    assert settings.allow_private_webhooks is False


@pytest.mark.parametrize("missing", ["KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"])
def test_a_missing_setting_is_named(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(SettingsError, match=missing):
        Settings.from_env(env)


def test_malformed_values_are_named() -> None:
    with pytest.raises(SettingsError, match="LEADVIBE_EVENTS_PARTITIONS"):
        Settings.from_env({**BASE, "LEADVIBE_EVENTS_PARTITIONS": "six"})
    with pytest.raises(SettingsError, match="LEADVIBE_ALLOW_PRIVATE_WEBHOOKS"):
        Settings.from_env({**BASE, "LEADVIBE_ALLOW_PRIVATE_WEBHOOKS": "maybe"})


def test_secrets_stay_out_of_the_repr() -> None:
    settings = Settings.from_env({**BASE, "LEADVIBE_WEBHOOK_SECRET": "hush"})
    assert "s3cret" not in repr(settings)
    assert "hush" not in repr(settings)
    assert settings.database_url_redacted == "postgresql://u:***@h/db"


def test_the_health_port_is_off_unless_set() -> None:
    assert Settings.from_env(BASE).health_port is None
    assert Settings.from_env(BASE | {"LEADVIBE_HEALTH_PORT": "8101"}).health_port == 8101


def test_replication_is_a_setting_one_locally() -> None:
    local = Settings.from_env(BASE)
    assert (local.replication_factor, local.min_insync_replicas) == (1, 1)
    production = Settings.from_env(
        {**BASE, "LEADVIBE_REPLICATION_FACTOR": "3", "LEADVIBE_MIN_INSYNC_REPLICAS": "2"}
    )
    assert (production.replication_factor, production.min_insync_replicas) == (3, 2)
    with pytest.raises(SettingsError, match="LEADVIBE_MIN_INSYNC_REPLICAS"):
        Settings.from_env({**BASE, "LEADVIBE_MIN_INSYNC_REPLICAS": "2"})


def test_the_gateway_instance_defaults_to_host_and_port() -> None:
    assert Settings.from_env({**BASE, "LEADVIBE_PORT": "8123"}).gateway_instance.endswith(":8123")
    named = Settings.from_env({**BASE, "LEADVIBE_GATEWAY_INSTANCE": "gw-1"})
    assert named.gateway_instance == "gw-1"


def test_trigger_cap_and_secret_rollover() -> None:
    defaults = Settings.from_env(BASE)
    assert (defaults.max_triggers_per_unit, defaults.webhook_secret_rollover) == (100, 86400)
    settings = Settings.from_env(
        {
            **BASE,
            "LEADVIBE_MAX_TRIGGERS_PER_UNIT": "5",
            "LEADVIBE_WEBHOOK_SECRET_ROLLOVER": "3600",
        }
    )
    assert (settings.max_triggers_per_unit, settings.webhook_secret_rollover) == (5, 3600)
    with pytest.raises(SettingsError, match="LEADVIBE_MAX_TRIGGERS_PER_UNIT"):
        Settings.from_env({**BASE, "LEADVIBE_MAX_TRIGGERS_PER_UNIT": "0"})


def test_the_gateways_upload_and_body_bounds() -> None:
    defaults = Settings.from_env(BASE)
    assert (defaults.uploads_per_unit, defaults.uploads_in_all) == (2, 8)
    assert (defaults.body_idle_timeout, defaults.body_timeout) == (20, 120)
    settings = Settings.from_env(
        {
            **BASE,
            "LEADVIBE_UPLOADS_PER_UNIT": "1",
            "LEADVIBE_UPLOADS_IN_ALL": "4",
            "LEADVIBE_BODY_IDLE_SECONDS": "5",
            "LEADVIBE_BODY_SECONDS": "60",
        }
    )
    assert (settings.uploads_per_unit, settings.uploads_in_all) == (1, 4)
    assert (settings.body_idle_timeout, settings.body_timeout) == (5, 60)


def test_the_live_ingest_settings() -> None:
    default = Settings.from_env(BASE)
    assert default.token_cache_seconds == 1.0
    assert default.access_log is False
    assert default.gateway_processes == 1
    assert default.ingest_buffer_bytes == 32 * 1024 * 1024
    assert default.ingest_wait_seconds == 2.0
    tuned = Settings.from_env(
        {
            **BASE,
            "LEADVIBE_TOKEN_CACHE_SECONDS": "0",
            "LEADVIBE_ACCESS_LOG": "true",
            "LEADVIBE_GATEWAY_PROCESSES": "auto",
            "LEADVIBE_INGEST_BUFFER_MB": "8",
            "LEADVIBE_INGEST_WAIT_SECONDS": "0.5",
        }
    )
    assert tuned.token_cache_seconds == 0.0
    assert tuned.access_log is True
    assert tuned.gateway_processes == len(os.sched_getaffinity(0))
    assert tuned.ingest_buffer_bytes == 8 * 1024 * 1024
    assert tuned.ingest_wait_seconds == 0.5
    with pytest.raises(SettingsError, match="LEADVIBE_TOKEN_CACHE_SECONDS"):
        Settings.from_env({**BASE, "LEADVIBE_TOKEN_CACHE_SECONDS": "soon"})
