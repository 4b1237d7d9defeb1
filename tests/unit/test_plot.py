"""gmpo plot: PNGs from metrics files of either engine."""

from __future__ import annotations

from pathlib import Path

from gmpo_kfp import metrics as M
from tests.unit.test_cli import gmpo


def write_run(path, scale):
    with M.MetricsWriter(path) as w:
        for step in range(1, 6):
            w.write(
                step,
                {
                    M.SCORE_MEAN: scale * step / 5,
                    M.ENTROPY: 1 - step / 10,
                    M.TOKEN_RATIO_MIN: 0.9,
                    M.TOKEN_RATIO_MAX: 1.1,
                    M.PG_CLIPFRAC: 0.01,
                    M.PG_CLIPFRAC_LOWER: 0.02,
                },
            )
    return path


def test_plot_writes_pngs_for_several_runs(tmp_path):
    a = write_run(tmp_path / "gmpo" / "metrics.jsonl", 1.0)
    b = write_run(tmp_path / "grpo" / "metrics.jsonl", 0.5)
    out = gmpo("plot", str(a), str(b), "-o", str(tmp_path / "plots"))
    assert out.returncode == 0, out.stderr
    written = out.stdout.split()
    assert len(written) == 5 and all(p.endswith(".png") for p in written)
    for path in written:
        data = Path(path).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 2000


def test_plot_bad_inputs_are_one_line(tmp_path):
    out = gmpo("plot", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "p"))
    assert out.returncode == 2 and "does not exist" in out.stderr
    (tmp_path / "empty.jsonl").write_text("not json\n")
    out = gmpo("plot", str(tmp_path / "empty.jsonl"), "-o", str(tmp_path / "p"))
    assert out.returncode == 2 and "holds no {step, data} records" in out.stderr
    assert not (tmp_path / "p").exists()
