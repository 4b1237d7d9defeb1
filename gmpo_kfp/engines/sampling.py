"""Plain ancestral sampling for small models: what ``model.generate`` does, without its overhead.

For TRL's rollouts on a CPU with a tiny model, ``GenerationMixin.generate`` spends about a
third of its time outside the model (preparing processors, stopping criteria, cache
and keyword arguments every call and every token). :func:`sample` is the same loop
for the one case TRL's rollouts use here: temperature sampling, no top-k / top-p /
min-p / repetition penalty, left-padded prompts, a dynamic KV cache, stop at EOS. It
makes the same calls in the same order as ``generate`` (one prefill, one forward per
further token, one ``torch.multinomial`` per token over float32 probabilities), so
with the same seed it draws the same tokens (tested against ``generate``).

GRPO samples a group of completions per prompt, so its batch repeats each prompt
``n`` times: the prefill runs once per distinct prompt and the KV cache and the first
logits are then copied to every row of its group (the cache's own
``batch_select_indices``), which is ``n`` times less prefill for the same draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def supported(
    *,
    temperature: float,
    top_p: float,
    top_k: int | None,
    min_p: float | None,
    repetition_penalty: float,
) -> bool:
    """Whether :func:`sample` draws what ``generate`` would with these settings."""
    return (
        temperature > 0
        and top_p == 1.0
        and not top_k
        and min_p is None
        and repetition_penalty == 1.0
    )


@torch.no_grad()
def sample(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
) -> torch.Tensor:
    """Completions of the left-padded prompts ``input_ids``: ``[B, <= max_new_tokens]`` token ids.

    After a sequence's first EOS token it holds ``pad_token_id``, as ``generate`` pads it;
    the loop ends when every sequence has ended or after ``max_new_tokens``.
    """
    eos = torch.tensor(list(eos_token_ids), device=input_ids.device)
    mask = attention_mask.long()
    positions = (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 1)
    distinct, row_of = distinct_rows(input_ids, mask)
    out = model(
        input_ids=input_ids[distinct],
        attention_mask=mask[distinct],
        position_ids=positions[distinct],
        use_cache=True,
        logits_to_keep=1,
    )
    out.past_key_values.batch_select_indices(row_of)
    logits = out.logits[row_of, -1, :]
    unfinished = torch.ones(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
    tokens = []
    for step in range(max_new_tokens):
        logits = logits.to(dtype=torch.float32)
        if temperature != 1.0:
            logits = logits / temperature
        token = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1).squeeze(1)
        token = torch.where(unfinished, token, torch.full_like(token, pad_token_id))
        tokens.append(token)
        unfinished &= ~torch.isin(token, eos)
        if step + 1 == max_new_tokens or not unfinished.any():
            break
        mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)
        positions = positions[:, -1:] + 1
        out = model(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=positions,
            past_key_values=out.past_key_values,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = out.logits[:, -1, :]
    return torch.stack(tokens, dim=1)


def distinct_rows(
    input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distinct, row_of)``: each distinct prompt's first row, and each row's index into them.

    ``input_ids[distinct][row_of]`` is ``input_ids`` (the mask likewise); ``distinct`` keeps
    the batch's order of first appearance.
    """
    both = torch.cat([input_ids, attention_mask.to(input_ids.dtype)], dim=1)
    _, inverse = torch.unique(both, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), both.size(0), dtype=torch.long)
    first.scatter_reduce_(0, inverse.cpu(), torch.arange(both.size(0)), reduce="amin")
    order = torch.argsort(first)  # distinct prompts in order of first appearance
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return first[order].to(input_ids.device), rank[inverse.cpu()].to(input_ids.device)
