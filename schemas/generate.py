"""Write the JSON Schema files of the current contract version from the models.

python -m schemas.generate          # rewrite schemas/json/v<N>/
python -m schemas.generate --check  # exit 1 if the files differ from the models
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas.events import CONTRACTS, SCHEMA_VERSION

ROOT = Path(__file__).parent / "json"

# Rules a model checks in __post_init__, which msgspec cannot express in a schema.
EXTRA: dict[str, dict[str, Any]] = {
    "Source": {
        "oneOf": [
            {"required": ["object"], "properties": {"url": {"type": "null"}}},
            {"required": ["url"], "properties": {"object": {"type": "null"}}},
        ]
    }
}


def schema_for(name: str) -> dict[str, Any]:
    model = CONTRACTS[name]
    (ref,), components = msgspec.json.schema_components([model], ref_template="#/$defs/{name}")
    for def_name, extra in EXTRA.items():
        if def_name in components:
            components[def_name] = {**components[def_name], **extra}
    top = components[ref["$ref"].rsplit("/", 1)[-1]]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:pixelfleet:schema:{name}:v{SCHEMA_VERSION}",
        **top,
        "$defs": {k: v for k, v in sorted(components.items()) if v is not top},
    }


def rendered() -> dict[Path, str]:
    folder = ROOT / f"v{SCHEMA_VERSION}"
    return {folder / f"{name}.schema.json": _dump(schema_for(name)) for name in CONTRACTS}


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    files = rendered()
    if "--check" in argv:
        stale = [str(p) for p, text in files.items() if not p.exists() or p.read_text() != text]
        if stale:
            print("out of date (run `python -m schemas.generate`):", *stale, sep="\n  ")
            return 1
        return 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
