"""The demo's worker processes: the replicas of demos in different folders have ids of their
own, so two demos on one stack never share a transactional producer, while a rerun in the
same folder reuses its predecessor's ids and so fences what that run left open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.demo.workers import WorkerProcesses, run_id_for


@pytest.fixture
def replica_ids(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The environments the workers would have started with; nothing is started."""
    started: list[dict[str, str]] = []

    def popen(_argv: list[str], *, env: dict[str, str], **_kwargs: Any) -> object:
        started.append(env)
        return object()

    monkeypatch.setattr("streams.demo.workers.subprocess.Popen", popen)
    return started


def _ids(started: list[dict[str, str]]) -> list[str]:
    return [env["PIXELFLEET_RUNNER_REPLICA_ID"] for env in started]


def test_demos_in_different_folders_have_different_replica_ids(
    tmp_path: Path, replica_ids: list[dict[str, str]]
) -> None:
    first = WorkerProcesses(["validate", "compress"], {}, tmp_path / "a")
    second = WorkerProcesses(["validate", "compress"], {}, tmp_path / "b")
    first.start()
    second.start()
    one, two = _ids(replica_ids[:2]), _ids(replica_ids[2:])
    assert set(one).isdisjoint(two)
    assert first.run_id != second.run_id
    assert one == [f"demo-{first.run_id}-validate", f"demo-{first.run_id}-compress"]


def test_a_rerun_in_the_same_folder_has_the_same_replica_ids(
    tmp_path: Path, replica_ids: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "out").mkdir()
    first = WorkerProcesses(["validate", "compress"], {}, tmp_path / "out" / "logs")
    first.start()
    # The same folder spelt another way, from another working directory: still the same.
    monkeypatch.chdir(tmp_path / "out")
    again = WorkerProcesses(["validate", "compress"], {}, Path("..") / "out" / "logs")
    again.start()
    assert again.run_id == first.run_id
    assert _ids(replica_ids[2:]) == _ids(replica_ids[:2])
    # Stable across processes too: nothing random, nothing kept in memory.
    assert first.run_id == run_id_for(tmp_path / "out" / "logs")
    assert len(first.run_id) == 8 and int(first.run_id, 16) >= 0


def test_the_same_folder_on_another_host_has_other_replica_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = run_id_for(tmp_path)
    monkeypatch.setattr("streams.demo.workers.socket.gethostname", lambda: "elsewhere")
    assert run_id_for(tmp_path) != here


def test_a_second_replica_of_a_stage_has_its_own_id_and_log(
    tmp_path: Path, replica_ids: list[dict[str, str]]
) -> None:
    run = WorkerProcesses(["enhance"], {}, tmp_path, run_id="r1")
    run.start()
    extra = run.add("enhance")
    assert _ids(replica_ids) == ["demo-r1-enhance", "demo-r1-enhance-1"]
    # Log files keep the stage's name: the run id is for Kafka, not for the reader.
    assert [w.log.name for w in run.workers] == ["enhance.log", "enhance-1.log"]
    assert extra is run.workers[1]
