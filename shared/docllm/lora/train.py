"""PEFT LoRA on a Hugging Face causal LM read from a local directory; the loss on completions only.

The base model is a directory (``config.json``, safetensors weights, tokenizer files) that the job
found in its ``base_model`` channel: it is loaded with ``local_files_only=True``, and the job sets
``HF_HUB_OFFLINE=1`` (:data:`OFFLINE_ENVIRONMENT`) before transformers is imported, so nothing is
ever fetched from a hub. The loop is plain PyTorch, no ``Trainer``:

1. every pair is encoded as ``prompt + completion`` (the tokenizer's own special tokens, as the
   serving engine encodes a prompt) plus EOS; the labels are ``-100`` over the prompt, so
   cross-entropy counts the completion's tokens and EOS only (:func:`encode_pair`, :func:`collate`);
2. PEFT wraps the base's ``target_modules`` with LoRA layers (``r``, ``alpha``, ``dropout``); only
   those train (AdamW, linear warmup then linear decay to zero, gradient clipping);
3. an optimizer step sums the loss over ``grad_accum_steps`` micro-batches and divides by the
   completion tokens of the whole step, so every completion token weighs the same;
4. the validation loss (mean over completion tokens) is measured before the first step (the base
   model's), every ``eval_interval`` steps and at the end.

Outputs: :func:`save_adapter` writes ``adapter_model.safetensors`` + ``adapter_config.json`` (what
PEFT and vLLM's ``--lora-modules`` load); :func:`export_merged` merges the update into the base
weights (``merge_and_unload``) and writes a directory ``AutoModelForCausalLM.from_pretrained`` loads:
``model.safetensors`` + ``config.json``, the base's tokenizer and generation files copied unchanged
(and ``docllm_model.json`` when the base is one of the platform's own exports, so the evaluation
loads it with :func:`docllm.model.export.load_hf_export`), and a model card.

Smoke run (a few seconds on a laptop): ``pytest tests/integration/lora -k job``.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
import torch.nn.functional as F  # noqa: N812

from docllm.lora.config import LoraConfig
from docllm.lora.exceptions import BaseModelError, LoraDataError, LoraError
from docllm.model.export import model_card
from docllm.training.loop import LogPoint

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Set by the job before transformers is imported: no hub, ever.
OFFLINE_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
#: Label of the tokens the loss ignores (the prompt, the padding): PyTorch's cross-entropy default.
IGNORE = -100
#: Files of the base directory that the merged export writes itself (everything else is copied).
_WRITTEN = ("config.json", "README.md", "model.safetensors.index.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")


class _Tokenizer(Protocol):
    eos_token_id: int | None
    pad_token_id: int | None

    def __call__(self, text: str, *, add_special_tokens: bool) -> Any: ...


# --------------------------------------------------------------------------- loading


def _require_directory(base_dir: Path) -> None:
    if not base_dir.is_dir() or not (base_dir / "config.json").is_file():
        raise BaseModelError(f"{base_dir} is not a Hugging Face model directory (no config.json)")


def load_tokenizer(base_dir: Path) -> PreTrainedTokenizerBase:
    """The base's tokenizer, from its directory only."""
    from transformers import AutoTokenizer

    _require_directory(base_dir)
    try:
        return AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BaseModelError(f"cannot read the tokenizer in {base_dir}: {e}") from e


def load_base_model(base_dir: Path, *, dtype: str = "float32", device: str = "cpu") -> PreTrainedModel:
    """The base causal LM, from its directory only, in ``dtype`` on ``device``."""
    from transformers import AutoModelForCausalLM

    _require_directory(base_dir)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=True, dtype=getattr(torch, dtype))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BaseModelError(f"cannot load a causal LM from {base_dir}: {e}") from e
    # transformers 5 types ``to`` through a decorator that mypy reads as unbound.
    return model.to(device)  # type: ignore[arg-type]


