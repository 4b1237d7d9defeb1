"""A model registry on object storage: versions, manifests, aliases.

Layout below the registry URI (``s3://BUCKET/PREFIX`` or ``file://PATH``)::

    <name>/versions/<v>.json            the claim of version v (conditional create)
    <name>/by-content/<sha256>.json     which version holds this content
    <name>/<v>/files/...                the model files
    <name>/<v>/manifest.json            written last: a version exists once this does
    <name>/aliases/<alias>.json         {"version": v}; one PUT, so it moves atomically

- Versions increase monotonically: a writer claims ``max + 1`` with a conditional
  create and takes the next number when another writer got there first, so
  concurrent registrations never share or lose a version.
- The same content (the SHA-256 of every file) registered again is the same
  version: a retry is idempotent, and a retry after a crash mid-upload finishes
  the version it had claimed.
- Readers see a version only once its manifest is there, and downloads are
  checked against the manifest's checksums.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmpo_kfp.errors import UserError
from gmpo_kfp.metrics import EVAL_MEAN
from gmpo_kfp.storage import StorageError, Store, join, open_store, sha256_file
from gmpo_kfp.version import __version__

MANIFEST = "manifest.json"
DEFAULT_ALIAS = "production"
#: what a version holds: the whole model (a LoRA run's adapters merged in, and kept in
#: ``lora_adapter/``), or a LoRA run's adapters alone with the base model's identity
WEIGHTS = ("merged", "adapter")


class RegistryError(UserError, ValueError):
    """A registry request cannot be met; the message names the input and the fix."""


@dataclass
class Registration:
    name: str
    version: int
    uri: str  # the version's folder
    manifest_uri: str
    created: bool  # False: the same content was already registered
    content_sha256: str


def _dump(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def local_files(model_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    root = Path(model_dir)
    if not root.is_dir():
        raise RegistryError(f"model_dir: {root} is not a directory; give the trained model folder")
    files = {
        p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    if not files:
        raise RegistryError(f"model_dir: {root} is empty; give the trained model folder")
    return files


def content_sha256(files: dict[str, dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]['sha256']}\n".encode())
    return h.hexdigest()


def versions(store: Store, name: str) -> list[int]:
    """Claimed version numbers of ``name``, ascending (including unfinished ones)."""
    out = []
    for key in store.list_keys(f"{name}/versions/"):
        stem = key.rsplit("/", 1)[-1].removesuffix(".json")
        if stem.isdigit():
            out.append(int(stem))
    return sorted(out)


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise RegistryError(f"model name {name!r}: use letters, digits, '-', '_' or '.'")


def register_model(
    model_dir: str | os.PathLike,
    registry_uri: str,
    name: str,
    *,
    metrics: dict[str, float] | None = None,
    config: dict[str, Any] | None = None,
    source_run: str | None = None,
    alias: str | None = DEFAULT_ALIAS,
    store: Store | None = None,
    lineage: dict[str, Any] | None = None,
    champion: int | None = None,
    weights: str = "merged",
) -> Registration:
    """Register the model in ``model_dir`` as the next version of ``name`` (or find it).

    ``lineage``: what the model came from (:mod:`gmpo_kfp.workflow.lineage`), kept in
    the manifest; ``champion``: the production version this one beat at the gate.
    ``weights``: ``merged`` registers the whole folder; ``adapter`` only a LoRA run's
    adapters (``lora_adapter/``), the manifest naming the base model they apply to."""
    _check_name(name)
    base_model = None
    check_weights(weights)
    if weights == "adapter":
        model_dir, base_model = _adapter_and_base(model_dir, lineage)
    store = store or open_store(registry_uri)
    files = local_files(model_dir)
    digest = content_sha256(files)
    claim_key = f"{name}/by-content/{digest}.json"
    created = True
    version = _claimed_version(store, claim_key)
    if version is None:
        version = _claim_next_version(store, name, digest)
        if not store.put_bytes(claim_key, _dump({"version": version}), if_absent=True):
            # the same content was claimed concurrently: give our number up, use theirs
            store.put_bytes(f"{name}/versions/{version}.json", _dump({"abandoned": True}))
            version = _claimed_version(store, claim_key)
            created = False
    else:
        created = False
    assert version is not None
    prefix = f"{name}/{version}"
    manifest_key = f"{prefix}/{MANIFEST}"
    if store.get_bytes(manifest_key) is None:
        if not created:
            created = True  # an earlier attempt claimed the version and stopped mid-upload
        uploaded = store.upload_dir(model_dir, f"{prefix}/files")
        manifest = {
            "name": name,
            "version": version,
            "files": uploaded,
            "content_sha256": digest,
            "source_run": source_run,
            "metrics": metrics or {},
            "config": config or {},
            "lineage": lineage or {},
            "champion": champion,
            "weights": weights,
            "base_model": base_model,
            "package": f"gmpo-kfp {__version__}",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        store.put_bytes(manifest_key, _dump(manifest))
    if alias:
        set_alias(store, name, alias, version)
    return Registration(
        name=name,
        version=version,
        uri=store.url(prefix),
        manifest_uri=store.url(manifest_key),
        created=created,
        content_sha256=digest,
    )


def check_weights(weights: str, field: str = "weights") -> None:
    """``weights`` is one of :data:`WEIGHTS`; else a :class:`RegistryError` naming ``field``."""
    if weights not in WEIGHTS:
        raise RegistryError(
            f"{field}: {weights!r} is not one of {', '.join(WEIGHTS)} (adapter: a LoRA run's "
            "adapters alone)"
        )


def _adapter_and_base(
    model_dir: str | os.PathLike, lineage: dict[str, Any] | None
) -> tuple[Path, dict[str, Any]]:
    """A LoRA model's adapters folder, and the identity of the base model they apply to."""
    from gmpo_kfp.engines.lora import ADAPTER_CONFIG, ADAPTER_DIR, adapter_dir

    found = adapter_dir(model_dir)
    if found is None:
        raise RegistryError(
            f"weights=adapter: {model_dir} has no LoRA adapters ({ADAPTER_DIR}/); train with "
            "lora.rank > 0, or register the merged weights"
        )
    adapter = json.loads((found / ADAPTER_CONFIG).read_text())
    base = {"name_or_path": adapter.get("base_model_name_or_path")}
    trained_on = ((lineage or {}).get("train") or {}).get("base_model")
    if trained_on:
        base.update(trained_on)
    return found, base


