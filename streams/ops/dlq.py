"""`pixelfleet dlq list | redrive`: read dead letters, and re-send chosen ones to their inbox.

A redrive has an id. Each re-sent message carries it (header `pixelfleet-redrive-id`, and
`pixelfleet-redriven-from` = the dead letter's `partition:offset`), and the same Kafka
transaction that re-sends a batch records every re-sent letter on `<prefix>.dlq.redriven`.
So a redrive that crashes and is run again with its id re-sends only what is missing, and a
letter already re-sent by an earlier redrive is left alone unless `--again` says otherwise.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from minio import Minio
from minio.commonconfig import CopySource

from schemas.events import DeadLetter, ObjectRef, decoder
from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.io.topic_reader import topic_messages
from streams.ops import ledger, objects
from streams.ops.selection import LetterAt
from streams.runner.blobs import input_ref
from streams.runner.records import (
    CORRELATION_HEADER,
    SCHEMA_HEADER,
    OutMessage,
    decode_input,
    now_iso,
)
from streams.runner.stage import PermanentError

REDRIVE_HEADER = "pixelfleet-redrive-id"
REDRIVEN_FROM_HEADER = "pixelfleet-redriven-from"
_MISSING = {"NoSuchKey", "NoSuchObject"}


class RedriveMark(msgspec.Struct, frozen=True, kw_only=True):
    """One re-sent dead letter, as kept on `<prefix>.dlq.redriven`."""

    redrive_id: str
    image_id: str
    to_topic: str
    at: str


def new_redrive_id(now: datetime | None = None) -> str:
    at = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"r-{at}-{uuid.uuid4().hex[:6]}"


def read_letters(settings: FleetSettings) -> tuple[list[LetterAt], int]:
    """Every dead letter on the DLQ with its position, and how many records were unreadable."""
    decode = decoder(DeadLetter).decode
    letters: list[LetterAt] = []
    unreadable = 0
    for message in topic_messages(settings, Topics(settings.topic_prefix).dlq, strict=True):
        try:
            letter = decode(message.value() or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            unreadable += 1
            continue
        headers = dict(message.headers() or [])
        cid = headers.get(CORRELATION_HEADER)
        letters.append(
            LetterAt(letter, message.partition() or 0, message.offset() or 0, _text(cid))
        )
    return letters, unreadable


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def read_marks(settings: FleetSettings) -> dict[str, RedriveMark]:
    """What earlier redrives re-sent, by the dead letter's `partition:offset`."""
    decode = decoder(RedriveMark).decode
    topic = ledger.redriven_topic(settings.topic_prefix)
    return {key: decode(value) for key, value in ledger.latest_by_key(settings, topic).items()}


def plan(
    chosen: Sequence[LetterAt], marks: dict[str, RedriveMark], redrive_id: str, *, again: bool
) -> tuple[list[LetterAt], list[LetterAt]]:
    """(to send, already sent). A letter sent under this redrive id is never sent again; one
    sent by another redrive is sent again only with `again`."""
    send: list[LetterAt] = []
    done: list[LetterAt] = []
    for item in chosen:
        mark = marks.get(item.position)
        if mark is None or (again and mark.redrive_id != redrive_id):
            send.append(item)
        else:
            done.append(item)
    return send, done


def original_bytes(letter: DeadLetter) -> bytes:
    if letter.original_encoding == "base64":
        return base64.b64decode(letter.original)
    return letter.original.encode()


@dataclass
class RedriveReport:
    redrive_id: str
    sent: list[LetterAt] = field(default_factory=list)
    already: list[LetterAt] = field(default_factory=list)
    # Letters left unsent, with why: their input object is gone for good.
    unsendable: list[tuple[LetterAt, str]] = field(default_factory=list)
    # Originals copied back from the quarantine bucket before the letter was re-sent.
    restored: list[tuple[LetterAt, ObjectRef]] = field(default_factory=list)


