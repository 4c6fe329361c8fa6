"""`pixelfleet init | submit | status`."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import get_args

import click
import msgspec
from confluent_kafka import TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from schemas.events import Hints, ImageProcessed, ImageSubmitted, Profile, Request, decoder
from streams.app import admin
from streams.app.known_content import already_done, catalog_client
from streams.app.settings import Settings
from streams.app.status import fleet_status
from streams.app.submit import Submitter, distinct_files
from streams.app.url_list import UrlList, read_url_list
from streams.cli.ops import require_fleet
from streams.config.topics import Topics
from streams.io import clients
from streams.io.catalog_client import CatalogUnavailableError
from streams.io.topic_reader import TopicCount, image_record, topic_end_offsets

# soft_wrap: a long path stays on one line (scripts and tests grep these lines).
err = Console(stderr=True, soft_wrap=True)
WAIT_S = 600.0  # how long submit --wait follows the images, unless --timeout says


@click.command()
def init() -> None:
    """Create topics, buckets and the work bucket's lifecycle rule (safe to re-run)."""
    settings = Settings()
    kept: list[str] = []
    changes = admin.init(settings, clients.admin(settings.kafka), clients.s3(settings.s3), kept)
    for change in changes:
        click.echo(change)
    for line in kept:  # not changes: said on every run, until the operator acts
        click.echo(line)
    click.echo("init: nothing to change" if not changes else f"init: {len(changes)} change(s)")


@click.command()
@click.argument("sources", nargs=-1)
@click.option(
    "--urls",
    "url_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A crawler's export: one URL a line, or CSV / JSON Lines with url, page_url, title, "
    "keywords. The fetch stage downloads them.",
)
@click.option(
    "--image-id", default=None, help="The id of a single submitted file (default: its sha256)."
)
@click.option("--title", default=None, help="Title hint for categorization.")
@click.option("--keyword", "keywords", multiple=True, help="Keyword hint (repeatable).")
@click.option(
    "--profile",
    type=click.Choice(get_args(Profile)),
    default=None,
    help="Enhancement profile for these images (default: by category).",
)
@click.option(
    "--restore", type=click.Choice(["auto", "denoise", "upscale", "none"]), default="auto"
)
@click.option(
    "--force",
    is_flag=True,
    help="Process the images even where the catalog says the same content is done.",
)
@click.option("--wait", is_flag=True, help="Follow the images until each is done or rejected.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"Seconds --wait waits at most (default {WAIT_S:g}).",
)
def submit(
    sources: tuple[str, ...],
    url_file: Path | None,
    image_id: str | None,
    title: str | None,
    keywords: tuple[str, ...],
    profile: str | None,
    restore: str,
    force: bool,
    wait: bool,
    timeout: float | None,
) -> None:
    """Submit local files (uploaded to the incoming bucket), s3://bucket/prefix objects, or
    the URLs of a crawler's export (--urls FILE)."""
    if timeout is not None and not wait:
        raise click.UsageError("--timeout is how long --wait waits; give --wait too")
    settings = Settings()
    submitter = Submitter(settings)
    request = Request(profile=profile, restore=restore, force=force)  # type: ignore[arg-type]
    files, objects = _expand(sources, submitter)
    urls = read_url_list(url_file) if url_file else UrlList()
    for problem in urls.problems:
        err.print(f"{url_file}: {problem}: skipped")
    if urls.repeats:
        err.print(f"{url_file}: {urls.repeats} repeated URL(s) submitted once")
    if image_id and len(files) + len(objects) + len(urls.items) != 1:
        err.print("error: --image-id names one image; several were given")
        sys.exit(1)
    if image_id and not files:
        # An object's id comes from its key and a URL's from the URL (the same URL is the
        # same image): neither takes one, and ignoring it silently would mislead.
        err.print("error: --image-id names an uploaded file; s3:// objects and URLs get theirs")
        sys.exit(1)
    if not files and not objects and not urls.items:
        given = ", ".join(sources) if sources else ""
        err.print(
            f"error: nothing to submit: {given} hold no file (hidden files are skipped)"
            if given
            else "error: nothing to submit: name files, folders or s3://bucket/prefix, or "
            "--urls FILE"
        )
        sys.exit(1)
    # The same bytes under two names are one image, processed once. (Objects keep their
    # key-based ids: two keys are two images.)
    unique: dict[str, Path]
    copies: dict[Path, str] = {}
    if image_id:
        unique = {image_id: files[0]} if files else {}
    else:
        unique, copies = distinct_files(files)
    first = dict(unique)  # each content's first file, for the copies' report below
    known = {} if force else already_done(settings, unique, request)
    for content_id, existing in known.items():
        err.print(f"{unique.pop(content_id)}: already done as {existing} (--force to redo)")
        click.echo(existing)
    start = _done_offsets(settings) if wait else {}
    hints = Hints(title=title, keywords=list(keywords))
    events = _publish(submitter, unique, objects, urls, url_file, hints, request)
    submitter.flush()
    err.print(f"submitted {len(events)} image(s) to {Topics(settings.topic_prefix).ingest}")
    if copies:
        err.print(f"skipped {len(copies)} cop{'y' if len(copies) == 1 else 'ies'}: the same bytes")
        for path, content_id in copies.items():
            err.print(f"  {path} is {first[content_id]} ({content_id})")
    for event in events:
        click.echo(event.image_id)
    if not wait or not events:
        # Lines of the URL file that could not be used make the call fail, after the rest.
        sys.exit(1 if urls.problems else 0)
    code, outcomes = _follow(
        settings, {e.image_id for e in events}, start, WAIT_S if timeout is None else timeout
    )
    for path, content_id in copies.items():
        err.print(f"{path}: {outcomes.get(content_id, 'no outcome')} (as {first[content_id]})")
    sys.exit(_waited_exit(code, outcomes, bool(urls.problems)))


