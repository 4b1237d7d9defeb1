"""Greedy completions from vLLM and from the transformers backend, in one process.

Run inside the CPU eval image (``tests/containers/test_vllm_eval.py``):
``python greedy_pair.py MODEL_DIR PROBLEMS.parquet OUT.json LIMIT MAX_NEW_TOKENS``.
Writes both backends' texts and Pass@1, graded by the same grader.
"""

import json
import sys

from gmpo_kfp.data.schema import read_rl_parquet
from gmpo_kfp.evaluation.evaluate import generate, score_completions, vllm_generate
from gmpo_kfp.evaluation.models import load_model_and_tokenizer

if __name__ == "__main__":  # vLLM starts its engine in a process of its own
    model_dir, data, out, limit, max_new = sys.argv[1:6]
    rows = read_rl_parquet(data)[: int(limit)]
    prompts = [r["prompt"] for r in rows]
    greedy = {"temperature": 0.0, "n": 1, "max_new_tokens": int(max_new)}
    by_vllm = vllm_generate(model_dir, prompts, top_p=1.0, **greedy)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    by_hf = generate(model, tokenizer, prompts, **greedy)
    result = {
        name: {
            "texts": [c[0] for c in completions],
            "pass_at_1": score_completions(rows, completions, protocol="greedy").mean,
        }
        for name, completions in (("vllm", by_vllm), ("transformers", by_hf))
    }
    with open(out, "w") as f:
        json.dump(result, f)
