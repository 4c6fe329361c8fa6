"""`pixelfleet demo [DIR]`: the whole fleet on sample images, watched live, then reported."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console

from streams.app.settings import Settings
from streams.demo.run import DemoError, run_demo
from streams.devstack.procs import StackError
from streams.devstack.stack import DevStack


@click.command()
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("pixelfleet-demo"),
    show_default=True,
    help="Where the samples, worker logs and the HTML report go.",
)
@click.option(
    "--stack",
    type=click.Choice(["auto", "dev", "env"]),
    default="auto",
    show_default=True,
    help="dev: start (or reuse) `pixelfleet dev`; env: the Kafka and S3 of PIXELFLEET_*; "
    "auto: env when PIXELFLEET_KAFKA_BOOTSTRAP is set, else dev.",
)
@click.option("--timeout", "timeout_s", type=float, default=900, show_default=True)
@click.option("--down", is_flag=True, help="Stop the local stack afterwards.")
@click.option(
    "--serve/--no-serve",
    default=True,
    show_default=True,
    help="Also run the catalog: its web console shows the run live, and after the report it "
    "keeps serving until Ctrl-C. --no-serve: run, report and stop.",
)
def demo(
    folder: Path | None, out_dir: Path, stack: str, timeout_s: float, down: bool, serve: bool
) -> None:
    """Run every stage on FOLDER's images (default: a bundled sample set) and report; then
    serve the web console until Ctrl-C (unless --no-serve)."""
    console = Console()
    if stack == "auto":
        stack = "env" if os.environ.get("PIXELFLEET_KAFKA_BOOTSTRAP") else "dev"
    code = 1
    try:
        code = run_demo(
            folder,
            out_dir.resolve(),
            stack=stack,
            timeout_s=timeout_s,
            console=console,
            serve=serve,
        )
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted:[/] the workers finished their batches and stopped; "
            "run the demo again to finish the rest (done images are not redone)"
        )
        code = 130
    except (DemoError, StackError, RuntimeError) as exc:
        console.print(f"[red]error:[/] {exc}")
    finally:
        if down and stack == "dev":
            DevStack(Settings().dev).down()
    sys.exit(code)
