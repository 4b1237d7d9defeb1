"""``s3://`` and ``file://`` storage with one interface: bytes, files, listings, conditional writes.

- S3: boto3 with the standard retry mode; endpoint and credentials from the usual
  environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
  ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` for stores other than AWS, which
  then get path-style addressing). Transfers run on boto3's managed transfer
  (s3transfer, :mod:`gmpo_kfp.transfer`): the files of a folder and the parts of a
  large file concurrently, each part with a SHA-256 that S3 verifies, ranged GETs
  in parallel. Every object carries its SHA-256 in its metadata, and a file whose
  key already holds the same SHA-256 is not sent again.
- ``file://`` (or a plain path): the same calls on a local folder; every write goes
  to a temporary name and is renamed, so a reader never sees half a file.
- :meth:`Store.put_bytes` with ``if_absent=True`` is a conditional create
  (``If-None-Match: *`` on S3, ``O_EXCL`` locally): exactly one of several
  concurrent writers wins, which the registry builds its version numbers on.
- Downloads go to a temporary name and are checked before the rename: a corrupted
  download is refused. The checksum comes from a manifest where there is one (the
  registry's, a checkpoint pointer, the ``.gmpo-files.json`` that :func:`push_dir`
  writes beside a folder's files), else from the object itself
  (:meth:`Store.checksum`: S3's SHA-256, full or per part, else its MD5 ETag).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gmpo_kfp.errors import UserError
from gmpo_kfp.transfer import PrefixWriter, TransferSettings, resumable_prefix

#: The object metadata key (``x-amz-meta-sha256``) holding the file's SHA-256 (hex).
SHA256_META = "sha256"

CHUNK = 8 * 1024 * 1024


class StorageError(UserError, OSError):
    """A storage call failed for good; the message names the URI and the likely fix."""


class ChecksumMismatch(StorageError):
    """A downloaded file's SHA-256 differs from the expected one: it was refused."""


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (``algorithm``: a hashlib name), read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return file_digest(path)


#: Written by :func:`push_dir` after a folder's files: ``{"files": {rel: {size, sha256}}}``.
FILES_MANIFEST = ".gmpo-files.json"


@dataclass(frozen=True)
class Checksum:
    """What a store holds of an object's content, to check a download against.

    ``algorithm``: ``sha256`` or ``md5``; ``value``: the digest as the store gives it
    (hex); ``part_size``: set for a multipart object's composite checksum (the digest
    of its parts' digests), the size of every part but the last.
    """

    algorithm: str
    value: str
    part_size: int | None = None
    source: str = "the store's checksum"  #: where it came from, for the refusal's message

    @classmethod
    def manifest(cls, sha256: str) -> Checksum:
        """A file's SHA-256 as a manifest records it."""
        return cls("sha256", sha256, source="the manifest")

    def of(self, path: str | os.PathLike) -> str:
        """The same kind of digest of a local file."""
        if self.part_size is None:
            return file_digest(path, self.algorithm)
        new = getattr(hashlib, self.algorithm)
        digests = b""
        with open(path, "rb") as fh:
            for part in iter(lambda: fh.read(self.part_size), b""):
                digests += new(part).digest()
        return new(digests).hexdigest()


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write a local file under a temporary name, then rename: never half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def partial_path(target: Path) -> Path:
    """Where a download of ``target`` accumulates until it is complete and checked."""
    return target.with_name(f".{target.name}.part")


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


