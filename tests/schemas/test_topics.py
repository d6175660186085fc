from __future__ import annotations

from schemas import DEFAULT_TOPICS, Topics


def test_default_names() -> None:
    assert DEFAULT_TOPICS.events == "leadvibe.events"
    assert DEFAULT_TOPICS.triggers_fired == "leadvibe.triggers.fired"
    assert DEFAULT_TOPICS.consumer_group("leadvibe-scorer") == "leadvibe-scorer"


def test_a_namespace_qualifies_topics_and_groups() -> None:
    topics = Topics("test.abc")
    assert topics.scored == "test.abc.scored"
    assert topics.consumer_group("leadvibe-scorer") == "test.abc.leadvibe-scorer"
