"""The engine seam's shared parts: typed config changes, the device choice, checkpoint
layouts of both engines and the mirror that uploads and restores them."""

from __future__ import annotations

import json
import os
import threading

import pytest

from gmpo_kfp.config import ConfigError, config_from_dict, with_values
from gmpo_kfp.engines.base import Checkpoint, CheckpointLayout, Engine, get_engine, latest
from gmpo_kfp.engines.mirror import CheckpointMirror
from gmpo_kfp.engines.verl import LATEST_MARKER, VerlLayout, verl_device
from gmpo_kfp.storage import ChecksumMismatch, open_store


def test_with_values_sets_typed_values_and_validates():
    config = with_values(config_from_dict({}), {"model.path": "/m", "data.train_files": ["a"]})
    assert config.model.path == "/m" and config.data.train_files == ["a"]
    with pytest.raises(ConfigError, match=r"unknown config key model\.nope"):
        with_values(config, {"model.nope": 1})
    with pytest.raises(ConfigError, match=r"optim\.lr must be > 0"):
        with_values(config, {"optim.lr": -1.0})


@pytest.mark.parametrize(
    ("sets", "cuda", "device"),
    [
        ({}, True, "cpu"),  # gpus_per_node 0: a CPU run wherever it is
        ({"resources": {"gpus_per_node": 8}}, True, "gpu"),
        ({"resources": {"gpus_per_node": 8}}, False, "cpu"),  # no GPU here
        ({"resources": {"gpus_per_node": 8, "nnodes": 2}}, False, "gpu"),  # the RayJob has them
        ({"verl": {"device": "gpu"}}, False, "gpu"),
        ({"verl": {"device": "cpu"}, "resources": {"gpus_per_node": 8}}, True, "cpu"),
    ],
)
def test_verl_device(sets, cuda, device):
    assert verl_device(config_from_dict(sets), cuda=cuda) == device


def test_verl_on_the_cpu_is_one_node():
    config = config_from_dict({"verl": {"device": "cpu"}, "resources": {"nnodes": 2}})
    with pytest.raises(ConfigError, match=r"verl\.device: cpu runs on one node"):
        verl_device(config, cuda=False)


def test_both_engines_implement_the_seam():
    for name in ("trl", "verl"):
        engine = get_engine(name)
        assert isinstance(engine, Engine) and engine.name == name
        assert isinstance(engine.checkpoints(config_from_dict({})), CheckpointLayout)


def test_verl_layout_counts_only_what_its_marker_covers(tmp_path):
    layout = VerlLayout()
    for step in (2, 4, 6):
        (tmp_path / f"global_step_{step}" / "actor").mkdir(parents=True)
    assert layout.complete(tmp_path) == []  # no marker: nothing is known complete
    (tmp_path / LATEST_MARKER).write_text("4")
    assert [c.step for c in layout.complete(tmp_path)] == [2, 4]  # 6 is still being written
    layout.restored(tmp_path, Checkpoint(6, tmp_path / "global_step_6"))
    assert latest(layout, tmp_path).step == 6


def test_trl_layout_waits_for_the_trainer_state_and_counts_rollout_steps(tmp_path):
    from gmpo_kfp.engines.trl import TRLLayout

    layout = TRLLayout(per_rollout=2)
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-8").mkdir()
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text('{"half": ')  # mid-write
    assert layout.complete(tmp_path) == [Checkpoint(2, tmp_path / "checkpoint-4")]


def write_checkpoint(root, step, payload):
    folder = root / f"global_step_{step}" / "actor"
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(payload)
    (root / LATEST_MARKER).write_text(str(step))


def test_mirror_uploads_new_checkpoints_and_a_fresh_folder_restores_the_latest(tmp_path):
    store_uri = str(tmp_path / "bucket")
    work = tmp_path / "pod1"
    (work / "checkpoints").mkdir(parents=True)
    (work / "metrics.jsonl").write_text('{"step": 1, "data": {}}\n')
    seen = []
    store = open_store(f"{store_uri}/checkpoints")
    put = store.put_bytes

    def watch_latest(key, data, **kw):  # latest.json comes after the checkpoint's files
        if key == "latest.json":
            seen.append(sorted(k for k in store.list_keys() if k.startswith("global_step_")))
        return put(key, data, **kw)

    mirror = CheckpointMirror(store_uri, work, VerlLayout(), poll_s=0.01)
    mirror._store = lambda: store
    store.put_bytes = watch_latest
    with mirror:
        write_checkpoint(work / "checkpoints", 2, b"two")
        threading.Event().wait(0.1)
        assert not mirror.mirrored  # step 2's metrics record is not written yet
        with (work / "metrics.jsonl").open("a") as fh:
            fh.write('{"step": 2, "data": {}}\n')
        while not mirror.mirrored:
            threading.Event().wait(0.01)
        write_checkpoint(work / "checkpoints", 4, b"four")  # the run ends: mirrored anyway
    assert mirror.mirrored == [2, 4]
    assert seen[-1] == ["global_step_2/actor/weights.bin", "global_step_4/actor/weights.bin"]
    body = json.loads(store.get_bytes("latest.json"))
    assert (body["checkpoint"], body["step"]) == ("global_step_4", 4)

    fresh = tmp_path / "pod2"
    restored = CheckpointMirror(store_uri, fresh, VerlLayout()).restore()
    assert restored.step == 4
    assert (fresh / "checkpoints" / "global_step_4" / "actor" / "weights.bin").read_bytes() == (
        b"four"
    )
    assert (fresh / "checkpoints" / LATEST_MARKER).read_text() == "4"
    assert [json.loads(line)["step"] for line in (fresh / "metrics.jsonl").open()] == [1, 2]


