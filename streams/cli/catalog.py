"""`pixelfleet catalog`: serve the catalog (the fleet's state over HTTP)."""

from __future__ import annotations

import errno
import logging
import socket
import sys

import click


@click.command()
# From 1, like catalog.port: other replicas and clients are told this port, so it is never
# "any free one" (0).
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="HTTP port (default: catalog.port, 6066).",
)
@click.option(
    "--store",
    type=click.Choice(["rocksdb", "memory"]),
    default=None,
    help="Where the table lives (default: catalog.store, rocksdb under catalog.data_dir).",
)
def catalog(port: int | None, store: str | None) -> None:
    """Serve the catalog: a table of every image, the /v1 API, /readyz and /metrics.

    Configured like everything else (PIXELFLEET_CATALOG_*); replicas started with the same
    catalog.app_id split the metadata topic's partitions between them.
    """
    try:
        from streams.catalog.service import CatalogService
    except ImportError as exc:
        raise click.ClickException(
            f"the catalog needs its extra: pip install 'pixelfleet[catalog]' ({exc})"
        ) from exc
    from streams.app.settings import Settings

    settings = Settings()
    changes = {k: v for k, v in {"port": port, "store": store}.items() if v is not None}
    if changes:
        settings = settings.model_copy(
            update={"catalog": settings.catalog.model_copy(update=changes)}
        )
    _port_is_free(settings.catalog.host, settings.catalog.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(CatalogService(settings).run())


def _port_is_free(host: str, port: int) -> None:
    """Refuse a port that is taken before anything starts. Found by faust's web server, it
    was a traceback inside pages of start-up and shutdown logs."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As aiohttp binds: a port in TIME_WAIT after a restart is free to it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            click.echo(
                f"error: port {port} on {host} is already in use; give another with --port or "
                "PIXELFLEET_CATALOG_PORT (and stop the catalog already running, if it is one)",
                err=True,
            )
            sys.exit(1)
