"""The typed training config: defaults, validation, YAML, dotted overrides."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gmpo_kfp.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    field_help,
    load_config,
    parse_override,
)


def test_defaults_are_gmpo_reference_values():
    c = TrainConfig()
    assert c.algorithm.loss == "gmpo"
    assert c.algorithm.clip_ratio_low == c.algorithm.clip_ratio_high == 0.4
    assert c.algorithm.use_kl_loss is False


def test_every_field_is_documented():
    rows = field_help()
    assert len(rows) > 50
    assert all(len(text) > 10 for _, text, _ in rows)
    keys = [k for k, _, _ in rows]
    assert "optim.lr" in keys and "rollout.n" in keys and "trainer.save_freq" in keys


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("algorithm.clip_ratio_low=0", "algorithm.clip_ratio_low must be > 0, got 0.0"),
        ("algorithm.clip_ratio_high=-0.2", "algorithm.clip_ratio_high must be > 0"),
        ("optim.lr=nan", "optim.lr must be a number, got 'nan'"),
        ("rollout.n=abc", "rollout.n must be an integer, got 'abc'"),
        ("rollout.n=2.5", "rollout.n must be an integer, got 2.5"),
        ("rollout.top_p=1.5", "rollout.top_p must be <= 1, got 1.5"),
        ("algorithm.loss=ppo", "algorithm.loss must be one of gmpo, grpo, gspo; got 'ppo'"),
        ("model.moe=maybe", "model.moe must be true or false, got 'maybe'"),
        ("optim.lrr=1", "unknown config key optim.lrr in optim; known keys here: adam_beta2"),
        ("optimiser.lr=1", "unknown config section optimiser"),
        ("lr", "override 'lr' is not key=value"),
        ("optim=1", "optim is a section: set one of its fields"),
        ("batch.mini_batch_size=4096", "batch.mini_batch_size (4096) exceeds"),
        ("lora.rank=-1", "lora.rank must be >= 0, got -1"),
        ("lora.alpha=0", "lora.alpha must be > 0, got 0"),
        ("lora.dropout=1", "lora.dropout must be <= 0.9, got 1.0"),
        ("lora.rank=8.5", "lora.rank must be an integer, got 8.5"),
    ],
)
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(ConfigError) as info:
        apply_overrides(TrainConfig(), [override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_overrides_apply_with_yaml_values():
    c = apply_overrides(
        TrainConfig(),
        [
            "optim.lr=1e-6",
            "rollout.n=16",
            "data.train_files=[a.parquet, b.parquet]",
            "model.moe=false",
            "trainer.total_steps=null",
            "optim.grad_clip=2",
        ],
    )
    assert c.optim.lr == 1e-6 and c.rollout.n == 16
    assert c.data.train_files == ["a.parquet", "b.parquet"]
    assert c.trainer.total_steps is None
    assert c.optim.grad_clip == 2.0 and isinstance(c.optim.grad_clip, float)


def test_yaml_round_trip_and_unknown_key(tmp_path):
    c = apply_overrides(TrainConfig(), ["rollout.n=3", "name=x"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(c)))
    assert load_config(path) == c
    path.write_text("rollout:\n  n: 4\n  beams: 2\n")
    with pytest.raises(ConfigError, match=r"unknown config key rollout\.beams"):
        load_config(path)
    path.write_text("rollout: [1\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="rollout must be a mapping"):
        config_from_dict({"rollout": 3})


def test_moe_with_wide_clip_warns():
    with pytest.warns(UserWarning, match="advise algorithm.clip_ratio_low/high=0.2"):
        config_from_dict({"model": {"moe": True}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config_from_dict(
            {"model": {"moe": True}, "algorithm": {"clip_ratio_low": 0.2, "clip_ratio_high": 0.2}}
        )


def test_sections_validate_on_their_own():
    from gmpo_kfp.config import OptimConfig

    with pytest.raises(ConfigError, match=r"optim\.lr must be > 0"):
        OptimConfig(lr=0)
    assert dataclasses.replace(OptimConfig(), lr=0.5).lr == 0.5


keys = st.sampled_from([k for k, _, _ in field_help()] + ["nope.x", "optim.nope", "", "a..b"])
values = st.one_of(
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.lists(st.text(max_size=5), max_size=3),
)


@given(key=keys, value=values)
def test_fuzzed_overrides_raise_only_config_errors(key, value):
    text = f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...')}"
    try:
        c = apply_overrides(TrainConfig(), [text])
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert config_from_dict(config_to_dict(c)) == c  # what was accepted stays valid


@given(raw=st.text(max_size=30))
def test_parse_override_never_crashes(raw):
    try:
        parts, _ = parse_override(raw)
    except ConfigError:
        return
    assert all(parts)


def test_numeric_strings_are_read_as_numbers_but_not_nan():
    assert parse_override("optim.lr=1e-6")[1] == 1e-6
    assert parse_override("name=nan")[1] == "nan"  # never a float NaN


def test_lora_is_off_by_default_and_takes_module_names_or_all_linear():
    assert not TrainConfig().lora.enabled
    on = apply_overrides(TrainConfig(), ["lora.rank=16"])
    assert on.lora.enabled and on.lora.targets() == "all-linear"
    named = apply_overrides(on, ["lora.target_modules=[q_proj,v_proj]"])
    assert named.lora.targets() == ["q_proj", "v_proj"]
    with pytest.raises(ConfigError, match=r"lora.target_modules is empty: name the layers"):
        apply_overrides(on, ["lora.target_modules=[]"])
    with pytest.raises(ConfigError, match="all-linear already covers every linear layer"):
        apply_overrides(on, ["lora.target_modules=[all-linear,q_proj]"])
