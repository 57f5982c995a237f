"""The committed lock is what every install path uses, covers every dependency setup.cfg names, pins each
package with hashes, and is what this very run installed (a new release cannot change what the tests ran)."""

from __future__ import annotations

import configparser
import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {"server": ROOT / "requirements" / "server.txt", "test": ROOT / "requirements" / "test.txt"}
LOCKED_INSTALL = "pip install --require-hashes -r requirements/{}.txt && pip install --no-deps --no-build-isolation -e ."


def _pins(lock: Path) -> dict[str, str]:
    """name -> pinned version, for the entries whose markers hold here (a universal lock forks by platform and
    Python); every entry, here or not, must be pinned with ==, with its hashes."""
    pins: dict[str, str] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", lock.read_text()):
        head = entry.split("\\\n", 1)[0].strip()
        if not head or head.startswith("#"):
            continue
        requirement = Requirement(head)
        assert "--hash=sha256:" in entry, f"{lock.name}: {head} has no hash"
        [spec] = requirement.specifier
        assert spec.operator == "==", f"{lock.name}: {head} is not pinned"
        if requirement.marker is None or requirement.marker.evaluate():
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def _declared(extras: tuple[str, ...]) -> list[Requirement]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    for extra in extras:
        lines += config["options.extras_require"][extra].splitlines()
    return [Requirement(line) for line in lines if line.strip()]


@pytest.mark.parametrize(("lock", "extras"), [("server", ("redis", "mongo", "oidc")),
                                              ("test", ("redis", "mongo", "oidc", "test", "bench"))])
def test_every_declared_dependency_is_pinned_within_its_range(lock: str, extras: tuple[str, ...]) -> None:
    pins = _pins(LOCKS[lock])
    for requirement in _declared(extras):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is in setup.cfg but not in {lock}.txt: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock}.txt pins {name}=={pins[name]}, outside setup.cfg's {requirement}: run make lock")
    assert {"setuptools", "wheel"} <= set(pins)  # the editable install builds without fetching anything


def test_the_installed_packages_are_the_locked_ones() -> None:
    """This run installed the test lock (make test-latest deselects this test on purpose)."""
    differ = {}
    for name, version in _pins(LOCKS["test"]).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            differ[name] = f"{installed} installed, {version} locked"
    assert differ == {}


def _command_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("python3 -m venv .venv ")]


def test_readme_ci_and_the_container_install_from_the_lock() -> None:
    [run, test] = _command_lines(ROOT / "README.md")
    assert LOCKED_INSTALL.format("server") in run and run.endswith("&& gima-server")
    assert LOCKED_INSTALL.format("test") in test and test.endswith("&& ruff check gima_server tests && mypy && pytest")
    assert _command_lines(ROOT / ".ci" / "run") == [test]  # CI runs the README's command verbatim
    container = (ROOT / "deploy" / "Containerfile").read_text()
    assert "pip install --no-cache-dir --require-hashes -r requirements/server.txt" in container
    assert "--no-deps --no-build-isolation -e ." in container
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^lock:", make, re.M) and "uv pip compile" in make and "--generate-hashes" in make
    assert re.search(r"^test-latest:", make, re.M)
