"""What each endpoint takes and answers, stated once per endpoint function.

The paths and methods are not here: :mod:`.document` takes them from the app's routes and
finds each route's :class:`Operation` by its endpoint function, so a path renamed in a
route list is renamed in the document, and a route without an entry here is an error.
The error codes common to a kind of input are added by :mod:`.document`: 401 and 503
``database_unavailable`` for every endpoint behind a token, ``invalid_path`` for a path
parameter, ``invalid_query`` for a query parameter, and those of reading a JSON body
(:mod:`ingest_gateway.bodies`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ingest_gateway import docs_pages, health, imports, ingest, leads, org_units, rulesets, triggers
from ingest_gateway.auth import set_active_org_unit
from ingest_gateway.openapi import records as r
from ingest_gateway.paging import DEFAULT_LIMIT, MAX_LIMIT, MAX_PAGE
from schemas import ALIAS_KINDS

BodyKind = Literal["json", "multipart"]


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "header"]
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Answer:
    """A successful answer: its record (None: no body) and what it means."""

    description: str
    record: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    """Response headers it may carry: name → description."""
    media_type: str = "application/json"


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    answers: dict[int, Answer]
    errors: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Error codes by status, beyond those every input of the kind has (see above)."""
    description: str = ""
    body: Any = None
    """The request body: a record, or a JSON Schema (a dict)."""
    body_kind: BodyKind = "json"
    body_errors: bool = True
    """The body is read by ``read_json`` (its 400/408/413/415 apply)."""
    params: tuple[Param, ...] = ()
    path_params: dict[str, str] = field(default_factory=dict)
    """Path parameter → description."""
    auth: bool = True
    error_record: Any = r.Error


def _query(name: str, description: str, **schema: Any) -> Param:
    return Param(name, "query", {"type": "string", **schema}, description)


PAGE: Final = (
    Param(
        "page",
        "query",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
        "The page, from 1.",
    ),
    Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        f"Items per page, at most {MAX_LIMIT}.",
    ),
)
IDENTIFIER: Final = {"pattern": r.NO_CONTROL, "maxLength": 512}
IDEMPOTENCY_KEY: Final = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
    "1 to 255 printable ASCII characters (a UUID): a retry under the same key gives the "
    "same ids and is counted once.",
)
FIELDS_400: Final = ("invalid_field", "invalid_body")
KAFKA_503: Final = ("kafka_unavailable",)

IMPORT_FORM: Final = {
    "type": "object",
    "properties": {
        "file": {
            "type": "string",
            "contentMediaType": "text/csv",
            "description": "The CSV, at most 10 MB: lead_id, event_type (required), "
            "timestamp, and the alias columns external_id, email, phone, cookie, social.",
        },
        "skip_triggers": {"type": "string", "enum": ["true", "false", "1", "0"]},
    },
    "required": ["file"],
}