@dataclass
class Store:
    """Base: keys are ``/``-separated paths below the store's root URI."""

    uri: str
    sent: int = 0  #: files the last :meth:`upload_dir` sent (the others were there)

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes | None:
        raise NotImplementedError

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        raise NotImplementedError

    def upload_file(self, path: str | os.PathLike, key: str, *, sha256: str | None = None) -> None:
        """Upload one file (``sha256``: its digest, when already known)."""
        raise NotImplementedError

    def _fetch(self, key: str, target: Path) -> None:
        raise NotImplementedError

    def url(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    def checksum(self, key: str) -> Checksum:
        """The checksum the store keeps of ``key`` (for a download with no manifest)."""
        raise NotImplementedError

    def holds(self, key: str, sha256: str) -> bool:
        """``key`` exists and holds a file with this SHA-256 (hex)."""
        raise NotImplementedError

    def delete_prefix(self, prefix: str) -> None:
        """Delete every key below ``prefix/``."""
        raise NotImplementedError

    def download_file(
        self,
        key: str,
        path: str | os.PathLike,
        *,
        sha256: str | None = None,
        checksum: Checksum | None = None,
    ) -> Path:
        """Download ``key`` to ``path``: into ``.<name>.part`` (an interrupted download
        continues there on the next call), checked against ``sha256`` (a manifest's)
        or ``checksum`` (the store's, :meth:`checksum`), then renamed."""
        expected = Checksum.manifest(sha256) if sha256 is not None else checksum
        return self.download_files([(key, Path(path), expected)])[0]

    def download_files(self, items: list[tuple[str, Path, Checksum | None]]) -> list[Path]:
        """Download each ``(key, path, expected checksum)`` as :meth:`download_file` does,
        concurrently where the store can; every file is checked before its rename."""
        pairs = []
        for key, target, _ in items:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            pairs.append((key, partial_path(Path(target))))
        self._fetch_many(pairs)
        out = []
        for (key, target, expected), (_, partial) in zip(items, pairs, strict=True):
            if expected is not None and expected.of(partial) != expected.value:
                partial.unlink(missing_ok=True)
                raise ChecksumMismatch(
                    f"{self.url(key)}: {expected.algorithm.upper()} differs from "
                    f"{expected.source}; the download was refused (the object is corrupted or "
                    "was replaced)"
                )
            os.replace(partial, target)
            out.append(Path(target))
        return out

    def _fetch_many(self, pairs: list[tuple[str, Path]]) -> None:
        for key, partial in pairs:
            self._fetch(key, partial)

    def download_checked(self, key: str, path: str | os.PathLike) -> Path:
        """Download ``key``, checked against the checksum the store keeps of it."""
        return self.download_file(key, path, checksum=self.checksum(key))

    def upload_files(self, items: list[tuple[Path, str, str]]) -> None:
        """Upload each ``(path, key, sha256)``, concurrently where the store can."""
        for path, key, sha in items:
            self.upload_file(path, key, sha256=sha)

    def upload_dir(
        self, folder: str | os.PathLike, prefix: str, *, skip_same: bool = True
    ) -> dict[str, dict[str, Any]]:
        """Upload every file below ``folder``; returns ``{relative path: {size, sha256}}``.

        ``skip_same``: a file whose key already holds the same SHA-256 is not sent
        again (a resumed run's checkpoint, a model registered twice)."""
        files: dict[str, dict[str, Any]] = {}
        todo: list[tuple[Path, str, str]] = []
        root = Path(folder)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            files[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
            todo.append((path, join(prefix, rel), files[rel]["sha256"]))
        if skip_same:
            held = self._held([(key, sha) for _, key, sha in todo])
            todo = [item for item, same in zip(todo, held, strict=True) if not same]
        self.upload_files(todo)
        self.sent = len(todo)
        return files

    def _held(self, pairs: list[tuple[str, str]]) -> list[bool]:
        return [self.holds(key, sha) for key, sha in pairs]


class FileStore(Store):
    """A local folder."""

    def __init__(self, uri: str):
        super().__init__(uri)
        parsed = urlparse(uri)
        self.root = Path(parsed.path if parsed.scheme == "file" else uri)

    def _path(self, key: str) -> Path:
        return self.root / key

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            if if_absent:
                try:
                    os.link(tmp, target)  # atomic create-if-absent, content complete
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                yield path.relative_to(self.root).as_posix()

    def upload_file(self, path: str | os.PathLike, key: str, *, sha256: str | None = None) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(fd)
        try:
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                for block in iter(lambda: src.read(CHUNK), b""):
                    dst.write(block)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def holds(self, key: str, sha256: str) -> bool:
        target = self._path(key)
        return target.is_file() and sha256_file(target) == sha256

    def delete_prefix(self, prefix: str) -> None:
        import shutil

        shutil.rmtree(self._path(prefix), ignore_errors=True)

    def checksum(self, key: str) -> Checksum:
        source = self._path(key)
        if not source.is_file():
            raise StorageError(f"{self.url(key)} does not exist")
        return Checksum("sha256", sha256_file(source))

    def _fetch(self, key: str, target: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise StorageError(f"{self.url(key)} does not exist")
        with open(source, "rb") as src, open(target, "wb") as dst:
            for block in iter(lambda: src.read(CHUNK), b""):
                dst.write(block)


def s3_client() -> Any:
    """A boto3 S3 client from the environment, standard retries, path style off AWS."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        # AWS_MAX_ATTEMPTS / AWS_RETRY_MODE as the AWS SDKs read them
        retries={
            "mode": os.environ.get("AWS_RETRY_MODE", "standard"),
            "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "5")),
        },
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"} if endpoint else {},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=config,
    )


class S3Store(Store):
    """``s3://bucket/prefix``."""

    def __init__(self, uri: str, client: Any = None, transfer: TransferSettings | None = None):
        super().__init__(uri)
        self.transfer = transfer or TransferSettings.resolve()
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise StorageError(f"{uri}: an S3 URI needs a bucket, e.g. s3://my-bucket/models")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = client or s3_client()

    def _key(self, key: str) -> str:
        return join(self.prefix, key)

    def _call(self, what: str, key: str, fn, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError
        from s3transfer.exceptions import RetriesExceededError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                raise StorageError(
                    f"{self.url(key)}: {what} was refused ({code}); check AWS_ACCESS_KEY_ID "
                    "and AWS_SECRET_ACCESS_KEY"
                ) from None
            if code in ("NoSuchBucket",):
                raise StorageError(f"s3://{self.bucket}: no such bucket; create it first") from None
            raise
        except (BotoCoreError, RetriesExceededError) as exc:
            raise StorageError(
                f"{self.url(key)}: {what} failed ({exc}); check AWS_ENDPOINT_URL and the network"
            ) from None

    def _manager(self) -> Any:
        from s3transfer.manager import TransferManager

        return TransferManager(self.client, self.transfer.boto())

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if if_absent:
            kwargs["IfNoneMatch"] = "*"
        try:
            self._call("writing", key, self.client.put_object, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if if_absent and code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def get_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            out = self._call(
                "reading", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return out["Body"].read()

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        full = self._key(prefix)
        pages = self._call(
            "listing", prefix, lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full))
        )
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][strip:]

    def upload_file(self, path: str | os.PathLike, key: str, *, sha256: str | None = None) -> None:
        """Upload one file (see :meth:`upload_files`)."""
        self.upload_files([(Path(path), key, sha256 or sha256_file(path))])

    def upload_files(self, items: list[tuple[Path, str, str]]) -> None:
        """Upload ``(path, key, sha256)`` items through s3transfer, ``max_concurrency``
        requests at once: one PUT below the threshold, else a multipart upload whose
        parts S3 checks by SHA-256; an object exists only once it is complete, and a
        failed upload is aborted. Each object's metadata names its SHA-256.

        A killed process cannot abort its upload: the unfinished uploads of these keys
        are aborted first."""
        if not items:
            return
        big = {
            self._key(key)
            for path, key, _ in items
            if path.stat().st_size >= self.transfer.threshold
        }
        if big:
            self._call("uploading", items[0][1], self._abort_stale_uploads, big)
        manager = self._manager()
        futures = []
        try:
            for path, key, sha in items:
                extra = {"ChecksumAlgorithm": "SHA256", "Metadata": {SHA256_META: sha}}
                futures.append(manager.upload(str(path), self.bucket, self._key(key), extra))
            for (_, key, _), future in zip(items, futures, strict=True):
                self._call("uploading", key, future.result)  # the error names its own key
        except BaseException:
            manager.shutdown(cancel=True)
            raise
        manager.shutdown()

    def _abort_stale_uploads(self, keys: set[str]) -> None:
        """Abort unfinished multipart uploads of ``keys`` (a killed earlier attempt's)."""
        common = os.path.commonprefix(sorted(keys))  # noqa: RUF071 - a key prefix, not a path
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=common):
            for upload in page.get("Uploads", []):
                if upload["Key"] in keys:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )

    def holds(self, key: str, sha256: str) -> bool:
        """The object's metadata (or its full-object SHA-256) names this SHA-256."""
        from botocore.exceptions import ClientError

        try:
            found = self._call(
                "reading",
                key,
                self.client.head_object,
                Bucket=self.bucket,
                Key=self._key(key),
                ChecksumMode="ENABLED",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return False
            raise
        if found.get("Metadata", {}).get(SHA256_META) == sha256:
            return True
        full = found.get("ChecksumSHA256", "")
        return bool(full) and "-" not in full and base64.b64decode(full).hex() == sha256

    def _held(self, pairs: list[tuple[str, str]]) -> list[bool]:
        """:meth:`holds` of each pair, ``max_concurrency`` HEADs at once."""
        from concurrent.futures import ThreadPoolExecutor

        if len(pairs) < 2:
            return [self.holds(key, sha) for key, sha in pairs]
        with ThreadPoolExecutor(self.transfer.max_concurrency) as pool:
            return list(pool.map(lambda pair: self.holds(*pair), pairs))

    def delete_prefix(self, prefix: str) -> None:
        keys = [self._key(k) for k in self.list_keys(prefix.rstrip("/") + "/")]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(
                "deleting",
                prefix,
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )

    def checksum(self, key: str) -> Checksum:
        """S3's SHA-256 of the object (ours: every upload sends one), whole or of its
        parts; else its ETag, the MD5 of a plain upload (or of its parts' MD5s).

        A multipart checksum is the digest of its parts' digests: the part size comes
        from a HEAD of part 1 (every part but the last has that size). An object
        encrypted with KMS and uploaded without a SHA-256 has no usable checksum: that
        download is refused, with the way to upload it checked.
        """
        from botocore.exceptions import ClientError

        def head(**extra: Any) -> dict[str, Any]:
            return self._call(
                "reading",
                key,
                self.client.head_object,
                Bucket=self.bucket,
                Key=self._key(key),
                **extra,
            )

        try:
            found = head(ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise StorageError(f"{self.url(key)} does not exist; check the URI") from None
            raise
        etag = found.get("ETag", "").strip('"')
        part_size = head(PartNumber=1)["ContentLength"] if "-" in etag else None
        sha = found.get("ChecksumSHA256")
        if sha:
            value = base64.b64decode(sha.split("-", 1)[0]).hex()
            return Checksum("sha256", value, part_size)
        if found.get("ServerSideEncryption") == "aws:kms":
            raise StorageError(
                f"{self.url(key)}: no SHA-256 checksum on a KMS-encrypted object, so the "
                "download cannot be checked; upload it with one (aws s3 cp "
                "--checksum-algorithm SHA256)"
            )
        return Checksum("md5", etag.split("-", 1)[0], part_size)

    def _fetch_many(self, pairs: list[tuple[str, Path]]) -> None:
        """Fresh downloads through s3transfer (ranged GETs of ``part_size``,
        ``max_concurrency`` at once, files concurrently) into a :class:`PrefixWriter`;
        an earlier attempt's ``.part`` is cut to its complete prefix and continued by
        :meth:`_fetch` (s3transfer cannot resume: see :mod:`gmpo_kfp.transfer`)."""
        fresh = []
        for key, partial in pairs:
            if resumable_prefix(partial):
                self._fetch(key, partial)
            else:
                fresh.append((key, partial))
        if not fresh:
            return
        manager = self._manager()
        writers: list[PrefixWriter] = []
        done: list[bool] = []
        try:
            futures = []
            for key, partial in fresh:
                writers.append(PrefixWriter(partial, self.transfer.part_size))
                done.append(False)
                futures.append(manager.download(self.bucket, self._key(key), writers[-1]))
            for i, ((key, _), future) in enumerate(zip(fresh, futures, strict=True)):
                self._fetch_result(key, future)
                done[i] = True
        except BaseException:
            manager.shutdown(cancel=True)
            raise
        else:
            manager.shutdown()
        finally:
            for writer, complete in zip(writers, done, strict=False):
                writer.close(complete=complete)

    def _fetch_result(self, key: str, future: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            self._call("downloading", key, future.result)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise StorageError(f"{self.url(key)} does not exist; check the URI") from None
            raise

    def _fetch(self, key: str, target: Path) -> None:
        """Append to ``target`` from where it ends (a ranged GET); restart when the
        object changed size under it."""
        from botocore.exceptions import ClientError

        offset = target.stat().st_size if target.exists() else 0
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if offset:
            kwargs["Range"] = f"bytes={offset}-"
        try:
            out = self._call("downloading", key, self.client.get_object, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey"):
                raise StorageError(f"{self.url(key)} does not exist; check the URI") from None
            if code == "InvalidRange" and offset:  # the part file is not a prefix of it
                target.unlink()
                return self._fetch(key, target)
            raise
        mode = "ab" if offset else "wb"
        with target.open(mode) as fh:
            self._call("downloading", key, _copy_stream, out["Body"], fh)
        return None


def _copy_stream(body: Any, fh: Any) -> None:
    for block in body.iter_chunks(CHUNK):
        fh.write(block)


def open_store(uri: str, **kwargs: Any) -> Store:
    """The store for ``s3://...``, ``file://...`` or a local path."""
    scheme = urlparse(uri).scheme
    if scheme == "s3":
        return S3Store(uri, **kwargs)
    if scheme in ("", "file"):
        return FileStore(uri)
    raise StorageError(
        f"{uri}: unsupported scheme {scheme!r}; use s3://BUCKET/PREFIX or file://PATH"
    )


def _split(uri: str) -> tuple[str, str]:
    """``s3://b/a/b/c`` -> (``s3://b/a/b``, ``c``)."""
    head, _, tail = uri.rstrip("/").rpartition("/")
    return head, tail


def is_local(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


def local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(parsed.path if parsed.scheme == "file" else uri)


def fetch_file(uri: str, folder: str | os.PathLike) -> Path:
    """A local path for the file at ``uri`` (downloaded into ``folder`` unless local)."""
    if is_local(uri):
        path = local_path(uri)
        if not path.is_file():
            raise StorageError(f"{uri} does not exist; give an existing file")
        return path
    head, name = _split(uri)
    return open_store(head).download_checked(name, Path(folder) / name)


def fetch_dir(uri: str, folder: str | os.PathLike) -> Path:
    """A local folder with the files below ``uri`` (downloaded into ``folder`` unless local)."""
    if is_local(uri):
        path = local_path(uri)
        if not path.is_dir():
            raise StorageError(f"{uri} is not a folder; give the model's folder")
        return path
    store = open_store(uri)
    raw = store.get_bytes(FILES_MANIFEST)
    if raw is not None:  # written by push_dir: exactly these files, with these checksums
        files = json.loads(raw)["files"]
        store.download_files(
            [(rel, Path(folder) / rel, Checksum.manifest(m["sha256"])) for rel, m in files.items()]
        )
        return Path(folder)
    keys = [k for k in store.list_keys() if k != FILES_MANIFEST]
    if not keys:
        raise StorageError(f"{uri} holds no files; check the URI")
    store.download_files([(key, Path(folder) / key, store.checksum(key)) for key in keys])
    return Path(folder)


def push_dir(folder: str | os.PathLike, uri: str) -> dict[str, dict[str, Any]]:
    """Upload the files below ``folder`` to ``uri``, then :data:`FILES_MANIFEST` naming
    them (what :func:`fetch_dir` checks each download against); returns the files'
    sizes and checksums."""
    store = open_store(uri)
    files = store.upload_dir(folder, "")
    store.put_bytes(FILES_MANIFEST, json.dumps({"files": files}, sort_keys=True).encode())
    return files
