"""Load and chunk ``../shared/corpus/awsdocs`` for the retrieval benchmark.

Uses the real ingest code (``docllm.ingest.pipeline.process_document``) when
it is importable; otherwise a plain Markdown heading splitter stands in, so
the benchmark runs before ingest lands. The table says which one was used.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from docllm.ports.search import IndexedChunk

REPO = Path(__file__).resolve().parents[2]
AWSDOCS = REPO.parent / "shared" / "corpus" / "awsdocs"
SERVICES = ("cloudwatch", "ec2", "iam", "lambda", "s3", "sagemaker")

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_ANCHOR = re.compile(r"<a name=\"[^\"]*\"></a>")
_MAX_CHARS = 2400


@dataclass(frozen=True)
class Document:
    doc_key: str
    service: str
    path: Path


def clean_heading(raw: str) -> str:
    """Heading text without the HTML anchors and Markdown escapes of the awsdocs sources."""
    return re.sub(r"\\(?=[^\w\s])", "", _ANCHOR.sub("", raw)).strip()


def documents(root: Path = AWSDOCS, services: tuple[str, ...] = SERVICES) -> list[Document]:
    docs = []
    for service in services:
        for path in sorted((root / service / "doc_source").glob("*.md")):
            docs.append(Document(doc_key=f"{service}/{path.name}", service=service, path=path))
    return docs


def sections(text: str) -> Iterator[tuple[list[str], str]]:
    """(heading path, body) of each Markdown section, in order."""
    path: list[tuple[int, str]] = []
    body: list[str] = []
    in_code = False

    def flush() -> Iterator[tuple[list[str], str]]:
        joined = "\n".join(body).strip()
        if joined:
            yield [h for _, h in path], joined

    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        m = None if in_code else _HEADING.match(line)
        if m:
            yield from flush()
            body = []
            level = len(m.group(1))
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, clean_heading(m.group(2)))]
        else:
            body.append(line)
    yield from flush()


def heading_chunks(doc: Document, text: str) -> list[IndexedChunk]:
    """The stand-in chunker: one chunk per section, long sections cut on paragraph boundaries."""
    title = next((clean_heading(m.group(2)) for m in map(_HEADING.match, text.splitlines()) if m), doc.path.stem)
    out: list[IndexedChunk] = []
    for heading_path, body in sections(text):
        piece: list[str] = []
        size = 0
        paragraphs = body.split("\n\n")
        for i, para in enumerate(paragraphs):
            piece.append(para)
            size += len(para)
            if size >= _MAX_CHARS or i == len(paragraphs) - 1:
                chunk_text = "\n\n".join(piece).strip()
                if chunk_text:
                    cid = hashlib.sha256(f"{doc.doc_key}|{len(out)}|{chunk_text}".encode()).hexdigest()[:24]
                    out.append(
                        IndexedChunk(
                            chunk_id=cid,
                            doc_key=doc.doc_key,
                            service=doc.service,
                            title=title,
                            heading_path=heading_path or [title],
                            text=chunk_text,
                        )
                    )
                piece, size = [], 0
    return out


def chunker_name() -> str:
    try:
        from docllm.ingest.pipeline import process_document  # noqa: F401
    except ImportError:
        return "heading-splitter (bench stand-in)"
    return "docllm.ingest.pipeline"


def chunk_document(doc: Document) -> list[IndexedChunk]:
    data = doc.path.read_bytes()
    try:
        from docllm.ingest.pipeline import process_document
    except ImportError:
        return heading_chunks(doc, data.decode("utf-8", errors="replace"))
    version = hashlib.sha256(data).hexdigest()[:16]
    result = process_document(data, doc_key=doc.doc_key, doc_version=version, service=doc.service)
    chunks = getattr(result, "chunks", None)
    if chunks is None:  # Quarantine: the document is not indexable
        return []
    return [
        IndexedChunk(
            chunk_id=c.chunk_id,
            doc_key=c.doc_key,
            service=c.service,
            title=c.title,
            heading_path=list(c.heading_path),
            text=c.text,
        )
        for c in chunks
    ]
