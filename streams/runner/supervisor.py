"""Runs one or more stage workers in a process: signals, probes, grace period, exit codes."""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
from types import FrameType

from streams.config.settings import FleetSettings
from streams.observe.health import HealthServer
from streams.runner.accounting import StageHaltedError
from streams.runner.stage import StageSetupError, StageSpec
from streams.runner.transactions import FatalKafkaError
from streams.runner.worker import StageWorker

log = logging.getLogger("pixelfleet.supervisor")

EXIT_OK, EXIT_ERROR, EXIT_HALTED, EXIT_FATAL = 0, 1, 2, 3


def run_workers(settings: FleetSettings, specs: list[StageSpec]) -> int:
    """Run the workers on threads until they stop; the process's exit code.

    Raises StageSetupError before any worker starts when the probes' port cannot be had.
    """
    workers: list[StageWorker] = []
    # The port first: a setup error then leaves no consumer, producer or pool behind.
    server = _serve_probes(settings, workers)
    workers.extend(StageWorker(settings, spec) for spec in specs)

    def shutdown(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "stopping: finishing the batch in hand", extra={"signal": signal.Signals(signum).name}
        )
        for worker in workers:
            worker.stop()
        _watchdog(settings.runner.grace_s)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)

    codes: list[int] = []

    def run(worker: StageWorker) -> None:
        codes.append(_run_one(worker))
        if codes[-1] != EXIT_OK:
            # One stage failing stops the process: its siblings drain and exit too.
            for other in workers:
                other.stop()

    threads = [threading.Thread(target=run, args=(w,), name=f"stage-{w.stage}") for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # short joins keep the main thread free to take signals
    if server is not None:
        server.stop()
    return max(codes, default=EXIT_OK)


def _serve_probes(settings: FleetSettings, workers: list[StageWorker]) -> HealthServer | None:
    """The /metrics /healthz /readyz server, on the configured port.

    Two workers started side by side on one host (a laptop, a VM) would both want the
    default port. When the port was left at its default, the second takes a free one and
    says which; a port that was set on purpose and is taken is a setup error, not a
    traceback.
    """
    runner = settings.runner
    if not runner.metrics_port:
        return None

    def probes(port: int) -> HealthServer:
        return HealthServer(
            port,
            live=lambda: _all(w.live() for w in workers),
            ready=lambda: _ready(workers),
        )

    try:
        server = probes(runner.metrics_port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        if "metrics_port" in runner.model_fields_set:
            raise StageSetupError(
                f"metrics port {runner.metrics_port} is already in use on this host; set "
                "PIXELFLEET_RUNNER_METRICS_PORT (or --metrics-port) to a free port, or 0 for none"
            ) from exc
        server = probes(0)
        log.warning(
            f"default metrics port {runner.metrics_port} is taken (another worker on this "
            f"host?); serving on {server.port} instead",
            extra={"port": server.port},
        )
    server.start()
    log.info("serving /metrics /healthz /readyz", extra={"port": server.port})
    return server


def _run_one(worker: StageWorker) -> int:
    try:
        worker.run()
    except StageHaltedError as exc:
        log.error(str(exc), extra={"stage": worker.stage})
        return EXIT_HALTED
    except StageSetupError as exc:
        log.error(f"stage cannot start: {exc}", extra={"stage": worker.stage})
        return EXIT_ERROR
    except FatalKafkaError as exc:
        log.error(f"fatal Kafka error, exiting: {exc}", extra={"stage": worker.stage})
        return EXIT_FATAL
    except Exception:
        log.exception("worker crashed", extra={"stage": worker.stage})
        return EXIT_ERROR
    return EXIT_OK


def _ready(workers: list[StageWorker]) -> tuple[bool, str]:
    """Ready when every worker is. The server starts before the workers are made (the port
    first), and no worker yet is not ready: a startup probe must wait for the models."""
    if not workers:
        return False, "starting: no worker made yet"
    return _all(w.ready() for w in workers)


def _all(results: object) -> tuple[bool, str]:
    pairs = list(results)  # type: ignore[call-overload]
    return all(ok for ok, _ in pairs), "\n".join(why for _, why in pairs)


def _watchdog(grace_s: float) -> None:
    def expire() -> None:
        log.error(f"did not stop within the {grace_s:.0f} s grace period; exiting hard")
        os._exit(EXIT_ERROR)

    timer = threading.Timer(grace_s, expire)
    timer.daemon = True
    timer.start()
