"""Which function runs as which stage."""

from __future__ import annotations

import importlib

from streams.runner.stage import StageSpec
from streams.settings import Settings
from streams.stages import image_stages
from streams.topics import STAGES


def available(settings: Settings) -> list[str]:
    """The built-in stages that exist, in pipeline order."""
    specs = image_stages.specs(settings.stages)
    return [name for name in STAGES if name in specs]


def builtin(name: str, settings: Settings) -> StageSpec:
    """The fleet's own stages, with their parameters from the settings."""
    specs = image_stages.specs(settings.stages)
    if name in specs:
        return specs[name]
    if name in STAGES:
        raise LookupError(
            f"stage {name!r} is not built yet (built: {', '.join(specs)}); "
            "run a custom stage with --spec module:attribute"
        )
    raise LookupError(f"no stage {name!r} (stages are: {', '.join(STAGES)})")


def load(reference: str) -> StageSpec:
    """A StageSpec from `package.module:attribute`, for custom and test stages."""
    module_name, _, attribute = reference.partition(":")
    if not attribute:
        raise LookupError(f"--spec wants module:attribute, got {reference!r}")
    spec = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(spec, StageSpec):
        raise LookupError(f"{reference} is a {type(spec).__name__}, not a StageSpec")
    return spec
