"""Incremental (``continue``) training on CPU: a full retrain vs continuing the champion, on new documents.

Reads the Amazon S3 user guide from ``../shared/corpus`` (cleaned and chunked as the ingest stage does,
split by document as datasets are). Dataset **v1** is the guide minus ``--new-docs`` documents (taken
across the guide, every k-th, in whatever split their key hashes to); **v2** is the whole guide: v1 plus
those "new" documents. Then, in this process, with the real training loop and export:

1. **full v1**: the family's budget (``--steps`` optimizer steps) on v1's training split: the champion;
2. **full v2**: the same budget from scratch on v2's training split: what a ``pretrain`` family does;
3. **continue v2**: the champion's export loaded as a continued job loads its ``init`` channel
   (:func:`docllm.training.checkpoint.load_init_weights`, weights only, tokenizer checked), then
   ``budget_share`` of the budget on v2 with ``learning_rate_share`` of the peak rate and no warmup:
   what a ``continue`` family does (``service_layer/train_continue.py``).

Every run uses v1's tokenizer: the tokenizer policy keeps the champion's while it covers the new data
(its coverage of v2's training split is measured and printed, :mod:`docllm.tokenizer.coverage`), and
losses per token compare only under one tokenizer. Each model's loss is measured on all of v2's
validation split (up to ``--val-tokens``) and on the new documents' text (those in v2's training split:
what v1 never saw). The table gives each run's steps, tokens and time; the cost ratio (continue / full
v2, in training tokens and in seconds) and the validation-loss gap. Goal (issue 17): cost at most a
quarter of a full run, validation loss within 2% of the full run's.

Run::

    .venv/bin/python -m bench.incremental            # the figures: about 10 minutes on 2 CPU cores
    .venv/bin/python -m bench.incremental --quick    # smoke run, under a minute
    .venv/bin/python -m bench.incremental --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.distill.run import CORPUS

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Settings:
    docs: int | None  # None: every document of the guide
    new_docs: int
    vocab_size: int
    block_size: int
    micro_batch: int
    steps: int
    learning_rate: float
    budget_share: float
    learning_rate_share: float
    val_tokens: int
    threads: int
    seed: int = 1337


FULL: dict[str, Any] = {
    "docs": None,
    "new_docs": 10,
    "vocab_size": 4096,
    "block_size": 128,
    "micro_batch": 16,
    "steps": 200,
    "learning_rate": 2e-3,
    "val_tokens": 60_000,
}
QUICK: dict[str, Any] = {
    "docs": 60,
    "new_docs": 6,
    "vocab_size": 512,
    "block_size": 64,
    "micro_batch": 8,
    "steps": 24,
    "learning_rate": 3e-3,
    "val_tokens": 4_000,
}


@dataclass
class Versions:
    """The two dataset versions: (doc_key, text) per split, and which documents are new in v2."""

    v1_train: list[tuple[str, str]]
    v2_train: list[tuple[str, str]]
    v2_validation: list[tuple[str, str]]
    new: list[str]  # doc keys added in v2


def load_versions(limit: int | None, new_docs: int) -> Versions:
    """The guide's documents as the ingest pipeline processes them, split by key, with ``new_docs`` held
    back from v1 (every k-th document: a spread across the guide, not its alphabetical end)."""
    from docllm.dataset.versions import assign_split
    from docllm.ingest.pipeline import Processed, process_document

    if not CORPUS.is_dir():
        raise SystemExit(f"no corpus at {CORPUS}: the benchmark reads the S3 user guide from ../shared/corpus")
    files = sorted(CORPUS.glob("*.md"))
    if limit is not None:
        files = files[:: max(1, len(files) // limit)][:limit]
    docs: list[tuple[str, str, str]] = []  # key, split, text
    for path in files:
        key = f"s3/{path.name}"
        out = process_document(path.read_bytes(), doc_key=key, doc_version="bench", service="s3")
        if isinstance(out, Processed) and out.chunks:
            docs.append((key, assign_split(key), "\n\n".join(c.text for c in out.chunks)))
    step = max(1, len(docs) // new_docs)
    new = {key for key, _, _ in docs[step // 2 :: step][:new_docs]}
    v2_train = [(k, t) for k, s, t in docs if s == "train"]
    v2_val = [(k, t) for k, s, t in docs if s != "train"]  # validation and test: never trained on
    v1_train = [(k, t) for k, t in v2_train if k not in new]
    if not v2_val or not v1_train:
        raise SystemExit(f"{len(docs)} documents gave no validation or no training document: take more (--docs)")
    return Versions(v1_train=v1_train, v2_train=v2_train, v2_validation=v2_val, new=sorted(new))


def train_tokenizer(docs: list[tuple[str, str]], vocab_size: int, work: Path) -> Path:
    """A SentencePiece tokenizer trained as the tokenizer job trains one (v1's: the champion's)."""
    from docllm.dataset.versions import SplitRecord
    from docllm.tokenizer.settings import TokenizerSettings
    from docllm.tokenizer.train import train_sentencepiece, write_training_text

    settings = TokenizerSettings(vocab_size=vocab_size)
    records = [SplitRecord(chunk_id=k, doc_key=k, text=t) for k, t in docs]
    text = work / "sample.txt"
    write_training_text(records, text, settings, split_bytes=sum(len(t) for _, t in docs))
    out = work / "tokenizer"
    out.mkdir()
    (out / "tokenizer.model").write_bytes(train_sentencepiece(text, settings))
    return out


def encode(docs: list[tuple[str, str]], tokenizer_dir: Path) -> np.ndarray:
    """Documents as the shards hold them: each one's ids, then EOS (the distillation bench's encoder)."""
    from bench.distill.run import encode as encode_docs

    return encode_docs(docs, tokenizer_dir)


def coverage(docs: list[tuple[str, str]], tokenizer_dir: Path) -> float:
    """v1's tokenizer's coverage of ``docs`` (what the tokenizer stage measures before keeping it)."""
    from docllm.dataset.versions import SplitRecord
    from docllm.tokenizer.coverage import measure_coverage
    from docllm.tokenizer.encode import SentencePieceTokenizer

    tok = SentencePieceTokenizer.from_file(tokenizer_dir / "tokenizer.model")
    return measure_coverage(tok, (SplitRecord(chunk_id=k, doc_key=k, text=t) for k, t in docs)).coverage


def mean_loss(model: Any, tokens: np.ndarray, block: int, limit: int, batch: int = 16) -> float:
    """Cross-entropy per token over consecutive blocks of ``tokens`` (at most ``limit`` tokens)."""
    import torch

    n = min(len(tokens) - 1, limit) // block
    if n < 1:
        raise SystemExit(f"{len(tokens)} tokens are less than one block of {block}: take more documents")
    windows = np.lib.stride_tricks.sliding_window_view(tokens[: n * block + 1], block + 1)[::block][:n]
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, batch):
            xy = torch.from_numpy(np.ascontiguousarray(windows[i : i + batch]))
            _, loss = model(xy[:, :-1], xy[:, 1:])
            total += float(loss) * len(xy)
    model.train()
    return total / n


def train_run(
    model_cfg: Any, s: Settings, tokens: np.ndarray, *, steps: int, lr: float, warmup: int, init: Any = None
) -> tuple[Any, dict[str, Any]]:
    """``steps`` optimizer steps on ``tokens`` with the job's loop; ``init``: a continued run's weights."""
    from docllm.training.config import TrainConfig
    from docllm.training.loop import train
    from docllm.training.streams import ArrayTokenStream

    cfg = TrainConfig(
        max_steps=steps,
        micro_batch_size=s.micro_batch,
        learning_rate=lr,
        warmup_steps=warmup,
        weight_decay=0.05,
        eval_interval=10 * steps,  # measured afterwards, on the whole validation split
        checkpoint_minutes=None,
        checkpoint_interval=10 * steps,
        device="cpu",
        seed=s.seed,
        progress=False,
    )
    stream = ArrayTokenStream(tokens, block_size=model_cfg.block_size, seed=s.seed)
    out = train(model_cfg, cfg, stream, None, init=init)
    r = out.result
    return out.model, {"steps": r.steps, "tokens": r.tokens_seen, "train_s": r.elapsed_s}


def run(s: Settings) -> dict[str, Any]:
    import torch

    from docllm.model.config import ModelConfig
    from docllm.model.export import export_hf, read_tokenizer_info
    from docllm.training.checkpoint import check_init_tokenizer, load_init_weights

    torch.set_num_threads(s.threads)
    t0 = time.perf_counter()
    v = load_versions(s.docs, s.new_docs)
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        work = Path(tmp)
        tok_dir = train_tokenizer(v.v1_train, s.vocab_size, work)
        covered = coverage(v.v2_train, tok_dir)
        v1, v2 = encode(v.v1_train, tok_dir), encode(v.v2_train, tok_dir)
        val = encode(v.v2_validation, tok_dir)
        new_text = encode([(k, t) for k, t in v.v2_train if k in set(v.new)], tok_dir)
        vocab = read_tokenizer_info(tok_dir).vocab_size
        cfg = ModelConfig.preset("tiny", vocab_size=vocab, variant="llama", block_size=s.block_size)
        prepared_s = time.perf_counter() - t0
        warmup = max(1, s.steps // 20)
        short = max(1, round(s.steps * s.budget_share))

        def measure(model: Any) -> dict[str, Any]:
            out = {"val_loss": mean_loss(model, val, s.block_size, s.val_tokens)}
            if len(new_text) > s.block_size:
                out["new_docs_loss"] = mean_loss(model, new_text, s.block_size, s.val_tokens)
            return out

        rows: dict[str, dict[str, Any]] = {}
        print(f"full v1: {s.steps} steps on {len(v1):,} tokens…", file=sys.stderr)
        champion, rows["full v1 (champion)"] = train_run(cfg, s, v1, steps=s.steps, lr=s.learning_rate, warmup=warmup)
        rows["full v1 (champion)"].update(measure(champion))
        export = export_hf(champion, work / "champion-hf", tokenizer_dir=tok_dir)

        print(f"full v2: {s.steps} steps on {len(v2):,} tokens…", file=sys.stderr)
        full, rows["full v2"] = train_run(cfg, s, v2, steps=s.steps, lr=s.learning_rate, warmup=warmup)
        rows["full v2"].update(measure(full))

        print(f"continue v2: {short} steps from the champion's export…", file=sys.stderr)
        load_t0 = time.perf_counter()
        init = load_init_weights(export)  # as the job reads its init channel
        check_init_tokenizer(export, tok_dir)
        load_s = time.perf_counter() - load_t0
        cont, rows["continue v2"] = train_run(
            cfg, s, v2, steps=short, lr=s.learning_rate * s.learning_rate_share, warmup=0, init=init
        )
        rows["continue v2"]["train_s"] += load_s  # loading the initial weights is part of its cost
        rows["continue v2"].update(measure(cont))

    full_row, cont_row = rows["full v2"], rows["continue v2"]
    return {
        "settings": asdict(s),
        "corpus": {
            "v1_train_documents": len(v.v1_train),
            "v2_train_documents": len(v.v2_train),
            "validation_documents": len(v.v2_validation),
            "new_documents": len(v.new),
            "new_in_train": sum(1 for k, _ in v.v2_train if k in set(v.new)),
            "v1_train_tokens": int(v1.size),
            "v2_train_tokens": int(v2.size),
            "validation_tokens": int(min(val.size, s.val_tokens)),
            "vocab_size": vocab,
            "v1_tokenizer_coverage_of_v2": covered,
            "params": cfg.num_params(non_embedding=False),
        },
        "prepare_s": prepared_s,
        "total_s": time.perf_counter() - t0,
        "rows": rows,
        "cost_ratio_tokens": cont_row["tokens"] / full_row["tokens"],
        "cost_ratio_time": cont_row["train_s"] / full_row["train_s"],
        "val_loss_gap": (cont_row["val_loss"] - full_row["val_loss"]) / full_row["val_loss"],
    }


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    s, c = result["settings"], result["corpus"]
    title = (
        f"incremental training on CPU ({s['threads']} threads): S3 guide, v1 {c['v1_train_documents']} training "
        f"documents ({c['v1_train_tokens']:,} tokens), v2 +{c['new_documents']} documents "
        f"({c['new_in_train']} in train; {c['v2_train_tokens']:,} tokens); tiny llama "
        f"{c['params']:,} parameters, vocabulary {c['vocab_size']} (v1's, coverage of v2 "
        f"{c['v1_tokenizer_coverage_of_v2']:.4f})"
    )
    table = Table(title=title)
    for col in ("run", "steps", "tokens", "train s", "val loss (v2)", "new-docs loss"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, r in result["rows"].items():
        table.add_row(
            name,
            str(r["steps"]),
            f"{r['tokens']:,}",
            f"{r['train_s']:.0f}",
            _fmt(r.get("val_loss"), ".4f"),
            _fmt(r.get("new_docs_loss"), ".4f"),
        )
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    cost_t, cost_s, gap = result["cost_ratio_tokens"], result["cost_ratio_time"], result["val_loss_gap"]
    met = cost_s <= 0.25 and cost_t <= 0.25 and gap <= 0.02
    console.print(
        f"continue / full v2: {cost_t:.2f} of the tokens, {cost_s:.2f} of the time; validation loss gap "
        f"{gap:+.2%} (goal: cost at most 0.25, gap within 2%: {'met' if met else 'not met'}); "
        f"total {result['total_s']:.0f} s"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run under a minute: 60 documents, tiny shapes")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.add_argument("--docs", type=int, default=None, help="documents of the guide to read (default: all; quick 60)")
    p.add_argument("--new-docs", type=int, default=None, help="documents added in v2 (default 10)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps of a full run (default 200)")
    p.add_argument("--budget-share", type=float, default=0.25, help="incremental.budget_share")
    p.add_argument("--learning-rate-share", type=float, default=0.5, help="incremental.learning_rate_share")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    a = p.parse_args(argv)
    base: dict[str, Any] = dict(QUICK if a.quick else FULL)
    for key, value in (("docs", a.docs), ("new_docs", a.new_docs), ("steps", a.steps)):
        if value is not None:
            base[key] = value
    settings = Settings(
        **base, budget_share=a.budget_share, learning_rate_share=a.learning_rate_share, threads=a.threads
    )
    result = run(settings)
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
