"""Embedded search engine: documents in SQLite, BM25 ranking in memory.

Why this design (measurements in ``docs/retrieval.md``): SQLite is in the
standard library, its transactions give atomic per-document replacement and
crash safety, and WAL mode lets reader threads and other processes read
while one writer commits. Its FTS5 extension was the first candidate, but
``bm25()`` there scores every chunk matching any query term: p50 45 ms /
p99 88 ms on the awsdocs corpus against a 20 ms goal. So SQLite stores the
analyzed terms of each chunk and :class:`~docllm.search.bm25.BM25Scorer`
ranks in memory; the scorer follows the file through an append-only
``changes`` log, so a write in another process is visible to the next search.

Layout of ``<directory>/search.sqlite3``:

``documents(doc_key, version)``
    what is indexed; :meth:`SqliteSearchIndex.document_versions` reads it.
``chunks(id, chunk_id, doc_key, service, title, heading_path, text, length, terms)``
    stored fields plus the analyzed, weighted term frequencies (JSON).
``changes(seq, chunk, added)``
    every chunk added or removed, in commit order; trimmed past ``LOG_KEEP``.
``doc_services(service, doc_key)``
    lets :meth:`SqliteSearchIndex.services` answer without scanning chunks.
``vectors(encoder, chunk, vector)``
    each chunk's unit vector (float32 bytes) per encoder version, written with the chunk by a writer
    that has the encoder and by a reader that had to encode what it found without one, so a process
    (re)start loads vectors instead of encoding the corpus again (an encoder's rows go with its chunks).

Every change to one document is one ``BEGIN IMMEDIATE`` transaction over all
tables, so a reader, another process or a crash sees either the old document
or the new one, never a mix, and ``documents`` always matches the chunks.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from docllm.exceptions import ConfigurationError
from docllm.ports.search import IndexedChunk, SearchHit, SearchIndex
from docllm.search.analyzer import analyze
from docllm.search.bm25 import BM25Scorer
from docllm.search.encoder import TextEncoder, VectorStore, passage_text
from docllm.search.exceptions import IndexBusyError, InvalidChunkError
from docllm.search.fusion import reciprocal_rank_fusion
from docllm.search.ranking import Ranking, aggregate_documents, names_identifier, query_terms, rm3_weights

#: Bumped whenever the analyzer or the layout changes: an old file must be rebuilt, not misread.
SCHEMA_VERSION = "2"
DB_FILE = "search.sqlite3"

#: Term-frequency weights of (title, headings, body).
#: Flat won on the dev set over (2, 2, 1); see docs/retrieval.md.
DEFAULT_WEIGHTS: tuple[float, float, float] = (1.0, 1.0, 1.0)

#: The ranking options searches use unless told otherwise: question words dropped from the query
#: (measured in docs/benchmarks.md, "Lexical options on the realistic set"; chosen in docs/decisions.md).
DEFAULT_RANKING = Ranking(question_forms=True)

#: Chunks ranked before pages are aggregated (``Ranking.doc_aggregation``).
AGGREGATE_DEPTH = 200

#: The ranking of an index given a trained encoder and no explicit ranking: question forms, then
#: BM25 and the encoder fused by reciprocal rank (measured in docs/benchmarks.md, "Learned retrieval
#: component"; chosen in docs/decisions.md).
HYBRID_RANKING = Ranking(question_forms=True, dense_weight=0.25)

#: Chunks encoded per batch when the vectors are (re)built.
ENCODE_BATCH = 512

#: Changes kept for readers to catch up incrementally; a reader further behind reloads.
LOG_KEEP = 200_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents(doc_key TEXT PRIMARY KEY, version TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id TEXT NOT NULL,
    doc_key TEXT NOT NULL,
    service TEXT NOT NULL,
    title TEXT NOT NULL,
    heading_path TEXT NOT NULL,
    text TEXT NOT NULL,
    length INTEGER NOT NULL,
    terms TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_key);
CREATE TABLE IF NOT EXISTS changes(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, chunk INTEGER NOT NULL, added INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS doc_services(
    service TEXT NOT NULL, doc_key TEXT NOT NULL, PRIMARY KEY(service, doc_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vectors(
    encoder TEXT NOT NULL, chunk INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY(encoder, chunk)
) WITHOUT ROWID
"""


