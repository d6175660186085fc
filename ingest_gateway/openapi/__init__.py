"""The gateway's OpenAPI 3.1 document, built from its routes and the records below.

Why a module of our own rather than spectree or apispec: the gateway reads its bodies by
hand (:mod:`ingest_gateway.fields`) to give the 400s of its error contract, and msgspec is
already its codec. spectree would validate bodies a second time through pydantic models,
with errors of its own shape; apispec wants a YAML block in every endpoint's docstring.
Here the schemas are msgspec records (:mod:`.records`), turned into JSON Schema 2020-12
(which OpenAPI 3.1 uses as is) by ``msgspec.json.schema_components``; what each endpoint
takes and answers is stated once per endpoint function (:mod:`.operations`); and the paths,
methods and path parameters come from the app's route list itself (:mod:`.document`), so
a route added without a description fails ``tests/ingest_gateway/test_openapi.py``.
"""

from ingest_gateway.openapi.document import build_document

__all__ = ["build_document"]