def resolve_device(setting: str) -> str:
    """``auto``: CUDA when there is one."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise LoraError("lora_config.device is cuda but no CUDA device is available")
    return setting


def non_embedding_params(model: torch.nn.Module) -> int:
    """Parameters less the input embedding (and the output head when it is not tied to it)."""
    total = sum(p.numel() for p in model.parameters())
    get_in = getattr(model, "get_input_embeddings", None)
    get_out = getattr(model, "get_output_embeddings", None)
    emb = get_in() if get_in else None
    head = get_out() if get_out else None
    if emb is not None:
        total -= emb.weight.numel()
    if head is not None and emb is not None and head.weight.data_ptr() != emb.weight.data_ptr():
        total -= head.weight.numel()
    return int(total)


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Encoded:
    """One pair as token ids; the loss starts at ``prompt_tokens``."""

    input_ids: list[int]
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return len(self.input_ids) - self.prompt_tokens


def encode_pair(tokenizer: _Tokenizer, prompt: str, completion: str) -> Encoded:
    """``prompt + completion`` + EOS, and where the completion starts.

    The pair is encoded as one text (what the model will see), and the prompt alone (what the
    engine is sent): the completion starts where the two first differ, which is the prompt's
    length unless a token merges across the boundary.
    """
    prompt_ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    ids = list(tokenizer(prompt + completion, add_special_tokens=True)["input_ids"])
    start = 0
    while start < min(len(prompt_ids), len(ids)) and prompt_ids[start] == ids[start]:
        start += 1
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    return Encoded(ids, start)


def encode_pairs(tokenizer: _Tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> tuple[list[Encoded], int]:
    """Encoded pairs that fit ``max_length`` and have a completion; and how many were dropped."""
    kept: list[Encoded] = []
    for prompt, completion in pairs:
        enc = encode_pair(tokenizer, prompt, completion)
        if len(enc.input_ids) <= max_length and enc.completion_tokens > 0:
            kept.append(enc)
    return kept, len(pairs) - len(kept)


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (IGNORE on prompt and padding)."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        labels[i, e.prompt_tokens : n] = ids[i, e.prompt_tokens : n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def completion_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of the completion tokens, and their number.

    Position ``t`` predicts token ``t + 1``: logits drop the last position, labels the first.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
    targets = batch["labels"][:, 1:]  # (B, T-1)
    loss = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum"
    )
    return loss, int((targets != IGNORE).sum())


@torch.no_grad()
def mean_completion_loss(
    model: torch.nn.Module, examples: Sequence[Encoded], *, batch_size: int, pad_id: int, device: str
) -> float | None:
    """Mean loss per completion token over ``examples`` (None when there are none)."""
    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[i : i + batch_size], pad_id).items()}
        loss, n = completion_loss(model, batch)
        total += float(loss)
        count += n
    model.train(was_training)
    return total / count


# --------------------------------------------------------------------------- training


def resolve_target_modules(model: torch.nn.Module, setting: tuple[str, ...] | str) -> list[str]:
    """Layer names to adapt: ``all-linear`` is every ``nn.Linear`` but the output head, by leaf name
    (``q_proj``, ``down_proj`` …: what vLLM matches); a list must name layers that exist."""
    get_out = getattr(model, "get_output_embeddings", None)
    head = get_out() if get_out else None
    leaves = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    }
    if setting == "all-linear":
        if not leaves:
            raise BaseModelError("the base model has no linear layer to adapt")
        return sorted(leaves)
    missing = [m for m in setting if m not in {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}]
    if missing:
        raise LoraError(f"lora_config.target_modules: the base model has no layer named {missing}")
    return list(setting)


def learning_rate(cfg: LoraConfig, step: int, total_steps: int) -> float:
    """Linear warmup over ``warmup_steps``, then linear decay to zero at ``total_steps``.

    >>> cfg = LoraConfig(base_model_uri="s3://art/m/hf/", learning_rate=1e-3, warmup_steps=10)
    >>> [round(learning_rate(cfg, s, 110), 6) for s in (0, 9, 10, 60, 109)]
    [0.0001, 0.001, 0.001, 0.0005, 1e-05]
    """
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    decay_steps = max(1, total_steps - cfg.warmup_steps)
    return cfg.learning_rate * max(0.0, 1 - (step - cfg.warmup_steps) / decay_steps)


def total_steps(cfg: LoraConfig, n_train: int) -> int:
    """``max_steps``, or ``epochs`` passes of ``micro_batch_size · grad_accum_steps`` examples a step."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    return cfg.epochs * math.ceil(n_train / (cfg.micro_batch_size * cfg.grad_accum_steps))


