"""The restore stage as the runner calls it, with small untrained models."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from processors import intermediate
from processors.restore.engine import Engine
from processors.restore.settings import RestoreSettings
from schemas.events import Envelope, ImageRecord, ImageSubmitted, ObjectRef, Request, Source
from streams.app import registry
from streams.app.settings import Settings
from streams.config.settings import BucketSettings
from streams.runner.stage import PermanentError, StageContext, StageSetupError
from streams.stages import restore_stage
from streams.stages.settings import StageSettings
from tests.support.photos import encode, photo
from tests.support.restore_models import small_settings


def _envelope(planned: str | None, request: str = "auto") -> Envelope:
    source = ObjectRef(bucket="pixelfleet-work", key="validate/img-1/abc.png")
    submitted = ImageSubmitted(
        image_id="img-1",
        source=Source(object=ObjectRef(bucket="pixelfleet-incoming", key="img-1/a.jpg")),
        submitted_at="2026-11-21T10:00:00Z",
        request=Request(restore=request),  # type: ignore[arg-type]
    )
    record = ImageRecord(
        image_id="img-1",
        status="processing",
        updated_at="2026-11-21T10:00:00Z",
        current=source,
        restore={"planned": planned} if planned else None,
    )
    return Envelope(submitted=submitted, route=["restore", "compress"], record=record)


@pytest.fixture
def restore_settings(tmp_path: Path) -> Iterator[RestoreSettings]:
    settings = small_settings(tmp_path)
    yield settings
    key = settings.model_dump_json()
    service = restore_stage._services.pop(key, None)
    if service is not None:
        service.batcher.close()


def _ctx(settings: RestoreSettings) -> StageContext:
    return StageContext(
        stage="restore", buckets=BucketSettings(), params=StageSettings(restore=settings)
    )


def test_upscaled_image_is_written_to_work_and_becomes_current(
    restore_settings: RestoreSettings,
) -> None:
    blob = encode(photo("rocket").resize((100, 150)), "PNG")
    result = restore_stage.restore_stage(_envelope("upscale"), blob, _ctx(restore_settings))
    [write] = result.blobs
    assert write.bucket == "pixelfleet-work" and write.key.startswith("restore/img-1/")
    assert write.content_type == intermediate.CONTENT_TYPE
    assert intermediate.decode(write.data).size == (400, 600)
    record = result.envelope.record
    assert record.current is not None and record.current.key == write.key
    assert record.restore is not None
    assert record.restore["outcome"] == "upscaled" and record.restore["device"] == "cpu"
    assert record.restore["planned"] == "upscale" and record.restore["model"] == "x4"
    assert result.detail == "upscaled" and result.outcome == "ok"


def test_failure_quarantines_the_input_and_sends_it_on(
    restore_settings: RestoreSettings,
) -> None:
    ctx = _ctx(restore_settings)
    service = restore_stage.service(restore_settings)

    def no_memory(batch: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.2 GiB")

    service.batcher.models = {name: no_memory for name in service.batcher.models}
    blob = encode(photo("rocket").resize((100, 150)), "PNG")
    envelope = _envelope("upscale")
    before = envelope.record.current
    result = restore_stage.restore_stage(envelope, blob, ctx)
    [write] = result.blobs
    assert (write.bucket, write.key, write.data) == (
        "pixelfleet-quarantine",
        "couldnt_upscale/img-1.png",
        blob,
    )
    record = result.envelope.record
    assert record.current == before  # compress reads the image as it came
    assert record.restore is not None and record.restore["outcome"] == "couldnt_upscale"
    assert "out of memory even at 16 px tiles" in record.restore["reason"]
    assert record.restore["quarantined"] == "pixelfleet-quarantine/couldnt_upscale/img-1.png"
    assert result.outcome == "skipped"


def test_good_quality_passes_the_same_blob_on(restore_settings: RestoreSettings) -> None:
    blob = encode(Image.new("RGB", (300, 200), "gray"), "PNG")
    result = restore_stage.restore_stage(_envelope("denoise"), blob, _ctx(restore_settings))
    assert result.blobs == [] and result.outcome == "skipped"
    assert result.envelope.record.restore is not None
    assert result.envelope.record.restore["outcome"] == "good_quality"


def test_the_request_plans_restore_when_validate_did_not(restore_settings: RestoreSettings) -> None:
    blob = encode(photo("rocket").resize((60, 90)), "PNG")
    result = restore_stage.restore_stage(_envelope(None, "upscale"), blob, _ctx(restore_settings))
    assert result.envelope.record.restore is not None
    assert result.envelope.record.restore["outcome"] == "upscaled"
    with pytest.raises(PermanentError, match="nothing planned"):
        restore_stage.restore_stage(_envelope(None), blob, _ctx(restore_settings))


def test_registry_offers_restore_when_torch_is_installed() -> None:
    settings = Settings()
    assert "restore" in registry.available(settings)
    spec = registry.builtin("restore", settings)
    assert spec.threads == settings.stages.restore.concurrency and spec.prepare is not None


def test_a_quarantined_intermediate_is_a_png_a_person_can_open(
    restore_settings: RestoreSettings,
) -> None:
    ctx = _ctx(restore_settings)
    service = restore_stage.service(restore_settings)

    def broken(batch: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")

    service.batcher.models = {name: broken for name in service.batcher.models}
    image = photo("rocket").resize((100, 150)).convert("RGBA")
    blob, kind = intermediate.encode(image)  # as the stages before restore write it
    assert intermediate.is_framed(blob) and kind == intermediate.CONTENT_TYPE
    result = restore_stage.restore_stage(_envelope("upscale"), blob, ctx)
    [write] = result.blobs
    assert write.key == "couldnt_upscale/img-1.png" and write.content_type == "image/png"
    assert write.data.startswith(b"\x89PNG\r\n\x1a\n")
    opened = Image.open(io.BytesIO(write.data))
    assert opened.format == "PNG" and opened.mode == "RGBA"
    assert opened.tobytes() == image.tobytes()


def test_a_model_that_fails_its_warm_up_stops_the_worker_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def mismatched(self: Engine, side: int = 64, batch: int = 2) -> None:
        raise RuntimeError("Sizes of tensors must match except in dimension 1")

    monkeypatch.setattr(Engine, "warm_up", mismatched)
    with pytest.raises(StageSetupError, match=r"model 'dn' failed its warm-up batch on cpu: "):
        restore_stage.RestoreService.start(small_settings(tmp_path))


def test_on_the_cpu_torch_uses_the_cpus_the_container_may_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch starts a thread per core of the node; a pod's quota may allow fewer."""
    before = torch.get_num_threads()
    monkeypatch.setattr(restore_stage, "usable_cpus", lambda: 1)
    try:
        service = restore_stage.RestoreService.start(small_settings(tmp_path))
        assert service.device == "cpu" and torch.get_num_threads() == 1
        service.batcher.close()
    finally:
        torch.set_num_threads(before)
