"""Which function runs as which stage."""

from __future__ import annotations

import importlib.util

from streams.app.settings import Settings
from streams.config.topics import STAGES
from streams.io import clients
from streams.runner.stage import StageSpec
from streams.stages import image_stages
from streams.stages.dedup import CatalogLink


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def available(settings: Settings) -> list[str]:
    """The built-in stages this installation can run, in pipeline order (restore needs
    torch, which only the restore workers' image carries)."""
    names = {"fetch", *image_stages.stage_specs(settings.stages)}
    if torch_installed():
        names.add("restore")
    return [name for name in STAGES if name in names]


def catalog_link(settings: Settings) -> CatalogLink | None:
    """How validate asks the catalog about duplicates; None when no catalog is configured."""
    catalog = settings.catalog
    if not catalog.url:
        return None
    return CatalogLink(
        url=catalog.url,
        api_key=catalog.api_key.get_secret_value() if catalog.api_key else None,
        timeout_s=catalog.client_timeout_s,
        near_dup_distance=catalog.near_dup_distance,
        near_dup_policy=catalog.near_dup_policy,
    )


def builtin(name: str, settings: Settings) -> StageSpec:
    """The fleet's own stages, with their parameters from the settings."""
    specs = image_stages.stage_specs(settings.stages, catalog_link(settings))
    if name in specs:
        return specs[name]
    if name == "fetch":
        from streams.stages.fetch.stage import stage_spec

        return stage_spec(settings.stages.fetch, clients.s3(settings.s3))
    if name == "restore":
        if not torch_installed():
            raise LookupError("the restore stage needs torch: pip install 'pixelfleet[restore]'")
        # Imported here: torch takes seconds to import and other stages never need it.
        from streams.stages import restore_stage

        return restore_stage.spec(settings.stages)
    raise LookupError(f"no stage {name!r} (stages are: {', '.join(STAGES)})")