@dataclass(frozen=True)
class IndexStats:
    """Sizes of an index, for health checks and benchmarks."""

    documents: int
    chunks: int
    bytes_on_disk: int


@dataclass(frozen=True)
class _Analyzed:
    chunk: IndexedChunk
    length: int
    terms_json: str
    vector: bytes | None = None


def split_code(text: str) -> tuple[str, str]:
    r"""(prose, code) of a chunk's text: fenced code blocks apart from the rest.

    Examples
    --------
    >>> split_code("Run it:\n```\naws s3 ls\n```\nDone.")
    ('Run it:\nDone.', '```\naws s3 ls\n```')
    """
    prose: list[str] = []
    code: list[str] = []
    inside = False
    for line in text.split("\n"):
        fence = line.lstrip().startswith("```")
        if fence and not inside:
            inside = True
            code.append(line)
        elif fence:
            inside = False
            code.append(line)
        else:
            (code if inside else prose).append(line)
    return "\n".join(prose), "\n".join(code)  # an unclosed fence (a chunk cut inside a block) runs to the end


def weighted_terms(chunk: IndexedChunk, weights: tuple[float, ...]) -> tuple[dict[str, float], int]:
    """Weighted term frequencies of a chunk's title, headings and body, and its length in terms.

    With four weights, the body's fenced code blocks get the fourth weight, prose the third.

    Examples
    --------
    >>> c = IndexedChunk(chunk_id="c", doc_key="d", service="s", title="Buckets",
    ...                  heading_path=[], text="bucket names")
    >>> weighted_terms(c, (2.0, 2.0, 1.0))
    ({'bucket': 3.0, 'name': 1.0}, 3)
    """
    tf: defaultdict[str, float] = defaultdict(float)
    length = 0
    fields: tuple[str, ...] = (chunk.title, " \n ".join(chunk.heading_path), chunk.text)
    if len(weights) == 4:
        fields = (chunk.title, " \n ".join(chunk.heading_path), *split_code(chunk.text))
    for weight, text in zip(weights, fields, strict=True):
        terms = analyze(text)
        length += len(terms)
        for term, count in Counter(terms).items():
            tf[term] += weight * count
    return dict(tf), length


def _stored_version(encoder: TextEncoder | None) -> str | None:
    """The key an encoder's vectors are stored under: its card's version; an encoder without a card
    (tests, a hand-made one) is not traceable to a version, so its vectors are never stored."""
    return encoder.card.version if encoder is not None and encoder.card is not None else None


def _validate(doc_key: str, chunks: Sequence[IndexedChunk]) -> None:
    seen: set[str] = set()
    for chunk in chunks:
        if chunk.doc_key != doc_key:
            raise InvalidChunkError(f"chunk {chunk.chunk_id!r} belongs to {chunk.doc_key!r}, not {doc_key!r}")
        if chunk.chunk_id in seen:
            raise InvalidChunkError(f"chunk id {chunk.chunk_id!r} appears twice in {doc_key!r}")
        seen.add(chunk.chunk_id)