def test_a_corrupted_mirrored_file_is_refused(tmp_path):
    store_uri = str(tmp_path / "bucket")
    work = tmp_path / "pod1"
    write_checkpoint(work / "checkpoints", 2, b"two")
    mirror = CheckpointMirror(store_uri, work, VerlLayout())
    mirror.scan()
    mirror.flush()
    (tmp_path / "bucket" / "checkpoints" / "global_step_2" / "actor" / "weights.bin").write_bytes(
        b"bad"
    )
    with pytest.raises(ChecksumMismatch):
        CheckpointMirror(store_uri, tmp_path / "pod2", VerlLayout()).restore()
    assert not (
        tmp_path / "pod2" / "checkpoints" / "global_step_2" / "actor" / "weights.bin"
    ).exists()


def test_no_mirror_no_restore(tmp_path):
    assert CheckpointMirror(str(tmp_path / "empty"), tmp_path / "w", VerlLayout()).restore() is None


def test_verls_records_are_appended_to_the_metrics_file_whole_lines_only(tmp_path):
    from gmpo_kfp.engines.verl import LogAppender

    source, target = tmp_path / "verl.jsonl", tmp_path / "metrics.jsonl"
    target.write_text('{"step": 1, "data": {}}\n')  # from before a resume: kept
    source.write_text("stale from an earlier invocation\n")
    appender = LogAppender(source, target, poll_s=60)
    with appender:
        source.write_text('{"step": 2, "data": {}}\n{"step": 3,')  # verl opens it with "wb"
        appender.drain()
        assert target.read_text().splitlines()[-1] == '{"step": 2, "data": {}}'
        with source.open("a") as fh:
            fh.write(' "data": {}}\n')
    assert [json.loads(line)["step"] for line in target.read_text().splitlines()] == [1, 2, 3]


def test_a_one_record_metrics_file_counts_its_record(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 2, "data": {}}\n')
    mirror = CheckpointMirror(str(tmp_path / "bucket"), tmp_path, VerlLayout())
    assert mirror._metrics_reach(2) and not mirror._metrics_reach(3)


def test_retention_keeps_the_newest_k_and_deletes_what_a_killed_attempt_left(tmp_path):
    store_uri = str(tmp_path / "bucket")
    work = tmp_path / "pod1"
    store = open_store(f"{store_uri}/checkpoints")
    store.put_bytes("global_step_1/actor/weights.bin", b"half-sent by a killed pod")
    mirror = CheckpointMirror(store_uri, work, VerlLayout(), keep=2)
    for step in (2, 4, 6):
        write_checkpoint(work / "checkpoints", step, str(step).encode())
        mirror.scan()
        mirror.flush()
    names = sorted({k.split("/")[0] for k in store.list_keys() if "/" in k})
    assert names == ["global_step_4", "global_step_6"]
    body = json.loads(store.get_bytes("latest.json"))
    assert (body["step"], body["kept"]) == (6, ["global_step_4", "global_step_6"])
    # a restarted pod carries the retention on from latest.json
    again = CheckpointMirror(store_uri, tmp_path / "pod2", VerlLayout(), keep=2)
    assert again.restore().step == 6
    write_checkpoint(tmp_path / "pod2" / "checkpoints", 8, b"8")
    again.scan()
    again.flush()
    assert json.loads(store.get_bytes("latest.json"))["kept"] == ["global_step_6", "global_step_8"]
    assert sorted({k.split("/")[0] for k in store.list_keys() if "/" in k}) == [
        "global_step_6",
        "global_step_8",
    ]


def test_a_full_queue_drops_its_oldest_waiting_checkpoint_for_the_newer_one(tmp_path):
    work = tmp_path / "pod1"
    mirror = CheckpointMirror(str(tmp_path / "bucket"), work, VerlLayout(), queue_size=1)
    for step in (2, 4, 6):
        write_checkpoint(work / "checkpoints", step, str(step).encode())
        mirror.scan()
    assert mirror.dropped == [2, 4]
    assert sorted(p.name for p in (work / ".mirroring").iterdir()) == ["global_step_6"]
    mirror.flush()
    assert mirror.mirrored == [6] and not any((work / ".mirroring").iterdir())


def test_a_queued_checkpoint_survives_the_engine_rotating_it_away(tmp_path):
    import shutil

    work = tmp_path / "pod1"
    mirror = CheckpointMirror(str(tmp_path / "bucket"), work, VerlLayout())
    write_checkpoint(work / "checkpoints", 2, b"two")
    mirror.scan()  # snapshotted: hard links, no copy
    original = work / "checkpoints" / "global_step_2" / "actor" / "weights.bin"
    staged = work / ".mirroring" / "global_step_2" / "actor" / "weights.bin"
    assert os.stat(staged).st_ino == os.stat(original).st_ino
    shutil.rmtree(work / "checkpoints" / "global_step_2")  # max_ckpt_to_keep rotated it
    mirror.flush()
    got = open_store(str(tmp_path / "bucket")).get_bytes(
        "checkpoints/global_step_2/actor/weights.bin"
    )
    assert got == b"two" and mirror.mirrored == [2]


def test_a_file_already_held_with_the_same_sha256_is_not_sent_again(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("a.bin", "b.bin", "c.json"):
        (folder / name).write_bytes(name.encode() * 100)
    store = open_store(str(tmp_path / "bucket"))
    store.upload_dir(folder, "m")
    assert store.sent == 3
    (folder / "b.bin").write_bytes(b"changed")
    files = store.upload_dir(folder, "m")
    assert store.sent == 1 and sorted(files) == ["a.bin", "b.bin", "c.json"]
    assert store.get_bytes("m/b.bin") == b"changed"
