"""The JSON Schema files, the Python models and the frozen sample events agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from schemas import generate
from schemas.events import CONTRACTS, SCHEMA_VERSION, ImageSubmitted, decoder, encode

SAMPLES = Path(__file__).parent / "samples"
SCHEMA_ROOT = generate.ROOT


def _samples() -> list[tuple[int, str, Path]]:
    out = []
    for version_dir in sorted(SAMPLES.glob("v*")):
        for path in sorted(version_dir.glob("*.json")):
            out.append((int(version_dir.name[1:]), path.name.split(".")[0], path))
    return out


def _schema(version: int, contract: str) -> dict[str, Any]:
    return json.loads((SCHEMA_ROOT / f"v{version}" / f"{contract}.schema.json").read_text())


def test_schema_files_match_the_models() -> None:
    assert generate.main(["--check"]) == 0


def test_every_contract_has_a_schema_file_and_a_sample() -> None:
    files = {p.name for p in (SCHEMA_ROOT / f"v{SCHEMA_VERSION}").glob("*.schema.json")}
    assert files == {f"{name}.schema.json" for name in CONTRACTS}
    sampled = {contract for version, contract, _ in _samples() if version == SCHEMA_VERSION}
    assert sampled == set(CONTRACTS)


@pytest.mark.parametrize(("version", "contract", "path"), _samples(), ids=str)
def test_sample_is_valid_by_its_schema_file(version: int, contract: str, path: Path) -> None:
    schema = _schema(version, contract)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(path.read_text()), schema)


@pytest.mark.parametrize(("version", "contract", "path"), _samples(), ids=str)
def test_events_of_every_version_load_with_the_current_models(
    version: int, contract: str, path: Path
) -> None:
    # Compatibility: whatever an older producer wrote must still decode today.
    event = decoder(CONTRACTS[contract]).decode(path.read_bytes())
    again = decoder(CONTRACTS[contract]).decode(encode(event))
    assert again == event


def test_unknown_fields_from_a_newer_producer_are_tolerated() -> None:
    raw = json.loads((SAMPLES / "v1" / "image_submitted.object.json").read_text())
    raw["added_in_v2"] = {"anything": [1, 2]}
    raw["hints"]["language"] = "fr"
    event = decoder(ImageSubmitted).decode(json.dumps(raw).encode())
    assert event.image_id == "ring-0001.jpg"
    assert event.hints.title == "18k gold solitaire engagement ring"


BAD_SUBMISSIONS = {
    "image id with a slash": {"image_id": "a/b", "source": {"url": "https://x.test/a"}},
    "image id too long": {"image_id": "x" * 129, "source": {"url": "https://x.test/a"}},
    "empty image id": {"image_id": "", "source": {"url": "https://x.test/a"}},
    "both sources": {
        "image_id": "a",
        "source": {"url": "https://x.test/a", "object": {"bucket": "abc", "key": "k"}},
    },
    "no source": {"image_id": "a", "source": {}},
    "ftp url": {"image_id": "a", "source": {"url": "ftp://x.test/a"}},
    "unknown restore mode": {
        "image_id": "a",
        "source": {"url": "https://x.test/a"},
        "request": {"restore": "magic"},
    },
}


@pytest.mark.parametrize("case", sorted(BAD_SUBMISSIONS))
def test_invalid_submissions_are_refused_by_schema_and_model(case: str) -> None:
    raw = {"submitted_at": "2026-11-21T09:40:11Z", **BAD_SUBMISSIONS[case]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, _schema(SCHEMA_VERSION, "image_submitted"))
    with pytest.raises(msgspec.ValidationError):
        decoder(ImageSubmitted).decode(json.dumps(raw).encode())