class Redriver:
    def __init__(self, settings: FleetSettings, s3: Minio | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.s3 = s3 or clients.s3(settings.s3)

    def run(
        self,
        chosen: Sequence[LetterAt],
        *,
        redrive_id: str | None = None,
        again: bool = False,
        dry_run: bool = False,
    ) -> RedriveReport:
        writer = None
        if not dry_run:
            ledger.ensure_ledgers(self.settings)
            # The writer first: starting it fences any other redrive still running (one
            # transactional id for all of them), so the marks read next include everything
            # such a run will ever commit, and no letter is planned by two runs at once.
            writer = ledger.TransactionalWriter(self.settings, "dlq-redrive")
        try:
            report = RedriveReport(redrive_id or new_redrive_id())
            send, report.already = plan(
                chosen, read_marks(self.settings), report.redrive_id, again=again
            )
            ready: list[LetterAt] = []
            for item in send:
                problem = self._check_input(item, report, dry_run)
                if problem:
                    report.unsendable.append((item, problem))
                else:
                    ready.append(item)
            if writer is not None:
                step = ledger.TRANSACTION_RECORDS // 2  # two records per letter
                for start in range(0, len(ready), step):
                    batch = ready[start : start + step]
                    writer.commit(self._messages(batch, report.redrive_id))
        finally:
            if writer is not None:
                writer.close()
        report.sent = ready
        return report

    def _messages(self, batch: Iterable[LetterAt], redrive_id: str) -> list[OutMessage]:
        out: list[OutMessage] = []
        marks = ledger.redriven_topic(self.settings.topic_prefix)
        at = now_iso()
        for item in batch:
            letter = item.letter
            value = original_bytes(letter)
            headers: list[tuple[str, str | bytes | None]] = [
                (SCHEMA_HEADER, self._schema(letter.topic, value)),
                (REDRIVE_HEADER, redrive_id.encode()),
                (REDRIVEN_FROM_HEADER, item.position.encode()),
            ]
            if item.correlation_id:
                headers.append((CORRELATION_HEADER, item.correlation_id.encode()))
            key = letter.image_id.encode()
            out.append(OutMessage(letter.topic, key, value, headers))
            mark = RedriveMark(
                redrive_id=redrive_id, image_id=letter.image_id, to_topic=letter.topic, at=at
            )
            out.append(OutMessage(marks, item.position.encode(), msgspec.json.encode(mark), []))
        return out

    def _schema(self, topic: str, value: bytes) -> bytes:
        if topic != self.topics.ingest:
            return b"envelope/1"
        try:
            event = json.loads(value)
        except ValueError:
            return b"image_submitted/1"
        # An envelope that fetch sent back to validate has a `submitted` member.
        is_envelope = isinstance(event, dict) and "submitted" in event
        return b"envelope/1" if is_envelope else b"image_submitted/1"

    def _check_input(self, item: LetterAt, report: RedriveReport, dry_run: bool) -> str | None:
        """None when the letter's input object is there (or restorable from quarantine, then
        restored unless a dry run); else why it cannot be re-sent."""
        letter = item.letter
        if letter.original_size is not None:
            return (
                f"its original event ({letter.original_size:,} bytes) was too large to keep in "
                f"the letter; it stays at {letter.topic} partition {letter.partition} offset "
                f"{letter.offset} while the topic keeps it"
            )
        try:
            envelope = decode_input(letter.topic, self.topics, original_bytes(letter), now_iso())
        except PermanentError:
            return None  # not an event at all: re-sent as it was, the stage decides again
        ref = input_ref(envelope)
        if ref is None or self._exists(ref):
            return None
        source = envelope.submitted.source.object
        kept = letter.quarantined
        if kept is not None and source is not None and ref == source and self._exists(kept):
            if not dry_run:
                self.s3.copy_object(ref.bucket, ref.key, CopySource(kept.bucket, kept.key))
            report.restored.append((item, kept))
            return None
        days = self.settings.buckets.work_expiry_days
        if ref.bucket == self.settings.buckets.work:
            return (
                f"its input s3://{ref.bucket}/{ref.key} has expired (the work bucket keeps "
                f"{days} day(s)): `pixelfleet replay --stage validate --image-id "
                f"{letter.image_id}` starts it from the original"
            )
        return f"its input s3://{ref.bucket}/{ref.key} is gone and no quarantined copy exists"

    def _exists(self, ref: ObjectRef) -> bool:
        return objects.exists(self.s3, ref, _MISSING)
