"""A transformers rollout backend for verl (``actor_rollout_ref.rollout.name=transformers``).

verl 0.9.1 generates through rollout *servers* (vLLM, SGLang, TensorRT-LLM), none of
which runs on a CPU in verl's environment. This backend plugs into the same two
registries they use, so verl's agent loop, reward loop and weight sync run
unchanged:

- :class:`TransformersReplica` (``RolloutReplicaRegistry``): one server actor per
  replica, named after the replica so that the workers find it;
- :class:`TransformersServer`: the Ray actor that holds a copy of the policy and
  serves verl's token-in, token-out ``generate(prompt_ids, sampling_params)``.
  Concurrent requests with the same sampling parameters are generated as one
  batch (``model.generate``: left padding, KV cache, temperature, top-p, top-k);
  it returns the response token ids and, when asked, their log-probabilities
  after temperature and top-p / top-k, as vLLM's ``processed_logprobs``;
- :class:`TransformersServerAdapter` (``_ROLLOUT_REGISTRY``): lives in each actor
  worker; verl's naive checkpoint engine hands it the trained weights after
  every step and it pushes them to its replica's server.

Sleep, wake-up and KV-cache calls are no-ops: the server's copy of the weights
lives in host memory beside the trainer's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

logger = logging.getLogger(__name__)

#: How long the server waits for more requests before it generates a batch.
BATCH_WINDOW_S = 0.01


def server_name(replica_rank: int, suffix: str = "") -> str:
    """The Ray actor name of a replica's server (the adapter looks it up by this)."""
    return f"gmpo_transformers_rollout_{replica_rank}{suffix}"


@dataclass
class _Request:
    prompt_ids: list[int]
    max_tokens: int
    future: asyncio.Future = field(repr=False)


def _sampling_key(params: dict[str, Any]) -> tuple:
    temperature = float(params.get("temperature", 1.0) or 0.0)
    top_k = int(params.get("top_k", -1) or -1)
    return (temperature, float(params.get("top_p", 1.0)), top_k, bool(params.get("logprobs")))


def generate_batch(
    model: Any,
    prompts: list[list[int]],
    max_tokens: list[int],
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    logprobs: bool,
    eos_token_ids: list[int],
    pad_token_id: int,
) -> list[tuple[list[int], list[float] | None]]:
    """Sample a response per prompt with ``model.generate``; token ids and their log-probs.

    A response ends at its first end-of-sequence token (kept, as vLLM keeps it) or
    after its own ``max_tokens``.
    """
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
    sample = temperature > 0
    kwargs: dict[str, Any] = {"do_sample": sample}
    if sample:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k if top_k > 0 else 0)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max(1, max(max_tokens)),
            eos_token_id=eos_token_ids,
            pad_token_id=pad_token_id,
            use_cache=True,
            output_scores=logprobs,
            return_dict_in_generate=True,
            **kwargs,
        )
    new = out.sequences[:, width:]
    token_logprobs = None
    if logprobs and out.scores:
        scores = torch.stack(out.scores, dim=1).float().log_softmax(-1)
        token_logprobs = scores.gather(-1, new[:, : scores.shape[1], None]).squeeze(-1)
    eos = set(eos_token_ids)
    results = []
    for i, limit in enumerate(max_tokens):
        tokens = new[i, :limit].tolist()
        end = next((j + 1 for j, t in enumerate(tokens) if t in eos), len(tokens))
        tokens = tokens[:end]
        lp = token_logprobs[i, :end].tolist() if token_logprobs is not None else None
        results.append((tokens, lp))
    return results


