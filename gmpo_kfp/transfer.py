"""How large files move to and from S3: boto3's managed transfer (s3transfer), configured.

:class:`TransferSettings` is the one place for the knobs (parts in flight, part size,
the size from which a file goes in parts) and their defaults; each comes from the
config (``storage.*``), else the environment, else the default here:

=========================  ==============================  =======
setting                    environment                     default
=========================  ==============================  =======
``max_concurrency``        ``GMPO_S3_MAX_CONCURRENCY``     8
``part_size``              ``GMPO_S3_PART_SIZE_MB``        8 MiB
``threshold``              ``GMPO_S3_THRESHOLD_MB``        16 MiB
=========================  ==============================  =======

s3transfer gives concurrent parts and ranged GETs, per-part SHA-256 checksums that S3
verifies, and aborts a failed multipart upload. What it does not give, and
:mod:`gmpo_kfp.storage` keeps for that part only:

- **a resumable download**: s3transfer downloads whole objects (no ``Range``) and
  discards a failed download. :class:`PrefixWriter` records how much of the ``.part``
  file is a complete prefix (in a small side file, so a killed process leaves it
  too); the next attempt truncates to that prefix and fetches the rest with one
  ranged GET of ours.
- **aborting a killed process's upload**: s3transfer aborts what fails in-process;
  after a SIGKILL the storage layer aborts the key's unfinished uploads first.
- **checking a download** against its SHA-256 before it is renamed into place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from gmpo_kfp.errors import UserError

MIB = 1024 * 1024
#: S3 refuses parts under 5 MiB (but the last).
S3_MIN_PART = 5 * MIB

ENV = {
    "max_concurrency": "GMPO_S3_MAX_CONCURRENCY",
    "part_size": "GMPO_S3_PART_SIZE_MB",
    "threshold": "GMPO_S3_THRESHOLD_MB",
}


class TransferSettingsError(UserError, ValueError):
    """A transfer setting is out of range; the message names it and the fix."""


@dataclass(frozen=True)
class TransferSettings:
    """Concurrency and part sizes of S3 transfers (see the module docstring).

    ``max_concurrency``: requests in flight at once for one transfer call (the parts
    of a large file, the small files of a folder, ranged GETs of a download);
    ``part_size``: bytes per part and per ranged GET (S3's minimum is 5 MiB;
    s3transfer raises it where a file would need more than 10,000 parts);
    ``threshold``: files from this many bytes on go in parts.
    """

    max_concurrency: int = 8
    part_size: int = 8 * MIB
    threshold: int = 16 * MIB

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise TransferSettingsError(
                f"storage.max_concurrency ({ENV['max_concurrency']}): {self.max_concurrency} "
                "is not a positive number of requests; give 1 or more (8 is the default)"
            )
        if self.part_size < S3_MIN_PART:
            raise TransferSettingsError(
                f"storage.part_size_mb ({ENV['part_size']}): {self.part_size / MIB:g} MiB is "
                "under S3's 5 MiB minimum part; give 5 or more"
            )
        if self.threshold < 1:
            raise TransferSettingsError(
                f"storage.threshold_mb ({ENV['threshold']}): give a positive size in MiB"
            )

    @classmethod
    def resolve(
        cls,
        *,
        max_concurrency: int | None = None,
        part_size_mb: float | None = None,
        threshold_mb: float | None = None,
        environ: dict[str, str] | None = None,
    ) -> TransferSettings:
        """Each setting from the argument, else the environment, else the default."""
        env = os.environ if environ is None else environ
        given = {
            "max_concurrency": max_concurrency,
            "part_size": part_size_mb,
            "threshold": threshold_mb,
        }
        values: dict[str, int] = {}
        for f in fields(cls):
            value: Any = given[f.name]
            if value is None and env.get(ENV[f.name], "").strip():
                text = env[ENV[f.name]].strip()
                try:
                    value = float(text)
                except ValueError:
                    raise TransferSettingsError(
                        f"{ENV[f.name]}={text!r} is not a number; give "
                        + ("a count of requests" if f.name == "max_concurrency" else "MiB")
                    ) from None
            if value is None:
                continue
            values[f.name] = int(value) if f.name == "max_concurrency" else int(value * MIB)
        return cls(**values)

    def boto(self) -> Any:
        """The :class:`boto3.s3.transfer.TransferConfig` of these settings."""
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.threshold,
            multipart_chunksize=self.part_size,
            max_concurrency=self.max_concurrency,
            use_threads=True,
        )


def prefix_record(partial: Path) -> Path:
    """The side file holding how many bytes of ``partial`` are a complete prefix."""
    return partial.with_name(partial.name + ".prefix")


def resumable_prefix(partial: Path) -> int:
    """How many bytes of an earlier attempt's ``partial`` to keep (0: none).

    With a prefix record (a concurrent download wrote the file out of order) the file
    is cut back to the recorded prefix; without one the whole file is a prefix (the
    sequential ranged GET wrote it in order)."""
    if not partial.exists():
        prefix_record(partial).unlink(missing_ok=True)
        return 0
    record = prefix_record(partial)
    if record.exists():
        try:
            keep = int(record.read_text() or 0)
        except ValueError:
            keep = 0
        keep = min(keep, partial.stat().st_size)
        os.truncate(partial, keep)
        record.unlink()
        return keep
    return partial.stat().st_size


class PrefixWriter:
    """A seekable file for s3transfer's out-of-order writes that records its prefix.

    s3transfer writes each ranged GET's bytes at their offset. This keeps the set of
    written ranges and, each time the contiguous prefix from byte 0 grows by a part or
    more, writes it to :func:`prefix_record` (the data is written unbuffered first, so
    a killed process leaves at least that prefix on disk).
    """

    def __init__(self, path: Path, part_size: int):
        self.path = path
        self._fh = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        self._part = part_size
        self._pos = 0
        self._ranges: dict[int, int] = {}  # start -> end of written ranges past the prefix
        self.prefix = 0
        self._recorded = 0
        self._record(0)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._fh.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            n = self._fh.write(view)
            view = view[n:]
        start, self._pos = self._pos, self._pos + len(data)
        self._ranges[start] = max(self._ranges.get(start, start), self._pos)
        while self.prefix in self._ranges:
            self.prefix = max(self.prefix, self._ranges.pop(self.prefix))
        if self.prefix - self._recorded >= self._part:
            self._record(self.prefix)
        return len(data)

    def _record(self, prefix: int) -> None:
        record = prefix_record(self.path)
        tmp = record.with_name(record.name + ".tmp")
        tmp.write_text(str(prefix))
        os.replace(tmp, record)
        self._recorded = prefix

    def close(self, *, complete: bool) -> None:
        """Close; a complete file drops its record, an incomplete one is cut to its prefix."""
        self._fh.close()
        if complete:
            prefix_record(self.path).unlink(missing_ok=True)
        else:
            os.truncate(self.path, self.prefix)
            self._record(self.prefix)
