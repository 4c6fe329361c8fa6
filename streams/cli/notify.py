"""`pixelfleet notify`: the webhook worker, in the foreground, with /metrics like `worker`."""

from __future__ import annotations

import errno
import logging
import signal
import sys
from types import FrameType
from typing import NoReturn

import click

from streams.cli.problems import debugging, settings_error
from streams.config.settings import FleetSettings
from streams.notify.worker import DeadLetterLostError, NotifySetupError, NotifyWorker
from streams.observe import logs
from streams.observe.health import HealthServer

log = logging.getLogger("pixelfleet.notify")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.command()
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of /metrics /healthz /readyz (0: none; default: runner.metrics_port, 9400, "
    "or a free port when that one is taken).",
)
def notify(metrics_port: int | None) -> None:
    """Deliver webhooks for done, rejected and duplicate images until SIGTERM/SIGINT.

    Reads <prefix>.done and <prefix>.dlq as consumer group <prefix>.notify and POSTs a
    signed JSON body to every subscription in notify.subscriptions of the config file
    (PIXELFLEET_CONFIG). Events an endpoint never took go to <prefix>.webhooks.dlq.
    See docs/webhooks.md.
    """
    logs.configure()
    try:
        settings = FleetSettings()
    except Exception as exc:
        # Said here as the `pixelfleet` group says it, for this command run on its own.
        message = None if debugging() else settings_error(exc)
        if message is None:
            raise
        _fail(message)
    try:
        worker = NotifyWorker(settings)
    except NotifySetupError as exc:
        _fail(str(exc))
    port = settings.runner.metrics_port if metrics_port is None else metrics_port
    server = _serve(worker, port, explicit=metrics_port is not None or _port_set(settings))

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping: finishing the events in hand", extra={"signal": signum})
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker.run()
    except DeadLetterLostError as exc:
        _fail(str(exc))
    finally:
        if server is not None:
            server.stop()


def _port_set(settings: FleetSettings) -> bool:
    return "metrics_port" in settings.runner.model_fields_set


def _serve(worker: NotifyWorker, port: int, *, explicit: bool) -> HealthServer | None:
    """The probes' server; a default port that another process holds falls back to a free
    one, a port asked for on purpose that is taken is an error."""
    if not port:
        return None
    try:
        server = HealthServer(port, live=worker.live, ready=worker.ready)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        if explicit:
            _fail(f"metrics port {port} is already in use on this host; pick another or 0")
        server = HealthServer(0, live=worker.live, ready=worker.ready)
        log.warning(f"default metrics port {port} is taken; serving on {server.port} instead")
    server.start()
    log.info("serving /metrics /healthz /readyz", extra={"port": server.port})
    return server