class TransformersServer:
    """A replica's rollout server: the policy in host memory, batched ``generate``."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int):
        from transformers import AutoModelForCausalLM, GenerationConfig
        from verl.utils.config import omega_conf_to_dataclass
        from verl.workers.config import HFModelConfig, RolloutConfig

        self.config = omega_conf_to_dataclass(config, dataclass_type=RolloutConfig)
        self.model_config = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.replica_rank = replica_rank
        path = self.model_config.local_path
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.model.eval()
        tokenizer = self.model_config.tokenizer
        generation = self.model.generation_config or GenerationConfig()
        eos = generation.eos_token_id
        if eos is None and tokenizer is not None:
            eos = tokenizer.eos_token_id
        self.eos_token_ids = [eos] if isinstance(eos, int) else list(eos or [])
        pad = generation.pad_token_id
        if pad is None and tokenizer is not None:
            pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else (self.eos_token_ids or [0])[0])
        self.global_steps: int | None = None
        self._queue: dict[tuple, list[_Request]] = {}
        self._batcher: asyncio.Task | None = None
        self._lock = threading.Lock()  # generation and weight updates never overlap
        logger.info("transformers rollout server %d: %s", replica_rank, path)

    def _max_tokens(self, prompt_ids: list[int]) -> int:
        c = self.config
        budget = min(c.response_length, c.prompt_length + c.response_length - len(prompt_ids))
        if c.max_model_len:
            budget = min(budget, c.max_model_len - len(prompt_ids))
        return max(0, budget)

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Any = None,
        video_data: Any = None,
        audio_data: Any = None,
        mm_processor_kwargs: Any = None,
        **kwargs: Any,
    ) -> TokenOutput:
        if image_data or video_data or audio_data:
            raise NotImplementedError("the transformers rollout generates from text prompts only")
        prompt = list(prompt_ids)
        max_tokens = self._max_tokens(prompt)
        if max_tokens == 0:
            return self._output([], None)
        future = asyncio.get_running_loop().create_future()
        self._queue.setdefault(_sampling_key(sampling_params), []).append(
            _Request(prompt, max_tokens, future)
        )
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._drain())
        tokens, logprobs = await future
        return self._output(tokens, logprobs)

    def _output(self, tokens: list[int], logprobs: list[float] | None) -> TokenOutput:
        # verl's trainer reads the weights' step from every output (extra_fields)
        return TokenOutput(
            token_ids=tokens,
            log_probs=logprobs,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(BATCH_WINDOW_S)
            key, requests = next(iter(self._queue.items()))
            del self._queue[key]
            batch = self.config.max_num_seqs or len(requests)
            for start in range(0, len(requests), batch):
                part = requests[start : start + batch]
                try:
                    results = await asyncio.to_thread(self._generate, key, part)
                except Exception as exc:  # every waiting request sees the failure
                    for r in part:
                        if not r.future.done():
                            r.future.set_exception(exc)
                    continue
                for r, result in zip(part, results, strict=True):
                    if not r.future.done():
                        r.future.set_result(result)

    def _generate(self, key: tuple, requests: list[_Request]) -> list[tuple]:
        temperature, top_p, top_k, logprobs = key
        with self._lock:
            return generate_batch(
                self.model,
                [r.prompt_ids for r in requests],
                [r.max_tokens for r in requests],
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                logprobs=logprobs,
                eos_token_ids=self.eos_token_ids,
                pad_token_id=self.pad_token_id,
            )

    async def update_weights(self, weights: dict[str, torch.Tensor], global_steps: Any = None):
        """Load the trainer's weights (Hugging Face names); returns how many tensors."""
        with self._lock:
            own = self.model.state_dict()
            unknown = sorted(set(weights) - set(own))
            if unknown:
                raise KeyError(f"weights the rollout model does not have: {unknown[:5]}")
            with torch.no_grad():
                for name, tensor in weights.items():
                    own[name].copy_(tensor.to(own[name].dtype))
            self.model.tie_weights()
        self.global_steps = global_steps
        return len(weights)

    async def set_global_steps(self, global_steps: int):
        self.global_steps = global_steps

    async def wake_up(self):
        return None

    async def sleep(self):
        return None

    async def clear_kv_cache(self):
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def abort_all_requests(self, reject_request: bool = False):
        return None

    async def resume_generation(self):
        return None

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None


class TransformersReplica(RolloutReplica):
    """One :class:`TransformersServer` per replica, beside the hybrid actor workers."""

    async def launch_servers(self):
        name = server_name(self.replica_rank, self.name_suffix)
        server = (
            ray.remote(TransformersServer)
            .options(name=name, num_cpus=0, max_concurrency=self.max_concurrency)
            .remote(self.config, self.model_config, self.replica_rank)
        )
        await server.__ray_ready__.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = name  # a key for verl's load balancer; no HTTP server

    def rollout_worker_use_gpu(self) -> bool:
        return False


class TransformersServerAdapter(BaseRollout):
    """The rollout as the actor worker sees it: forwards each weight sync to its server."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        self.replica_rank, self.is_leader = replica_rank, True
        if device_mesh is not None:
            names = device_mesh.mesh_dim_names
            self.replica_rank = device_mesh["dp"].get_local_rank()
            self.is_leader = all(device_mesh[n].get_local_rank() == 0 for n in names if n != "dp")
        self._server: Any = None

    def _server_handle(self) -> Any:
        if self._server is None:
            self._server = ray.get_actor(server_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    async def update_weights(
        self, weights: Iterable, wire_format: str = "named_tensors", **kwargs: Any
    ) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(
                f"the transformers rollout takes named tensors, not {wire_format}"
            )
        if kwargs.get("peft_config") is not None:
            raise NotImplementedError(
                "the transformers rollout takes merged weights (model.lora.merge=True)"
            )
        # every rank walks the generator: gathering the full tensors is collective
        if hasattr(weights, "__aiter__"):
            pairs = [(name, tensor.detach().to("cpu").clone()) async for name, tensor in weights]
        else:
            pairs = [(name, tensor.detach().to("cpu").clone()) for name, tensor in weights]
        state = dict(pairs)
        if self.is_leader:
            await self._server_handle().update_weights.remote(state, kwargs.get("global_steps"))
