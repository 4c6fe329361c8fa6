"""The OpenAPI 3.1 description of the catalog API, and a page that shows it to people.

Written out rather than generated: the API is small, and the description is the contract
clients code against, so a change to it should be a change someone reads.
"""

from __future__ import annotations

import html
from functools import cache
from typing import Any

from schemas.events import ImageRecord

_ID = {"name": "image_id", "in": "path", "required": True, "schema": {"type": "string"}}
_ERROR = {
    "description": "An error: a stable code and a sentence",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
            }
        }
    },
}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"description": description}
    if schema is not None:
        body["content"] = {"application/json": {"schema": schema}}  # type: ignore[assignment]
    return body


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": kind}}


@cache
def openapi() -> dict[str, Any]:
    import msgspec

    (record_schema,), components = msgspec.json.schema_components(
        [ImageRecord], ref_template="#/components/schemas/{name}"
    )
    errors = {"401": _ERROR, "403": _ERROR}
    paths: dict[str, Any] = {
        "/v1/images": {
            "post": {
                "summary": "Submit an image: a multipart `file` (with an optional JSON `meta` "
                "part holding hints and request), or JSON with `url`, `hints`, `request`. "
                "Honours Idempotency-Key. `?force=true` processes known content again.",
                "parameters": [
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
                    _query("force", "process it even if the same content is done", "boolean"),
                ],
                "responses": {
                    "202": _ok("Accepted; Location names the image"),
                    "200": _ok("The same content is already done: the existing image"),
                    "400": _ERROR,
                    "413": _ERROR,
                    "415": _ERROR,
                    "422": _ERROR,
                    "503": _ERROR,
                    **errors,
                },
            },
            "get": {
                "summary": "With sha256: the images whose original content has it. Without: "
                "a page of images, most recently changed first, with presigned thumbnails; "
                "pass the answer's cursor back for the next page (null: no more). A page "
                "looks at a bounded number of images, so a rare filter may answer a short "
                "page with a cursor. ids= lists the named images instead.",
                "parameters": [
                    _query("sha256", "64 hex digits"),
                    _query("status", "processing, done, rejected or failed"),
                    _query("category", "a category name"),
                    _query("route", "stages joined by >, e.g. validate>categorize>compress"),
                    _query("restore", "the restore stage's outcome"),
                    _query("duplicate", "exact, near, any or none"),
                    _query("since", "updated_at at or after this ISO date or time"),
                    _query("until", "updated_at before this ISO date or time"),
                    _query(
                        "q",
                        "an image id prefix, a sha256 or its prefix, or words of the "
                        "submission's title or keywords",
                    ),
                    _query("ids", "comma-separated image ids (at most 100)"),
                    _query(
                        "cursor",
                        "from the previous page, of the same replica: another's (or one "
                        "from before a restart) is a 409 stale_cursor",
                    ),
                    _query("limit", "1-200, default 48", "integer"),
                ],
                "responses": {
                    "200": _ok("image ids, or a page of images and the next cursor"),
                    "400": _ERROR,
                    "409": _ERROR,
                    **errors,
                },
            },
        },
        "/v1/images/{image_id}": {
            "get": {
                "summary": "The image's latest metadata record",
                "parameters": [_ID],
                "responses": {
                    "200": _ok("the record", record_schema),
                    "404": _ERROR,
                    "503": _ERROR,  # the replica holding it does not answer
                    **errors,
                },
            },
            "delete": {
                "summary": "Acting keys only. Erase the image for good, as `pixelfleet delete` "
                "does: every object in the four buckets, then the record (a tombstone); images "
                "recorded as its duplicates go too. dry_run=1 lists what would go.",
                "parameters": [
                    _ID,
                    _query("dry_run", "list only, delete nothing", "boolean"),
                    _query("force", "also while it is being processed", "boolean"),
                ],
                "responses": {
                    "200": _ok("images, objects, bytes; deleted"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "409": _ERROR,
                    "503": _ERROR,
                    **errors,
                },
            },
        },
        "/v1/images/{image_id}/original": {
            "get": {
                "summary": "A presigned download URL of the original upload (a fetched URL's "
                "body, or the uploaded file), for a before/after view; url null (and why) "
                "when it is not stored",
                "parameters": [_ID],
                "responses": {
                    "200": _ok("url, width, height, bytes"),
                    "404": _ERROR,
                    "503": _ERROR,
                    **errors,
                },
            }
        },
        "/v1/images/{image_id}/replay": {
            "post": {
                "summary": "Acting keys only. Replay the image from a stage onward, as "
                "`pixelfleet replay --image-id` does: JSON {stage (default validate), dry_run}. "
                "The answer says the stage it really starts at (an expired input starts it "
                "over at validate) and why; dry_run sends nothing.",
                "parameters": [_ID],
                "responses": {
                    "200": _ok("the plan (dry run)"),
                    "202": _ok("sent: replay_id, stage, topic, note"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "409": _ERROR,
                    "503": _ERROR,
                    **errors,
                },
            }
        },
        "/v1/images/{image_id}/variants": {
            "get": {
                "summary": "Each variant with a presigned download URL, made fresh per request",
                "parameters": [_ID],
                "responses": {"200": _ok("variants"), "404": _ERROR, "503": _ERROR, **errors},
            }
        },
        "/v1/images/{image_id}/similar": {
            "get": {
                "summary": "Images whose perceptual hash is within max_distance bits",
                "parameters": [
                    _ID,
                    _query("max_distance", "Hamming distance", "integer"),
                    _query("limit", "at most this many (1-1000)", "integer"),
                ],
                "responses": {
                    "200": _ok("nearest first"),
                    "400": _ERROR,
                    "404": _ERROR,
                    **errors,
                },
            }
        },
        "/v1/lookup": {
            "get": {
                "summary": "Before doing work: the finished image of this content under these "
                "settings, and near-duplicates of a perceptual hash",
                "parameters": [
                    _query("sha256", "content hash"),
                    _query("fingerprint", "settings fingerprint"),
                    _query("phash", "16 hex digits"),
                    _query("max_distance", "Hamming distance", "integer"),
                    _query("limit", "at most this many near-duplicates (1-1000)", "integer"),
                    _query("exclude", "an image id to leave out"),
                ],
                "responses": {
                    "200": _ok("duplicate_of and near_duplicates"),
                    "400": _ERROR,
                    **errors,
                },
            }
        },
        "/v1/stats": {
            "get": {
                "summary": "Counts by status, stage, category and route; quality and time "
                "distributions; the success rate",
                "responses": {"200": _ok("stats"), **errors},
            }
        },
        "/v1/fleet": {
            "get": {
                "summary": "Per stage: lag (as `pixelfleet status` and KEDA compute it), and "
                "from the Prometheus at catalog.prometheus_url the dashboard's throughput, "
                "rejected rate, p50/p95 seconds, in flight and replicas (null without it); "
                "dead-letter reasons with counts; the values each console filter can take",
                "responses": {"200": _ok("fleet figures"), **errors},
            }
        },
        "/v1/access": {
            "get": {
                "summary": "What this key may do: read (always) and act (an acting key)",
                "responses": {"200": _ok("read, act"), **errors},
            }
        },
        "/v1/dlq": {
            "get": {
                "summary": "Dead letters on the DLQ topic, newest first, with the redrive "
                "that re-sent each (null: none); count is all that match",
                "parameters": [
                    _query("stage", "only this stage's"),
                    _query("reason", "only this reason class"),
                    _query("limit", "1-500, default 100", "integer"),
                ],
                "responses": {
                    "200": _ok("count, letters"),
                    "400": _ERROR,
                    "503": _ERROR,
                    **errors,
                },
            }
        },
        "/v1/dlq/{letter}/redrive": {
            "post": {
                "summary": "Acting keys only. Re-send one dead letter (partition:offset) to its "
                "stage's inbox once, as `pixelfleet dlq redrive` does; JSON {again: true} "
                "re-sends one an earlier redrive already re-sent",
                "parameters": [
                    {"name": "letter", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _ok("redrive_id, to_topic, restored_from"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "409": _ERROR,
                    "503": _ERROR,
                    **errors,
                },
            }
        },
        # Probes and scrapes need no key ("security": [] overrides the document's default).
        "/healthz": {
            "get": {"summary": "Liveness", "security": [], "responses": {"200": _ok("alive")}}
        },
        "/readyz": {
            "get": {
                "summary": "Ready once caught up with the metadata topic",
                "security": [],
                "responses": {"200": _ok("ready"), "503": _ok("catching up")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {"200": _ok("text")},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "pixelfleet catalog", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},  # the same key
            },
        },
        # Either scheme: a key in X-API-Key or as Authorization: Bearer.
        "security": [{"apiKey": []}, {"bearer": []}],
        "paths": paths,
    }


def docs_page() -> str:
    """Every operation, its parameters and answers, as one plain HTML page (no scripts, so
    it works where nothing can be downloaded)."""
    rows = []
    for path, operations in openapi()["paths"].items():
        for method, op in operations.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []))
            codes = ", ".join(sorted(op["responses"]))
            rows.append(
                f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{html.escape(params)}</td>"
                f"<td>{codes}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>pixelfleet catalog API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border-bottom:1px solid #ddd;"
        "padding:.4em;text-align:left;vertical-align:top}</style></head><body>"
        "<h1>pixelfleet catalog API, v1</h1><p>Send the key in <code>X-API-Key</code>. "
        "The machine-readable description: <a href='/v1/openapi.json'>openapi.json</a>.</p>"
        "<table><tr><th>operation</th><th>what it does</th><th>parameters</th>"
        f"<th>answers</th></tr>{''.join(rows)}</table></body></html>"
    )
