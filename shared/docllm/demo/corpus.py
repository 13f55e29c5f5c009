"""The demo's corpus: one folder per service, split into the first upload and the later one.

The later upload (the "new documents" that make the family retrain) is every fourth page of each
service's training split, so a page the evaluation holds out (the split is a hash of the document's
key, :func:`docllm.dataset.versions.assign_split`) is in the first upload and the first model can be
evaluated. Nothing here talks to the platform.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from docllm.dataset.versions import assign_split

#: The files ingestion reads (docs/ingestion.md); anything else in the folder is left out.
DOCUMENT_SUFFIXES = frozenset({".md", ".markdown", ".html", ".htm", ".pdf"})
#: Every ``HELD_BACK_EVERY``-th training page of a service waits for the "new documents" step.
HELD_BACK_EVERY = 4
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def sample_corpus() -> Path:
    """``samples/corpus`` of the checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "samples" / "corpus"


@dataclass(frozen=True)
class Page:
    service: str
    rel: str  #: the path below the service's folder, with "/" separators
    path: Path

    @property
    def key(self) -> str:
        """The document key ``docllm ingest`` gives it."""
        return f"{self.service}/{self.rel}"


class CorpusError(ValueError):
    """A corpus folder the demo cannot use, with what to change."""


def discover(root: Path) -> list[Page]:
    """Every document of ``root``, whose sub-folders are the services (sorted by key)."""
    if not root.is_dir():
        raise CorpusError(f"{root} is not a folder")
    pages: list[Page] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not _SERVICE.match(folder.name):
            raise CorpusError(f"{folder.name!r}: a service folder's name must be lowercase letters, digits and hyphens")
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder)
            if (
                f.is_file()
                and f.suffix.lower() in DOCUMENT_SUFFIXES
                and not any(part.startswith(".") for part in rel.parts)
            ):
                pages.append(Page(folder.name, rel.as_posix(), f))
    if not pages:
        raise CorpusError(
            f"{root} holds no documents: put each service's Markdown, HTML or PDF pages in a folder named after it"
        )
    return pages


def split_waves(pages: Iterable[Page], every: int = HELD_BACK_EVERY) -> tuple[list[Page], list[Page]]:
    """(first upload, later upload): each service's every ``every``-th training page comes later."""
    first: list[Page] = []
    later: list[Page] = []
    seen: dict[str, int] = {}
    for page in pages:
        if assign_split(page.key) != "train":
            first.append(page)
            continue
        n = seen[page.service] = seen.get(page.service, 0) + 1
        (later if n % every == 0 else first).append(page)
    return first, later


def stage(pages: Iterable[Page], dest: Path) -> dict[str, Path]:
    """Copies ``pages`` under ``dest/<service>/<rel>`` (a folder ``docllm ingest`` gives the same keys
    as the corpus itself) and returns each service's folder. Copying again changes nothing."""
    folders: dict[str, Path] = {}
    for page in pages:
        target = dest / page.service / page.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != page.path.read_bytes():
            shutil.copyfile(page.path, target)
        folders[page.service] = dest / page.service
    return folders


def questions(root: Path, pages: Iterable[Page], limit: int) -> list[str]:
    """The demo's questions: ``root/questions.txt`` (one a line, ``#`` comments) when present,
    otherwise one built from the first heading of each of the first pages."""
    listed = root / "questions.txt"
    if listed.is_file():
        lines = [ln.strip() for ln in listed.read_text(encoding="utf-8").splitlines()]
        return [ln for ln in lines if ln and not ln.startswith("#")][:limit]
    found: list[str] = []
    for page in pages:
        if page.path.suffix.lower() not in {".md", ".markdown"}:
            continue
        for ln in page.path.read_text(encoding="utf-8", errors="replace").splitlines():
            if ln.startswith("## "):
                found.append(f"What does the documentation say about {ln[3:].strip().rstrip('?')}?")
                break
        if len(found) >= limit:
            break
    return found
