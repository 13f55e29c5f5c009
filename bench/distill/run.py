"""Distillation on CPU: a tiny teacher, and a half-size student with and without it on the same tokens.

Reads a slice of the Amazon S3 user guide from ``../shared/corpus`` (cleaned and chunked as the
ingest stage does, split by document as datasets are), trains a SentencePiece tokenizer on the
training documents, then in this process:

1. the **teacher**: the ``tiny`` preset (llama variant) for ``--teacher-steps`` steps;
2. the **student**, about half the teacher's parameters (the depth kept, the width chosen for the
   ratio), twice for ``--student-steps`` steps on the same token stream (same seed, same batches):
   once on the LM loss alone, once distilled from the teacher (``--temperature``, ``--alpha``,
   :func:`docllm.model.loss.linear_distillation_loss`).

Each model is exported as the training job exports it and measured as the evaluation job measures
it: held-out loss and perplexity (``heldout_metrics``) and the Q&A score (``run_qa`` on items built
from the held-out documents by ``build_qa_items``). The table gives each student's share of the
teacher's Q&A token F1 (goal, issue 17: the distilled student keeps at least 90%).

Run::

    .venv/bin/python -m bench.distill              # the figures: about 10 minutes on 2 CPU cores
                                                   # (teacher 200 steps of 16 x 128 tokens, ~3-4 min)
    .venv/bin/python -m bench.distill --quick      # smoke run, under a minute
    .venv/bin/python -m bench.distill --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "awsdocs" / "s3" / "doc_source"


@dataclass
class Settings:
    docs: int | None  # None: every document of the guide
    vocab_size: int
    block_size: int
    micro_batch: int
    teacher_steps: int
    student_steps: int
    learning_rate: float
    temperature: float
    alpha: float
    qa_items: int
    heldout_tokens: int
    threads: int
    seed: int = 1337
    teacher_shape: dict[str, int] = field(default_factory=dict)  # overrides of the tiny preset


FULL = {
    "docs": None,
    "vocab_size": 4096,
    "block_size": 128,
    "micro_batch": 16,
    "teacher_steps": 200,
    "student_steps": 200,
    "learning_rate": 2e-3,
    "qa_items": 200,
    "heldout_tokens": 50_000,
}
QUICK = {
    "docs": 60,
    "vocab_size": 512,
    "block_size": 64,
    "micro_batch": 8,
    "teacher_steps": 30,
    "student_steps": 30,
    "learning_rate": 3e-3,
    "qa_items": 12,
    "heldout_tokens": 4_000,
    "teacher_shape": {"n_layer": 2, "n_embd": 128, "n_head": 2},
}


@dataclass
class Corpus:
    train: list[tuple[str, str]]  # (doc_key, text), chunks joined as the evaluation job joins them
    validation: list[tuple[str, str]]
    heldout: list[tuple[str, str]]  # test and validation documents: never trained on


def load_corpus(limit: int | None) -> Corpus:
    """The guide's documents, cleaned and chunked by the ingest pipeline, split by document key."""
    from docllm.dataset.versions import assign_split
    from docllm.ingest.pipeline import Processed, process_document

    if not CORPUS.is_dir():
        raise SystemExit(f"no corpus at {CORPUS}: the benchmark reads the S3 user guide from ../shared/corpus")
    files = sorted(CORPUS.glob("*.md"))
    if limit is not None:
        # Every k-th file: a slice across the guide, not its alphabetical start.
        files = files[:: max(1, len(files) // limit)][:limit]
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "validation": [], "test": []}
    for path in files:
        key = f"s3/{path.name}"
        out = process_document(path.read_bytes(), doc_key=key, doc_version="bench", service="s3")
        if isinstance(out, Processed) and out.chunks:
            splits[assign_split(key)].append((key, "\n\n".join(c.text for c in out.chunks)))
    heldout = sorted(splits["test"] + splits["validation"])
    if not heldout or not splits["train"]:
        raise SystemExit(f"{len(files)} documents gave no held-out or no training document: take more (--docs)")
    return Corpus(train=splits["train"], validation=splits["validation"] or heldout, heldout=heldout)


def train_tokenizer(corpus: Corpus, vocab_size: int, work: Path) -> Path:
    """A SentencePiece tokenizer trained as the tokenizer job trains one, on the training documents."""
    from docllm.dataset.versions import SplitRecord
    from docllm.tokenizer.settings import TokenizerSettings
    from docllm.tokenizer.train import train_sentencepiece, write_training_text

    settings = TokenizerSettings(vocab_size=vocab_size)
    records = [SplitRecord(chunk_id=k, doc_key=k, text=t) for k, t in corpus.train]
    text = work / "sample.txt"
    write_training_text(records, text, settings, split_bytes=sum(len(t) for _, t in corpus.train))
    out = work / "tokenizer"
    out.mkdir()
    (out / "tokenizer.model").write_bytes(train_sentencepiece(text, settings))
    return out


def encode(docs: list[tuple[str, str]], tokenizer_dir: Path) -> np.ndarray:
    """Documents as the shards hold them: each one's ids, then EOS."""
    from docllm.tokenizer.encode import SentencePieceTokenizer

    tok = SentencePieceTokenizer.from_file(tokenizer_dir / "tokenizer.model")
    ids: list[int] = []
    for doc in tok.encode_by_line([t for _, t in docs]):
        ids += [*doc, tok.eos_id]
    return np.asarray(ids, dtype=np.int64)


def student_shape(teacher: Any) -> Any:
    """The student: the teacher's depth or less, the width whose parameter count is closest to half."""
    best = None
    for n_layer in range(teacher.n_layer, 0, -1):
        for n_embd in range(32, teacher.n_embd + 1, 32):
            cfg = teacher.model_copy(update={"n_layer": n_layer, "n_embd": n_embd, "n_head": max(1, n_embd // 32)})
            gap = abs(cfg.num_params(non_embedding=False) / teacher.num_params(non_embedding=False) - 0.5)
            if best is None or gap < best[0] - 1e-9:
                best = (gap, cfg)
    assert best is not None
    return best[1]


def train_one(
    name: str, model_cfg: Any, steps: int, s: Settings, tokens: np.ndarray, val: np.ndarray, teacher: Any = None
) -> tuple[Any, dict[str, Any]]:
    """``steps`` optimizer steps on ``tokens`` (the same batches for every model: one seed); with ``teacher``,
    distilled from it."""
    from docllm.training.config import DistillConfig, TrainConfig
    from docllm.training.loop import train
    from docllm.training.streams import ArrayTokenStream

    distill = None
    if teacher is not None:
        # A label only: the bench hands the teacher model to the loop; the job would read this URI.
        distill = DistillConfig(teacher_uri="bench://teacher", temperature=s.temperature, alpha=s.alpha)
    cfg = TrainConfig(
        max_steps=steps,
        micro_batch_size=s.micro_batch,
        learning_rate=s.learning_rate,
        warmup_steps=max(1, steps // 20),
        weight_decay=0.05,
        eval_interval=steps,
        eval_batches=4,
        checkpoint_minutes=None,
        checkpoint_interval=10 * steps,
        device="cpu",
        seed=s.seed,
        progress=False,
        distill=distill,
    )
    train_stream = ArrayTokenStream(tokens, block_size=model_cfg.block_size, seed=s.seed)
    val_stream = ArrayTokenStream(val, block_size=model_cfg.block_size, shuffle=False)
    print(f"training {name}: {model_cfg.num_params(non_embedding=False):,} parameters, {steps} steps…", file=sys.stderr)
    out = train(model_cfg, cfg, train_stream, val_stream, teacher=teacher)
    r = out.result
    return out.model, {"steps": r.steps, "tokens": r.tokens_seen, "train_s": r.elapsed_s, "val_loss": r.val_loss}


def evaluate(model: Any, tokenizer_dir: Path, corpus: Corpus, s: Settings, work: Path) -> dict[str, Any]:
    """Export as the training job does, load and measure as the evaluation job does."""
    from docllm.evaluation.model_metrics import LanguageModel, heldout_metrics
    from docllm.jobs.evaluate_job import run_qa
    from docllm.model.export import export_hf

    export = export_hf(model, work, tokenizer_dir=tokenizer_dir)
    lm = LanguageModel.load(export)
    t0 = time.perf_counter()
    held = heldout_metrics(lm, (t for _, t in corpus.heldout), max_tokens=s.heldout_tokens)
    qa, _ = run_qa(lm, corpus.heldout, s.qa_items)
    return {
        "heldout_loss": held.loss,
        "perplexity": held.perplexity,
        "next_token_accuracy": held.next_token_accuracy,
        "qa_items": qa.items,
        "qa_exact_match": qa.exact_match,
        "qa_token_f1": qa.token_f1,
        "eval_s": time.perf_counter() - t0,
    }


def run(s: Settings) -> dict[str, Any]:
    import torch

    from docllm.model.config import ModelConfig

    torch.set_num_threads(s.threads)
    t0 = time.perf_counter()
    corpus = load_corpus(s.docs)
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        work = Path(tmp)
        tok_dir = train_tokenizer(corpus, s.vocab_size, work)
        tokens, val = encode(corpus.train, tok_dir), encode(corpus.validation, tok_dir)
        from docllm.model.export import read_tokenizer_info

        vocab = read_tokenizer_info(tok_dir).vocab_size
        teacher_cfg = ModelConfig.preset(
            "tiny", vocab_size=vocab, variant="llama", block_size=s.block_size, **s.teacher_shape
        )
        student_cfg = student_shape(teacher_cfg)
        prepared_s = time.perf_counter() - t0

        rows: dict[str, dict[str, Any]] = {}
        teacher, rows["teacher"] = train_one("teacher", teacher_cfg, s.teacher_steps, s, tokens, val)
        rows["teacher"].update(evaluate(teacher, tok_dir, corpus, s, work / "teacher"))
        student, rows["student (LM loss)"] = train_one(
            "student (LM loss)", student_cfg, s.student_steps, s, tokens, val
        )
        rows["student (LM loss)"].update(evaluate(student, tok_dir, corpus, s, work / "student"))
        # The loop casts the teacher to its run dtype in place: it was measured above, first.
        distilled, rows["student (distilled)"] = train_one(
            "student (distilled)", student_cfg, s.student_steps, s, tokens, val, teacher=teacher
        )
        rows["student (distilled)"].update(evaluate(distilled, tok_dir, corpus, s, work / "distilled"))

    shapes = {"teacher": teacher_cfg, "student (LM loss)": student_cfg, "student (distilled)": student_cfg}
    for name, cfg in shapes.items():
        rows[name]["params"] = cfg.num_params(non_embedding=False)
        rows[name]["shape"] = f"{cfg.n_layer}x{cfg.n_embd} ({cfg.n_head} heads)"
    f1 = rows["teacher"]["qa_token_f1"]
    for row in rows.values():
        row["qa_f1_share_of_teacher"] = row["qa_token_f1"] / f1 if f1 else None
    return {
        "settings": asdict(s),
        "corpus": {
            "train_documents": len(corpus.train),
            "heldout_documents": len(corpus.heldout),
            "train_tokens": int(tokens.size),
            "vocab_size": vocab,
        },
        "prepare_s": prepared_s,
        "total_s": time.perf_counter() - t0,
        "rows": rows,
    }


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    s, c = result["settings"], result["corpus"]
    title = (
        f"distillation on CPU ({s['threads']} threads): S3 guide, {c['train_documents']} training documents "
        f"({c['train_tokens']:,} tokens, vocabulary {c['vocab_size']}), {c['heldout_documents']} held out; "
        f"T={s['temperature']}, alpha={s['alpha']}"
    )
    table = Table(title=title)
    for col in (
        "model",
        "shape",
        "params",
        "steps",
        "train s",
        "val loss",
        "held-out loss",
        "ppl",
        "next-tok acc",
        "Q&A items",
        "Q&A EM",
        "Q&A F1",
        "F1 vs teacher",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, r in result["rows"].items():
        table.add_row(
            name,
            r["shape"],
            f"{r['params']:,}",
            str(r["steps"]),
            f"{r['train_s']:.0f}",
            _fmt(r["val_loss"], ".3f"),
            _fmt(r["heldout_loss"], ".3f"),
            _fmt(r["perplexity"], ".1f"),
            _fmt(r["next_token_accuracy"], ".3f"),
            str(r["qa_items"]),
            _fmt(r["qa_exact_match"], ".3f"),
            _fmt(r["qa_token_f1"], ".3f"),
            _fmt(r["qa_f1_share_of_teacher"], ".0%"),
        )
    console = Console(width=None if sys.stdout.isatty() else 200)  # a pipe gets the whole table
    console.print(table)
    rows = result["rows"]
    ratio = rows["student (distilled)"]["params"] / rows["teacher"]["params"]
    share = rows["student (distilled)"]["qa_f1_share_of_teacher"]
    verdict = "n/a (teacher F1 is 0)" if share is None else f"{share:.0%} ({'met' if share >= 0.9 else 'not met'})"
    console.print(
        f"student/teacher parameters {ratio:.2f}; distilled student keeps {verdict} of the teacher's Q&A token F1 "
        f"(goal: at least 90%); total {result['total_s']:.0f} s"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run under a minute: 60 documents, tiny shapes")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.add_argument("--docs", type=int, default=None, help="documents of the guide to read (default: all; quick 60)")
    p.add_argument("--teacher-steps", type=int, default=None, help="teacher optimizer steps (default 200)")
    p.add_argument("--student-steps", type=int, default=None, help="steps of each student (default 200)")
    p.add_argument("--temperature", type=float, default=2.0, help="distillation temperature T")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the distillation term (LM loss: 1 - alpha)")
    p.add_argument("--qa-items", type=int, default=None, help="Q&A items from the held-out documents (default 200)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    a = p.parse_args(argv)
    base: dict[str, Any] = dict(QUICK if a.quick else FULL)
    for key, value in (
        ("docs", a.docs),
        ("teacher_steps", a.teacher_steps),
        ("student_steps", a.student_steps),
        ("qa_items", a.qa_items),
    ):
        if value is not None:
            base[key] = value
    settings = Settings(**base, temperature=a.temperature, alpha=a.alpha, threads=a.threads)
    result = run(settings)
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
