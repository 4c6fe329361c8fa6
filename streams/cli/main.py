"""The `pixelfleet` command.

Each subcommand's module is imported only when that subcommand runs: `pixelfleet worker
--spec module:attr` must not pay for (or depend on) the image stages, the demo or the dev
stack, and a passthrough worker then loads no Pillow, numpy or torch at all.

Mistakes a person makes (a broken config file, a fleet never initialised, a broker that is
down, an unreadable file) end in one `error: ...` line and exit code 1; anything else is a
bug and keeps its traceback. PIXELFLEET_DEBUG=1 shows the traceback of every error.
"""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of the click command
COMMANDS = {
    "dev": "streams.cli.dev:dev",
    "init": "streams.cli.fleet:init",
    "worker": "streams.cli.worker:worker",
    "submit": "streams.cli.fleet:submit",
    "status": "streams.cli.fleet:status",
    "demo": "streams.cli.demo:demo",
    "catalog": "streams.cli.catalog:catalog",
    "notify": "streams.cli.notify:notify",
    "replay": "streams.cli.replay:replay",
    "dlq": "streams.cli.ops:dlq",
    "delete": "streams.cli.ops:delete",
    "cleanup": "streams.cli.ops:cleanup",
    "webhooks": "streams.cli.webhooks:webhooks",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            # click's own: usage errors, --help, ctx.exit; Exit and Abort are RuntimeErrors.
            raise
        except Exception as exc:
            from streams.cli.problems import debugging, describe

            message = None if debugging() else describe(exc)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pixelfleet")
def cli() -> None:
    """pixelfleet: a fleet of Kafka consumers that turns image events into finished images.

    A mistake (bad settings, a fleet never initialised, Kafka or S3 down) is one `error:`
    line and exit code 1; PIXELFLEET_DEBUG=1 shows its traceback.
    """
