"""The gmpo command: version, help, listing, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

from gmpo_kfp import __version__


def gmpo(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """``gmpo ARGS`` in a child process (``env``: added to this environment)."""
    return subprocess.run(
        [sys.executable, "-m", "gmpo_kfp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})} if env else None,
    )


def test_version_and_help():
    out = gmpo("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"gmpo {__version__}"
    out = gmpo("--help")
    assert out.returncode == 0 and "GMPO" in out.stdout and "losses" in out.stdout


def test_losses_lists_the_registry():
    out = gmpo("losses")
    assert out.returncode == 0
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert names == ["gmpo", "grpo", "gspo"]


def test_unknown_command_is_one_line_and_exit_2():
    out = gmpo("frobnicate")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "invalid choice: 'frobnicate'" in out.stderr


def test_presets_list_and_show():
    out = gmpo("presets", "list")
    assert out.returncode == 0
    assert [line.split()[0] for line in out.stdout.splitlines()][-1] == "tiny-cpu"
    out = gmpo("presets", "show", "gmpo-qwen2.5-7b-math")
    assert out.returncode == 0 and "Qwen/Qwen2.5-Math-7B" in out.stdout


def test_config_prints_yaml_and_the_verl_command():
    import shlex

    import yaml

    out = gmpo("config", "--preset", "gmpo-qwen2.5-7b-math", "--set", "rollout.n=7")
    assert out.returncode == 0
    assert yaml.safe_load(out.stdout)["rollout"]["n"] == 7
    out = gmpo("config", "--preset", "gmpo-qwen2.5-7b-math", "--format", "verl")
    argv = shlex.split(out.stdout.replace("\\\n", " "))
    assert argv[:3] == ["python3", "-m", "verl.trainer.main_ppo"]
    assert "actor_rollout_ref.actor.policy_loss.loss_mode=gmpo" in argv
    assert 'data.train_files=["~/data/gsm8k/train.parquet","~/data/math/train.parquet"]' in argv


def test_bad_config_inputs_are_one_line_errors():
    cases = {
        ("presets", "show", "nope"): "unknown preset 'nope'; known presets:",
        ("config", "--set", "rollout.n=x"): "rollout.n must be an integer, got 'x'",
        ("config", "--set", "optim.lrr=1"): "unknown config key optim.lrr",
        ("config", "--config", "/nonexistent.yaml"): "config file /nonexistent.yaml does not exist",
        ("config", "--preset", "tiny-cpu", "--config", "x.yaml"): "--config and --preset both",
    }
    for args, message in cases.items():
        out = gmpo(*args)
        assert out.returncode == 2, args
        assert out.stdout == ""
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gmpo: error: "), args
        assert message in lines[0], args


def test_moe_clip_warning_is_one_line():
    out = gmpo(
        "config",
        "--preset",
        "gmpo-dapo-qwen3-30b-a3b-math",
        "--set",
        "algorithm.clip_ratio_high=0.4",
    )
    assert out.returncode == 0
    assert out.stderr.startswith("gmpo: warning: model.moe is set")
    assert len(out.stderr.strip().splitlines()) == 1


def test_train_bad_inputs_are_one_line_and_leave_nothing(tmp_path):
    out_dir = tmp_path / "run"
    cases = [
        (["--set", "data.task=", "--output", str(out_dir)], "data.train_files: empty"),
        (
            [
                "--set",
                f"data.train_files={tmp_path / 'missing.parquet'}",
                "--set",
                "data.task=",
                "--output",
                str(out_dir),
            ],
            "does not exist",
        ),
        (
            ["--set", "algorithm.clip_ratio_low=0", "--output", str(out_dir)],
            "algorithm.clip_ratio_low must be > 0",
        ),
        (["--preset", "nope"], "unknown preset"),
    ]
    for args, message in cases:
        out = gmpo("train", "--no-progress", *args)
        assert out.returncode == 2, (args, out.stderr)
        assert "Traceback" not in out.stderr
        assert message in out.stderr, (message, out.stderr)
        assert out.stderr.strip().splitlines()[-1].startswith("gmpo: error:")
    assert not (out_dir / "model").exists() and not (out_dir / "metrics.jsonl").exists()


def test_pipeline_commands_bad_inputs_are_one_line(tmp_path):
    import time

    out = gmpo("run", "--local", "--preset", "nope", "--output", str(tmp_path / "o"))
    assert out.returncode == 2 and "unknown preset 'nope'" in out.stderr
    assert not (tmp_path / "o").exists()
    out = gmpo("run", "--local", "--param", "bogus=1", "--output", str(tmp_path / "o"))
    assert out.returncode == 2 and "--param bogus: the pipeline has no such parameter" in out.stderr
    start = time.monotonic()
    out = gmpo("submit", "--host", "http://127.0.0.1:9")
    assert out.returncode == 2 and "cannot connect" in out.stderr
    assert time.monotonic() - start < 30
    for result in (out,):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_compile_writes_the_ir(tmp_path):
    out = gmpo("compile", "-o", str(tmp_path / "p.yaml"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "p.yaml").read_text().startswith("# PIPELINE DEFINITION")
    assert not list(tmp_path.glob(".p.yaml*"))


def test_the_help_names_the_default_preset_that_the_commands_use():
    """The help text holds a copy of DEFAULT_PRESET (importing presets would make
    `gmpo --version` need PyYAML); this keeps the copy true."""
    from gmpo_kfp.cli import build_parser
    from gmpo_kfp.presets import DEFAULT_PRESET, preset_names

    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "preset"]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for command in sub.choices.values():
        actions += [a for a in command._actions if a.dest == "preset" and "default" in a.help]
    assert actions
    for action in actions:
        assert f"default {DEFAULT_PRESET}" in action.help, action.help
    assert DEFAULT_PRESET in preset_names()


def test_the_lineage_image_digest_is_known_only_when_the_reference_pins_one():
    from gmpo_kfp import settings
    from gmpo_kfp.workflow.lineage import image

    pinned = "ghcr.io/x/trainer@sha256:" + "a" * 64
    assert image({settings.IMAGE_ENV: pinned}) == {
        "reference": pinned,
        "digest": "sha256:" + "a" * 64,
    }
    assert image({settings.IMAGE_ENV: "ghcr.io/x/trainer:1.0"})["digest"] is None
    assert image({}) == {"reference": None, "digest": None}
