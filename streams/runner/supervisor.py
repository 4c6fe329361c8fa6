"""Runs one or more stage workers in a process: signals, probes, grace period, exit codes."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from streams.health import HealthServer
from streams.runner.accounting import StageHaltedError
from streams.runner.stage import StageSetupError, StageSpec
from streams.runner.transactions import FatalKafkaError
from streams.runner.worker import StageWorker
from streams.settings import Settings

log = logging.getLogger("pixelfleet.supervisor")

EXIT_OK, EXIT_ERROR, EXIT_HALTED, EXIT_FATAL = 0, 1, 2, 3


def run_workers(settings: Settings, specs: list[StageSpec]) -> int:
    workers = [StageWorker(settings, spec) for spec in specs]
    server = None
    if settings.runner.metrics_port:
        server = HealthServer(
            settings.runner.metrics_port,
            live=lambda: _all(w.live() for w in workers),
            ready=lambda: _all(w.ready() for w in workers),
        ).start()
        log.info("serving /metrics /healthz /readyz", extra={"port": server.port})

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
