"""Tokenizer benchmark on ``../shared/corpus/awsdocs``: training, encoding, shard writing.

Run (full: 32k BPE on the whole corpus; several minutes on a laptop)::

    .venv/bin/python -m bench.tokenizer            # table
    .venv/bin/python -m bench.tokenizer --json     # machine-readable
    .venv/bin/python -m bench.tokenizer --quick    # smoke run: 300 files, 4k vocab

Training, each in its own process (wall time and peak RSS of the process tree; job and
direct alternate for ``--train-rounds`` rounds and their medians are compared):

* ``job``: ``python -m docllm.jobs.tokenizer_job`` under the SageMaker contract
  (reads the dataset channel, samples, trains, exports HF files, writes the card);
* ``sentencepiece direct``: the same trainer options on the same sampled text file;
* ``hf tokenizers BPE``: byte-level BPE of the same size on the same lines.

Encoding, one thread, on the validation + test text: our sharding path
(:func:`docllm.tokenizer.encode.encode_documents`), raw SentencePiece batch
``encode``, HF ``tokenizers`` on our exported ``tokenizer.json``, and tiktoken
(``cl100k_base`` when cached, else tiktoken's engine on the byte-level BPE just
trained, since this machine cannot download encodings). Then shard writing MB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers: one thread, like the others
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import psutil

from docllm.dataset.shards import write_shards
from docllm.dataset.versions import (
    DatasetDocument,
    DatasetManifest,
    DatasetStats,
    assign_split,
    read_split_file,
)
from docllm.tokenizer.settings import TokenizerSettings

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "awsdocs"


def make_dataset(files: list[Path], out: Path) -> DatasetManifest:
    """A dataset channel from Markdown files: one document per file, chunks of <= ~4 kB paragraphs."""
    out.mkdir(parents=True, exist_ok=True)
    handles = {s: (out / f"{s}.jsonl").open("w", encoding="utf-8") for s in ("train", "validation", "test")}
    docs = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        key = str(path.relative_to(CORPUS))
        split = assign_split(key)
        chunks, cur = [], ""
        for para in text.split("\n\n"):
            if cur and len(cur) + len(para) > 4000:
                chunks.append(cur)
                cur = ""
            cur = f"{cur}\n\n{para}" if cur else para
        if cur:
            chunks.append(cur)
        ids = [f"{key}#{i}" for i in range(len(chunks))]
        for cid, c in zip(ids, chunks, strict=True):
            handles[split].write(json.dumps({"chunk_id": cid, "doc_key": key, "text": c}, ensure_ascii=False) + "\n")
        docs.append(
            DatasetDocument(
                doc_key=key,
                sha256="0" * 64,
                service=key.split("/", maxsplit=1)[0],
                split=split,
                chunk_ids=ids,
                token_estimate=len(text) // 4,
            )
        )
    for h in handles.values():
        h.close()
    manifest = DatasetManifest(version="ds-bench", created_at="", services=[], documents=docs, stats=DatasetStats())
    (out / "manifest.json").write_text(manifest.model_dump_json(), encoding="utf-8")
    return manifest


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall seconds and peak RSS (MiB, process tree, sampled every 20 ms) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        p = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {err[-2000:]}")
    result = {"wall_s": wall, "peak_rss_mib": peak / 2**20}
    for line in out.splitlines():  # child scripts report their inner timing as JSON
        if line.startswith("{"):
            result.update(json.loads(line))
    return result


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-field median of several ``measure`` results."""
    import statistics

    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


DIRECT_SPM = """
import io, json, sys, time
import sentencepiece as spm
from docllm.tokenizer.settings import TokenizerSettings
from docllm.tokenizer.train import trainer_options
s = TokenizerSettings.model_validate_json(sys.argv[2])
t = time.perf_counter()
w = io.BytesIO()
spm.SentencePieceTrainer.train(input=sys.argv[1], model_writer=w, **trainer_options(s))
print(json.dumps({"train_s": time.perf_counter() - t}))
"""

HF_BPE = """
import json, sys, time
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
vocab = int(sys.argv[2]); out = sys.argv[3]
t = time.perf_counter()
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
with open(sys.argv[1], encoding="utf-8") as f:
    tok.train_from_iterator(f, trainer=trainer)
print(json.dumps({"train_s": time.perf_counter() - t}))
tok.save(out)
"""