def _claimed_version(store: Store, claim_key: str) -> int | None:
    raw = store.get_bytes(claim_key)
    return None if raw is None else int(json.loads(raw)["version"])


def _claim_next_version(store: Store, name: str, digest: str) -> int:
    taken = versions(store, name)
    version = (taken[-1] if taken else 0) + 1
    for _ in range(1000):
        body = _dump({"content_sha256": digest, "claimed_at": time.time()})
        if store.put_bytes(f"{name}/versions/{version}.json", body, if_absent=True):
            return version
        version += 1
    raise StorageError(f"{store.uri}: could not claim a version of {name} after 1000 tries")


def set_alias(store: Store, name: str, alias: str, version: int) -> None:
    store.put_bytes(f"{name}/aliases/{alias}.json", _dump({"version": version}))


def resolve(
    registry_uri: str, name: str, ref: str | int = DEFAULT_ALIAS, *, store: Store | None = None
) -> dict:
    """The manifest of ``name`` at a version number or an alias."""
    store = store or open_store(registry_uri)
    if isinstance(ref, int) or str(ref).isdigit():
        version = int(ref)
    else:
        raw = store.get_bytes(f"{name}/aliases/{ref}.json")
        if raw is None:
            raise RegistryError(
                f"{name}: no alias {ref!r} in {registry_uri}; register a version first"
            )
        version = int(json.loads(raw)["version"])
    raw = store.get_bytes(f"{name}/{version}/{MANIFEST}")
    if raw is None:
        raise RegistryError(f"{name}: version {version} is not complete in {registry_uri}")
    return json.loads(raw)


