"""Forward+backward time of gmpo_kfp's GMPO loss vs verl 0.9.1's ``geo_mean`` and the memory bound.

Both run side by side in one process on the same [B, T] inputs (float32 and bf16,
CPU by default), median of ``--repeats`` runs each after warm-up, printed as a
ratio ours / verl (lower is better; the target is <= 0.8) and as multiples of the
memory bound: the loss must read four [B, T] tensors and write one gradient, so no
implementation beats a copy of that many bytes, timed in the same run (target: ours
<= 4x the bound). Ours runs twice: eager (the default) and ``compiled=True`` (its
forward and backward [B, T] work, one ``torch.compile``-d pass each; the first call's
compile time is printed apart and not in the timing).

    python benchmarks/objective.py [--batch 256] [--tokens 4096] [--repeats 7] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch


def make_inputs(batch: int, tokens: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(batch, tokens, generator=g) * 3
    log_prob = (old + torch.randn(batch, tokens, generator=g) * 0.3).to(dtype)
    old = old.to(dtype)
    lengths = torch.randint(1, tokens + 1, (batch,), generator=g)
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).to(dtype)
    adv = torch.randn(batch, 1, generator=g).expand(batch, tokens).to(dtype).contiguous()
    return old, log_prob, adv, mask


def time_fn(fn, inputs, repeats: int, warmup: int = 2) -> float:
    old, log_prob, adv, mask = inputs
    samples = []
    for i in range(warmup + repeats):
        lp = log_prob.detach().clone().requires_grad_(True)
        t0 = time.perf_counter()
        loss = fn(old, lp, adv, mask)
        loss.backward()
        dt = time.perf_counter() - t0
        if i >= warmup:
            samples.append(dt)
    return statistics.median(samples)


def copy_bound(inputs, repeats: int) -> float:
    """Seconds to copy as many bytes as the loss must move (4 inputs + 1 gradient)."""
    nbytes = 5 * inputs[1].numel() * inputs[1].element_size()
    src = torch.empty(nbytes, dtype=torch.uint8).fill_(1)
    dst = torch.empty_like(src).fill_(0)
    samples = []
    for i in range(2 + repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        if i >= 2:
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", help="also write the results as JSON to this file")
    args = ap.parse_args(argv)

    from verl.trainer.ppo.core_algos import get_policy_loss_fn
    from verl.workers.config import ActorConfig

    from gmpo_kfp.objective import gmpo_loss

    cfg = ActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        clip_ratio_low=0.4,
        clip_ratio_high=0.4,
    )
    verl_geo_mean = get_policy_loss_fn("geo_mean")

    def ours(old, lp, adv, mask):
        return gmpo_loss(old, lp, adv, mask)[0]

    def ours_compiled(old, lp, adv, mask):
        return gmpo_loss(old, lp, adv, mask, compiled=True)[0]

    def verl(old, lp, adv, mask):
        return verl_geo_mean(old, lp, adv, mask, config=cfg)[0]

    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        inputs = make_inputs(args.batch, args.tokens, dtype)
        # Interleave to share any drift of the machine between both sides.
        start = time.perf_counter()
        time_fn(ours_compiled, inputs, repeats=1, warmup=0)
        compile_s = time.perf_counter() - start
        t_verl, t_ours, t_comp, t_bound = [], [], [], []
        for _ in range(2):
            t_bound.append(copy_bound(inputs, args.repeats))
            t_verl.append(time_fn(verl, inputs, args.repeats))
            t_ours.append(time_fn(ours, inputs, args.repeats))
            t_comp.append(time_fn(ours_compiled, inputs, args.repeats))
        tv, to, tc, tb = min(t_verl), min(t_ours), min(t_comp), min(t_bound)
        rows.append(
            {
                "dtype": str(dtype).removeprefix("torch."),
                "shape": [args.batch, args.tokens],
                "verl_geo_mean_ms": round(tv * 1e3, 2),
                "gmpo_kfp_ms": round(to * 1e3, 2),
                "ratio": round(to / tv, 3),
                "bound_ms": round(tb * 1e3, 4),
                "gmpo_kfp_x_bound": round(to / tb, 1),
                "verl_x_bound": round(tv / tb, 1),
                "compiled_ms": round(tc * 1e3, 2),
                "compiled_x_bound": round(tc / tb, 1),
                "compile_s": round(compile_s, 1),
            }
        )
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    header = f"GMPO loss forward+backward, median of {args.repeats}, {machine}"
    print(f"{header}, torch {torch.__version__}")
    print(
        "| dtype | shape | bound: copy (ms) | verl geo_mean (ms) | gmpo_kfp (ms) "
        "| ours / verl | ours / bound | verl / bound | ours compiled (ms) | compiled / bound "
        "| compile (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        print(
            f"| {r['dtype']} | {shape} | {r['bound_ms']} | {r['verl_geo_mean_ms']} "
            f"| {r['gmpo_kfp_ms']} | {r['ratio']}x | {r['gmpo_kfp_x_bound']}x "
            f"| {r['verl_x_bound']}x | {r['compiled_ms']} | {r['compiled_x_bound']}x "
            f"| {r['compile_s']} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "objective", "machine": machine, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