def _micro_batches(n: int, size: int, seed: int) -> Iterator[list[int]]:
    """Indices of ``size`` examples at a time, a fresh seeded permutation each epoch, forever."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        for i in range(0, n, size):
            yield order[i : i + size]


@dataclass
class LoraOutcome:
    steps: int = 0
    tokens_seen: int = 0
    completion_tokens_seen: int = 0
    initial_val_loss: float | None = None
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    final_train_loss: float | None = None
    elapsed_s: float = 0.0
    trainable_params: int = 0
    n_params: int = 0
    device: str = "cpu"
    target_modules: list[str] = field(default_factory=list)
    dropped_too_long: int = 0
    history: list[LogPoint] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / self.elapsed_s if self.elapsed_s > 0 else 0.0


class LoraInterrupted(LoraError):
    """The run was asked to stop (SIGTERM) before it finished; nothing was written."""


def train_lora(
    model: PreTrainedModel,
    tokenizer: _Tokenizer,
    cfg: LoraConfig,
    train_pairs: Sequence[tuple[str, str]],
    validation_pairs: Sequence[tuple[str, str]] = (),
    *,
    on_log: Callable[[LogPoint], None] | None = None,
    stop: threading.Event | None = None,
) -> tuple[PeftModel, LoraOutcome]:
    """Train a LoRA adapter on ``(prompt, completion)`` pairs (module docstring: the loop).

    ``model`` is wrapped in place (its weights are frozen and its target layers get adapters) and
    returned as a :class:`peft.PeftModel` in eval mode, with the outcome (losses, counts, history).

    Example
    -------
    >>> peft_model, outcome = train_lora(model, tok, cfg, [("### Question:\\nWhat is S3?\\n\\n### Answer:\\n",
    ...     "An object store.")])  # doctest: +SKIP
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    started = time.monotonic()
    device = str(next(model.parameters()).device)
    train_set, dropped = encode_pairs(tokenizer, train_pairs, cfg.max_length)
    val_set, dropped_val = encode_pairs(tokenizer, validation_pairs, cfg.max_length)
    if not train_set:
        raise LoraDataError(f"no training pair fits max_length={cfg.max_length} tokens ({len(train_pairs)} given)")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    outcome = LoraOutcome(device=device, n_params=non_embedding_params(model), dropped_too_long=dropped + dropped_val)
    outcome.target_modules = resolve_target_modules(model, cfg.target_modules)

    torch.manual_seed(cfg.seed)  # the adapter's A matrices are drawn here (B starts at zero)
    peft_model = get_peft_model(
        model,
        PeftLoraConfig(
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=outcome.target_modules,
            bias="none",
            task_type="CAUSAL_LM",
        ),
    )
    outcome.trainable_params = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps = total_steps(cfg, len(train_set))
    batches = _micro_batches(len(train_set), cfg.micro_batch_size, cfg.seed)

    def log(kind: Literal["train", "val"], loss: float, lr: float) -> None:
        point = LogPoint(outcome.steps, kind, loss, lr, outcome.tokens_seen, time.monotonic() - started)
        outcome.history.append(point)
        if on_log is not None:
            on_log(point)

    def validate(lr: float) -> None:
        loss = mean_completion_loss(peft_model, val_set, batch_size=cfg.micro_batch_size, pad_id=pad_id, device=device)
        if loss is None:
            return
        if outcome.steps == 0:
            outcome.initial_val_loss = loss
        outcome.final_val_loss = loss
        outcome.best_val_loss = loss if outcome.best_val_loss is None else min(outcome.best_val_loss, loss)
        log("val", loss, lr)

    peft_model.train()
    validate(0.0)
    window_loss, window_tokens = 0.0, 0
    lr = 0.0
    for step in range(steps):
        if stop is not None and stop.is_set():
            raise LoraInterrupted(f"stopped at step {step} of {steps}")
        lr = learning_rate(cfg, step, steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro = [
            {k: v.to(device) for k, v in collate([train_set[i] for i in next(batches)], pad_id).items()}
            for _ in range(cfg.grad_accum_steps)
        ]
        step_tokens = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)
        step_loss = 0.0
        for batch in micro:
            loss, _ = completion_loss(peft_model, batch)
            (loss / step_tokens).backward()  # every completion token of the step weighs the same
            step_loss += float(loss.detach())
            outcome.tokens_seen += int(batch["attention_mask"].sum())
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        outcome.steps = step + 1
        outcome.completion_tokens_seen += step_tokens
        window_loss, window_tokens = window_loss + step_loss, window_tokens + step_tokens
        if outcome.steps % cfg.log_interval == 0 or outcome.steps == steps:
            outcome.final_train_loss = window_loss / window_tokens
            log("train", outcome.final_train_loss, lr)
            window_loss, window_tokens = 0.0, 0
        if outcome.steps % cfg.eval_interval == 0 and outcome.steps != steps:
            validate(lr)
    validate(lr)
    peft_model.eval()
    outcome.elapsed_s = time.monotonic() - started
    return peft_model, outcome


