"""constraints.txt is the tested set: it pins every dependency within pyproject's ranges, and
the environment the tests run in (CI installs from it) is exactly that set."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
#: extras the test command installs beside the core
TESTED_EXTRAS = ("dev", "verl")


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
            found[canonicalize_name(name)] = version
    return found


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = list(project["dependencies"])
    for extra in TESTED_EXTRAS:
        listed += project["optional-dependencies"][extra]
    return [Requirement(r) for r in listed]


def test_every_dependency_is_pinned_within_its_range():
    pinned = pins()
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in pinned, f"constraints.txt lacks {req.name} ({req})"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pinned[name]} outside pyproject's {req}"
        )


def test_the_tests_run_on_the_pinned_versions():
    pinned = pins()
    for req in requirements():
        name = canonicalize_name(req.name)
        installed = Version(importlib.metadata.version(req.name)).public  # 2.13.0+cpu: 2.13.0
        if name in pinned:
            assert installed == pinned[name], (
                f"{req.name} {installed} is installed, constraints.txt pins {pinned[name]}: "
                "install with -c constraints.txt (the README's command)"
            )
