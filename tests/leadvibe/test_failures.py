"""Whose fault a failure is, by cause: every class of failure a consumer meets."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from asyncpg import exceptions as pg
from asyncpg.exceptions._base import DataError as ClientDataError

from leadvibe.failures import Fault, RecordError, RetryBatch, classify, describe
from schemas import DecodeError, LeadEvent, decode


def _postgres(sqlstate: str) -> asyncpg.PostgresError:
    """The exception asyncpg raises for a server error with this SQLSTATE."""
    return pg.PostgresError.new({"C": sqlstate, "M": f"error {sqlstate}"})


@pytest.mark.parametrize(
    ("sqlstate", "name"),
    [
        ("22003", "NumericValueOutOfRangeError"),  # a score past int64
        ("22021", "CharacterNotInRepertoireError"),  # NUL in text
        ("22P02", "InvalidTextRepresentationError"),
        ("22P05", "UntranslatableCharacterError"),  # \u0000 in jsonb
        ("22001", "StringDataRightTruncationError"),
        ("23502", "NotNullViolationError"),
        ("23503", "ForeignKeyViolationError"),
        ("23505", "UniqueViolationError"),
        ("23514", "CheckViolationError"),
        ("21000", "CardinalityViolationError"),  # one upsert touching a row twice
        ("54000", "ProgramLimitExceededError"),  # a value too large for an index row
    ],
)
def test_what_a_records_values_cause_is_the_records_fault(sqlstate: str, name: str) -> None:
    exc = _postgres(sqlstate)
    assert type(exc).__name__ == name
    assert classify(exc) is Fault.RECORD


@pytest.mark.parametrize(
    ("sqlstate", "name"),
    [
        ("08006", "ConnectionFailureError"),
        ("08003", "ConnectionDoesNotExistError"),
        ("25006", "ReadOnlySQLTransactionError"),  # a standby, or a read-only database
        ("25P02", "InFailedSQLTransactionError"),
        ("28P01", "InvalidPasswordError"),
        ("3D000", "InvalidCatalogNameError"),  # the database is gone
        ("3F000", "InvalidSchemaNameError"),
        ("40001", "SerializationError"),
        ("40P01", "DeadlockDetectedError"),
        ("42501", "InsufficientPrivilegeError"),  # a revoked privilege
        ("42P01", "UndefinedTableError"),  # a migration not applied
        ("42703", "UndefinedColumnError"),
        ("42883", "UndefinedFunctionError"),
        ("53100", "DiskFullError"),
        ("53200", "OutOfMemoryError"),
        ("53300", "TooManyConnectionsError"),
        ("54001", "StatementTooComplexError"),
        ("55P03", "LockNotAvailableError"),
        ("57014", "QueryCanceledError"),  # statement_timeout
        ("57P01", "AdminShutdownError"),  # the postmaster was stopped or killed
        ("57P02", "CrashShutdownError"),
        ("57P03", "CannotConnectNowError"),  # the server is starting up
        ("58030", "PostgresIOError"),
        ("XX000", "InternalServerError"),
        ("XX001", "DataCorruptedError"),
        ("P0001", "RaiseError"),
        ("0A000", "FeatureNotSupportedError"),
    ],
)
def test_what_the_database_causes_is_the_systems_fault(sqlstate: str, name: str) -> None:
    exc = _postgres(sqlstate)
    assert type(exc).__name__ == name
    assert classify(exc) is Fault.SYSTEM


def test_an_unknown_sqlstate_is_the_systems_fault() -> None:
    assert classify(_postgres("ZZ999")) is Fault.SYSTEM
    assert classify(asyncpg.PostgresError("no sqlstate at all")) is Fault.SYSTEM


def test_asyncpg_client_side_errors_by_cause() -> None:
    assert classify(ClientDataError("invalid input for query argument $1")) is Fault.RECORD
    assert classify(asyncpg.InterfaceError("connection is closed")) is Fault.SYSTEM
    assert classify(pg.InternalClientError("protocol state")) is Fault.SYSTEM
    assert classify(pg.ClientConfigurationError("bad dsn")) is Fault.SYSTEM


def test_what_cannot_be_decoded_is_the_records_fault() -> None:
    with pytest.raises(DecodeError) as ours:
        decode(b"{not json", LeadEvent)
    assert classify(ours.value) is Fault.RECORD
    assert classify(msgspec.ValidationError("Expected `int`")) is Fault.RECORD
    assert classify(msgspec.DecodeError("truncated")) is Fault.RECORD
    assert classify(RecordError("refused")) is Fault.RECORD


def test_a_record_too_large_to_publish_is_the_records_fault() -> None:
    assert classify(MessageSizeTooLargeError("1200000 bytes")) is Fault.RECORD
    assert classify(RecordTooLargeError()) is Fault.RECORD


@pytest.mark.parametrize(
    "exc",
    [
        KafkaConnectionError("no broker"),
        KafkaTimeoutError(),
        NotLeaderForPartitionError(),
        TopicAuthorizationFailedError(),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(),
        OSError(28, "No space left on device"),
        TimeoutError(),
        RetryBatch("lost five races"),
    ],
)
def test_the_broker_the_network_and_timeouts_are_the_systems_fault(exc: Exception) -> None:
    assert classify(exc) is Fault.SYSTEM


@pytest.mark.parametrize(
    "exc", [KeyError("unit_id"), TypeError("NoneType"), ValueError("x"), AssertionError()]
)
def test_a_bug_stops_the_partition_rather_than_dead_lettering_it(exc: Exception) -> None:
    assert classify(exc) is Fault.SYSTEM


def test_describe_names_the_type_and_cuts_a_long_message() -> None:
    assert describe(KeyError("unit")) == "KeyError: 'unit'"
    long = describe(ValueError("x" * 10_000), limit=100)
    assert len(long) == 100
    assert long.startswith("ValueError: xxx")
    assert long.endswith("…")


def test_describe_does_not_name_the_type_twice() -> None:
    assert describe(KafkaConnectionError("no broker")) == "KafkaConnectionError: no broker"