class SqliteSearchIndex(SearchIndex):
    """The embedded :class:`~docllm.ports.search.SearchIndex`: persistent, incremental, BM25.

    Safe for one writer thread plus any number of reader threads in a
    process, and for several processes opening the same directory (writers
    queue on SQLite's lock, waiting up to ``busy_timeout_s``). Searches in
    one process are serialised around the shared in-memory scorer (a search
    takes a few milliseconds).

    Parameters
    ----------
    directory
        Where the index lives (created if missing); typically ``<data dir>/search``.
    weights
        Term-frequency weights of the title, headings and body.
    busy_timeout_s
        How long a writer waits for another process's write before
        :class:`~docllm.search.exceptions.IndexBusyError`.
    durable
        ``True`` (default) fsyncs each commit; ``False`` risks the last
        commits on power loss (never consistency) for speed in bulk builds.

    Examples
    --------
    >>> import tempfile
    >>> index = SqliteSearchIndex(Path(tempfile.mkdtemp()))
    >>> chunk = IndexedChunk(chunk_id="c1", doc_key="s3/a.md", service="s3", title="Buckets",
    ...                      heading_path=["Buckets"], text="Use s3:PutObject to upload.")
    >>> index.replace_document("s3/a.md", "v1", [chunk])
    >>> [h.chunk_id for h in index.search("PutObject")]
    ['c1']
    """

    def __init__(
        self,
        directory: Path,
        *,
        weights: tuple[float, ...] = DEFAULT_WEIGHTS,
        busy_timeout_s: float = 30.0,
        durable: bool = True,
        ranking: Ranking | None = None,
        encoder: TextEncoder | None = None,
        encoder_source: Callable[[], TextEncoder | None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_FILE
        if len(weights) not in (3, 4):
            raise ConfigurationError(f"weights are (title, headings, body[, code]), not {weights}")
        self._weights = weights
        #: Query-time ranking options (``docllm.search.ranking``); may be swapped between searches.
        self._ranking_follows_encoder = ranking is None
        if ranking is None:
            ranking = HYBRID_RANKING if encoder is not None else DEFAULT_RANKING
        self.ranking = ranking
        #: The learned encoder (``docllm.search.encoder``); chunk vectors live in memory beside the
        #: BM25 scorer, read from the ``vectors`` table or encoded (and stored) when missing.
        self.encoder = encoder
        #: Asked before each search which encoder to use (the platform's gated one, see
        #: ``service_layer.retriever.ActiveEncoder``); a change swaps the encoder between searches.
        self._encoder_source = encoder_source
        self._vectors: VectorStore | None = None
        self._pending_vectors: list[tuple[int, bytes]] = []
        self._busy_timeout_s = busy_timeout_s
        self._durable = durable
        self._local = threading.local()
        self._all_connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        # Guards the scorer and the service ids; held for a whole search (see class docstring).
        self._read_lock = threading.Lock()
        self._scorer: BM25Scorer | None = None
        self._seq = 0
        self._service_ids: dict[str, int] = {}
        self.directory.mkdir(parents=True, exist_ok=True)
        self._initialise()

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed document survives power loss, not only a process crash.
        conn.execute(f"PRAGMA synchronous = {'FULL' if self._durable else 'NORMAL'}")
        return conn

    def _conn(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections are not meant to be
        # shared, and separate connections give each reader its own WAL snapshot.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._connections_lock:
                self._all_connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise IndexBusyError(f"{self.path} is locked by another writer: {e}") from e
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One read transaction = one consistent snapshot for sync, score and fetch.
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _initialise(self) -> None:
        with self._write() as conn:
            # executescript would COMMIT our transaction; run the statements one by one.
            for statement in filter(str.strip, _SCHEMA.split(";\n")):
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                conn.execute("INSERT INTO meta VALUES ('log_floor', '0')")
                conn.execute("INSERT INTO meta VALUES ('weights', ?)", (json.dumps(self._weights),))
            elif row[0] != SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.path} has index schema {row[0]}, this docllm writes {SCHEMA_VERSION}: "
                    "delete the directory and re-index"
                )
            else:
                stored = tuple(json.loads(conn.execute("SELECT value FROM meta WHERE key = 'weights'").fetchone()[0]))
                if stored != tuple(self._weights):
                    raise ConfigurationError(f"{self.path} was built with weights {stored}, not {self._weights}")

    def close(self) -> None:
        """Close every connection this object opened (in any thread)."""
        with self._connections_lock:
            for conn in self._all_connections:
                conn.close()
            self._all_connections.clear()
        self._local = threading.local()

    # -- writes ------------------------------------------------------------------------------
    def replace_document(self, doc_key: str, version: str, chunks: Sequence[IndexedChunk]) -> None:
        """Swap every chunk of ``doc_key`` for ``chunks`` in one transaction; a no-op when this version
        with these chunk ids is indexed already."""
        self.replace_documents([(doc_key, version, chunks)])

    def replace_documents(self, items: Iterable[tuple[str, str, Sequence[IndexedChunk]]]) -> int:
        """Replace several documents in one transaction (bulk builds); returns how many changed.

        Each document keeps the semantics of :meth:`replace_document`; the
        batch as a whole is atomic too.
        """
        prepared: list[tuple[str, str, list[_Analyzed]]] = []
        for doc_key, version, chunks in items:
            _validate(doc_key, chunks)
            analyzed = []
            # Analysis is the slow part: do it before taking the write lock.
            for chunk in chunks:
                terms, length = weighted_terms(chunk, self._weights)
                analyzed.append(_Analyzed(chunk, length, json.dumps(terms, separators=(",", ":"))))
            prepared.append((doc_key, version, analyzed))
        encoder = self._current_encoder()
        stored_as = _stored_version(encoder)
        if encoder is not None and stored_as is not None:
            # Encoded here, outside the write lock, so readers of this file never encode these chunks.
            chunks_in = [a.chunk for _, _, analyzed in prepared for a in analyzed]
            texts = [passage_text(c.title, c.heading_path, c.text) for c in chunks_in]
            rows = iter(encoder.encode(texts))
            prepared = [
                (doc_key, version, [replace(a, vector=next(rows).astype(np.float32).tobytes()) for a in analyzed])
                for doc_key, version, analyzed in prepared
            ]
        changed = 0
        with self._write() as conn:
            for doc_key, version, analyzed in prepared:
                row = conn.execute("SELECT version FROM documents WHERE doc_key = ?", (doc_key,)).fetchone()
                if row is not None and row[0] == version:
                    held = conn.execute("SELECT chunk_id FROM chunks WHERE doc_key = ?", (doc_key,)).fetchall()
                    if sorted(r[0] for r in held) == sorted(a.chunk.chunk_id for a in analyzed):
                        continue
                self._delete(conn, doc_key)
                self._insert(conn, doc_key, version, analyzed, stored_as)
                changed += 1
            if changed:
                self._trim_log(conn)
        return changed

    def delete_document(self, doc_key: str) -> None:
        """Remove ``doc_key`` and its chunks; unknown keys are a no-op (redelivered deletes)."""
        with self._write() as conn:
            self._delete(conn, doc_key)

    @staticmethod
    def _delete(conn: sqlite3.Connection, doc_key: str) -> None:
        conn.execute("INSERT INTO changes(chunk, added) SELECT id, 0 FROM chunks WHERE doc_key = ?", (doc_key,))
        conn.execute("DELETE FROM vectors WHERE chunk IN (SELECT id FROM chunks WHERE doc_key = ?)", (doc_key,))
        conn.execute("DELETE FROM chunks WHERE doc_key = ?", (doc_key,))
        conn.execute("DELETE FROM doc_services WHERE doc_key = ?", (doc_key,))
        conn.execute("DELETE FROM documents WHERE doc_key = ?", (doc_key,))

    @staticmethod
    def _insert(
        conn: sqlite3.Connection, doc_key: str, version: str, analyzed: list[_Analyzed], encoder_version: str | None
    ) -> None:
        conn.execute("INSERT INTO documents VALUES (?, ?)", (doc_key, version))
        for a in analyzed:
            c = a.chunk
            cur = conn.execute(
                "INSERT INTO chunks(chunk_id, doc_key, service, title, heading_path, text, length, terms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c.chunk_id,
                    doc_key,
                    c.service,
                    c.title,
                    json.dumps(c.heading_path),
                    c.text,
                    a.length,
                    a.terms_json,
                ),
            )
            conn.execute("INSERT INTO changes(chunk, added) VALUES (?, 1)", (cur.lastrowid,))
            if a.vector is not None and encoder_version is not None:
                conn.execute("INSERT INTO vectors VALUES (?, ?, ?)", (encoder_version, cur.lastrowid, a.vector))
        conn.executemany(
            "INSERT OR IGNORE INTO doc_services VALUES (?, ?)",
            [(s, doc_key) for s in {a.chunk.service for a in analyzed}],
        )

    @staticmethod
    def _trim_log(conn: sqlite3.Connection) -> None:
        last = conn.execute("SELECT COALESCE(max(seq), 0) FROM changes").fetchone()[0]
        floor = last - LOG_KEEP
        if floor > 0 and conn.execute("SELECT 1 FROM changes WHERE seq <= ? LIMIT 1", (floor,)).fetchone():
            conn.execute("DELETE FROM changes WHERE seq <= ?", (floor,))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'log_floor'", (str(floor),))

    # -- the in-memory scorer ----------------------------------------------------------------
    def _service_id(self, service: str) -> int:
        return self._service_ids.setdefault(service, len(self._service_ids))

    def _sync(self, conn: sqlite3.Connection) -> BM25Scorer:
        """Bring the scorer up to the snapshot ``conn`` is reading (call with ``_read_lock`` held)."""
        last, floor = conn.execute(
            "SELECT (SELECT COALESCE(max(seq), 0) FROM changes), "
            "(SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'log_floor')"
        ).fetchone()
        scorer = self._scorer
        added: list[int] = []
        if scorer is None or self._seq < floor or scorer.dead_fraction() > 0.5:
            scorer = BM25Scorer()
            if self.encoder is not None:
                self._vectors = VectorStore(self.encoder.dim)
            for slot, service, length, terms in conn.execute("SELECT id, service, length, terms FROM chunks"):
                scorer.add(slot, json.loads(terms), length=length, group=self._service_id(service))
                added.append(slot)
        elif last > self._seq:
            rows = conn.execute(
                "SELECT c.chunk, c.added, ch.service, ch.length, ch.terms FROM changes c "
                "LEFT JOIN chunks ch ON ch.id = c.chunk WHERE c.seq > ? ORDER BY c.seq",
                (self._seq,),
            )
            for slot, is_added, service, length, terms in rows:
                if not is_added:
                    scorer.remove(slot)
                    if self._vectors is not None:
                        self._vectors.remove(slot)
                elif terms is not None:  # None: added, then deleted later in this same catch-up
                    scorer.add(slot, json.loads(terms), length=length, group=self._service_id(service))
                    added.append(slot)
        if self.encoder is not None and self._vectors is None:
            # A new encoder (set_encoder) on a scorer that is kept: every chunk of the snapshot.
            added = [r[0] for r in conn.execute("SELECT id FROM chunks")]
        if self.encoder is not None and added:
            self._encode_slots(conn, added)
        self._scorer, self._seq = scorer, last
        return scorer

    def _encode_slots(self, conn: sqlite3.Connection, slots: list[int]) -> None:
        """Vectors of the chunks of ``slots`` into the vector store: stored ones read, the others encoded
        and queued for :meth:`_store_pending` (call with ``_read_lock`` held)."""
        assert self.encoder is not None
        if self._vectors is None:
            self._vectors = VectorStore(self.encoder.dim)
        stored_as = _stored_version(self.encoder)
        for start in range(0, len(slots), ENCODE_BATCH):
            batch = slots[start : start + ENCODE_BATCH]
            marks = ",".join("?" * len(batch))
            known: dict[int, bytes] = {}
            if stored_as is not None:
                known = dict(
                    conn.execute(
                        f"SELECT chunk, vector FROM vectors WHERE encoder = ? AND chunk IN ({marks})",
                        [stored_as, *batch],
                    ).fetchall()
                )
            rows = conn.execute(f"SELECT id, service FROM chunks WHERE id IN ({marks})", batch).fetchall()
            missing = [r[0] for r in rows if r[0] not in known or len(known[r[0]]) != 4 * self.encoder.dim]
            if missing:
                wanted = ",".join("?" * len(missing))
                texts = {
                    slot: passage_text(title, json.loads(hp), text)
                    for slot, title, hp, text in conn.execute(
                        f"SELECT id, title, heading_path, text FROM chunks WHERE id IN ({wanted})", missing
                    )
                }
                encoded = self.encoder.encode([texts[slot] for slot in missing])
                for i, slot in enumerate(missing):
                    known[slot] = encoded[i].astype(np.float32).tobytes()
                    if stored_as is not None:
                        self._pending_vectors.append((slot, known[slot]))
            self._vectors.add(
                [r[0] for r in rows],
                np.stack([np.frombuffer(known[r[0]], dtype=np.float32) for r in rows])
                if rows
                else np.zeros((0, self.encoder.dim), dtype=np.float32),
                groups=[self._service_id(r[1]) for r in rows],
            )

    def _store_pending(self) -> None:
        """Store the vectors a reader had to encode, so the next process reads them (best effort: a
        busy file or a deleted chunk only means they are encoded again later)."""
        with self._read_lock:
            pending, self._pending_vectors = self._pending_vectors, []
            stored_as = _stored_version(self.encoder)
        if not pending or stored_as is None:
            return
        try:
            with self._write() as conn:
                # Only chunks that still exist: a vector never outlives its chunk.
                conn.executemany(
                    "INSERT OR IGNORE INTO vectors SELECT ?, id, ? FROM chunks WHERE id = ?",
                    [(stored_as, vector, slot) for slot, vector in pending],
                )
        except (IndexBusyError, sqlite3.OperationalError):
            return

    def _current_encoder(self) -> TextEncoder | None:
        """The encoder to use now: the source's answer when there is a source (swapping it in)."""
        if self._encoder_source is not None:
            wanted = self._encoder_source()
            if wanted is not self.encoder:
                self.set_encoder(wanted)
        return self.encoder

    def set_encoder(self, encoder: TextEncoder | None) -> None:
        """Use ``encoder`` from the next search on (None: BM25 alone). The BM25 scorer is kept; the
        vectors are read (or encoded) at the next search. An index built without an explicit ranking
        follows: hybrid with an encoder, BM25's default without."""
        with self._read_lock:
            if encoder is self.encoder:
                return
            self.encoder = encoder
            self._vectors = None
            self._pending_vectors = []
            if self._ranking_follows_encoder:
                self.ranking = HYBRID_RANKING if encoder is not None else DEFAULT_RANKING

    def prune_vectors(self, keep: Iterable[str]) -> int:
        """Delete the stored vectors of every encoder version not in ``keep``; returns rows deleted."""
        kept = sorted(set(keep))
        marks = ",".join("?" * len(kept))
        with self._write() as conn:
            where = f"WHERE encoder NOT IN ({marks})" if kept else ""
            return int(conn.execute(f"DELETE FROM vectors {where}", kept).rowcount)

    def stored_vectors(self, encoder_version: str) -> int:
        """How many chunk vectors of ``encoder_version`` the file holds."""
        row = self._conn().execute("SELECT count(*) FROM vectors WHERE encoder = ?", (encoder_version,)).fetchone()
        return int(row[0])

    def warm_up(self) -> None:
        """Load the scorer now rather than on the first search (servers call this at start)."""
        self._current_encoder()
        with self._read_lock, self._read() as conn:
            self._sync(conn)
        self._store_pending()

    # -- reads -------------------------------------------------------------------------------
    def search(self, query: str, *, k: int = 10, service: str | None = None) -> list[SearchHit]:
        """Best ``k`` chunks for ``query`` by BM25, optionally only those of ``service``."""
        self._current_encoder()
        ranking = self.ranking
        terms = query_terms(query, ranking)
        if not terms or k <= 0:
            return []
        with self._read_lock, self._read() as conn:
            scorer = self._sync(conn)
            stored_later = bool(self._pending_vectors)
            group = None
            if service is not None:
                if service not in self._service_ids:
                    return []
                group = self._service_ids[service]
            ranked = self._rank(conn, scorer, terms, k=k, group=group, ranking=ranking, query=query)
            if not ranked:
                return []
            marks = ",".join("?" * len(ranked))
            rows = {
                r[0]: r[1:]
                for r in conn.execute(
                    f"SELECT id, chunk_id, doc_key, service, title, heading_path, text FROM chunks "
                    f"WHERE id IN ({marks})",
                    [slot for slot, _ in ranked],
                )
            }
        if stored_later:
            self._store_pending()
        hits = []
        for slot, score in ranked:
            chunk_id, doc_key, svc, title, heading_path, text = rows[slot]
            hits.append(
                SearchHit(
                    chunk_id=chunk_id,
                    doc_key=doc_key,
                    service=svc,
                    title=title,
                    heading_path=json.loads(heading_path),
                    text=text,
                    score=score,
                )
            )
        return hits

    @staticmethod
    def _column(conn: sqlite3.Connection, column: str, slots: list[int]) -> dict[int, str]:
        marks = ",".join("?" * len(slots))
        return dict(conn.execute(f"SELECT id, {column} FROM chunks WHERE id IN ({marks})", slots).fetchall())

    def _rank(
        self,
        conn: sqlite3.Connection,
        scorer: BM25Scorer,
        terms: list[str],
        *,
        k: int,
        group: int | None,
        ranking: Ranking,
        query: str = "",
    ) -> list[tuple[int, float]]:
        """BM25 over chunks, then the options of ``ranking`` (``docllm.search.ranking``); with an
        encoder and ``ranking.dense_weight``, fused with the encoder's nearest chunks by RRF."""
        dense_on = ranking.dense_weight > 0.0 and not (ranking.dense_skips_identifiers and names_identifier(query))
        if dense_on and self.encoder is not None and self._vectors is not None:
            depth = max(k, ranking.fusion_depth)
            lexical = scorer.top_k(terms, k=depth, group=group)
            dense = self._vectors.top_k(self.encoder.encode([query])[0], k=depth, group=group)
            return reciprocal_rank_fusion([lexical, dense], weights=[1.0, ranking.dense_weight], limit=k)
        weights = None
        if ranking.prf_terms > 0:
            first = scorer.top_k(terms, k=ranking.prf_docs, group=group)
            if first:
                stored = self._column(conn, "terms", [slot for slot, _ in first])
                feedback = [(score, json.loads(stored[slot])) for slot, score in first]
                weights = rm3_weights(terms, feedback, n_terms=ranking.prf_terms, original_weight=ranking.prf_weight)
                terms = list(weights)
        if ranking.doc_aggregation <= 0.0:
            return scorer.top_k(terms, k=k, group=group, weights=weights)
        ranked = scorer.top_k(terms, k=max(k, AGGREGATE_DEPTH), group=group, weights=weights)
        if not ranked:
            return []
        doc_of = self._column(conn, "doc_key", [slot for slot, _ in ranked])
        return aggregate_documents(ranked, doc_of.__getitem__, ranking.doc_aggregation)[:k]

    def document_versions(self) -> dict[str, str]:
        return dict(self._conn().execute("SELECT doc_key, version FROM documents").fetchall())

    def services(self) -> set[str]:
        return {r[0] for r in self._conn().execute("SELECT DISTINCT service FROM doc_services")}

    def chunk_ids(self, doc_key: str) -> list[str]:
        """Chunk ids indexed for ``doc_key``, in insertion order (for consistency checks)."""
        rows = self._conn().execute("SELECT chunk_id FROM chunks WHERE doc_key = ? ORDER BY id", (doc_key,))
        return [r[0] for r in rows]

    def stats(self) -> IndexStats:
        with self._read() as conn:
            docs = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
            chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        size = sum(p.stat().st_size for p in self.directory.glob(DB_FILE + "*") if p.is_file())
        return IndexStats(documents=docs, chunks=chunks, bytes_on_disk=size)
