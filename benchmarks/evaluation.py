"""Evaluation throughput: ``gmpo_kfp.evaluation.evaluate`` vs a bare ``model.generate`` loop.

Both run side by side in one process on the same model and problems (the tiny model
and the arithmetic held-out split by default; any model directory and verl parquet
file with ``--model`` / ``--data``), greedy, the same batch size and token budget.
The bare loop only templates, generates and decodes; ours also loads, validates and
grades every answer, so the ratio (problems/s ours / bare, higher is better; the
target is >= 0.9) is the price of everything we add around generation.

    python benchmarks/evaluation.py [--problems 2000] [--rounds 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def bare_generate(model_dir: str, rows: list[dict], *, batch: int, tokens: int) -> float:
    """Seconds to template, generate and decode every prompt with plain transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok.padding_side = "left"
    texts = [
        tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        for r in rows
    ]
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            enc = tok(texts[i : i + batch], return_tensors="pt", padding=True)
            ids = model.generate(
                **enc, max_new_tokens=tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
            tok.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return time.perf_counter() - start


def ours(model_dir: str, data: str, *, problems: int, batch: int, tokens: int) -> float:
    from gmpo_kfp.evaluation.evaluate import evaluate

    start = time.perf_counter()
    evaluate(
        model_dir,
        [data],
        limit=problems,
        batch_size=batch,
        max_new_tokens=tokens,
        backend="transformers",
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a model directory (default: the tiny model, built here)")
    ap.add_argument("--data", help="a verl RL parquet file (default: arithmetic held-out split)")
    ap.add_argument("--problems", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=8, help="max new tokens")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="also write the results as JSON to this file")
    a = ap.parse_args(argv)

    from gmpo_kfp.data.arithmetic import arithmetic_rows
    from gmpo_kfp.data.schema import read_rl_parquet, write_rl_parquet
    from gmpo_kfp.evaluation.models import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="gmpo-bench-eval-"))
    model_dir = a.model or str(build_tiny_model(work / "tiny"))
    data = a.data or str(write_rl_parquet(arithmetic_rows("test"), work / "test.parquet"))
    rows = read_rl_parquet(data)[: a.problems]
    t_bare, t_ours = [], []
    for r in range(a.rounds):  # interleaved, so drift of the machine hits both alike
        t_bare.append(bare_generate(model_dir, rows, batch=a.batch, tokens=a.tokens))
        t_ours.append(ours(model_dir, data, problems=a.problems, batch=a.batch, tokens=a.tokens))
        print(
            f"round {r + 1}/{a.rounds}: bare {t_bare[-1]:.2f} s, ours {t_ours[-1]:.2f} s",
            file=sys.stderr,
        )
    b, o = statistics.median(t_bare), statistics.median(t_ours)
    result = {
        "benchmark": "evaluation throughput, gmpo_kfp.evaluation.evaluate vs bare model.generate",
        "problems": len(rows),
        "batch": a.batch,
        "max_new_tokens": a.tokens,
        "bare_problems_per_s": round(len(rows) / b, 1),
        "gmpo_kfp_problems_per_s": round(len(rows) / o, 1),
        "ratio": round(b / o, 3),
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
    }
    print(
        f"| evaluation (transformers, greedy) | problems/s |\n|---|---|\n"
        f"| bare model.generate | {result['bare_problems_per_s']} |\n"
        f"| gmpo_kfp.evaluation.evaluate (with grading) | {result['gmpo_kfp_problems_per_s']} |\n\n"
        f"ratio ours/bare throughput: {result['ratio']:.3f} (target >= 0.9)"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
