"""Kafka topic names.

All names share one namespace (``leadvibe`` in production) so that a test, or a second
stack on the same broker, gets a set of topics of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    namespace: str = "leadvibe"  # DEFAULT_NAMESPACE

    @property
    def events(self) -> str:
        """Every engagement event, imported or live; keyed by unit (:func:`partition_key`).
        Kept forever."""
        return f"{self.namespace}.events"

    @property
    def scored(self) -> str:
        """One record per event the scorer applied, with the score before and after."""
        return f"{self.namespace}.scored"

    @property
    def triggers_fired(self) -> str:
        """One record per trigger firing."""
        return f"{self.namespace}.triggers.fired"

    @property
    def deadletter(self) -> str:
        """Records a consumer could not process, with the reason; the partition moved on."""
        return f"{self.namespace}.deadletter"

    def consumer_group(self, name: str) -> str:
        """The Kafka group id of a consumer named ``name`` reading these topics.

        Groups are qualified by the namespace as topics are (``test.x`` → ``test.x.name``):
        members of one group that read different namespaces would otherwise rebalance one
        another all the time. The default namespace keeps the plain name.
        """
        return name if self.namespace == DEFAULT_NAMESPACE else f"{self.namespace}.{name}"


DEFAULT_NAMESPACE = "leadvibe"
DEFAULT_TOPICS = Topics()


def partition_key(unit_id: str) -> bytes:
    """The Kafka key of an events-topic record: its unit id, and nothing about the person.

    Every event that can resolve to a lead of the unit (by lead id or by any alias) lands
    on the unit's one partition, so one scorer is the only writer of the unit's leads and
    aliases and sees its events in the order they were published (DESIGN.md decision 4,
    docs/scorer.md). The key carries no personal data, which an erasure could not remove
    from the log. The price: a unit is scored by one scorer at a time.
    """
    return unit_id.encode()
