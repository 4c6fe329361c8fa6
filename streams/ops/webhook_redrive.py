"""`pixelfleet webhooks list|redrive`: the webhook dead letters, and delivering them again.

A webhook dead letter (`<prefix>.webhooks.dlq`, written by the notify worker) holds the
whole payload of an event one endpoint never took. Once the receiver is fixed, a redrive
POSTs each chosen letter's payload to the subscription of that endpoint's name, signed
with the subscription's current secret and carrying the event's own id
(`X-Pixelfleet-Event-Id`), so a receiver that stored it after all drops the repeat.

A letter the receiver took is marked on `<prefix>.webhooks.redriven` (compacted, key
`partition:offset`, the event id in the value) at once; a redrive run again, or resumed
after a crash, skips what is marked. A mark counts only for a letter of its event id: a
webhooks.dlq deleted and created again starts its offsets at 0, and its new letters are
not the ones the old marks are about. A crash between a POST and its mark sends that one
event again on the next run: at least once, by the same event id, as the worker itself
delivers.

Every secret a redrive needs is read before anything is sent (on --dry-run too): a variable
unset in the operator's shell stops it with one line naming the variable, not with a
traceback halfway through, after other endpoints' letters went out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import msgspec
from confluent_kafka import KafkaError, Message, Producer

from processors import webhooks
from processors.webhooks import EventType, WebhookEvent
from streams.config.notify import WebhookSubscription
from streams.config.settings import FleetSettings
from streams.io import clients
from streams.io.failures import OperationError
from streams.io.safe_http import FetchError, SafeFetcher
from streams.io.topic_reader import topic_messages
from streams.notify.setup import build_fetcher, webhooks_dlq
from streams.ops import ledger
from streams.ops.selection import parse_time
from streams.runner.records import now_iso

# A receiver that failed this many letters in a row in one run is not tried again in that
# run: its other letters are left for the next one, instead of each waiting its timeout.
FAILURES_BEFORE_SKIP = 3
MARK_FLUSH_S = 10.0


class MarkLostError(OperationError):
    """A delivered letter's mark did not reach Kafka: the redrive stops there."""


class SecretMissingError(OperationError):
    """A subscription the redrive would send to has no secret here: nothing is sent."""


class WebhookLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A record of `<prefix>.webhooks.dlq`, as `processors.webhooks.dead_letter` writes it."""

    event_id: str
    type: str
    image_id: str
    endpoint: str
    reason: str
    given_up_at: str
    payload: msgspec.Raw
    last_status: int | None = None
    last_error: str | None = None
    attempts: int = 0


class WebhookMark(msgspec.Struct, frozen=True, kw_only=True):
    """One delivered webhook dead letter, as kept on `<prefix>.webhooks.redriven`."""

    redrive_id: str
    event_id: str
    endpoint: str
    status: int
    at: str


@dataclass(frozen=True)
class WebhookLetterAt:
    letter: WebhookLetter
    partition: int
    offset: int

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass
class WebhookRedriveReport:
    sent: list[tuple[WebhookLetterAt, int]] = field(default_factory=list)  # with the status
    already: list[WebhookLetterAt] = field(default_factory=list)
    # Not delivered, with why: no such subscription, the receiver's answer or error, or
    # left for the next run after its endpoint failed FAILURES_BEFORE_SKIP times in a row.
    failed: list[tuple[WebhookLetterAt, str]] = field(default_factory=list)


def read_letters(settings: FleetSettings) -> tuple[list[WebhookLetterAt], int]:
    """Every webhook dead letter with its position, and how many records were unreadable."""
    decode = msgspec.json.Decoder(WebhookLetter).decode
    letters: list[WebhookLetterAt] = []
    unreadable = 0
    for message in topic_messages(settings, webhooks_dlq(settings.topic_prefix), strict=True):
        try:
            letter = decode(message.value() or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            unreadable += 1
            continue
        letters.append(WebhookLetterAt(letter, message.partition() or 0, message.offset() or 0))
    letters.sort(key=lambda item: (item.letter.given_up_at, item.partition, item.offset))
    return letters, unreadable


def read_marks(settings: FleetSettings) -> dict[str, WebhookMark]:
    """What earlier redrives delivered, by the letter's `partition:offset`."""
    decode = msgspec.json.Decoder(WebhookMark).decode
    topic = ledger.webhooks_redriven_topic(settings.topic_prefix)
    return {key: decode(value) for key, value in ledger.latest_by_key(settings, topic).items()}


def delivered_by(marks: dict[str, WebhookMark], item: WebhookLetterAt) -> WebhookMark | None:
    """The mark of an earlier redrive that delivered this letter, if one did. The position
    alone is not enough: a webhooks.dlq made again reuses its offsets for other events."""
    mark = marks.get(item.position)
    return mark if mark is not None and mark.event_id == item.letter.event_id else None


def select(
    letters: Iterable[WebhookLetterAt],
    *,
    endpoint: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
) -> list[WebhookLetterAt]:
    """The letters of this endpoint, reason and age (each filter optional), oldest first."""
    return [
        item
        for item in letters
        if (endpoint is None or item.letter.endpoint == endpoint)
        and (reason is None or item.letter.reason == reason)
        and (since is None or parse_time(item.letter.given_up_at) >= since)
    ]


