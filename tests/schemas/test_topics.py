from __future__ import annotations

from schemas import DEFAULT_TOPICS, Topics, partition_key


def test_default_names() -> None:
    assert DEFAULT_TOPICS.events == "leadvibe.events"
    assert DEFAULT_TOPICS.triggers_fired == "leadvibe.triggers.fired"
    assert DEFAULT_TOPICS.consumer_group("leadvibe-scorer") == "leadvibe-scorer"


def test_a_namespace_qualifies_topics_and_groups() -> None:
    topics = Topics("test.abc")
    assert topics.scored == "test.abc.scored"
    assert topics.consumer_group("leadvibe-scorer") == "test.abc.leadvibe-scorer"


def test_the_events_key_is_the_unit_alone() -> None:
    """Every identity of a lead (its id, each alias) gets its unit's key, hence one
    partition, and the key holds nothing about the person."""
    assert partition_key("ou_1") == b"ou_1"
    assert partition_key("ou_1") != partition_key("ou_2")
