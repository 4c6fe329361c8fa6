"""The catalog's OpenAPI description, checked offline, and the page that shows it.

No OpenAPI 3.1 metaschema ships with our dependencies, so the document is checked against
the fixed fields of the OpenAPI 3.1 objects it uses (written out below, with jsonschema),
and then for what a schema cannot say: every $ref resolves, path templates and path
parameters agree, the schemas are JSON Schema 2020-12 that a real record passes, and the
operations described are the ones the API serves.
"""

from __future__ import annotations

import copy
import html
import json
import random
import re
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs in dev

from schemas.events import encode
from streams.catalog import openapi as openapi_module
from streams.catalog.actions_api import ActionsApi
from streams.catalog.api import CatalogApi
from streams.catalog.http_support import API_KEY_HEADER, OPEN_PATHS
from streams.catalog.openapi import docs_page, openapi
from tests.support.catalog_kit import fake_record

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
EXTENSIONS: dict[str, Any] = {"^x-": {}}


def _fixed(needed: list[str], /, **properties: Any) -> dict[str, Any]:
    """An OpenAPI object: these fields only (needed: those it must have), plus x- extensions."""
    return {
        "type": "object",
        "required": needed,
        "properties": properties,
        "patternProperties": EXTENSIONS,
        "additionalProperties": False,
    }


_ANY: dict[str, Any] = {}
_TEXT = {"type": "string"}
_SCHEMA = {"type": ["object", "boolean"]}  # a JSON Schema; its content is checked apart
_PARAMETER = {
    **_fixed(
        ["name", "in"],
        **{"in": {"enum": ["query", "header", "path", "cookie"]}},
        name={"type": "string", "minLength": 1},
        description=_TEXT,
        required={"type": "boolean"},
        deprecated={"type": "boolean"},
        allowEmptyValue={"type": "boolean"},
        style=_TEXT,
        explode={"type": "boolean"},
        allowReserved={"type": "boolean"},
        schema=_SCHEMA,
        example=_ANY,
        examples={"type": "object"},
        content={"type": "object"},
    ),
    # A path parameter is always required (OpenAPI 3.1, Parameter Object).
    "if": {"properties": {"in": {"const": "path"}}},
    "then": {"required": ["required"], "properties": {"required": {"const": True}}},
}
_MEDIA = _fixed([], schema=_SCHEMA, example=_ANY, examples={"type": "object"}, encoding={})
_RESPONSE = _fixed(
    ["description"],
    description=_TEXT,
    headers={"type": "object"},
    content={"type": "object", "additionalProperties": _MEDIA},
    links={"type": "object"},
)
_SECURITY = {
    "type": "array",
    "items": {"type": "object", "additionalProperties": {"type": "array"}},
}
_OPERATION = _fixed(
    ["responses"],
    tags={"type": "array", "items": _TEXT},
    summary=_TEXT,
    description=_TEXT,
    externalDocs={"type": "object"},
    operationId=_TEXT,
    parameters={"type": "array", "items": _PARAMETER},
    requestBody={"type": "object"},
    responses={
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": r"^(default|[1-5](\d\d|XX))$"},
        "additionalProperties": _RESPONSE,
    },
    callbacks={"type": "object"},
    deprecated={"type": "boolean"},
    security=_SECURITY,
    servers={"type": "array"},
)
_PATH_ITEM = _fixed(
    [],
    **{"$ref": _TEXT},
    summary=_TEXT,
    description=_TEXT,
    servers={"type": "array"},
    parameters={"type": "array", "items": _PARAMETER},
    **dict.fromkeys(METHODS, _OPERATION),
)
_SECURITY_SCHEME = {
    **_fixed(
        ["type"],
        **{"in": {"enum": ["query", "header", "cookie"]}},
        type={"enum": ["apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"]},
        description=_TEXT,
        name=_TEXT,
        scheme=_TEXT,
        bearerFormat=_TEXT,
        flows={"type": "object"},
        openIdConnectUrl=_TEXT,
    ),
    "if": {"properties": {"type": {"const": "apiKey"}}},
    "then": {"required": ["name", "in"]},
}
# The OpenAPI 3.1 objects this document uses, with their fixed fields.
OPENAPI_31 = {
    **_fixed(
        ["openapi", "info"],
        openapi={"type": "string", "pattern": r"^3\.1\.\d+$"},
        info=_fixed(
            ["title", "version"],
            title=_TEXT,
            summary=_TEXT,
            description=_TEXT,
            termsOfService=_TEXT,
            contact={"type": "object"},
            license={"type": "object"},
            version=_TEXT,
        ),
        jsonSchemaDialect=_TEXT,
        servers={"type": "array"},
        paths={
            "type": "object",
            "propertyNames": {"pattern": "^/"},
            "additionalProperties": _PATH_ITEM,
        },
        webhooks={"type": "object"},
        components=_fixed(
            [],
            schemas={"type": "object", "additionalProperties": _SCHEMA},
            responses={"type": "object"},
            parameters={"type": "object"},
            examples={"type": "object"},
            requestBodies={"type": "object"},
            headers={"type": "object"},
            securitySchemes={"type": "object", "additionalProperties": _SECURITY_SCHEME},
            links={"type": "object"},
            callbacks={"type": "object"},
            pathItems={"type": "object"},
        ),
        security=_SECURITY,
        tags={"type": "array"},
        externalDocs={"type": "object"},
    ),
    "anyOf": [{"required": ["paths"]}, {"required": ["components"]}, {"required": ["webhooks"]}],
}


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """A JSON pointer inside the document (RFC 6901), or KeyError."""
    assert ref.startswith("#/"), f"{ref} points outside the document"
    node: Any = doc
    for token in ref[2:].split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_has_the_fields_of_openapi_3_1_and_no_others() -> None:
    doc = openapi()
    assert doc["openapi"] == "3.1.0"
    Draft202012Validator.check_schema(OPENAPI_31)
    errors = sorted(Draft202012Validator(OPENAPI_31).iter_errors(doc), key=str)
    assert [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] == []
    assert json.loads(json.dumps(doc)) == doc  # plain JSON, as the API serves it


