"""Property tests of the inputs people type or hand over: the config loader (YAML files)
and the parquet reader. Only the documented errors come out, each on one line."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmpo_kfp.config import ConfigError, TrainConfig, config_to_dict, load_config
from gmpo_kfp.data.schema import REQUIRED_COLUMNS, DataError, read_rl_parquet

SECTIONS = list(config_to_dict(TrainConfig()))
FIELDS = {
    s: list(v) if isinstance(v, dict) else [] for s, v in config_to_dict(TrainConfig()).items()
}
scalars = st.none() | st.booleans() | st.integers(-10, 10**5) | st.floats() | st.text(max_size=8)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def config_docs(draw):
    """Mostly-plausible config mappings: real section and field names, random values."""
    doc = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "bogus"]), max_size=4, unique=True)):
        names = FIELDS.get(section) or ["x"]
        if names == ["x"] and section in FIELDS:
            doc[section] = draw(values)
            continue
        doc[section] = draw(st.dictionaries(st.sampled_from([*names, "nope"]), values, max_size=3))
    return doc


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(doc=config_docs() | values)
def test_fuzzed_config_files_raise_only_config_errors(doc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(doc))
        try:
            config = load_config(path)
        except ConfigError as exc:
            assert "\n" not in str(exc)
        else:
            assert isinstance(config, TrainConfig)


@given(text=st.text(max_size=60))
def test_fuzzed_yaml_text_raises_only_config_errors(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text)
        try:
            load_config(path)
        except ConfigError as exc:
            assert "\n" not in str(exc)


column = st.sampled_from([*REQUIRED_COLUMNS, "extra"])
cells = (
    st.none() | st.integers(-3, 3) | st.text(max_size=4) | st.lists(st.text(max_size=3), max_size=2)
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    columns=st.lists(column, min_size=1, max_size=6, unique=True),
    rows=st.integers(0, 3),
    data=st.data(),
)
def test_fuzzed_parquet_files_raise_only_data_errors(columns, rows, data):
    table = {}
    for name in columns:
        kind = data.draw(st.sampled_from(["int", "str", "list", "struct"]))
        strategy = {
            "int": st.none() | st.integers(-3, 3),
            "str": st.none() | st.text(max_size=4),
            "list": st.lists(st.text(max_size=3), max_size=2),
            "struct": st.fixed_dictionaries({"k": st.text(max_size=3)}),
        }[kind]
        table[name] = data.draw(st.lists(strategy, min_size=rows, max_size=rows))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.parquet"
        try:
            pq.write_table(pa.table(table), path)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return  # not a table pyarrow can write: nothing to read
        try:
            read_rl_parquet(path)
        except DataError as exc:
            assert "\n" not in str(exc)


@given(blob=st.binary(max_size=64))
def test_fuzzed_bytes_as_parquet_raise_only_data_errors(blob):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.parquet"
        path.write_bytes(blob)
        try:
            read_rl_parquet(path)
        except DataError as exc:
            assert "\n" not in str(exc)
