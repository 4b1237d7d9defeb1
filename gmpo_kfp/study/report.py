"""Training curves from metrics files (either engine's), as PNG and as Markdown with the PNG inline.

The KFP UI renders a Markdown artifact; an ``<img src="data:image/png;base64,...">``
in it shows the curves without any extra viewer. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from typing import Any

from gmpo_kfp import metrics as M
from gmpo_kfp.data.schema import DataError

#: panel title -> metric names drawn in it
PANELS: dict[str, tuple[str, ...]] = {
    "reward": (M.SCORE_MEAN,),
    "clip fraction": (M.PG_CLIPFRAC, M.PG_CLIPFRAC_LOWER),
    "token ratio range": (M.TOKEN_RATIO_MIN, M.TOKEN_RATIO_MAX),
    "entropy": (M.ENTROPY,),
}


def series(path: str | os.PathLike, name: str) -> tuple[list[int], list[float]]:
    """The steps where a metrics file has a number for ``name``, and those numbers."""
    return M.series(M.read_metrics(path), name)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any, *, dpi: int = 90) -> bytes:
    """``fig`` laid out and drawn as PNG bytes; the figure is closed."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()


def plot_runs(
    runs: dict[str, str | os.PathLike], panels: dict[str, Sequence[str]] | None = None
) -> bytes:
    """One PNG: a panel per entry of ``panels``, a line per run (and metric)."""
    plt = pyplot()
    panels = dict(panels or PANELS)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (title, names) in zip(axes[0], panels.items(), strict=True):
        for label, path in runs.items():
            for name in names:
                steps, values = series(path, name)
                if steps:
                    suffix = f" {name.rsplit('/', 1)[-1]}" if len(names) > 1 else ""
                    ax.plot(steps, values, label=f"{label}{suffix}", linewidth=1.2)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines and (len(runs) > 1 or len(names) > 1):
            ax.legend(fontsize=7)
    return png(fig)


def training_markdown(metrics_file: str | os.PathLike, *, title: str = "Training curves") -> str:
    """Markdown with the curves inline and the last value of each plotted metric."""
    png = plot_runs({"run": metrics_file})
    encoded = base64.b64encode(png).decode()
    rows = []
    for names in PANELS.values():
        for name in names:
            _, values = series(metrics_file, name)
            if values:
                rows.append(f"| `{name}` | {values[-1]:.4g} |")
    table = "\n".join(["| metric | last |", "|---|---|", *rows]) if rows else "(no metrics)"
    return f"# {title}\n\n![curves](data:image/png;base64,{encoded})\n\n{table}\n"


def plot_files(files: Sequence[str | os.PathLike], output_dir: str | os.PathLike) -> list[str]:
    """``gmpo plot``: one PNG of every panel, one line per metrics file; returns the paths."""
    from pathlib import Path

    from gmpo_kfp.storage import write_atomic

    runs: dict[str, str | os.PathLike] = {}
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise DataError(f"metrics file {path} does not exist; give metrics.jsonl files")
        if not any(True for _ in M.read_metrics(path)):
            raise DataError(f"metrics file {path} holds no {{step, data}} records")
        label = path.parent.name if path.stem == "metrics" else path.stem
        while label in runs:
            label += "'"
        runs[label] = path
    out = Path(output_dir)
    written = [str(write_atomic(out / "curves.png", plot_runs(runs)))]
    for title, names in PANELS.items():
        png = plot_runs(runs, {title: names})
        written.append(str(write_atomic(out / f"{title.replace(' ', '_')}.png", png)))
    return written
