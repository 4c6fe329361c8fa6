"""What `pixelfleet replay` re-sends for each image: the input its stage S last read, or,
where that is gone, the original.

Stage S read an envelope from its inbox; that envelope names S's input (`record.current`),
an intermediate in the work bucket. Inbox topics keep 7 days and the work bucket 1, so:

1. the newest message of the image on S's inbox, when its input object is still there:
   re-sent as it was, and S onward run again;
2. else the newest message on the ingest topic (the submission, or for a URL the envelope
   fetch sent back), when its original is there: the image starts over at validate;
3. else a submission rebuilt from what outlives the topics: the original under
   `{image_id}/` in the incoming bucket, or the record's fetched URL. The hints the
   submission carried (title, keywords) are not on the record, so only the file name is.

Every re-sent submission asks for `force`: a replay is meant to redo the work even where the
catalog knows the same content done under the same settings.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import msgspec
from minio import Minio

from schemas.events import (
    Envelope,
    Hints,
    ImageRecord,
    ImageSubmitted,
    ObjectRef,
    Request,
    Source,
    encode,
)
from streams.config.settings import FleetSettings
from streams.config.topics import INGEST_STAGE, Topics
from streams.io.topic_reader import topic_messages
from streams.ops import objects
from streams.runner.blobs import input_ref
from streams.runner.records import decode_input, now_iso
from streams.runner.stage import PermanentError

_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}


@dataclass(frozen=True)
class ReplayItem:
    image_id: str
    stage: str  # the stage it starts at
    topic: str
    value: bytes | None  # None: nothing to replay it from
    kind: str  # the schema header's kind: image_submitted or envelope
    note: str = ""


def newest_by_image(
    settings: FleetSettings, topic: str, wanted: Collection[str]
) -> dict[str, bytes]:
    """The newest committed value of each wanted image on a topic."""
    found: dict[str, bytes] = {}
    for message in topic_messages(settings, topic, timeout_s=600, strict=True):
        key = (message.key() or b"").decode()
        value = message.value()
        if key in wanted and value:
            found[key] = value
    return found


def forced(envelope_or_submission: Envelope | ImageSubmitted) -> bytes:
    """The message again, asking for the work to be done even where it was done before."""
    if isinstance(envelope_or_submission, Envelope):
        envelope = envelope_or_submission
        envelope.submitted = _force(envelope.submitted)
        envelope.attempt = 0
        return encode(envelope)
    return encode(_force(envelope_or_submission))


def _force(submitted: ImageSubmitted) -> ImageSubmitted:
    request = msgspec.structs.replace(submitted.request, force=True)
    return msgspec.structs.replace(submitted, request=request)


class ReplayPlanner:
    def __init__(self, settings: FleetSettings, s3: Minio) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.s3 = s3

    def plan(self, records: Sequence[ImageRecord], stage: str) -> list[ReplayItem]:
        wanted = {r.image_id for r in records}
        ingest = self.topics.inbox(INGEST_STAGE)
        at_stage = newest_by_image(self.settings, self.topics.inbox(stage), wanted)
        at_ingest = (
            at_stage if stage == INGEST_STAGE else newest_by_image(self.settings, ingest, wanted)
        )
        return [
            self._one(r, stage, at_stage.get(r.image_id), at_ingest.get(r.image_id))
            for r in records
        ]

    def _one(
        self, record: ImageRecord, stage: str, at_stage: bytes | None, at_ingest: bytes | None
    ) -> ReplayItem:
        why = ""
        if at_stage is not None:
            item, why = self._from_message(record.image_id, stage, at_stage)
            if item is not None:
                return item
        else:
            inbox = self.topics.inbox(stage)
            why = f"no {stage} input on {inbox} (past its retention, or not on the route)"
        if stage != INGEST_STAGE and at_ingest is not None:
            item, why_not = self._from_message(record.image_id, INGEST_STAGE, at_ingest)
            if item is not None:
                return _noted(item, f"from validate: {why}")
            why = why_not
        elif at_stage is None and at_ingest is None:
            held = " or ".join(dict.fromkeys([self.topics.inbox(stage), self.topics.ingest]))
            why = f"nothing of it on {held} any more (past the retention)"
        return self._rebuilt(record, why)

    def _from_message(
        self, image_id: str, stage: str, value: bytes
    ) -> tuple[ReplayItem | None, str]:
        topic = self.topics.inbox(stage)
        try:
            envelope = decode_input(topic, self.topics, value, now_iso())
        except PermanentError as exc:
            return None, f"the {stage} input on {topic} is not readable ({exc.reason})"
        ref = input_ref(envelope)
        if ref is not None and not self._exists(ref):
            days = self.settings.buckets.work_expiry_days
            kept = (
                f" (the work bucket keeps {days} day(s))"
                if ref.bucket == self.settings.buckets.work
                else ""
            )
            return None, f"the {stage} input s3://{ref.bucket}/{ref.key} is gone{kept}"
        if topic == self.topics.ingest and _is_submission(value):
            submitted = msgspec.json.decode(value, type=ImageSubmitted)
            return ReplayItem(image_id, stage, topic, forced(submitted), "image_submitted"), ""
        return ReplayItem(image_id, stage, topic, forced(envelope), "envelope"), ""

    def _rebuilt(self, record: ImageRecord, why: str) -> ReplayItem:
        """A submission from the incoming bucket or the fetched URL, when the topics no longer
        hold one whose original is there."""
        image_id = record.image_id
        original = self._original(image_id)
        if original is not None:
            source = Source(object=original)
            name = original.key.rsplit("/", 1)[-1]
        elif record.fetch is not None:
            source, name = Source(url=record.fetch.url), ""
        else:
            return ReplayItem(
                image_id,
                INGEST_STAGE,
                self.topics.ingest,
                None,
                "",
                f"cannot replay: {why}; no original found",
            )
        submitted = ImageSubmitted(
            image_id=image_id,
            source=source,
            submitted_at=now_iso(),
            hints=Hints(file_name=name or None),
            request=msgspec.structs.replace(record.request or Request(), force=True),
            correlation_id=record.correlation_id,
        )
        note = (
            f"from validate, rebuilt from the record ({why}; "
            "hints other than the file name are lost)"
        )
        return ReplayItem(
            image_id, INGEST_STAGE, self.topics.ingest, encode(submitted), "image_submitted", note
        )

    def _original(self, image_id: str) -> ObjectRef | None:
        bucket = self.settings.buckets.incoming
        for obj in self.s3.list_objects(bucket, prefix=f"{image_id}/", recursive=True):
            if obj.object_name and not obj.is_dir:
                return ObjectRef(bucket=bucket, key=obj.object_name, size=obj.size)
        return None

    def _exists(self, ref: ObjectRef) -> bool:
        return objects.exists(self.s3, ref, _MISSING)


def _is_submission(value: bytes) -> bool:
    try:
        msgspec.json.decode(value, type=ImageSubmitted)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return True


def _noted(item: ReplayItem, note: str) -> ReplayItem:
    return ReplayItem(item.image_id, item.stage, item.topic, item.value, item.kind, note)
