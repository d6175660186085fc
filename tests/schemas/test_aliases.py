from __future__ import annotations

from schemas import Alias
from schemas.aliases import by_priority, normalise, partition_key


def test_email_is_trimmed_and_lower_cased() -> None:
    assert normalise("email", "  Jane@ACME.com ") == "jane@acme.com"


def test_phone_keeps_digits_and_a_leading_plus() -> None:
    assert normalise("phone", "+1 (415) 555-0100") == "+14155550100"
    assert normalise("phone", "415.555.0100") == "4155550100"


def test_priority_order() -> None:
    aliases = (Alias("cookie", "c1"), Alias("email", "a@b.c"), Alias("external_id", "x"))
    assert [a.kind for a in by_priority(aliases)] == ["external_id", "email", "cookie"]


def test_partition_key_prefers_lead_id_then_top_alias() -> None:
    assert partition_key("ou_1", "ld_9", (Alias("email", "A@b.c"),)) == b"ou_1:ld_9"
    assert partition_key("ou_1", None, (Alias("cookie", "c"), Alias("email", "A@b.c"))) == (
        b"ou_1:email=a@b.c"
    )