OPERATIONS: Final[dict[Callable[..., Any], Operation]] = {
    health.readiness: Operation(
        "Readiness: whether Postgres and Kafka answer",
        "health",
        {
            200: Answer("Both answer.", r.Health),
            503: Answer("One is down; the checks say which.", r.Health, {"Retry-After": "s"}),
        },
        auth=False,
    ),
    health.liveness: Operation(
        "Liveness: the process answers", "health", {200: Answer("It does.", r.Live)}, auth=False
    ),
    docs_pages.openapi_json: Operation(
        "This document",
        "documentation",
        {200: Answer("The OpenAPI 3.1 document.", {"type": "object"})},
        auth=False,
    ),
    docs_pages.docs_page: Operation(
        "The document as a page to read and try (Swagger UI)",
        "documentation",
        {200: Answer("An HTML page.", {"type": "string"}, media_type="text/html")},
        auth=False,
    ),
    org_units.list_org_units: Operation(
        "The units of the token's organisation, and which one is active",
        "units",
        {200: Answer("Oldest first.", r.OrgUnits)},
    ),
    org_units.create_org_unit: Operation(
        "Create a unit of the token's organisation",
        "units",
        {201: Answer("The new unit (the token stays on its active unit).", r.OrgUnit)},
        {400: FIELDS_400, 409: ("name_taken",)},
        body=r.NewOrgUnit,
    ),
    set_active_org_unit: Operation(
        "Switch the token's active unit",
        "units",
        {200: Answer("Every request of the token acts in this unit from now on.", r.ActiveUnitSet)},
        {400: ("invalid_field",), 403: ("forbidden",)},
        body=r.ActiveUnit,
    ),
    imports.post_import: Operation(
        "Import a CSV file of events",
        "events",
        {
            202: Answer(
                "Kafka has every event of the file.",
                r.ImportAccepted,
                {"Idempotent-Replayed": "true when answered from an earlier import"},
            )
        },
        {
            400: (
                "missing_file",
                "missing_column",
                "duplicate_column",
                "empty_file",
                "not_utf8",
                "not_text",
                "invalid_header",
                "header_too_large",
                "line_too_long",
                "invalid_multipart",
                "invalid_skip_triggers",
                "conflicting_skip_triggers",
                "invalid_idempotency_key",
            ),
            408: ("body_timeout",),
            413: ("file_too_large", "field_too_large", "payload_too_large", "too_many_rows"),
            415: ("unsupported_media_type",),
            429: ("too_many_uploads",),
            503: KAFKA_503,
        },
        description="See docs/api.md, POST /import, for the file's rules and limits.",
        body=IMPORT_FORM,
        body_kind="multipart",
        body_errors=False,
        params=(
            Param(
                "skip_triggers",
                "query",
                {"type": "string", "enum": ["true", "false", "1", "0"]},
                "Its events fire no trigger (any case; must agree with the form field).",
            ),
            IDEMPOTENCY_KEY,
        ),
    ),
    imports.get_import: Operation(
        "An import's counts, its error rows, and how far the scorer applied it",
        "events",
        {200: Answer("The import.", r.ImportStatus)},
        {404: ("not_found",)},
        path_params={"import_id": "The import_id of the 202."},
    ),
    ingest.post_ingest: Operation(
        "Send live events (one, or up to 1,000 as {events: [...]})",
        "events",
        {202: Answer("Kafka has every event; their ids, in order.", r.IngestAccepted)},
        {
            400: ("invalid_events", "invalid_idempotency_key"),
            413: ("metadata_too_large", "too_many_events"),
            503: KAFKA_503,
        },
        description="Taken whole or not at all: one invalid event answers 400 listing each.",
        body={"anyOf": [r.LiveEvent, r.LiveEvents]},
        params=(IDEMPOTENCY_KEY,),
        error_record=r.EventsError,
    ),
    leads.list_leads: Operation(
        "Leads by score, highest first; or, given an alias, the lead that owns it",
        "leads",
        {
            200: Answer(
                "A page of leads, or the one lead of the alias.", {"anyOf": [r.Leads, r.Lead]}
            )
        },
        {404: ("not_found",)},
        params=(
            *PAGE,
            *(
                _query(
                    kind,
                    f"The lead with this {kind} (normalised as the scorer does).",
                    minLength=1,
                    **IDENTIFIER,
                )
                for kind in ALIAS_KINDS
            ),
        ),
    ),
    leads.get_lead: Operation(
        "One lead: score, per-ruleset scores, aliases, event count and times",
        "leads",
        {200: Answer("The lead.", r.Lead)},
        {404: ("not_found",)},
        path_params={"lead_id": "The lead's id."},
    ),
    leads.lead_aliases: Operation(
        "A lead's aliases, highest priority first",
        "leads",
        {200: Answer("The aliases.", r.LeadAliases)},
        {404: ("not_found",)},
        path_params={"lead_id": "The lead's id."},
    ),
    leads.list_events: Operation(
        "Scored events, newest first",
        "leads",
        {200: Answer("A page of events.", r.Events)},
        params=(
            _query("lead_id", "Only this lead's.", **IDENTIFIER),
            _query("event_type", "Only this type.", **IDENTIFIER),
            *PAGE,
        ),
    ),
    leads.list_alias_conflicts: Operation(
        "Aliases an event named that another lead owns, newest first",
        "leads",
        {200: Answer("A page of conflicts.", r.AliasConflicts)},
        params=(_query("lead_id", "Either side is this lead.", **IDENTIFIER), *PAGE),
    ),
    rulesets.create_ruleset: Operation(
        "Create a scoring ruleset",
        "rulesets",
        {201: Answer("The ruleset.", r.Ruleset, {"Location": "/rulesets/{id}"})},
        {400: FIELDS_400, 409: ("name_taken",)},
        body=r.RulesetBody,
    ),
    rulesets.list_rulesets: Operation(
        "The unit's rulesets, oldest first", "rulesets", {200: Answer("Every ruleset.", r.Rulesets)}
    ),
    rulesets.get_ruleset: Operation(
        "One ruleset",
        "rulesets",
        {200: Answer("The ruleset.", r.Ruleset)},
        {404: ("not_found",)},
        path_params={"ruleset_id": "The ruleset's id."},
    ),
    rulesets.replace_ruleset: Operation(
        "Replace a ruleset: name, flags, dates and every rule",
        "rulesets",
        {200: Answer("The ruleset.", r.Ruleset)},
        {400: FIELDS_400, 404: ("not_found",), 409: ("name_taken",)},
        body=r.RulesetBody,
        path_params={"ruleset_id": "The ruleset's id."},
    ),
    rulesets.delete_ruleset: Operation(
        "Delete a ruleset (the points it gave stay)",
        "rulesets",
        {204: Answer("Deleted.")},
        {404: ("not_found",)},
        path_params={"ruleset_id": "The ruleset's id."},
    ),
    triggers.create_trigger: Operation(
        "Create a milestone trigger",
        "triggers",
        {
            201: Answer(
                "The trigger, with its signing secret (shown this once).",
                r.TriggerWithSecret,
                {"Location": "/triggers/{id}"},
            )
        },
        {
            400: (*FIELDS_400, "webhook_url_refused"),
            409: ("name_taken", "trigger_limit"),
            503: ("unavailable",),
        },
        body=r.TriggerBody,
    ),
    triggers.list_triggers: Operation(
        "The unit's triggers, oldest first", "triggers", {200: Answer("Every trigger.", r.Triggers)}
    ),
    triggers.get_trigger: Operation(
        "One trigger (without its signing secret)",
        "triggers",
        {200: Answer("The trigger.", r.Trigger)},
        {404: ("not_found",)},
        path_params={"trigger_id": "The trigger's id."},
    ),
    triggers.replace_trigger: Operation(
        "Replace a trigger's settings (its firings and fire-once history stay)",
        "triggers",
        {200: Answer("The trigger.", r.Trigger)},
        {400: (*FIELDS_400, "webhook_url_refused"), 404: ("not_found",), 409: ("name_taken",)},
        body=r.TriggerBody,
        path_params={"trigger_id": "The trigger's id."},
    ),
    triggers.delete_trigger: Operation(
        "Delete a trigger, its firings and their pending deliveries",
        "triggers",
        {204: Answer("Deleted.")},
        {404: ("not_found",)},
        path_params={"trigger_id": "The trigger's id."},
    ),
    triggers.list_firings: Operation(
        "A trigger's firings, newest first, with every delivery attempt",
        "triggers",
        {200: Answer("A page of firings.", r.Firings)},
        {404: ("not_found",)},
        params=(
            _query(
                "status",
                "Only firings in this delivery status.",
                enum=["pending", "delivered", "failed"],
            ),
            _query("lead_id", "Only this lead's.", **IDENTIFIER),
            *PAGE,
        ),
        path_params={"trigger_id": "The trigger's id."},
    ),
    triggers.rotate_secret: Operation(
        "A new signing secret; the previous one signs too until the rollover ends",
        "triggers",
        {
            200: Answer(
                "The trigger, with its new signing secret (shown this once).", r.TriggerWithSecret
            )
        },
        {404: ("not_found",), 503: ("unavailable",)},
        path_params={"trigger_id": "The trigger's id."},
        body_errors=False,
    ),
    triggers.revoke_previous_secret: Operation(
        "Stop signing with the previous secret now",
        "triggers",
        {204: Answer("Only the current secret signs from now.")},
        {404: ("not_found",)},
        path_params={"trigger_id": "The trigger's id."},
    ),
}
