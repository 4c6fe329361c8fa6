"""restore as a runner stage: models loaded once per process, tiles batched across messages."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from processors import intermediate
from processors.restore.engine import Engine, pick_device, radii
from processors.restore.models import ModelError, load_model
from processors.restore.restore import restore
from processors.restore.settings import RestoreSettings
from schemas.events import Envelope
from streams.observe import metrics
from streams.runner.cpus import usable_cpus
from streams.runner.stage import (
    BlobWrite,
    PermanentError,
    StageContext,
    StageResult,
    StageSetupError,
    StageSpec,
)
from streams.stages.common import open_intermediate, ref, work_key
from streams.stages.settings import StageSettings
from streams.stages.tile_batcher import TileBatcher

PNG = "image/png"
STAGE = "restore"


@dataclass
class RestoreService:
    """The loaded models and the batching thread of one worker process."""

    engines: dict[str, Engine]
    batcher: TileBatcher
    device: str
    radii: dict[str, int]  # receptive radius per model, where known: the least tile overlap

    @classmethod
    def start(cls, settings: RestoreSettings) -> RestoreService:
        try:
            device = pick_device(settings.device)
            if device.type == "cpu":
                # torch starts a thread per core of the node; the container may use fewer
                # (its cgroup quota), and more threads than CPUs only contend.
                torch.set_num_threads(usable_cpus())
            names = dict.fromkeys((settings.denoise_model, *settings.upscale_models))
            engines = {
                name: Engine(
                    load_model(name, settings.models[name], allow_pickle=settings.allow_pickle),
                    device,
                    settings.precision,
                    settings.models[name].self_ensemble,
                )
                for name in names
            }
        except (ModelError, RuntimeError) as exc:
            raise StageSetupError(str(exc)) from exc
        for engine in engines.values():
            try:
                engine.warm_up()
            except Exception as exc:  # whatever the model raises: it cannot run as configured
                raise StageSetupError(
                    f"model {engine.name!r} failed its warm-up batch on {device}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            metrics.RESTORE_MODEL.labels(
                STAGE, engine.name, str(device), engine.precision, engine.loaded.source
            ).set(1)

        def observe(model: str, tiles: int, _seconds: float) -> None:
            metrics.RESTORE_BATCH_TILES.labels(STAGE, model, str(device)).observe(tiles)

        batcher = TileBatcher(
            {name: engine for name, engine in engines.items()},
            settings.max_batch,
            settings.max_wait_ms / 1000,
            observe,
        )
        return cls(engines, batcher, str(device), radii(engines))


_services: dict[str, RestoreService] = {}
_lock = threading.Lock()


def service(settings: RestoreSettings) -> RestoreService:
    key = settings.model_dump_json()
    with _lock:
        if key not in _services:
            _services[key] = RestoreService.start(settings)
        return _services[key]


def prepare(params: StageSettings) -> None:
    service(params.restore)


def restore_stage(envelope: Envelope, blob: bytes | None, ctx: StageContext) -> StageResult:
    settings: StageSettings = ctx.params
    record = envelope.record
    planned = (record.restore or {}).get("planned") or envelope.submitted.request.restore
    if planned not in ("denoise", "upscale"):
        raise PermanentError("bad_route", f"restore reached with nothing planned ({planned!r})")
    image = open_intermediate(blob, STAGE)
    svc = service(settings.restore)
    result = restore(image, planned, settings.restore, svc.batcher, svc.radii)
    record.restore = {"planned": planned, "device": svc.device, **result.record()}
    metrics.RESTORE_OUTCOMES.labels(STAGE, result.outcome).inc()
    if result.model is not None and result.tiles:
        megapixels = image.width * image.height / 1e6
        metrics.RESTORE_SECONDS_PER_MEGAPIXEL.labels(STAGE, result.model, svc.device).observe(
            result.seconds / megapixels
        )
        metrics.RESTORE_TILES.labels(STAGE, result.model).observe(result.tiles)
    assert blob is not None  # open_intermediate refused a missing blob
    if result.image is None:
        writes = []
        if result.outcome.startswith("couldnt_"):
            # Kept for a person to look at; the image itself goes on unrestored.
            key = f"{result.outcome}/{record.image_id}.png"
            # A QOI frame is ours alone and no viewer opens it: a person gets a real PNG.
            kept = (
                intermediate.png_bytes(image, image.info.get("exif"))
                if intermediate.is_framed(blob)
                else blob
            )
            writes.append(BlobWrite(ctx.buckets.quarantine, key, kept, PNG))
            record.restore["quarantined"] = f"{ctx.buckets.quarantine}/{key}"
        return StageResult(envelope, writes, outcome="skipped", detail=result.outcome)
    data, kind = intermediate.encode(result.image, image.info.get("exif"))
    model = settings.restore.models[result.model or ""]
    key = work_key(STAGE, envelope, result.model, model, "v2")
    record.current = ref(ctx.buckets.work, key, data, kind)
    write = BlobWrite(ctx.buckets.work, key, data, kind)
    return StageResult(envelope, [write], detail=result.outcome)


def spec(settings: StageSettings) -> StageSpec:
    return StageSpec(
        STAGE,
        restore_stage,
        reads_blob=True,
        params=settings,
        threads=settings.restore.concurrency,
        prepare=prepare,
    )