BREAKAGES: dict[str, Callable[[dict[str, Any]], object]] = {
    "an operation without responses": lambda d: d["paths"]["/v1/stats"]["get"].pop("responses"),
    "a misspelt field": lambda d: d["paths"]["/v1/stats"]["get"].update(respones={}),
    "a response without description": lambda d: d["paths"]["/healthz"]["get"]["responses"][
        "200"
    ].pop("description"),
    "a parameter in the body": lambda d: d["paths"]["/v1/lookup"]["get"]["parameters"][0].update(
        {"in": "body"}
    ),
    "an optional path parameter": lambda d: d["paths"]["/v1/images/{image_id}"]["get"][
        "parameters"
    ][0].update(required=False),
    "a status code that is not one": lambda d: d["paths"]["/healthz"]["get"]["responses"].update(
        {"299x": {"description": "?"}}
    ),
    "OpenAPI 3.0": lambda d: d.update(openapi="3.0.3"),
    "an API key without its header": lambda d: d["components"]["securitySchemes"]["apiKey"].pop(
        "name"
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_the_check_of_the_fields_catches_a_broken_document(breakage: str) -> None:
    # The hand-written metaschema is only worth something if it refuses what OpenAPI does.
    doc = copy.deepcopy(openapi())
    BREAKAGES[breakage](doc)
    assert not Draft202012Validator(OPENAPI_31).is_valid(doc)


def test_every_operation_has_a_summary_and_responses_that_describe_themselves() -> None:
    found = list(operations(openapi()))
    assert len(found) == 17
    for path, method, op in found:
        assert op["summary"].strip(), (path, method)
        assert op["responses"], (path, method)
        for code, response in op["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", code), (path, method, code)
            assert response["description"].strip(), (path, method, code)
        # Every /v1 operation says how it refuses a missing or wrong key.
        if path.startswith("/v1/"):
            assert {"401", "403"} <= set(op["responses"]), (path, method)


def test_path_templates_and_path_parameters_agree() -> None:
    for path, method, op in operations(openapi()):
        templated = set(re.findall(r"\{([^}]+)\}", path))
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert templated == declared, (path, method)
        names = [(p["name"], p["in"]) for p in op.get("parameters", [])]
        assert len(names) == len(set(names)), (path, method)


def test_every_ref_resolves_inside_components() -> None:
    doc = openapi()
    found = list(refs(doc))
    assert "#/components/schemas/ImageRecord" in found
    for ref in found:
        assert ref.startswith("#/components/"), ref
        target = resolve(doc, ref)
        assert isinstance(target, dict) and target, ref


def test_the_image_record_schema_is_json_schema_that_a_real_record_passes() -> None:
    doc = openapi()
    schemas = doc["components"]["schemas"]
    assert {"ImageRecord", "StageState", "Variant", "ObjectRef"} <= set(schemas)
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
    answer = doc["paths"]["/v1/images/{image_id}"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ImageRecord"
    }
    # The $refs resolve against the root, so the root carries the components.
    root = {"$ref": "#/components/schemas/ImageRecord", "components": doc["components"]}
    check = Draft202012Validator(root)
    record = json.loads(encode(fake_record("img-00000001", random.Random(1))))
    assert list(check.iter_errors(record)) == []
    assert not check.is_valid({k: v for k, v in record.items() if k != "image_id"})
    assert not check.is_valid({**record, "status": "finished"})
    assert not check.is_valid({**record, "variants": [{"variant": "web"}]})


def test_the_api_key_is_a_header_named_as_the_service_reads_it() -> None:
    """In X-API-Key, or as Authorization: Bearer (the service reads both): either will do."""
    doc = openapi()
    assert doc["components"]["securitySchemes"] == {
        "apiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
        "bearer": {"type": "http", "scheme": "bearer"},
    }
    assert doc["security"] == [{"apiKey": []}, {"bearer": []}]
    schemes = set(doc["components"]["securitySchemes"])
    for path, method, op in operations(doc):
        for requirement in op.get("security", []):
            assert set(requirement) <= schemes, (path, method)


class _AnyHandler:
    """Stands in for a CatalogApi: every handler it is asked for answers 204."""

    def __getattr__(self, name: str) -> Any:
        if name == "actions":  # the ActionsApi, which installs its own routes
            return _AnyActions()

        async def handler(_request: web.Request) -> web.Response:
            return web.Response(status=204)

        return handler


class _AnyActions(_AnyHandler):
    def install(self, app: web.Application) -> None:
        ActionsApi.install(cast(ActionsApi, self), app)


def test_the_operations_described_are_the_ones_the_api_serves() -> None:
    app = web.Application()
    CatalogApi.install(cast(CatalogApi, _AnyHandler()), app)
    served = set()
    for route in app.router.routes():
        assert route.resource is not None
        served.add((route.resource.canonical, route.method.lower()))
    described = {(path, method) for path, method, _ in operations(openapi())}
    # The description and its page are served without being described themselves.
    assert served - described == {("/v1/openapi.json", "get"), ("/v1/docs", "get")}
    assert described - served == set()


def test_the_open_paths_are_described_as_needing_no_key() -> None:
    doc = openapi()
    described = [(p, m, op) for p, m, op in operations(doc) if p in OPEN_PATHS]
    assert {p for p, _, _ in described} == {"/healthz", "/readyz", "/metrics"}
    for path, method, op in described:
        assert op.get("security") == [], (path, method)


def test_the_docs_page_lists_every_operation() -> None:
    page = docs_page()
    assert page.startswith("<!doctype html>") and page.endswith("</html>")
    assert "<script" not in page.lower()  # it must work where nothing can be downloaded
    ops = list(operations(openapi()))
    assert page.count("<tr>") == len(ops) + 1  # the header, then one row each
    for path, method, op in ops:
        assert f"<code>{method.upper()} {html.escape(path)}</code>" in page
        assert html.escape(op["summary"]) in page
        for code in op["responses"]:
            assert code in page
    assert "href='/v1/openapi.json'" in page


def test_the_docs_page_escapes_what_the_description_says(monkeypatch: pytest.MonkeyPatch) -> None:
    hostile = {
        "paths": {
            "/v1/<b>bold</b>": {
                "get": {
                    "summary": 'a <script>alert("x")</script> & more',
                    "parameters": [{"name": "<i>x</i>", "in": "query"}],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        }
    }
    monkeypatch.setattr(openapi_module, "openapi", lambda: hostile)
    page = docs_page()
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page
    assert "GET /v1/&lt;b&gt;bold&lt;/b&gt;" in page
    assert "a &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in page
    assert "&lt;i&gt;x&lt;/i&gt;" in page
