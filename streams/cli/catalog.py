"""`pixelfleet catalog`: serve the catalog (the fleet's state over HTTP)."""

from __future__ import annotations

import logging
import sys

import click

from streams.devstack.procs import port_is_free


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
    host, port = settings.catalog.host, settings.catalog.port
    # Before anything starts: found by faust's web server, a taken port was a traceback
    # inside pages of start-up and shutdown logs.
    if not port_is_free(port, host):
        click.echo(
            f"error: port {port} on {host} is already in use; give another with --port or "
            "PIXELFLEET_CATALOG_PORT (and stop the catalog already running, if it is one)",
            err=True,
        )
        sys.exit(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(CatalogService(settings).run())
