"""The demo's course: stack, init, workers, submit, watch, summarize, report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from schemas.events import DeadLetter, Hints, ObjectRef, decoder
from streams.app import admin
from streams.app.settings import Settings
from streams.app.submit import Submitter, content_image_id, object_file_name
from streams.config.topics import STAGES, Topics
from streams.demo.console import DemoCatalog, serve_until_interrupted
from streams.demo.progress import DoneTail, StageCounters, StageRow, scrape
from streams.demo.report import Entry, write_report
from streams.demo.samples import Sample, write_samples
from streams.demo.summary import Summary, summarize
from streams.demo.workers import WorkerProcesses
from streams.devstack.stack import DevStack
from streams.io import clients
from streams.io.topic_reader import latest_records, topic_messages

TERMINAL = ("done", "rejected", "failed")


class DemoError(Exception):
    """The demo cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Item:
    path: Path
    image_id: str
    shows: str
    expect: str | None  # None for a user's own files


def stack_settings(use: str, console: Console) -> tuple[Settings, dict[str, str]]:
    """Settings and the environment for worker processes: the dev stack, or the environment's."""
    settings = Settings()
    if use == "env":
        return settings, {}
    console.print("[dim]starting the local stack (installs Kafka and MinIO the first time)[/]")
    info = DevStack(settings.dev, progress=lambda m: console.print(f"[dim]{m}[/]")).up()
    return info.settings(settings), info.env()


def items_of(folder: Path | None, samples_dir: Path) -> list[Item]:
    described: list[tuple[Path, str, str | None]]
    if folder is None:
        samples: list[Sample] = write_samples(samples_dir)
        described = [(samples_dir / s.file, s.shows, s.expect) for s in samples]
    else:
        if not folder.is_dir():
            raise DemoError(f"{folder} is not a folder of images")
        paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        described = [(p, "", None) for p in paths]
    if not described:
        raise DemoError(f"no files in {folder}")
    return [
        Item(path, content_image_id(path.read_bytes()), shows, expect)
        for path, shows, expect in described
    ]


def submit_new(settings: Settings, items: list[Item]) -> int:
    """Submit what this stack has never seen; a re-run only finishes what is left."""
    # topic_messages waits out partitions still electing leaders right after `init`.
    ingested = topic_messages(settings, Topics(settings.topic_prefix).ingest)
    seen = {(m.key() or b"").decode() for m in ingested}
    submitter = Submitter(settings)
    fresh = [item for item in items if item.image_id not in seen]
    for item in fresh:
        submitter.upload_and_submit(
            item.path, image_id=item.image_id, hints=Hints(file_name=item.path.name)
        )
    submitter.flush()
    return len(fresh)