def aliases(store: Store, name: str) -> dict[str, int]:
    """Every alias of ``name`` and the version it points at."""
    found = {}
    for key in store.list_keys(f"{name}/aliases/"):
        raw = store.get_bytes(key)
        if raw is not None:
            found[key.rsplit("/", 1)[-1].removesuffix(".json")] = int(json.loads(raw)["version"])
    return found


@dataclass
class VersionRow:
    """One line of ``gmpo registry list``."""

    version: int
    created_at: str | None
    mean_pass_at_1: float | None
    aliases: list[str]
    source_run: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_versions(registry_uri: str, name: str, *, store: Store | None = None) -> list[VersionRow]:
    """The complete versions of ``name`` (a manifest written), oldest first, with their
    mean Pass@1 and aliases; a name with none is a :class:`RegistryError`."""
    _check_name(name)
    store = store or open_store(registry_uri)
    by_version: dict[int, list[str]] = {}
    for alias, version in sorted(aliases(store, name).items()):
        by_version.setdefault(version, []).append(alias)
    rows = []
    for version in versions(store, name):
        raw = store.get_bytes(f"{name}/{version}/{MANIFEST}")
        if raw is None:
            continue  # claimed, never finished (or abandoned)
        manifest = json.loads(raw)
        rows.append(
            VersionRow(
                version=version,
                created_at=manifest.get("created_at"),
                mean_pass_at_1=(manifest.get("metrics") or {}).get(EVAL_MEAN),
                aliases=by_version.get(version, []),
                source_run=manifest.get("source_run"),
            )
        )
    if not rows:
        raise RegistryError(f"{name}: no registered version in {registry_uri}; check the name")
    return rows


def download(
    registry_uri: str,
    name: str,
    ref: str | int,
    target: str | os.PathLike,
    *,
    store: Store | None = None,
) -> Path:
    """Download a registered version into ``target``, every file checked against the manifest."""
    store = store or open_store(registry_uri)
    manifest = resolve(registry_uri, name, ref, store=store)
    prefix = f"{name}/{manifest['version']}/files"
    for rel, meta in manifest["files"].items():
        store.download_file(join(prefix, rel), Path(target) / rel, sha256=meta["sha256"])
    return Path(target)


def register_in_model_registry(
    server_address: str,
    *,
    name: str,
    version: int,
    uri: str,
    metrics: dict[str, float] | None = None,
    source_run: str | None = None,
    author: str = "gmpo-kfp",
    user_token: str | None = None,
) -> bool:
    """Also record a registered version in a Kubeflow Model Registry; False if it was there.

    The model stays where our registry put it (``uri``); the Model Registry gets its
    name, version, format, source run (``kfp`` / ``pipelinerun``) and metrics. The
    token comes from ``user_token`` or the environment the client reads by default.
    """
    try:
        from model_registry import ModelRegistry
        from model_registry.exceptions import StoreError
    except ImportError:
        raise RegistryError(
            "model_registry_address is set but the model-registry client is not installed: "
            "pip install 'gmpo-kfp[registry]'"
        ) from None
    import warnings

    secure = server_address.startswith("https://")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the client warns about ports and missing tokens
            client = ModelRegistry(
                server_address, author=author, is_secure=secure, user_token=user_token
            )
        try:
            if client.get_model_version(name, str(version)) is not None:
                return False
        except StoreError:
            pass  # no such model yet
        client.register_model(
            name,
            uri,
            model_format_name="transformers",
            model_format_version="1",
            version=str(version),
            model_source_kind="kfp",
            model_source_class="pipelinerun",
            model_source_id=source_run,
            metadata={k: float(v) for k, v in (metrics or {}).items()},
        )
    except (StoreError, OSError) as exc:
        raise RegistryError(f"model_registry_address {server_address}: {exc}") from None
    except Exception as exc:  # the generated API client raises its own ApiException family
        raise RegistryError(
            f"model_registry_address {server_address}: {type(exc).__name__}: {exc}"
        ) from None
    return True


# --------------------------------------------------------------------------- display


