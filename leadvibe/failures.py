"""Whose fault a failure is: the record's, or the system's. A pure function of the failure.

A consume loop sends a record to the dead letters only for a **record fault**: something
about that record's content makes it impossible to decode, validate or store, so trying
it again can never succeed. Everything else is a **system fault**: the connection, a
permission, the schema, a timeout, a full disk, the broker. Those say nothing about the
record, and dead-lettering for them would lose, one by one, every record that arrived
while the system was broken. So a system fault stops the partition instead: nothing is
dead-lettered, the stored offsets do not move, and the batch is tried again from them
after a pause until the system is repaired.

The classification goes by *cause*, not by an allow-list of exception types:

- Postgres errors by the class of their SQLSTATE: 21 (cardinality), 22 (data exception:
  a value out of range, invalid text, a NUL character...) and 23 (integrity: a foreign
  key, a check, a NOT NULL) are the data's; so is 54000 (a value too large for an index
  row or a jsonb string). Every other class, including an unknown one, is the system's:
  08 connection, 25 transaction state, 28 authorisation, 3D/3F missing database or
  schema, 40 serialization failure and deadlock, 42 privilege and missing table or
  column, 53 resources (disk full, out of memory), 54 other limits, 55 lock not available,
  57 operator intervention (statement timeout, admin shutdown, starting up), 58 I/O, XX.
- asyncpg's client-side ``DataError`` (a value the driver cannot encode) is the data's;
  its other ``InterfaceError`` s (a closed connection, a misuse) are the system's.
- ``DecodeError`` and msgspec's decode and validation errors are the data's.
- A record the handler publishes that is too large for Kafka (``MessageSizeTooLargeError``
  from the producer's size check, ``RecordTooLargeError`` from the broker) is the data's;
  every other ``KafkaError`` is the broker's, hence the system's.
- ``OSError`` and timeouts are the system's; so is :class:`RetryBatch`.
- A handler marks a record as bad by returning it as ``Rejected``, or by raising
  :class:`RecordError`.

**An unexpected exception (a bug) is a system fault.** A ``KeyError`` or ``TypeError``
from a handler cannot be told apart from a bug that every record would hit. Counting it
as the record's would dead-letter the whole partition record by record (silent bulk
loss, the failure this module exists to prevent); counting it as the system's stops the
partition, says so in the log and in ``/health``, and loses nothing: the fix is a deploy,
after which the partition continues from its stored offsets. The price: a bug that only
one record's shape triggers stops that record's partition, for every tenant on it, until
the fix ships. A visible stop is preferred to silent loss.
"""

from __future__ import annotations

import enum
from typing import Final

import asyncpg
import msgspec
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from asyncpg.exceptions._base import DataError as ClientDataError  # not re-exported by asyncpg

from schemas import DecodeError


class Fault(enum.Enum):
    RECORD = "record"
    """The record can never be processed: it goes to the dead letters."""
    SYSTEM = "system"
    """Something outside the record is wrong: stop, and retry from the stored offsets."""


class RecordError(Exception):
    """Raised by a handler for a record it can never process (the record's fault)."""


class RetryBatch(Exception):
    """Raised by a handler to have its batch retried whole after a pause.

    For a condition that is not the records' fault and that time resolves, such as a
    race with another consumer that a handler could not settle in a few attempts.
    """


RECORD_SQLSTATE_CLASSES: Final = frozenset({"21", "22", "23"})
"""SQLSTATE classes that a record's values cause: cardinality, data exception, integrity."""

RECORD_SQLSTATES: Final = frozenset({"54000"})
"""Single SQLSTATEs that a record's values cause (54000: a value too large for an index
row, a jsonb string or an array), whatever their class says of the others."""

_RECORD_TYPES: Final = (
    RecordError,
    DecodeError,
    msgspec.DecodeError,  # includes ValidationError
    ClientDataError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)


def classify(exc: BaseException) -> Fault:
    """Whose fault ``exc`` is (see the module docstring for the rules and why)."""
    if isinstance(exc, _RECORD_TYPES):  # before KafkaError and InterfaceError: subclasses
        return Fault.RECORD
    if isinstance(exc, asyncpg.PostgresError):
        return _by_sqlstate(getattr(exc, "sqlstate", None))
    # OSError, timeouts, KafkaError, other InterfaceErrors, RetryBatch; and anything else,
    # which is a bug: stop and say so rather than dead-letter (see the module docstring).
    return Fault.SYSTEM


def _by_sqlstate(sqlstate: str | None) -> Fault:
    if not sqlstate:
        return Fault.SYSTEM
    if sqlstate in RECORD_SQLSTATES or sqlstate[:2] in RECORD_SQLSTATE_CLASSES:
        return Fault.RECORD
    return Fault.SYSTEM


def describe(exc: BaseException, limit: int = 500) -> str:
    """``Type: message``, cut to ``limit`` characters (a message may quote a huge value)."""
    name, message = type(exc).__name__, str(exc)
    text = message if message.startswith(name) else f"{name}: {message}"  # aiokafka names it
    return text if len(text) <= limit else text[: limit - 1] + "…"
