""".ci/system-deps.sh's checks, run on stand-in `java` and `uname` commands: a Java older
than 17 is replaced like a missing one, and the Go toolchain it fetches is the machine's
architecture. Only the script's functions run here, never its installs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

BASH = shutil.which("bash") or "/bin/bash"
SCRIPT = Path(__file__).resolve().parents[4] / ".ci" / "system-deps.sh"


def _function(name: str) -> str:
    """The definition of one shell function of the script, as written there."""
    found = re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", SCRIPT.read_text(), re.M | re.S)
    assert found, f"{name} is no longer defined in {SCRIPT.name}"
    return found.group(0)


def _call(name: str, tmp_path: Path, **fakes: str) -> subprocess.CompletedProcess[str]:
    """Run one function with `fakes` (command name: its output on stderr and stdout) as the
    only commands besides bash's builtins and sed/head."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for command, output in fakes.items():
        fake = bin_dir / command
        fake.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\n")
        fake.chmod(0o755)
    for tool in ("sed", "head"):
        real = shutil.which(tool)
        assert real, tool
        (bin_dir / tool).symlink_to(real)
    return subprocess.run(
        [BASH, "-c", f"{_function(name)}{name}"],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir)},
        check=False,
    )


@pytest.mark.parametrize(
    ("says", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', "17"),
        ('openjdk version "21" 2023-09-19', "21"),
        ('java version "1.8.0_392"', "8"),
        ('openjdk version "11.0.22" 2024-01-16', "11"),
    ],
)
def test_java_major_reads_both_version_schemes(tmp_path: Path, says: str, major: str) -> None:
    assert _call("java_major", tmp_path, java=says).stdout.strip() == major


def test_no_java_is_major_zero(tmp_path: Path) -> None:
    assert _call("java_major", tmp_path).stdout.strip() == "0"


def test_an_old_java_is_not_taken_for_enough() -> None:
    # The install list asks for the version, not for any `java` on the PATH.
    text = SCRIPT.read_text()
    assert "command -v java >/dev/null 2>&1 || need+=" not in text
    assert re.search(r'\[ "\$\(java_major\)" -ge "\$JAVA_MIN" \] \|\| need\+=', text)


@pytest.mark.parametrize(
    ("machine", "arch"),
    [("x86_64", "amd64"), ("aarch64", "arm64"), ("armv7l", "armv6l"), ("ppc64le", "ppc64le")],
)
def test_the_toolchain_is_the_machines_architecture(
    tmp_path: Path, machine: str, arch: str
) -> None:
    assert _call("go_arch", tmp_path, uname=machine).stdout.strip() == arch
    assert "linux-$(go_arch)" in SCRIPT.read_text()


def test_an_unknown_architecture_stops_with_a_reason(tmp_path: Path) -> None:
    done = _call("go_arch", tmp_path, uname="pdp11")
    assert done.returncode == 1 and "install Go 1.24+ yourself" in done.stderr