def format_versions(name: str, rows: list[VersionRow]) -> str:
    """``gmpo registry list``: one line per version."""
    lines = [f"{'version':>7}  {'created':<20}  {'mean Pass@1':>11}  {'aliases':<12}  run"]
    for r in rows:
        mean = "-" if r.mean_pass_at_1 is None else f"{r.mean_pass_at_1:.4f}"
        tags, created, run = ",".join(r.aliases) or "-", r.created_at or "-", r.source_run or "-"
        lines.append(f"{r.version:>7}  {created:<20}  {mean:>11}  {tags:<12}  {run}")
    return "\n".join([f"{name}: {len(rows)} version(s)", *lines])


def _environment_line(part: dict[str, Any]) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in sorted((part.get("packages") or {}).items()))
    image = part.get("image") or {}
    where = image.get("reference") or "no image (a local run)"
    if image.get("digest"):
        where += f" ({image['digest']})"
    return f"{packages or 'unknown'}; {where}"


def _files_line(files: list[dict[str, Any]]) -> str:
    return "; ".join(f"{f['file']} sha256 {f['sha256']} ({f['rows']} rows)" for f in files) or "-"


def _weights_line(manifest: dict[str, Any]) -> str:
    if manifest.get("weights") != "adapter":
        return "merged (the whole model)"
    base = manifest.get("base_model") or {}
    sha = base.get("weights_sha256")
    return f"LoRA adapters only, on {base.get('name_or_path')}" + (
        f" (weights sha256 {sha})" if sha else ""
    )


def format_manifest(manifest: dict[str, Any], aliases_of: list[str] | None = None) -> str:
    """``gmpo registry show``: the version, its results and its lineage, one fact a line."""
    tags = f" ({', '.join(aliases_of)})" if aliases_of else ""
    files = manifest.get("files") or {}
    size = sum(int(f.get("size", 0)) for f in files.values())
    lineage = manifest.get("lineage") or {}
    train, evaluate = lineage.get("train") or {}, lineage.get("evaluate") or {}
    results = manifest.get("metrics") or {}
    rows = [
        ("created", manifest.get("created_at")),
        ("content", f"sha256 {manifest.get('content_sha256')}"),
        ("files", f"{len(files)} files, {size / 1e6:.1f} MB"),
        ("weights", _weights_line(manifest)),
        ("run", manifest.get("source_run") or lineage.get("run_id") or "-"),
        ("beat", f"version {manifest['champion']}" if manifest.get("champion") else "-"),
        ("package", manifest.get("package")),
        (
            "results",
            ", ".join(f"{k.removeprefix('pass_at_1/')} {v:.4f}" for k, v in results.items()),
        ),
    ]
    if train:
        data = train.get("data") or {}
        base = train.get("base_model") or {}
        weights = base.get("weights_sha256")
        rows += [
            ("train data", _files_line(data.get("train") or [])),
            ("val data", _files_line(data.get("val") or [])),
            (
                "base model",
                f"{base.get('named')} -> {base.get('resolved')}"
                + (f" (weights sha256 {weights})" if weights else " (weights not hashed)"),
            ),
            ("train ran", _environment_line(train)),
        ]
    if evaluate:
        rows += [
            ("benchmarks", _files_line(evaluate.get("benchmarks") or [])),
            (
                "protocol",
                f"{evaluate.get('protocol')}, {evaluate.get('samples_per_problem')} per problem",
            ),
            ("evaluate ran", _environment_line(evaluate)),
        ]
    config = manifest.get("config") or {}
    if config:
        model = (config.get("model") or {}).get("path")
        loss = (config.get("algorithm") or {}).get("loss")
        rows.append(
            ("config", f"engine {config.get('engine')}, loss {loss}, model {model} (--json: all)")
        )
    if not train and not evaluate:
        rows.append(("lineage", "none recorded (registered before lineage was kept)"))
    head = f"{manifest.get('name')} version {manifest.get('version')}{tags}"
    width = max(len(k) for k, _ in rows)
    return "\n".join([head, *(f"  {k:<{width}}  {v}" for k, v in rows)])