def _publish(
    submitter: Submitter,
    unique: dict[str, Path],
    objects: list[tuple[str, str]],
    urls: UrlList,
    url_file: Path | None,
    given: Hints,
    request: Request,
) -> list[ImageSubmitted]:
    """Upload and submit the files, then the objects, then the URLs; the events sent. A
    URL line the fleet would refuse is skipped (noted in `urls.problems`); a file or an
    object that would be refused (an --image-id it cannot read, a --title too long) stops
    the call, checked before its bytes are stored, after what went before is sent and its
    ids are printed."""
    events: list[ImageSubmitted] = []
    try:
        for content_id, path in unique.items():
            hints = msgspec.structs.replace(given, file_name=path.name)
            events.append(
                submitter.upload_and_submit(path, image_id=content_id, hints=hints, request=request)
            )
        for bucket, key in objects:
            # The same hints as files get; the key's last part is the file name.
            events.append(submitter.submit_object(bucket, key, hints=given, request=request))
    except ValueError as exc:
        submitter.flush()
        # What went before is on its way: its ids are printed as a successful call prints
        # them, so a script can follow them or skip them when it runs the call again.
        for event in events:
            click.echo(event.image_id)
        err.print(f"error: {exc}")
        sys.exit(1)
    for item in urls.items:
        line = item.hints
        hints = Hints(
            title=line.title or given.title,
            keywords=line.keywords or list(given.keywords),
            page_url=line.page_url,
            file_name=line.file_name,
        )
        try:
            events.append(submitter.submit_url(item.url, hints=hints, request=request))
        except ValueError as exc:  # a line whose hints are too large: the rest still go
            err.print(f"{url_file}: {exc}: skipped")
            urls.problems.append(str(exc))
    return events


def _waited_exit(code: int, outcomes: dict[str, str], unusable_lines: bool) -> int:
    """1 when the call itself fell short (images without an outcome, unusable lines); else
    2 when an image is not done, a result a script must see; else 0."""
    if code or unusable_lines:
        return 1
    not_done = sorted(i for i, status in outcomes.items() if status != "done")
    if not_done:
        err.print(
            f"error: {len(not_done)} image(s) not done (rejected or failed); "
            "`pixelfleet status ID` says why"
        )
        return 2
    return 0


def _expand(
    sources: tuple[str, ...], submitter: Submitter
) -> tuple[list[Path], list[tuple[str, str]]]:
    files: list[Path] = []
    objects: list[tuple[str, str]] = []
    for source in sources:
        if source.startswith("s3://"):
            bucket, _, prefix = source[5:].partition("/")
            objects.extend((bucket, key) for key in submitter.objects(bucket, prefix))
            continue
        path = Path(source)
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            )
        elif path.is_file():
            files.append(path)
        else:
            err.print(f"error: {source} is neither a file, a folder nor s3://bucket/prefix")
            sys.exit(1)
    return files, objects


