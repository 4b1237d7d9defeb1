"""Training data in verl's RL parquet layout: schema, validation, I/O and built-in tasks."""

from gmpo_kfp.data.schema import (
    REQUIRED_COLUMNS,
    DataError,
    read_rl_parquet,
    validate_row,
    validate_rows,
    write_rl_parquet,
)

__all__ = [
    "REQUIRED_COLUMNS",
    "DataError",
    "read_rl_parquet",
    "validate_row",
    "validate_rows",
    "write_rl_parquet",
]
