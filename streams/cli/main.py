"""The `pixelfleet` command."""

from __future__ import annotations

import click

from streams.cli.demo import demo
from streams.cli.dev import dev
from streams.cli.fleet import init, status, submit, worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pixelfleet")
def cli() -> None:
    """pixelfleet: a fleet of Kafka consumers that turns image events into finished images."""


cli.add_command(dev)
for command in (init, worker, submit, status, demo):
    cli.add_command(command)