def _done_offsets(settings: Settings) -> dict[int, int]:
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.submit-wait")
    try:
        return {
            p: high
            for p, (_low, high) in topic_end_offsets(
                consumer, Topics(settings.topic_prefix).done
            ).items()
        }
    finally:
        consumer.close()


def _follow(
    settings: Settings, wanted: set[str], start: dict[int, int], timeout: float
) -> tuple[int, dict[str, str]]:
    """Read the done topic from before the submission until every image has an outcome;
    the exit code and each image's outcome."""
    topic = Topics(settings.topic_prefix).done
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.submit-wait")
    consumer.assign([TopicPartition(topic, p, o) for p, o in start.items()])
    outcomes: dict[str, str] = {}
    decode = decoder(ImageProcessed)
    deadline = time.monotonic() + timeout
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("processing", total=len(wanted))
        while len(outcomes) < len(wanted) and time.monotonic() < deadline:
            for msg in consumer.consume(200, timeout=0.5):
                if msg.error() is not None:
                    continue
                try:
                    event = decode.decode(msg.value() or b"")
                except msgspec.DecodeError:
                    continue
                if event.image_id in wanted and event.image_id not in outcomes:
                    outcomes[event.image_id] = event.status
                    progress.update(task, completed=len(outcomes))
    consumer.close()
    counts = Counter(outcomes.values())
    err.print(f"outcomes: {', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none'}")
    missing = wanted - outcomes.keys()
    if missing:
        err.print(
            f"error: {len(missing)} image(s) had no outcome after {timeout:.0f} s; "
            "see `pixelfleet status`"
        )
        return 1, outcomes
    return 0, outcomes


@click.command()
@click.argument("image_id", required=False)
def status(image_id: str | None) -> None:
    """Per stage: lag and DLQ size; or one image's current record."""
    settings = Settings()
    if image_id and settings.catalog.url:
        try:
            raw = catalog_client(settings).record(image_id)
        except CatalogUnavailableError as exc:
            err.print(f"warning: the catalog could not be asked ({exc}); reading the topic")
        else:
            if raw is not None:
                click.echo(json.dumps(json.loads(raw), indent=2))
                return
            # The catalog's "no such image" is not the last word: it may still be reading
            # the topic (a record just written, a replica restarting), and a catalog URL
            # that already ends in /v1 answers not_found for every path. The topic is.
            err.print(f"the catalog has no record of {image_id}; reading the metadata topic")
    # The topics are read from here on: a typo must not read as an empty fleet.
    t = Topics(settings.topic_prefix)
    require_fleet(settings, [t.metadata] if image_id else [t.ingest, t.dlq, t.done])
    if image_id:
        found = image_record(settings, clients.admin(settings.kafka), image_id)
        if not found.complete:
            err.print(
                f"warning: the metadata partition of {image_id} could not be read to its end "
                "in time; what follows may not be its newest record"
            )
        if found.record is None:
            err.print(
                f"error: no record for {image_id} under the topic prefix "
                f"{settings.topic_prefix!r}: check the id (submit printed it), or "
                "PIXELFLEET_TOPIC_PREFIX"
            )
            sys.exit(1)
        click.echo(json.dumps(msgspec.to_builtins(found.record), indent=2))
        return
    lags, dlq, done = fleet_status(settings)
    table = Table(title=f"pixelfleet ({settings.topic_prefix})")
    for column in ("stage", "inbox", "group", "end offsets", "committed", "lag"):
        table.add_column(
            column, justify="right" if column in ("end offsets", "committed", "lag") else "left"
        )
    for lag in lags:
        table.add_row(
            lag.stage, lag.topic, lag.group, str(lag.end), str(lag.committed), str(lag.lag)
        )
    # Piped into a file or grep, rich would fold the table to 80 columns and cut the
    # topic and group names; they are what a reader greps for.
    Console(width=None if sys.stdout.isatty() else 200).print(table)

    def shown(count: TopicCount) -> str:
        return (
            str(count.records) if count.exact else f"~{count.records} (offsets, markers included)"
        )

    click.echo(f"completed: {shown(done)}   dead letters: {shown(dlq)}")