def _stage_table(rows: list[StageRow]) -> Table:
    table = Table(title="pixelfleet demo", title_justify="left", expand=False)
    for column in ("stage", "done", "in flight", "rejected", "images/s"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in rows:
        if not row.up:
            table.add_row(row.stage, "-", "-", "-", "[red]down[/]")
            continue
        table.add_row(
            row.stage,
            str(row.processed),
            str(row.waiting),
            f"[red]{row.rejected}[/]" if row.rejected else "0",
            f"{row.per_second:.2f}",
        )
    return table


def watch(
    settings: Settings,
    workers: WorkerProcesses,
    items: list[Item],
    timeout_s: float,
    console: Console,
) -> dict[str, str]:
    """Show live progress until every item is finished; return their statuses."""
    ids = {item.image_id for item in items}
    tail = DoneTail(settings)
    counters = StageCounters()
    bar = Progress(
        TextColumn("images"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[dim]eta[/]"),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("images", total=len(ids))
    deadline = time.monotonic() + timeout_s
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while True:
                tail.poll(0.5)
                finished = {i: s for i, s in tail.status.items() if i in ids and s in TERMINAL}
                bar.update(task, completed=len(finished))
                rows = []
                for worker in workers.workers:
                    try:
                        samples = scrape(worker.metrics_port)
                    except OSError:
                        samples = None
                    rows.append(counters.row(worker.stage, samples))
                live.update(Group(_stage_table(rows), bar))
                if len(finished) == len(ids):
                    return finished
                dead = workers.dead()
                if dead:
                    worker = dead[0]
                    raise DemoError(
                        f"the {worker.stage} worker exited with code {worker.process.returncode}; "
                        f"its log ({worker.log}) ends with:\n{workers.log_tail(worker)}"
                    )
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"{len(ids) - len(finished)} of {len(ids)} images unfinished after "
                        f"{timeout_s:.0f} s; worker logs are in {workers.log_dir}"
                    )
    finally:
        tail.close()


def _print_summary(summary: Summary, console: Console) -> None:
    table = Table(title="per stage", title_justify="left")
    for column in ("stage", "processed", "rejected", "p50 s", "p95 s"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for s in summary.stages:
        p50, p95 = s.seconds()
        table.add_row(s.stage, str(s.processed), str(s.rejected), p50, p95)
    console.print(table)
    routes = Table(title="per route", title_justify="left")
    routes.add_column("route")
    routes.add_column("images", justify="right")
    for route, count in summary.routes.most_common():
        routes.add_row(route, str(count))
    console.print(routes)
    console.print(
        f"bytes in {summary.bytes_in / 1e6:.2f} MB -> out {summary.bytes_out / 1e6:.2f} MB in "
        f"{summary.variants} variants (compression {summary.ratio:.1f}:1); restore: "
        + (", ".join(f"{k} {v}" for k, v in summary.restore.most_common()) or "none")
    )
    dupes = "; ".join(" = ".join(g) for g in summary.duplicates) or "none"
    console.print(f"duplicates (pHash): {dupes}")
    for reason, count in summary.dead_letters.most_common():
        console.print(f"dead letter: {reason} x{count}")


def run_demo(
    folder: Path | None,
    out_dir: Path,
    *,
    stack: str,
    timeout_s: float,
    console: Console,
    serve: bool = True,
) -> int:
    """The exit code. With `serve`, the catalog runs beside the workers from the start (the
    console shows the run live) and, after the report, serves until Ctrl-C."""
    settings, env = stack_settings(stack, console)
    admin.init(settings, clients.admin(settings.kafka), clients.s3(settings.s3))
    items = items_of(folder, out_dir / "samples")
    catalog = DemoCatalog(env, out_dir / "logs", settings.catalog.port) if serve else None
    try:
        if catalog is not None:
            catalog.start()
            console.print(f"console: {catalog.url} (API key {catalog.key}), starting")
        served: list[bool] = []

        def announce() -> None:
            # Right under the report's path: the two places to look at the run.
            if catalog is not None:
                served.append(_announce(catalog, console))

        code = _process(
            settings, env, items, out_dir, timeout_s=timeout_s, console=console, after=announce
        )
        if catalog is not None and served and served[0]:
            console.print("[dim]serving the console until Ctrl-C[/]")
            serve_until_interrupted(catalog)
            console.print("[dim]stopping the console[/]")
    finally:
        if catalog is not None:
            catalog.stop()
    return code


def _announce(catalog: DemoCatalog, console: Console) -> bool:
    """Print the console's URL once it answers; False (and why) when it does not."""
    problem = catalog.wait_ready()
    if problem is not None:
        console.print(f"[yellow]the console is not served:[/] {problem}")
        return False
    console.print(f"console: {catalog.url}  (API key: {catalog.key})")
    return True


def _process(
    settings: Settings,
    env: dict[str, str],
    items: list[Item],
    out_dir: Path,
    *,
    timeout_s: float,
    console: Console,
    after: Callable[[], None],
) -> int:
    """Workers, submissions, the live view, the summary and the report (then `after`); the
    verdict."""
    # Workers inherit this environment; `env` points them at the stack the demo uses.
    workers = WorkerProcesses(list(STAGES), env, out_dir / "logs")
    workers.start()
    try:
        fresh = submit_new(settings, items)
        console.print(
            f"{len(items)} images ({fresh} new, {len(items) - fresh} already submitted); "
            f"worker logs in {workers.log_dir}"
        )
        statuses = watch(settings, workers, items, timeout_s, console)
    finally:
        console.print("[dim]stopping the workers (each finishes its batch first)[/]")
        codes = workers.stop()
    bad_exits = {stage: code for stage, code in codes.items() if code != 0}
    records = latest_records(settings)
    letters = [
        decoder(DeadLetter).decode(m.value() or b"")
        for m in topic_messages(settings, Topics(settings.topic_prefix).dlq)
    ]
    summary = summarize(records, letters, {item.image_id: item.path.name for item in items})
    _print_summary(summary, console)
    s3 = clients.s3(settings.s3)

    def read(ref: ObjectRef) -> bytes:
        return clients.read_object(s3, ref.bucket, ref.key)

    by_id = {letter.image_id: letter for letter in letters}
    entries = [
        Entry(
            item.image_id,
            item.path.name,
            item.shows,
            ObjectRef(
                bucket=settings.buckets.incoming,
                key=f"{item.image_id}/{object_file_name(item.path.name)}",
            ),
            records.get(item.image_id),
            by_id.get(item.image_id),
        )
        for item in items
    ]
    page = write_report(out_dir / "report", summary, entries, read, "pixelfleet demo")
    (out_dir / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2))
    console.print(f"report: {page}")
    after()
    return _verdict(items, statuses, by_id, bad_exits, console)


def _verdict(
    items: list[Item],
    statuses: dict[str, str],
    letters: dict[str, DeadLetter],
    bad_exits: dict[str, int],
    console: Console,
) -> int:
    problems = []
    for item in items:
        status = statuses.get(item.image_id)
        if status == "rejected" and item.image_id not in letters:
            problems.append(f"{item.path.name}: rejected without a dead letter")
        elif status == "failed":
            problems.append(f"{item.path.name}: failed (a crash or a bug, see the dead letters)")
        elif item.expect is not None and status != item.expect:
            problems.append(f"{item.path.name}: {status}, expected {item.expect}")
    problems += [f"the {stage} worker exited with code {code}" for stage, code in bad_exits.items()]
    for problem in problems:
        console.print(f"[red]problem:[/] {problem}")
    if not problems:
        console.print("[green]every image finished: done, or rejected with a reason[/]")
    return 1 if problems else 0
