"""The container image (deploy/docker/Dockerfile) without a container engine: BuildKit's own
checks through deploy/docker/lint, what the image promises the chart (user, port,
entrypoint), and the pins it installs with (deploy/docker/constraints.txt)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from streams.app.settings import Settings
from streams.config.settings import CatalogSettings
from tests.unit.deploy.tools import CHART, DEPLOY, ROOT, render, tool

DOCKER = DEPLOY / "docker"
DOCKERFILE = DOCKER / "Dockerfile"


def _lint(dockerfile: Path, *args: str) -> tuple[int, list[dict]]:  # type: ignore[type-arg]
    done = subprocess.run(
        [tool("dockerfile-lint"), "--context", str(ROOT), *args, str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in _instructions(DOCKERFILE.read_text()):
        if word == "FROM":
            current = stages.setdefault(rest.split(" AS ")[1], [("FROM", rest)])
        else:
            current.append((word, rest))
    return stages


@pytest.mark.parametrize("target", ["", "cpu", "cuda"])
def test_dockerfile_passes_buildkits_checks(target: str) -> None:
    code, reports = _lint(DOCKERFILE, "--target", target)
    assert code == 0 and reports[0]["warnings"] == [] and "error" not in reports[0], reports


def test_the_checker_finds_what_a_build_would(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:3.11.14-slim-bookworm as base\n"
        "COPY pyproject.toml /src/\n"
        "COPY tests /src/tests\n"
        "COPY no-such-file /src/\n"
        "CMD pixelfleet --help\n"
    )
    (tmp_path / "Dockerfile.dockerignore").write_text("tests\n")
    code, reports = _lint(bad)
    found = {(w["rule"], w["line"]) for w in reports[0]["warnings"]}
    assert code == 1
    assert found == {
        ("FromAsCasing", 1),
        ("ContextSource", 3),  # kept out by the ignore file
        ("ContextSource", 4),  # not in the context at all
        ("JSONArgsRecommended", 5),
    }


def test_targets_and_what_the_chart_relies_on() -> None:
    stages = _stages()
    assert list(stages)[-1] == "cpu", "a build without --target must give the CPU image"
    assert {"cpu", "cuda"} <= set(stages)
    runtime = dict(stages["runtime"])
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    uid = re.search(r"runAsUser: (\d+)", helpers)
    gid = re.search(r"runAsGroup: (\d+)", helpers)
    assert uid and gid
    assert runtime["USER"] == f"{uid[1]}:{gid[1]}"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    port = Settings().runner.metrics_port
    assert port == values["config"]["runner"]["metrics_port"]
    catalog_port = CatalogSettings().port
    assert catalog_port == values["catalog"]["port"]
    assert runtime["EXPOSE"].split() == [str(port), str(catalog_port)]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(runtime["ENTRYPOINT"]) == ["pixelfleet"] and "pixelfleet" in scripts
    # The chart runs `worker --stage restore` on the CUDA image, the rest on the CPU one.
    assert "torch" in " ".join(rest for _, rest in stages["cuda-env"])
    assert not any("restore" in rest for word, rest in stages["cpu-env"] if word == "RUN")
    # The CPU image runs `pixelfleet catalog` too, which needs the catalog extra.
    assert any("[catalog]" in rest for word, rest in stages["cpu-env"] if word == "RUN")


def test_the_catalogs_data_directory_is_the_users_in_the_image_chart_and_compose() -> None:
    """A Docker named volume takes the owner of the image's directory it is mounted on, so
    that directory must exist and belong to the pods' user; the chart mounts its volume
    and compose its named volume at the same place."""
    runtime = dict(_stages()["runtime"])
    made = re.search(r"install -d -o (\d+) -g (\d+) (\S+)", runtime["RUN"])
    assert made, "the runtime stage must create the catalog's data directory"
    assert runtime["USER"] == f"{made[1]}:{made[2]}"
    chart = render(None, "--show-only", "templates/catalog/statefulset.yaml")
    assert chart.returncode == 0, chart.stderr
    (container,) = yaml.safe_load(chart.stdout)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["catalog"]
    assert env["PIXELFLEET_CATALOG_DATA_DIR"] == made[3]
    assert compose["environment"]["PIXELFLEET_CATALOG_DATA_DIR"] == made[3]
    assert any(v.endswith(f":{made[3]}") for v in compose["volumes"])


def test_base_image_is_pinned_to_the_python_ci_tests() -> None:
    arg = next(rest for word, rest in _instructions(DOCKERFILE.read_text()) if word == "ARG")
    image = re.fullmatch(r"PYTHON_IMAGE=python:(\d+)\.(\d+)\.(\d+)-slim-(\w+)", arg)
    assert image, f"the base image must name an exact Python release: {arg}"
    assert (int(image[1]), int(image[2])) == sys.version_info[:2]


def test_every_pip_install_runs_under_the_pins() -> None:
    stages = _stages()
    venv = stages["venv"]
    env = " ".join(rest for word, rest in venv if word == "ENV")
    constraint = re.search(r"PIP_CONSTRAINT=(\S+)", env)
    assert constraint
    assert ("COPY", f"deploy/docker/constraints.txt {constraint[1]}") in venv
    for name, body in stages.items():
        if any(re.search(r"pip (install|wheel)", rest) for _, rest in body):
            assert body[0][1].split(" AS ")[0] == "venv", f"{name} installs outside the pins"


def _pins() -> dict[str, str]:
    pins = {}
    for line in (DOCKER / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_pins_every_runtime_and_build_requirement() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["restore"],
        *project["project"]["optional-dependencies"]["catalog"],
        *project["build-system"]["requires"],
    ]
    pins = _pins()
    for text in wanted:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} has no pin: run deploy/docker/lock.py"
        assert requirement.specifier.contains(pins[name]), (
            f"{name}=={pins[name]} breaks {text}: run deploy/docker/lock.py"
        )


def test_the_tested_environment_is_the_locked_one() -> None:
    """CI installs with the constraints, so what the tests ran is what the image ships."""
    differ = {}
    for name, version in _pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != version:
            differ[name] = (installed, version)
    assert not differ, f"installed vs locked: {differ}; run make install"


def test_one_version_names_the_package_the_chart_and_the_compose_images() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version  # the chart's default image tag
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    tags = {
        s["image"].rsplit(":", 1)[1]
        for s in compose["services"].values()
        if s["image"].startswith("pixelfleet")
    }
    assert tags == {version}
    assert f":{version} ." in DOCKERFILE.read_text()  # the build commands in its header
