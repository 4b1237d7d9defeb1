"""The update's forward with each distinct prompt run once: GRPO's groups share their prompt.

TRL scores a batch of ``[prompt, completion]`` rows with one forward over every row's
whole sequence. GRPO's batch repeats each prompt ``n`` times, so most of that forward
(and of its backward) recomputes the same prompt positions ``n`` times. Split at the
prompt's last token, the same function is:

1. the backbone over each distinct prompt's first ``P - 1`` tokens, keeping its KV cache
   (with gradients);
2. the cache copied to every row of its group (the cache's own ``reorder_cache``, an
   ``index_select``: the backward sums each group's gradients into its prompt, in a
   fixed order);
3. TRL's fused forward (``model(..., labels=..., fused_lm_head=True)``) over the last
   prompt token and the completion, attending to the cache: the log-prob (and entropy)
   of every completion token.

Position ids, the attention mask and what each position attends to are those of the
single forward (positions count from the first column, pads included, as TRL's forward
has them), so the log-probs and their gradients are the same up to float rounding
(tested against TRL's own forward). Only for a model that uses a KV cache in training:
no gradient checkpointing (it drops the cache).
"""

from __future__ import annotations

from typing import Any

import torch

from gmpo_kfp.engines.sampling import distinct_rows


def prompt_groups(
    prompt_ids: torch.Tensor, prompt_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The prompts' :func:`~gmpo_kfp.engines.sampling.distinct_rows` where some rows repeat a
    prompt of at least two columns (so splitting pays); ``None`` otherwise."""
    if prompt_ids.size(1) < 2:
        return None
    distinct, row_of = distinct_rows(prompt_ids, prompt_mask)
    return (distinct, row_of) if distinct.numel() < prompt_ids.size(0) else None


def completion_log_probs(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    groups: tuple[torch.Tensor, torch.Tensor],
    *,
    compute_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(log_probs, entropies)`` of the completion tokens, ``[B, C]`` each (entropies or None).

    ``groups``: the prompts' ``(distinct, row_of)`` (:func:`prompt_groups`).

    ``model`` carries TRL's fused LM head (``trl.trainer.utils.add_fused_lm_head``, which
    GRPOTrainer adds): it divides by the rollout temperature and returns per-token
    log-probs without materialising the logits. Prompts are left-padded, so each row's
    last prompt column is a real token.
    """
    distinct, row_of = groups
    prefix = model.base_model(
        input_ids=prompt_ids[distinct, :-1],
        attention_mask=prompt_mask[distinct, :-1],
        use_cache=True,
    )
    cache = prefix.past_key_values
    # index_select, not indexing: its backward (index_add) sums in a fixed order, where
    # indexing's accumulates with atomic adds on a CPU, which differ from run to run
    cache.reorder_cache(row_of)
    tail = torch.cat([prompt_ids[:, -1:], completion_ids], dim=1)
    tail_mask = torch.cat([prompt_mask[:, -1:], completion_mask], dim=1)
    labels = tail.masked_fill(tail_mask == 0, -100)
    labels[:, 0] = -100  # the prompt's last token is context, not scored
    out = model(
        input_ids=tail,
        attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
        past_key_values=cache,
        labels=labels,
        fused_lm_head=True,
    )
    entropies = out.entropy if compute_entropy else None
    return out.log_probs, entropies
