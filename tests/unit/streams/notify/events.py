"""Records of the done and dead-letter topics, as the stages write them."""

from __future__ import annotations

from schemas.events import Category, DeadLetter, Envelope, ImageProcessed, encode


def done(
    image_id: str = "img-1",
    *,
    status: str = "done",
    category: str | None = "rings",
    duplicate_of: str | None = None,
    correlation_id: str | None = "order-7",
) -> bytes:
    return encode(
        ImageProcessed(
            image_id=image_id,
            status=status,  # type: ignore[arg-type]
            finished_at="2026-12-02T10:00:00.000Z",
            category=Category(name=category, score=0.9) if category else None,
            correlation_id=correlation_id,
            duplicate_of=duplicate_of,
        )
    )


def dead_letter(image_id: str = "img-2", *, original: str = "not json") -> bytes:
    return encode(
        DeadLetter(
            image_id=image_id,
            stage="validate",
            reason_class="undecodable",
            reason="cannot identify image file",
            topic="p.ingest",
            partition=3,
            offset=41,
            attempts=1,
            at="2026-12-02T10:00:01.000Z",
            original=original,
        )
    )


def dead_letter_of_envelope(envelope: Envelope) -> bytes:
    return dead_letter(envelope.record.image_id, original=encode(envelope).decode())