class WebhookRedriver:
    """Delivers chosen webhook dead letters again, each at most once per redrive id."""

    def __init__(
        self,
        settings: FleetSettings,
        *,
        fetcher: SafeFetcher | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.fetcher = fetcher or build_fetcher(settings)
        self.wall = wall
        self.subscriptions = {s.name: s for s in settings.notify.subscriptions}
        self.marks_topic = ledger.webhooks_redriven_topic(settings.topic_prefix)

    def run(
        self,
        chosen: Sequence[WebhookLetterAt],
        *,
        redrive_id: str,
        again: bool,
        dry_run: bool,
        on_result: Callable[[str], None] | None = None,
    ) -> WebhookRedriveReport:
        """Sends each chosen letter not marked yet (by any redrive, or with `again` by this
        one) to its endpoint; a dry run sends nothing and reports what it would send."""
        report = WebhookRedriveReport()
        marks = read_marks(self.settings)
        todo: list[WebhookLetterAt] = []
        for item in chosen:
            mark = delivered_by(marks, item)
            if mark is not None and (not again or mark.redrive_id == redrive_id):
                report.already.append(item)
            else:
                todo.append(item)
        # Before the first POST, so a missing secret cannot stop the run halfway through.
        secrets = self._secrets({item.letter.endpoint for item in todo})
        producer = None if dry_run else clients.producer(self.settings.kafka)
        failures_in_a_row: dict[str, int] = {}
        try:
            for item in todo:
                name = item.letter.endpoint
                subscription = self.subscriptions.get(name)
                problem = self._unsendable(subscription, failures_in_a_row.get(name, 0))
                if problem is not None:
                    report.failed.append((item, problem))
                    continue
                assert subscription is not None
                if dry_run:
                    report.sent.append((item, 0))
                    continue
                status, problem = self._post(item.letter, subscription, secrets[name])
                if problem is not None:
                    failures_in_a_row[name] = failures_in_a_row.get(name, 0) + 1
                    report.failed.append((item, problem))
                else:
                    failures_in_a_row[name] = 0
                    assert producer is not None
                    self._mark(producer, item, redrive_id, status)
                    report.sent.append((item, status))
                if on_result:
                    on_result(item.position)
        finally:
            if producer is not None:
                producer.flush(MARK_FLUSH_S)
        return report

    def _secrets(self, names: set[str]) -> dict[str, bytes]:
        """The signing key of each of these subscriptions that exists (a letter of an
        unknown one is reported as such); raises SecretMissingError naming every one
        missing, so the operator sets them all at once."""
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for name in sorted(names):
            subscription = self.subscriptions.get(name)
            if subscription is None:
                continue
            try:
                found[name] = subscription.secret_bytes()
            except ValueError as exc:
                missing.append(str(exc))
        if missing:
            raise SecretMissingError(f"{'; '.join(missing)}; nothing delivered")
        return found

    def _unsendable(self, subscription: WebhookSubscription | None, failed: int) -> str | None:
        if subscription is None:
            names = ", ".join(sorted(self.subscriptions)) or "none"
            return f"no subscription of that name in notify.subscriptions (there are: {names})"
        if failed >= FAILURES_BEFORE_SKIP:
            return (
                f"left for the next run: its endpoint failed {failed} letters in a row in this one"
            )
        return None

    def _post(
        self, letter: WebhookLetter, subscription: WebhookSubscription, secret: bytes
    ) -> tuple[int, str | None]:
        """(status, None) when the receiver took the event; else (status or 0, why not)."""
        event = WebhookEvent(
            event_id=letter.event_id,
            type=cast(EventType, letter.type),
            image_id=letter.image_id,
            category=None,  # chose the subscriptions; the endpoint is already chosen here
            body=bytes(letter.payload),
        )
        headers = webhooks.headers(event, secret, int(self.wall()))
        try:
            answer = self.fetcher.post(subscription.url, event.body, headers)
        except FetchError as exc:
            return exc.status or 0, f"not delivered: {exc}"
        verdict = webhooks.verdict(answer.status)
        if verdict == "delivered":
            return answer.status, None
        if verdict == "gone":
            return answer.status, "the receiver ended the subscription (410)"
        return answer.status, f"the receiver answered {answer.status}"

    def _mark(
        self, producer: Producer, item: WebhookLetterAt, redrive_id: str, status: int
    ) -> None:
        mark = WebhookMark(
            redrive_id=redrive_id,
            event_id=item.letter.event_id,
            endpoint=item.letter.endpoint,
            status=status,
            at=now_iso(),
        )
        value = msgspec.json.encode(mark)
        refused: list[KafkaError] = []

        def stored(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                refused.append(error)

        producer.produce(
            self.marks_topic, key=item.position.encode(), value=value, on_delivery=stored
        )
        # At once: the POST is done, and a mark still in the queue at a crash means one
        # more delivery of this event on the next run. flush() returns 0 for a mark the
        # broker refused too: only the delivery report tells.
        left = producer.flush(MARK_FLUSH_S)
        if left or refused:
            why = refused[0] if refused else f"not acknowledged in {MARK_FLUSH_S:.0f} s"
            raise MarkLostError(
                f"the receiver took webhooks.dlq@{item.position}, but its mark was not stored "
                f"({why}); a redrive run again would deliver that event once more"
            )
