"""What the evaluation asks of a model: held-out loss, greedy continuations, log-likelihoods.

The only torch module of the evaluation package; the evaluation job imports it, nothing light does.

Example
-------
>>> lm = LanguageModel.load(Path("model/hf"))                              # doctest: +SKIP
>>> heldout_metrics(lm, ["Amazon S3 stores objects in buckets."]).perplexity  # doctest: +SKIP
412.7
>>> lm.continue_greedy("The maximum object size is", max_new_tokens=4)    # doctest: +SKIP
' 5 TB.'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F  # noqa: N812 - the conventional name

from docllm.model.exceptions import TokenizerFilesError
from docllm.model.gpt import GPT


@dataclass(frozen=True)
class HeldOutStats:
    documents: int
    tokens: int = 0
    loss: float = math.nan
    perplexity: float = math.nan
    next_token_accuracy: float = math.nan


class LanguageModel:
    """A model with its tokenizer: text in, text out (greedy, so every evaluation is repeatable)."""

    def __init__(
        self,
        model: GPT,
        encode: Callable[[str], list[int]],
        decode: Callable[[list[int]], str],
        *,
        bos_id: int | None,
        eos_id: int | None,
    ) -> None:
        self.model = model.eval()
        self.encode = encode
        self.decode = decode
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.block_size = model.config.block_size

    @classmethod
    def load(cls, export_dir: Path, *, threads: int | None = None) -> LanguageModel:
        """An export written by the training job (``export_hf``): weights and tokenizer files."""
        from docllm.model.export import load_hf_export, read_tokenizer_info

        if threads:
            torch.set_num_threads(threads)
        model = load_hf_export(export_dir)
        info = read_tokenizer_info(export_dir)
        if (export_dir / "tokenizer.model").exists():
            # SentencePiece is the tokenizer's source of truth, and loads in milliseconds.
            import sentencepiece as spm

            sp = spm.SentencePieceProcessor(model_file=str(export_dir / "tokenizer.model"))
            return cls(
                model,
                lambda t: list(sp.encode(t)),
                lambda ids: str(sp.decode(ids)),
                bos_id=info.bos_id,
                eos_id=info.eos_id,
            )
        if (export_dir / "tokenizer.json").exists():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(export_dir / "tokenizer.json"))
            return cls(
                model,
                lambda t: list(tok.encode(t, add_special_tokens=False).ids),
                lambda ids: str(tok.decode(ids)),
                bos_id=info.bos_id,
                eos_id=info.eos_id,
            )
        raise TokenizerFilesError(f"{export_dir} holds no tokenizer files")

    def _prefix(self) -> list[int]:
        return [self.bos_id] if self.bos_id is not None else []

    @torch.no_grad()
    def continue_greedy(self, prompt: str, *, max_new_tokens: int, until: Sequence[str] = ()) -> str:
        """The greedy continuation of ``prompt`` (its last tokens when it is longer than the context),
        cut at the first of ``until`` and at the end-of-sequence token."""
        ids = self.encode(prompt)
        keep = max(1, self.block_size - max_new_tokens - 1)
        context = self._prefix() + ids[-keep:] if len(ids) > keep else self._prefix() + ids
        if not context:
            context = [0]
        idx = torch.tensor([context], dtype=torch.long)
        out = self.model.generate(idx, max_new_tokens, temperature=0.0, eos_id=self.eos_id)
        new = out[0, len(context) :].tolist()
        if self.eos_id is not None and self.eos_id in new:
            new = new[: new.index(self.eos_id)]
        # Decoding the new ids alone would drop the word boundary SentencePiece keeps on a piece
        # ("▁TB" after "5"): decode with the prompt's tail and keep what the new ids added.
        tail = ids[-8:]
        base, full = self.decode(tail), self.decode(tail + new)
        text = full[len(base) :] if full.startswith(base) else self.decode(new)
        for stop in until:
            if stop and stop in text:
                text = text[: text.index(stop)]
        return text

    @torch.no_grad()
    def continuation_logprob(self, context: str, continuation: str) -> tuple[float, bool]:
        """``(log p(continuation | context), whether it is the greedy continuation)``: the semantics of
        lm-evaluation-harness's ``loglikelihood`` requests."""
        ctx = self._prefix() + self.encode(context)
        cont = self.encode(continuation)
        if not cont:
            return 0.0, True
        ids = (ctx + cont)[-(self.block_size + 1) :]
        n = min(len(cont), len(ids) - 1)
        idx = torch.tensor([ids[:-1]], dtype=torch.long)
        logits, _ = self.model(idx)
        assert logits is not None
        logp = F.log_softmax(logits[0, -n:].float(), dim=-1)  # (n, V)
        target = torch.tensor(ids[-n:], dtype=torch.long)
        total = float(logp.gather(1, target[:, None]).sum())
        greedy = bool((logp.argmax(dim=-1) == target).all())
        return total, greedy


@torch.no_grad()
def heldout_metrics(
    lm: LanguageModel, documents: Iterable[str], *, max_tokens: int = 200_000, batch_size: int = 8
) -> HeldOutStats:
    """Mean next-token cross-entropy, its perplexity and the share of tokens the model ranks first,
    over held-out documents.

    Each document is ``[bos] + tokens + [eos]``; documents are concatenated and cut into windows of
    ``block_size + 1`` tokens without overlap (as training sees them), stopping after ``max_tokens``
    predicted tokens so the cost is bounded whatever the test split's size.
    """
    stream: list[int] = []
    n_docs = 0
    limit = max_tokens + 1
    for text in documents:
        n_docs += 1
        stream += lm._prefix() + lm.encode(text) + ([lm.eos_id] if lm.eos_id is not None else [])
        if len(stream) >= limit:
            break
    stream = stream[:limit]
    if len(stream) < 2:
        return HeldOutStats(documents=n_docs)
    width = lm.block_size + 1
    windows = [stream[i : i + width] for i in range(0, len(stream) - 1, lm.block_size)]
    windows = [w for w in windows if len(w) >= 2]
    nll, correct, count = 0.0, 0, 0
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        longest = max(len(w) for w in batch)
        x = torch.zeros((len(batch), longest - 1), dtype=torch.long)
        y = torch.full((len(batch), longest - 1), -1, dtype=torch.long)
        for row, w in enumerate(batch):
            x[row, : len(w) - 1] = torch.tensor(w[:-1])
            y[row, : len(w) - 1] = torch.tensor(w[1:])
        logits, _ = lm.model(x)
        assert logits is not None
        flat = logits.float().view(-1, logits.size(-1))
        target = y.view(-1)
        mask = target >= 0
        nll += float(F.cross_entropy(flat[mask], target[mask], reduction="sum"))
        correct += int((flat[mask].argmax(dim=-1) == target[mask]).sum())
        count += int(mask.sum())
    loss = nll / count
    return HeldOutStats(
        documents=n_docs,
        tokens=count,
        loss=loss,
        perplexity=math.exp(min(loss, 50.0)),
        next_token_accuracy=correct / count,
    )
