"""A mistake in the `stages` section stops the worker when it reads its settings, naming
the setting, instead of failing, rejecting or quietly mis-processing every image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streams.cli.problems import settings_error
from streams.stages.settings import StageSettings


def _refused(section: dict[str, Any]) -> tuple[str, str]:
    """Where the one error is (dotted) and what it says."""
    with pytest.raises(ValidationError) as caught:
        StageSettings.model_validate(section)
    [error] = caught.value.errors(include_input=False, include_url=False)
    return ".".join(str(part) for part in error["loc"]), error["msg"]


def _variant(**fields: Any) -> dict[str, Any]:
    return {"compress": {"variants": [{"name": "card", "longest_side": 640, **fields}]}}


CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "compress profile": (
        {"compress": {"profile": "ladderr"}}, "compress.profile", "unknown variant profile",
    ),
    "enhance default profile": (
        {"enhance": {"default_profile": "autoo"}}, "enhance.default_profile", "'product'",
    ),
    "enhance profile of a category": (
        {"enhance": {"category_profiles": {"rings": "prodcut"}}},
        "enhance.category_profiles.rings", "'product'",
    ),
    "enhance category misspelt": (
        {"enhance": {"category_profiles": {"ringz": "product"}}}, "",
        "enhance.category_profiles names unknown categories ['ringz']",
    ),
    "match without its reference": (
        {"enhance": {"default_profile": "match"}}, "", "reference_image is not",
    ),
    "quality key misspelt": (
        _variant(quality={"jpg": 40}), "compress.variants.0.quality",
        "quality for unknown format(s) ['jpg']",
    ),
    "quality 0": (
        _variant(quality={"jpeg": 0}), "compress.variants.0.quality.jpeg",
        "greater than or equal to 1",
    ),
    "quality 150": (
        _variant(quality={"avif": 150}), "compress.variants.0.quality.avif",
        "less than or equal to 100",
    ),
    "quality range reversed": (
        {"compress": {"quality_range": [95, 60]}}, "compress", "must run from low to high",
    ),
    "no variants": ({"compress": {"variants": []}}, "compress.variants", "lists no variant"),
    "a variant twice": (
        {"compress": {"variants": [{"name": "a", "longest_side": 9}] * 2}},
        "compress.variants", "variants named more than once: ['a']",
    ),
    "url pattern": (
        {"categorize": {"taxonomy": {"categories": [
            {"name": "rings", "terms": {"ring": 1}, "url_patterns": ["/rings(["]},
        ]}}},
        "categorize.taxonomy.categories.0.url_patterns", "is not a regular expression",
    ),
    "source weight misspelt": (
        {"categorize": {"taxonomy": {"source_weights": {"titel": 3}}}},
        "categorize.taxonomy.source_weights", "unknown source(s) ['titel']",
    ),
    "hash size": ({"validate": {"hash_size": 12}}, "validate.hash_size", "64-bit"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_stage_setting_is_refused_where_it_is(case: str) -> None:
    section, where, said = CASES[case]
    loc, msg = _refused(section)
    assert loc == where and said in msg, (loc, msg)


def test_good_settings_still_load() -> None:
    StageSettings.model_validate(
        {
            "validate": {"hash_size": 8},
            "enhance": {"category_profiles": {"rings": "auto", "other": "none"}},
            "compress": {"profile": "ladder", "quality_range": [70, 70]},
            "reference_image": "ref.png",
        }
    )
    # A taxonomy of its own, with the default enhance mapping left alone: the default
    # mapping names the default taxonomy's categories and is not held against it.
    StageSettings.model_validate(
        {"categorize": {"taxonomy": {"categories": [{"name": "shoes", "terms": {"shoe": 1}}]}}}
    )


def test_the_worker_says_which_setting_of_its_config_file_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.app.settings import Settings

    config = tmp_path / "fleet.yaml"
    config.write_text("stages:\n  compress: {profile: ladderr}\n")
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(config))
    with pytest.raises(ValidationError) as caught:
        Settings()
    said = settings_error(caught.value)
    assert said is not None
    assert "stages.compress.profile: Value error, unknown variant profile" in said
