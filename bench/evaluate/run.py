"""The evaluation job on the ``tiny-s3`` model, against Hugging Face transformers' perplexity.

Trains ``tiny-s3`` on the Amazon S3 user guide of ``../shared/corpus`` through the local platform
(or reuses a platform directory that holds one: ``--data-dir``), then times the evaluation job as
the platform runs it (a fresh process: imports, model load, held-out loss, Q&A, hallucination,
report) and, in the same run, the peer: transformers' ``LlamaForCausalLM`` loading the same export
and computing the held-out loss over the same token windows. Goal (issue 14): under one minute.

Run:  .venv/bin/python -m bench.evaluate [--data-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform as host
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from docllm.bootstrap import Platform
from docllm.ports.objects import split_uri
from docllm.records import JOBS_PK, JobRecord
from docllm.service_layer.jobs import MODELS_PK
from docllm.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "awsdocs" / "s3" / "doc_source"
FAMILY = "tiny-s3"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return host.processor() or host.machine()


def _docllm(data: Path, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "docllm.cli.main", "--data-dir", str(data), *args, "--json"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def train_tiny_s3(data: Path) -> None:
    """A platform in ``data`` with the S3 guide ingested and a tiny-s3 model trained (minutes)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "docllm.cli.main", "--data-dir", str(data), "up", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not (data / "runtime.json").exists():
            if proc.poll() is not None:
                raise SystemExit("docllm up exited")
            time.sleep(0.1)
        print("ingesting the S3 guide…", file=sys.stderr)
        _docllm(data, "ingest", str(CORPUS), "--service", "s3")
        print(f"training {FAMILY} (its budget is 5 minutes)…", file=sys.stderr)
        _docllm(data, "train", "--model-family", FAMILY, "--until", "trained", "--timeout", "3600")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(120)


def _download(p: Platform, uri: str, target: Path) -> None:
    bucket, prefix = split_uri(uri)
    for info in p.objects.list(bucket, prefix):
        p.objects.download_file(bucket, info.key, target / info.key[len(prefix) :])


def run_job(p: Platform, model: dict[str, Any], work: Path) -> tuple[float, dict[str, Any]]:
    """The evaluation job in a fresh process, laid out as the job runner lays it out."""
    job = JobRecord.model_validate(p.state.get(JOBS_PK, model["job"]))
    ml = work / "ml"
    _download(p, job.output_uri, ml / "input" / "data" / "model")
    _download(p, f"s3://{p.settings.artifact_bucket}/datasets/{model['dataset_version']}/", ml / "input/data/dataset")
    config = ml / "input" / "config"
    config.mkdir(parents=True)
    hps = {
        "evaluation_id": "bench-evaluate",
        "model_version": model["version"],
        "family": FAMILY,
        "dataset_version": model["dataset_version"],
        "tokenizer_version": model["tokenizer_version"],
    }
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    env = {
        **os.environ,
        "DOCLLM_SM_PREFIX": str(ml),
        "SM_CHANNELS": json.dumps(["dataset", "model"]),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
    }
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "docllm.jobs.evaluate_job"], env=env, check=True, cwd=work)
    wall = time.perf_counter() - t0
    report = json.loads((ml / "model" / "report.json").read_text())
    report["timings"] = json.loads((ml / "model" / "result.json").read_text())["timings"]
    return wall, report


def peer_perplexity(export: Path, test_file: Path, max_tokens: int) -> tuple[float, float, int]:
    """transformers' held-out loss over the same windows: ``(seconds incl. load, perplexity, tokens)``."""
    import sentencepiece as spm
    import torch
    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(export)).eval()
    sp = spm.SentencePieceProcessor(model_file=str(export / "tokenizer.model"))
    docs: dict[str, list[str]] = {}
    for line in test_file.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        docs.setdefault(row["doc_key"], []).append(row["text"])
    stream: list[int] = []
    for _, parts in sorted(docs.items()):
        stream += [sp.bos_id(), *sp.encode("\n\n".join(parts)), sp.eos_id()]
        if len(stream) > max_tokens:
            break
    stream = stream[: max_tokens + 1]
    block = model.config.max_position_embeddings
    nll, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(stream) - 1, block):
            window = stream[i : i + block + 1]
            if len(window) < 2:
                continue
            x = torch.tensor([window[:-1]])
            logits = model(x).logits[0].float()
            nll += float(torch.nn.functional.cross_entropy(logits, torch.tensor(window[1:]), reduction="sum"))
            count += len(window) - 1
    return time.perf_counter() - t0, math.exp(nll / count), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="a platform directory holding a trained tiny-s3 model")
    parser.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    args = parser.parse_args(argv)
    if args.data_dir is None and not CORPUS.is_dir():
        print("../shared/corpus is not present; nothing to measure", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data_dir or Path(tmp) / "platform"
        if args.data_dir is None:
            data.mkdir()
            train_tiny_s3(data)
        p = Platform(
            Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data)}),
            template=REPO / "template.yaml",
        )
        models = [m for _, m in p.state.query(MODELS_PK) if m.get("family") == FAMILY]
        if not models:
            raise SystemExit(f"no {FAMILY} model in {data}")
        model = models[-1]
        work = Path(tmp) / "job"
        work.mkdir()
        wall, report = run_job(p, model, work)
        export = work / "ml" / "input" / "data" / "model" / "hf"
        test_file = work / "ml" / "input" / "data" / "dataset" / "test.jsonl"
        peer_s, peer_ppl, peer_tokens = peer_perplexity(export, test_file, report["heldout"]["tokens"])
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, Python {host.python_version()}",
        "model_version": model["version"],
        "test_documents": report["heldout"]["documents"],
        "heldout_tokens": report["heldout"]["tokens"],
        "qa_items": report["qa"]["items"],
        "job_wall_s": round(wall, 2),
        "job_measured_s": report["elapsed_s"],
        **{f"phase_{k}": v for k, v in report["timings"].items()},
        "perplexity": round(report["heldout"]["perplexity"], 3),
        "next_token_accuracy": round(report["heldout"]["next_token_accuracy"], 4),
        "qa_exact_match": round(report["qa"]["exact_match"], 4),
        "qa_token_f1": round(report["qa"]["token_f1"], 4),
        "hallucination_rate": report["hallucination"]["rate"],
        "domain_vocab_score": report["hallucination"]["domain_vocab_score"],
        "peer": "transformers LlamaForCausalLM, same export, same windows",
        "peer_heldout_s": round(peer_s, 2),
        "peer_perplexity": round(peer_ppl, 3),
        "peer_tokens": peer_tokens,
        "goal_met": wall < 60,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    table = Table(title=f"evaluation of {FAMILY} ({result['machine']})")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if key != "machine":
            table.add_row(key, str(value))
    Console().print(table)
    return 0
