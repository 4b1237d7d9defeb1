"""The verl engine's orchestration: command, logger env, latest checkpoint, merge, result.

verl needs CUDA to train, so this machine cannot run it: the child process here is a
stand-in interpreter that records its argv and writes what verl 0.9.1 writes (FSDP
checkpoint folders, ``latest_checkpointed_iteration.txt``, file-logger records).
What is tested is our side: how verl is launched and what is made of its output.
The overrides themselves are tested against verl's own Hydra config elsewhere.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from gmpo_kfp.config import config_from_dict
from gmpo_kfp.engines import verl as engine
from gmpo_kfp.training import train

FAKE = textwrap.dedent(
    """\
    #!{python}
    import json, os, pathlib, sys
    log = pathlib.Path(os.environ["FAKE_LOG"])
    log.open("a").write(json.dumps(sys.argv[1:]) + "\\n")
    args = sys.argv[1:]
    if args[:2] == ["-m", "verl.trainer.main_ppo"]:
        if os.environ.get("FAKE_FAIL"):
            print("RuntimeError: CUDA is not available"); sys.exit(1)
        kv = dict(a.split("=", 1) for a in args[2:])
        root = pathlib.Path(kv["trainer.default_local_dir"])
        for step in (2, 4):
            (root / f"global_step_{{step}}" / "actor").mkdir(parents=True, exist_ok=True)
        (root / "latest_checkpointed_iteration.txt").write_text("4")
        acc = "val-core/arithmetic/acc/mean@1"
        records = [(0, {{acc: 0.25}})] + [(s, {{"critic/score/mean": s / 10}}) for s in range(1, 5)]
        with open(os.environ["VERL_FILE_LOGGER_PATH"], "a") as fh:
            for step, data in records + [(4, {{acc: 0.5}})]:
                fh.write(json.dumps({{"step": step, "data": data}}) + "\\n")
        print("step 4 done")
    elif args[:3] == ["-m", "verl.model_merger", "merge"]:
        target = pathlib.Path(args[args.index("--target_dir") + 1])
        target.mkdir(parents=True)
        (target / "config.json").write_text("{{}}")
        (target / "source.txt").write_text(args[args.index("--local_dir") + 1])
    """
)


@pytest.fixture
def fake_python(tmp_path, monkeypatch):
    exe = tmp_path / "fake-python"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(0o755)
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.jsonl"))
    return str(exe)


def verl_config(tmp_path):
    return config_from_dict(
        {
            "engine": "verl",
            "data": {"train_files": ["/data/train.parquet"], "val_files": ["/data/val.parquet"]},
            "optim": {"lr_schedule": "constant"},
            "trainer": {"output_dir": str(tmp_path / "run"), "save_freq": 2, "total_steps": 4},
        }
    )


def test_launch_merge_and_result(tmp_path, fake_python):
    result = engine.run(verl_config(tmp_path), python=fake_python)
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    train_call, merge_call = calls
    assert train_call[:2] == ["-m", "verl.trainer.main_ppo"]
    assert "actor_rollout_ref.actor.policy_loss.loss_mode=gmpo" in train_call
    assert "trainer.logger=['console', 'file']" in train_call or any(
        a.startswith("trainer.logger=") and "file" in a for a in train_call
    )
    assert merge_call[:5] == ["-m", "verl.model_merger", "merge", "--backend", "fsdp"]
    model = tmp_path / "run" / "model"
    assert result["model_dir"] == model and (model / "config.json").is_file()
    assert (model / "source.txt").read_text().endswith("global_step_4/actor")
    assert result["steps"] == 4
    assert (result["pass_at_1_before"], result["pass_at_1_after"]) == (0.25, 0.5)
    assert not (tmp_path / "run" / ".model.merging").exists()


def test_a_failed_verl_run_is_one_line_naming_the_step(tmp_path, fake_python, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "1")
    with pytest.raises(RuntimeError, match=r"verl training failed with exit code 1: .*CUDA"):
        engine.run(verl_config(tmp_path), python=fake_python)
    assert not (tmp_path / "run" / "model").exists()


def test_train_dispatches_to_verl(tmp_path, fake_python, monkeypatch):
    monkeypatch.setattr(sys, "executable", fake_python)
    (tmp_path / "data").mkdir()
    result = train(verl_config(tmp_path))
    assert result.steps == 4 and result.model_dir.is_dir()
