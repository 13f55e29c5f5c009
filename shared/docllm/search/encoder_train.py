"""Training of the dual encoder (:mod:`docllm.search.encoder`): pairs from the train split, torch on CPU.

Pairs are made by rules from the documents alone (no question set is read), three kinds:

* ``heading``: a section's own heading (or the page title) -> the section without that heading;
* ``question``: the same heading put in a question form a user might type ("how do I …",
  "what is …", "can I …"), so the question words themselves learn a low weight;
* ``cloze`` (inverse cloze task, Lee et al. 2019): one sentence of a passage -> the passage without
  it, which teaches which words co-occur across sentences: what lets a paraphrase land on a page.

Loss: InfoNCE with in-batch negatives, symmetric (question -> passage and passage -> question),
temperature ``settings.temperature``. The model is an ``EmbeddingBag`` of the tokenizer's pieces with
a learned per-piece weight; the trained arrays are plain numpy for :class:`~docllm.search.encoder.TextEncoder`.

Example::

    passages = passages_from_records(read_split_file(Path("train.jsonl")))
    pairs = make_pairs(passages, EncoderSettings())
    result = train_encoder(pairs, tokenizer, EncoderSettings())
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from docllm.dataset.versions import SplitRecord
from docllm.search.encoder import (
    CARD_FILE,
    ENCODER_FILE,
    TOKENIZER_FILE,
    EncoderCard,
    EncoderSettings,
    FloatArray,
    TextEncoder,
    Tokenizer,
    encoder_version,
    passage_text,
    write_encoder_arrays,
)

_HEADING_LINE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`*\[])")
_MIN_SENTENCE_WORDS = 6
_QUESTION_FORMS = ("how do I {h}", "what is {h}", "can I {h}", "how to {h}", "{h}?")


@dataclass(frozen=True)
class Passage:
    doc_key: str
    title: str
    headings: tuple[str, ...]
    body: str


@dataclass(frozen=True)
class Pair:
    kind: str
    query: str
    passage: str
    doc_key: str = ""


@dataclass
class TrainedEncoder:
    embeddings: FloatArray
    weights: FloatArray
    steps: int
    final_loss: float
    seconds: float
    losses: list[float] = field(default_factory=list)


def passages_from_records(records: Iterable[SplitRecord]) -> list[Passage]:
    """Passages of split records (chunks of a page in order): leading Markdown headings become the
    heading path, a page's first ``#`` heading its title.

    >>> recs = [SplitRecord(chunk_id="1", doc_key="d", text="# Buckets\\n\\nA bucket holds objects."),
    ...         SplitRecord(chunk_id="2", doc_key="d", text="## Naming\\n\\nNames are global.")]
    >>> [(p.title, p.headings, p.body) for p in passages_from_records(recs)]
    [('Buckets', ('Buckets',), 'A bucket holds objects.'), ('Buckets', ('Naming',), 'Names are global.')]
    """
    titles: dict[str, str] = {}
    out = []
    for rec in records:
        lines = rec.text.split("\n")
        headings: list[str] = []
        i = 0
        while i < len(lines) and (not lines[i].strip() or _HEADING_LINE.match(lines[i])):
            m = _HEADING_LINE.match(lines[i])
            if m:
                headings.append(m.group(2).strip())
            i += 1
        body = "\n".join(lines[i:]).strip()
        title = titles.setdefault(rec.doc_key, headings[0] if headings else rec.doc_key.rsplit("/", 1)[-1])
        if body:
            out.append(Passage(rec.doc_key, title, tuple(headings), body))
    return out


def make_pairs(passages: Sequence[Passage], settings: EncoderSettings) -> list[Pair]:
    """The training pairs of ``passages`` (deterministic for a seed), shuffled.

    >>> body = "Bucket names are global across all of AWS. Each name is unique across every account."
    >>> p = Passage("d", "Buckets", ("Naming rules",), body)
    >>> sorted({pair.kind for pair in make_pairs([p], EncoderSettings(cloze_per_chunk=1))})
    ['cloze', 'heading', 'question']
    """
    rng = random.Random(settings.seed)
    pairs: list[Pair] = []
    for p in passages:
        heading = p.headings[-1] if p.headings else p.title
        rest = [h for h in p.headings if h != heading]
        without_heading = passage_text(p.title if p.title != heading else "", rest, p.body).strip()
        pairs.append(Pair("heading", heading, without_heading, p.doc_key))
        form = rng.choice(_QUESTION_FORMS)
        question = form.format(h=heading[:1].lower() + heading[1:])
        pairs.append(Pair("question", question, without_heading, p.doc_key))
        sentences = [s for s in _SENTENCE.split(p.body) if len(s.split()) >= _MIN_SENTENCE_WORDS]
        if len(sentences) >= 2:
            for s in rng.sample(sentences, min(settings.cloze_per_chunk, len(sentences))):
                remainder = p.body.replace(s, " ", 1)
                pairs.append(Pair("cloze", s, passage_text(p.title, p.headings, remainder), p.doc_key))
    rng.shuffle(pairs)
    return pairs


def mine_hard_negatives(pairs: Sequence[Pair], *, depth: int = 10) -> list[str | None]:
    """For each heading and question pair, the passage of *another* page that BM25 ranks highest for
    its query; None for the other pairs and where the first ``depth`` hits are all of the same page.

    In-batch negatives are random passages, mostly of unrelated services, which a bag of pieces tells
    apart easily; a user's question goes wrong between pages of one topic (a console procedure and
    its CLI twin, an overview and its how-to). A page BM25 confuses with the right one is that kind of
    negative (Karpukhin et al. 2020, dense passage retrieval, found one such negative per question
    worth several points of top-20 accuracy). The candidates are the pairs' own passages.

    >>> ps = [Pair("heading", "bucket naming", "Bucket names are global.", "a"),
    ...       Pair("heading", "bucket policies", "A bucket policy grants access.", "b"),
    ...       Pair("cloze", "Names are global.", "Bucket names rules.", "a")]
    >>> mine_hard_negatives(ps)
    ['A bucket policy grants access.', 'Bucket names are global.', None]
    """
    from docllm.search.analyzer import analyze, analyze_query
    from docllm.search.bm25 import BM25Scorer

    candidates: dict[str, int] = {}  # passage text -> slot
    owner: list[str] = []
    texts: list[str] = []
    scorer = BM25Scorer()
    for pair in pairs:
        if pair.kind == "cloze" or pair.passage in candidates:
            continue
        slot = len(texts)
        candidates[pair.passage] = slot
        texts.append(pair.passage)
        owner.append(pair.doc_key)
        terms = analyze(pair.passage)
        scorer.add(slot, dict(Counter(terms)), length=len(terms), group=0)
    out: list[str | None] = []
    for pair in pairs:
        negative = None
        if pair.kind != "cloze":
            for slot, _ in scorer.top_k(analyze_query(pair.query), k=depth):
                if owner[slot] != pair.doc_key:
                    negative = texts[slot]
                    break
        out.append(negative)
    return out


def pair_counts(pairs: Iterable[Pair]) -> dict[str, int]:
    return dict(sorted(Counter(p.kind for p in pairs).items()))


def train_encoder(
    pairs: Sequence[Pair],
    tokenizer: Tokenizer,
    settings: EncoderSettings,
    *,
    vocab_size: int,
    progress: Callable[[int, float], None] | None = None,
) -> TrainedEncoder:
    """Train the bag-of-pieces encoder on ``pairs`` with in-batch negatives (torch, CPU).

    ``tokenizer`` is anything with ``encode(list[str]) -> list[list[int]]`` (the platform's
    ``SentencePieceTokenizer``); ``progress(step, loss)`` is called every 50 steps.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    torch.manual_seed(settings.seed)
    probe = TextEncoder(
        tokenizer,
        np.zeros((vocab_size, 1), dtype=np.float32),
        np.zeros(vocab_size, dtype=np.float32),
        max_tokens=settings.max_tokens,
        lowercase=settings.lowercase,
    )
    queries = probe.token_ids([p.query for p in pairs])
    passages = probe.token_ids([p.passage for p in pairs])
    keep = [i for i in range(len(pairs)) if queries[i] and passages[i]]
    negatives: list[list[int]] = []
    if settings.hard_negatives:
        mined = mine_hard_negatives(pairs)
        # A pair with no mined negative gets its own passage: a column equal to its positive, which
        # the loss masks out below.
        negatives = probe.token_ids([m if m is not None else p.passage for m, p in zip(mined, pairs, strict=True)])
        has_negative = [m is not None for m in mined]

    emb = torch.nn.EmbeddingBag(vocab_size, settings.dim, mode="sum")
    torch.nn.init.normal_(emb.weight, std=settings.dim**-0.5)
    piece_weight = torch.nn.Embedding(vocab_size, 1)
    torch.nn.init.zeros_(piece_weight.weight)
    params = [*emb.parameters(), *piece_weight.parameters()]
    optimiser = torch.optim.Adam(params, lr=settings.learning_rate)

    def encode(batch: list[list[int]]) -> torch.Tensor:
        flat = torch.tensor([t for ids in batch for t in ids], dtype=torch.long)
        offsets = torch.tensor(np.concatenate([[0], np.cumsum([len(b) for b in batch])[:-1]]), dtype=torch.long)
        w = F.softplus(piece_weight(flat).squeeze(-1))
        return F.normalize(emb(flat, offsets, per_sample_weights=w), dim=-1)

    rng = random.Random(settings.seed)
    started = time.perf_counter()
    steps, losses = 0, []
    total_steps = settings.epochs * max(1, len(keep) // settings.batch_size)
    done = False
    for _ in range(settings.epochs):
        rng.shuffle(keep)
        for start in range(0, len(keep) - settings.batch_size + 1, settings.batch_size):
            idx = keep[start : start + settings.batch_size]
            q = encode([queries[i] for i in idx])
            d = encode([passages[i] for i in idx])
            logits = q @ d.T / settings.temperature
            target = torch.arange(len(idx))
            to_passage = logits
            if negatives:
                n = encode([negatives[i] or passages[i] for i in idx])
                hard = (q @ n.T / settings.temperature).masked_fill(
                    ~torch.tensor([has_negative[i] for i in idx])[None, :], float("-inf")
                )
                to_passage = torch.cat([logits, hard], dim=1)  # (B, 2B): every hard negative for every query
            loss = (F.cross_entropy(to_passage, target) + F.cross_entropy(logits.T, target)) / 2
            optimiser.zero_grad()
            loss.backward()
            for group in optimiser.param_groups:  # linear decay to 10 %
                group["lr"] = settings.learning_rate * max(0.1, 1.0 - steps / max(total_steps, 1))
            optimiser.step()
            steps += 1
            losses.append(float(loss.detach()))
            if progress is not None and steps % 50 == 0:
                progress(steps, float(np.mean(losses[-50:])))
            if time.perf_counter() - started > settings.max_seconds:
                done = True
                break
        if done:
            break
    return TrainedEncoder(
        embeddings=emb.weight.detach().numpy().astype(np.float32),
        weights=piece_weight.weight.detach().squeeze(-1).numpy().astype(np.float32),
        steps=steps,
        final_loss=float(np.mean(losses[-50:])) if losses else float("nan"),
        seconds=time.perf_counter() - started,
        losses=losses,
    )


def build_encoder(
    records: Iterable[SplitRecord],
    tokenizer_model: bytes,
    settings: EncoderSettings,
    out_dir: Path,
    *,
    dataset_version: str,
    tokenizer_version: str,
    train_documents: int,
) -> EncoderCard:
    """Pairs from ``records`` (a train split), training, and the artefacts in ``out_dir``
    (``encoder.npz``, ``tokenizer.model``, ``card.json``); what the retriever job runs.

    Raises
    ------
    ValueError
        Fewer training pairs than one batch.
    """
    import torch

    from docllm.tokenizer.encode import SentencePieceTokenizer

    tokenizer = SentencePieceTokenizer(tokenizer_model)
    pairs = make_pairs(passages_from_records(records), settings)
    if len(pairs) < settings.batch_size:
        raise ValueError(f"{len(pairs)} training pairs, fewer than one batch of {settings.batch_size}")
    trained = train_encoder(pairs, tokenizer, settings, vocab_size=tokenizer.vocab_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder_sha = write_encoder_arrays(out_dir / ENCODER_FILE, trained.embeddings, trained.weights)
    (out_dir / TOKENIZER_FILE).write_bytes(tokenizer_model)
    card = EncoderCard(
        version=encoder_version(settings, dataset_version, tokenizer_version),
        dataset_version=dataset_version,
        tokenizer_version=tokenizer_version,
        tokenizer_sha256=hashlib.sha256(tokenizer_model).hexdigest(),
        encoder_sha256=encoder_sha,
        settings=settings,
        vocab_size=tokenizer.vocab_size,
        train_documents=train_documents,
        pairs=pair_counts(pairs),
        steps=trained.steps,
        final_loss=round(trained.final_loss, 4),
        training_seconds=round(trained.seconds, 3),
        torch_version=str(torch.__version__),
    )
    (out_dir / CARD_FILE).write_text(card.model_dump_json(indent=1), encoding="utf-8")
    return card
