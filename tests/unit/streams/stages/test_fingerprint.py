"""The settings fingerprint: the same work gets the same one, other work another."""

from __future__ import annotations

import re

import pytest

from processors.compress import DEFAULT_VARIANTS, CompressSettings, VariantSpec
from processors.enhance import EnhanceSettings
from schemas.events import Request
from streams.stages.fetch.settings import FetchSettings
from streams.stages.fingerprint import fingerprint
from streams.stages.settings import StageSettings

BASE = fingerprint(StageSettings(), Request())

# Each of these shapes the output, so each must give its own fingerprint.
SHAPING: dict[str, tuple[StageSettings, Request]] = {
    "compress variants": (
        StageSettings(
            compress=CompressSettings(variants=(VariantSpec(name="web", longest_side=1200),))
        ),
        Request(),
    ),
    "compress profile": (StageSettings(compress=CompressSettings(profile="ladder")), Request()),
    "compress default quality": (
        StageSettings(compress=CompressSettings(default_quality=70)),
        Request(),
    ),
    "a variant's quality": (
        StageSettings(
            compress=CompressSettings(
                variants=(
                    DEFAULT_VARIANTS[0].model_copy(update={"quality": {"avif": 50}}),
                    *DEFAULT_VARIANTS[1:],
                )
            )
        ),
        Request(),
    ),
    "enhance sharpening": (StageSettings(enhance=EnhanceSettings(unsharp_percent=80)), Request()),
    "enhance default profile": (
        StageSettings(enhance=EnhanceSettings(default_profile="product")),
        Request(),
    ),
    "request formats": (StageSettings(), Request(formats=["webp"])),
    "request other formats": (StageSettings(), Request(formats=["avif", "jpeg"])),
    "request profile": (StageSettings(), Request(profile="product")),
    "request variants": (StageSettings(), Request(variants=["thumbnail"])),
    "request restore": (StageSettings(), Request(restore="none")),
}


def test_is_16_hex_digits_and_equal_for_equal_settings_and_requests() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", BASE)
    # Separately built, equal objects: the fingerprint depends on values, not identity.
    assert fingerprint(StageSettings(), Request()) == BASE
    settings = StageSettings(compress=CompressSettings(default_quality=70))
    again = StageSettings(compress=CompressSettings(default_quality=70))
    asked = Request(formats=["webp"], profile="product")
    asked_again = Request(formats=["webp"], profile="product")
    assert fingerprint(settings, asked) == fingerprint(again, asked_again)


@pytest.mark.parametrize("change", list(SHAPING))
def test_a_setting_or_request_that_shapes_the_output_changes_it(change: str) -> None:
    settings, request = SHAPING[change]
    assert fingerprint(settings, request) != BASE


def test_each_shaping_change_has_a_fingerprint_of_its_own() -> None:
    prints = {fingerprint(s, r) for s, r in SHAPING.values()}
    assert len(prints) == len(SHAPING)


def test_force_does_not_change_it() -> None:
    # Forcing asks for the same work again; the result must still count as that work.
    assert fingerprint(StageSettings(), Request(force=True)) == BASE
    asked = Request(formats=["webp"], profile="product")
    forced = Request(formats=["webp"], profile="product", force=True)
    assert fingerprint(StageSettings(), forced) == fingerprint(StageSettings(), asked)


def test_fetch_settings_do_not_change_it() -> None:
    # Politeness and limits of the download do not change a pixel.
    fetch = FetchSettings(
        concurrency=4,
        pending=16,
        user_agent="someone-else/2.0",
        allow_networks=("10.0.0.0/8",),
        max_attempts=2,
        read_timeout_s=3.0,
    )
    assert fingerprint(StageSettings(fetch=fetch), Request()) == BASE
    shaped = StageSettings(fetch=fetch, compress=CompressSettings(default_quality=70))
    assert fingerprint(shaped, Request()) == fingerprint(
        StageSettings(compress=CompressSettings(default_quality=70)), Request()
    )


def test_equal_settings_written_in_another_order_have_the_same_fingerprint() -> None:
    one = StageSettings(
        enhance=EnhanceSettings(category_profiles={"rings": "product", "other": "auto"})
    )
    two = StageSettings(
        enhance=EnhanceSettings(category_profiles={"other": "auto", "rings": "product"})
    )
    assert one == two  # the settings are equal, as pydantic compares them
    assert fingerprint(one, Request()) == fingerprint(two, Request())