# --------------------------------------------------------------------------- outputs


def save_adapter(model: PeftModel, out_dir: Path, *, base_model_uri: str, card: dict[str, Any] | None = None) -> Path:
    """``adapter_model.safetensors`` + ``adapter_config.json`` (naming the base by its URI) + a card."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for config in model.peft_config.values():
        # The object store URI, not the local path the job read it from (and never a hub id).
        config.base_model_name_or_path = base_model_uri
    model.save_pretrained(str(out_dir), safe_serialization=True, save_embedding_layers=False)
    lines = [
        "# LoRA adapter",
        "",
        f"Trained by docllm on answer-tuning examples; base model `{base_model_uri}`.",
        "Load with PEFT (`PeftModel.from_pretrained(base, this_directory)`) or serve with vLLM",
        "(`--enable-lora --lora-modules NAME=this_directory`).",
        "",
        *[f"- {k}: {v}" for k, v in (card or {}).items()],
        "",
    ]
    (out_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")
    return out_dir


def export_merged(model: PeftModel, base_dir: Path, out_dir: Path, *, card: dict[str, Any] | None = None) -> Path:
    """Merge the adapter into the base weights and write a Hugging Face directory (module docstring).

    Merging changes ``model``'s base layers in place: save the adapter first.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = model.merge_and_unload()
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    for path in sorted(base_dir.iterdir()):
        # Tokenizer, generation config, docllm_model.json: unchanged by LoRA, copied byte for byte.
        if path.is_file() and path.name not in _WRITTEN and not path.name.endswith(_WEIGHT_SUFFIXES):
            shutil.copy2(path, out_dir / path.name)
    readme = model_card(
        card or {},
        default_name="docllm LoRA model",
        about=[
            "A base model with a LoRA adapter trained by docllm on answer-tuning examples from an",
            "organisation's documentation, merged into its weights (loadable without PEFT).",
        ],
        use=["Intended use: answering questions about the documentation it was tuned on, with retrieval."],
    )
    (out_dir / "README.md").write_text(readme, encoding="utf-8")
    return out_dir


__all__ = [
    "OFFLINE_ENVIRONMENT",
    "Encoded",
    "LogPoint",
    "LoraInterrupted",
    "LoraOutcome",
    "collate",
    "completion_loss",
    "encode_pair",
    "encode_pairs",
    "export_merged",
    "learning_rate",
    "load_base_model",
    "load_tokenizer",
    "mean_completion_loss",
    "non_embedding_params",
    "resolve_device",
    "resolve_target_modules",
    "save_adapter",
    "total_steps",
    "train_lora",
]