def tiktoken_encoding(hf_bytelevel_json: Path) -> tuple[Any, str]:
    import tiktoken

    try:
        return tiktoken.get_encoding("cl100k_base"), "tiktoken cl100k_base"
    except Exception:  # no network here: build an encoding from our byte-level BPE instead
        pass
    from tokenizers import pre_tokenizers  # noqa: F401  (keeps import order obvious)

    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    decode_map = {chr(c): b for b, c in zip(bs, cs, strict=True)}
    vocab = json.loads(hf_bytelevel_json.read_text(encoding="utf-8"))["model"]["vocab"]
    ranks: dict[bytes, int] = {}
    for token, _rank in sorted(vocab.items(), key=lambda kv: kv[1]):
        if token.startswith("<") and token.endswith(">") and len(token) > 2:
            continue
        ranks.setdefault(bytes(decode_map[ch] for ch in token), len(ranks))
    pat = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    enc = tiktoken.Encoding(name="bench-bytelevel", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
    return enc, "tiktoken engine, bench byte-level BPE vocab (cl100k not downloadable here)"


def bench_encode(channel: Path, tok_dir: Path, hf_bpe: Path, repeats: int) -> list[dict[str, Any]]:
    import sentencepiece as spm
    from tokenizers import Tokenizer

    from docllm.tokenizer.encode import SentencePieceTokenizer, encode_documents

    records = [r for s in ("validation", "test") for r in read_split_file(channel / f"{s}.jsonl")]
    texts = [r.text for r in records]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    rows = []

    def timed(name: str, fn: Any) -> None:
        best, tokens = float("inf"), 0
        for _ in range(repeats):
            t = time.perf_counter()
            tokens = fn()
            best = min(best, time.perf_counter() - t)
        rows.append(
            {
                "encoder": name,
                "mb_s": nbytes / best / 1e6,
                "tokens": tokens,
                "tokens_per_byte": tokens / nbytes,
            }
        )

    ours = SentencePieceTokenizer.from_file(tok_dir / "tokenizer.model", num_threads=1)
    sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
    hf = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    hf_bl = Tokenizer.from_file(str(hf_bpe))
    enc, tk_name = tiktoken_encoding(hf_bpe)
    timed(
        "docllm sharding path (encode_documents)",
        lambda: sum(d.ids.size for d in encode_documents(ours, records)),
    )
    timed("sentencepiece encode (batch)", lambda: sum(map(len, sp.encode(texts, num_threads=1))))
    timed(
        "hf tokenizers, our tokenizer.json",
        lambda: sum(len(e.ids) for e in hf.encode_batch(texts, add_special_tokens=False)),
    )
    timed(
        "hf tokenizers, byte-level BPE",
        lambda: sum(len(e.ids) for e in hf_bl.encode_batch(texts, add_special_tokens=False)),
    )
    timed(tk_name, lambda: sum(map(len, enc.encode_ordinary_batch(texts, num_threads=1))))
    return rows


def bench_shards(tok_dir: Path, channel: Path, tmp: Path) -> dict[str, float]:
    from docllm.tokenizer.encode import SentencePieceTokenizer, encode_documents

    tok = SentencePieceTokenizer.from_file(tok_dir / "tokenizer.model")
    docs = [d.ids for d in encode_documents(tok, read_split_file(channel / "train.jsonl"))]
    t = time.perf_counter()
    index = write_shards(docs, tmp / "shards", vocab_size=tok.vocab_size, eos_id=tok.eos_id, shard_tokens=2**22)
    seconds = time.perf_counter() - t
    mb = index.total_tokens * np.dtype(index.dtype).itemsize / 1e6
    return {"tokens": index.total_tokens, "mb": mb, "seconds": seconds, "mb_s": mb / seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run: 300 files, 4k vocabulary")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    ap.add_argument("--vocab", type=int, default=None, help="vocabulary size (default 32000, quick 4096)")
    ap.add_argument("--files", type=int, default=None, help="use only the first N corpus files")
    ap.add_argument("--repeats", type=int, default=3, help="encode timings: best of N")
    ap.add_argument(
        "--train-rounds", type=int, default=5, help="training: job and direct alternate N times; medians reported"
    )
    args = ap.parse_args(argv)
    if not CORPUS.is_dir():
        print(f"corpus not found at {CORPUS}", file=sys.stderr)
        return 2
    files = sorted(CORPUS.glob("*/doc_source/*.md"))
    limit = args.files or (300 if args.quick else None)
    if limit:
        files = files[:: max(1, len(files) // limit)][:limit]
    vocab = args.vocab or (4096 if args.quick else 32000)
    settings = TokenizerSettings(vocab_size=vocab)
    report: dict[str, Any] = {"files": len(files), "vocab_size": vocab, "cpus": os.cpu_count()}

    with tempfile.TemporaryDirectory(prefix="bench-tok-") as tmp_s:
        tmp = Path(tmp_s)
        prefix = tmp / "job"
        channel = prefix / "input" / "data" / "dataset"
        make_dataset(files, channel)
        report["train_bytes"] = (channel / "train.jsonl").stat().st_size
        (prefix / "input" / "config").mkdir(parents=True)
        (prefix / "input" / "config" / "hyperparameters.json").write_text(json.dumps(settings.to_hyperparameters()))
        env = {**os.environ, "DOCLLM_SM_PREFIX": str(prefix), "SM_CHANNELS": '["dataset"]'}

        from docllm.tokenizer.train import write_training_text

        sample = tmp / "sample.txt"
        write_training_text(
            read_split_file(channel / "train.jsonl"),
            sample,
            settings,
            split_bytes=(channel / "train.jsonl").stat().st_size,
        )
        report["sample_mb"] = sample.stat().st_size / 1e6

        # Job and direct alternate, round after round, so drift in machine load hits both
        # alike; the ratio is of medians (one run on 2 vCPUs varies by ±15%).
        jobs, directs = [], []
        for _ in range(args.train_rounds):
            job = measure([sys.executable, "-m", "docllm.jobs.tokenizer_job"], env)
            job["train_s"] = json.loads((prefix / "model" / "card.json").read_text())["training_seconds"]
            jobs.append(job)
            directs.append(measure([sys.executable, "-c", DIRECT_SPM, str(sample), settings.model_dump_json()]))
        hf_path = tmp / "hf_bpe.json"
        hf = measure([sys.executable, "-c", HF_BPE, str(sample), str(vocab), str(hf_path)])
        report["training"] = {
            "job": median_run(jobs),
            "sentencepiece_direct": median_run(directs),
            "hf_tokenizers_bpe": hf,
        }
        report["training_rounds"] = {
            "job_wall_s": [j["wall_s"] for j in jobs],
            "direct_wall_s": [d["wall_s"] for d in directs],
        }
        report["job_vs_direct_wall"] = (
            report["training"]["job"]["wall_s"] / report["training"]["sentencepiece_direct"]["wall_s"]
        )
        report["encode"] = bench_encode(channel, prefix / "model", hf_path, args.repeats)
        report["shards"] = bench_shards(prefix / "model", channel, tmp)

    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"{report['files']} files, train split {report['train_bytes'] / 1e6:.1f} MB, "
        f"sample {report['sample_mb']:.1f} MB, vocab {vocab}, {report['cpus']} CPUs"
    )
    t = Table(title="Tokenizer training")
    for c in ("run", "wall s", "train s", "peak RSS MiB"):
        t.add_column(c, justify="right" if c != "run" else "left")
    for name, r in report["training"].items():
        t.add_row(name, f"{r['wall_s']:.2f}", f"{r.get('train_s', float('nan')):.2f}", f"{r['peak_rss_mib']:.0f}")
    console.print(t)
    rounds = report["training_rounds"]
    console.print(
        f"job / direct wall time (medians of {len(rounds['job_wall_s'])} alternating rounds): "
        f"{report['job_vs_direct_wall']:.3f} (goal <= 1.15); per round job "
        + ", ".join(f"{w:.2f}" for w in rounds["job_wall_s"])
        + " s, direct "
        + ", ".join(f"{w:.2f}" for w in rounds["direct_wall_s"])
        + " s"
    )
    e = Table(title="Encoding, one thread (validation + test text)")
    for c in ("encoder", "MB/s", "tokens", "tokens/byte"):
        e.add_column(c, justify="right" if c != "encoder" else "left")
    for r in report["encode"]:
        e.add_row(r["encoder"], f"{r['mb_s']:.2f}", str(r["tokens"]), f"{r['tokens_per_byte']:.4f}")
    console.print(e)
    s = report["shards"]
    console.print(f"shard writing: {s['mb']:.1f} MB of tokens in {s['seconds']:.3f} s = {s['mb_s']:.0f} MB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
