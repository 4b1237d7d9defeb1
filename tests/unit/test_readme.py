"""The README's two set-up commands and CI stay one fact."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_has_exactly_two_setup_commands():
    commands = setup_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert all(c.startswith("python -m pip install torch==2.13.0 && ") for c in commands)


def test_ci_runs_the_readme_test_command_and_nothing_else():
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ci[-1] == setup_commands()[1]
    assert all(line.startswith(("set ", "cd ")) for line in ci[:-1])


def test_every_section_points_to_the_tests_that_check_it():
    text = (ROOT / "README.md").read_text()
    sections = re.split(r"(?m)^## ", text)[1:]
    assert sections
    for section in sections:
        title = section.splitlines()[0]
        lines = [x for x in section.splitlines() if x.startswith("Tested by: ")]
        assert len(lines) == 1, f"README section {title!r}: give one 'Tested by:' line"
        named = re.findall(r"`(tests/[^`\s]+\.py)`", lines[0])
        assert named, f"README section {title!r}: 'Tested by:' names no test file"
        for path in named:
            assert (ROOT / path).is_file(), f"README section {title!r}: {path} does not exist"
