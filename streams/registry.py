"""Which function runs as which stage."""

from __future__ import annotations

import importlib

from streams.runner.stage import StageSpec
from streams.topics import STAGES


def builtin(name: str) -> StageSpec:
    """The fleet's own stages. Their image work (processors/) is built stage by stage."""
    raise LookupError(
        f"stage {name!r} has no built-in implementation yet (stages are: {', '.join(STAGES)}); "
        "run a custom stage with --spec module:attribute"
    )


def load(reference: str) -> StageSpec:
    """A StageSpec from `package.module:attribute`, for custom and test stages."""
    module_name, _, attribute = reference.partition(":")
    if not attribute:
        raise LookupError(f"--spec wants module:attribute, got {reference!r}")
    spec = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(spec, StageSpec):
        raise LookupError(f"{reference} is a {type(spec).__name__}, not a StageSpec")
    return spec
