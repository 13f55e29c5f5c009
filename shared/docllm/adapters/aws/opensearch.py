"""OpenSearch adapter of the search port (managed domains with SigV4 ``es``, Serverless with ``aoss``).

Layout: an index template ``docllm-chunks`` applies settings and mappings to
every physical index ``docllm-chunks-v<N>``; readers and writers use the
alias ``docllm-chunks``. :meth:`OpenSearchIndex.reindex_all` builds
``v<N+1>`` beside the live one and swaps the alias in one ``_aliases`` call
(blue/green), so searches never see a half-built index.

Each physical index holds two kinds of documents, told apart by ``kind``:
``chunk`` (one per chunk) and ``document`` (one per ``doc_key``: its version,
so :meth:`document_versions` and idempotency need no second index).

Atomic replacement: one ``_bulk`` carries the document record, the new
chunks and deletes of the old ones; the index's periodic refresh is off
(``refresh_interval: -1``) and the adapter refreshes after the whole bulk,
so on a single-shard index searchers see the old document or the new one.
See ``docs/retrieval.md`` for the limits of that guarantee.

Reserved for hybrid (vector + BM25) retrieval, not created yet: a
``embedding`` ``knn_vector`` field and the query shape of
:func:`hybrid_query_body`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from docllm.exceptions import ConfigurationError, TransientError
from docllm.ports.search import IndexedChunk, SearchHit, SearchIndex
from docllm.search.analyzer import STOPWORDS
from docllm.search.exceptions import BulkIndexingError, InvalidChunkError

if TYPE_CHECKING:
    import boto3
    from opensearchpy import OpenSearch

DEFAULT_ALIAS = "docllm-chunks"
ANALYZER = "docllm_english"
#: Same field weights as the embedded engine's defaults (title, headings, body).
FIELD_BOOSTS = {"title": 1.0, "headings": 1.0, "text": 1.0}
_MAX_RESULT_WINDOW = 10_000

# The embedded analyzer's compound-token pattern in Java regex syntax.
_COMPOUND_JAVA = r"[\p{L}\p{N}](?:[\p{L}\p{N}_.:/\-]*[\p{L}\p{N}])?"


def index_settings(shards: int = 1) -> dict[str, Any]:
    """Settings of every physical index: the analysis chain closest to :mod:`docllm.search.analyzer`.

    ``pattern`` tokenizer: the same compound tokens (``s3:PutObject``,
    ``1.2.3``, ``dry-run``). ``word_delimiter_graph`` with ``preserve_original``
    keeps the compound and emits its parts, split on delimiters and case
    changes but not letter/digit boundaries (``ec2`` stays whole);
    ``catenate_words`` adds ``PutObject`` from ``Put`` + ``Object``. Then
    lowercase, Lucene's English stop words, and the Porter ``english``
    stemmer, kept off tokens holding digits or delimiters by
    ``keyword_marker`` as the embedded analyzer does.

    Examples
    --------
    >>> index_settings()["analysis"]["analyzer"]["docllm_english"]["tokenizer"]
    'docllm_compound'
    """
    return {
        "number_of_shards": shards,
        # One shard + explicit refresh = searchers see whole bulks (see module docstring).
        "refresh_interval": "-1",
        "analysis": {
            "char_filter": {
                # Markdown escapes: "versioning\-suspended" -> "versioning-suspended".
                "docllm_md_escape": {
                    "type": "pattern_replace",
                    "pattern": r"\\(?=[^\w\s])",
                    "replacement": "",
                }
            },
            "tokenizer": {"docllm_compound": {"type": "pattern", "pattern": _COMPOUND_JAVA, "group": 0}},
            "filter": {
                "docllm_parts": {
                    "type": "word_delimiter_graph",
                    "preserve_original": True,
                    "split_on_case_change": True,
                    "split_on_numerics": False,
                    "generate_word_parts": True,
                    "generate_number_parts": True,
                    "catenate_words": True,
                    "stem_english_possessive": False,
                },
                "docllm_stop": {"type": "stop", "stopwords": sorted(STOPWORDS)},
                "docllm_keep_identifiers": {"type": "keyword_marker", "keywords_pattern": ".*[^a-z].*"},
                "docllm_stem": {"type": "stemmer", "language": "english"},
                "docllm_long": {"type": "length", "max": 64},
            },
            "analyzer": {
                ANALYZER: {
                    "type": "custom",
                    "char_filter": ["docllm_md_escape"],
                    "tokenizer": "docllm_compound",
                    "filter": [
                        "docllm_parts",
                        "lowercase",
                        "docllm_stop",
                        "docllm_long",
                        "docllm_keep_identifiers",
                        "docllm_stem",
                    ],
                }
            },
        },
    }


def index_mappings() -> dict[str, Any]:
    """Field mappings; ``dynamic: strict`` so a typo in an adapter change fails loudly.

    Examples
    --------
    >>> index_mappings()["properties"]["service"]["type"]
    'keyword'
    """
    text = {"type": "text", "analyzer": ANALYZER}
    return {
        "dynamic": "strict",
        "properties": {
            "kind": {"type": "keyword"},
            "chunk_id": {"type": "keyword"},
            "doc_key": {"type": "keyword"},
            "version": {"type": "keyword"},
            "service": {"type": "keyword"},
            "title": text,
            "headings": text,
            "heading_path": {"type": "keyword", "index": False},
            "text": text,
        },
    }


def index_template(alias: str = DEFAULT_ALIAS, shards: int = 1) -> dict[str, Any]:
    return {
        "index_patterns": [f"{alias}-v*"],
        "template": {"settings": index_settings(shards), "mappings": index_mappings()},
    }


def search_body(query: str, *, k: int, service: str | None) -> dict[str, Any]:
    """BM25 query over title, headings and text, filtered to chunks (and a service).

    Examples
    --------
    >>> search_body("bucket", k=5, service="s3")["query"]["bool"]["filter"][1]
    {'term': {'service': 's3'}}
    """
    filters: list[dict[str, Any]] = [{"term": {"kind": "chunk"}}]
    if service is not None:
        filters.append({"term": {"service": service}})
    return {
        "size": k,
        "query": {
            "bool": {
                "must": [
                    {
                        "multi_match": {
                            "query": query,
                            "type": "most_fields",
                            "fields": [f"{f}^{b:g}" for f, b in FIELD_BOOSTS.items()],
                            "operator": "or",
                        }
                    }
                ],
                "filter": filters,
            }
        },
        "sort": [{"_score": "desc"}, {"chunk_id": "asc"}],
        "_source": ["chunk_id", "doc_key", "service", "title", "heading_path", "text"],
    }


def hybrid_query_body(query: str, vector: Sequence[float], *, k: int, service: str | None) -> dict[str, Any]:
    """The reserved hybrid shape (BM25 + k-NN on ``embedding``), for a later vector stage.

    Needs the neural-search ``hybrid`` query, a ``knn_vector`` field named
    ``embedding`` in a new index version and a search pipeline that
    normalises and combines the two scores; none of these exist yet.
    """
    lexical = search_body(query, k=k, service=service)
    knn: dict[str, Any] = {"knn": {"embedding": {"vector": list(vector), "k": k}}}
    return {
        "size": k,
        "query": {"hybrid": {"queries": [lexical["query"], knn]}},
        "_source": lexical["_source"],
    }


def chunk_doc_id(doc_key: str, chunk_id: str) -> str:
    """Physical ``_id`` of a chunk: unique even if two documents reuse a chunk id."""
    return "c-" + hashlib.sha256(f"{doc_key}\x1f{chunk_id}".encode()).hexdigest()[:40]


def document_doc_id(doc_key: str) -> str:
    return "d-" + hashlib.sha256(doc_key.encode()).hexdigest()[:40]


def _status(error: Exception) -> int | None:
    code = getattr(error, "status_code", None)
    return code if isinstance(code, int) else None


class OpenSearchIndex(SearchIndex):
    """The :class:`~docllm.ports.search.SearchIndex` on Amazon OpenSearch Service or Serverless.

    Parameters
    ----------
    client
        An ``opensearchpy.OpenSearch``; built lazily from ``endpoint`` when omitted.
    endpoint, region, signing_service, session
        Used only to build the client: SigV4 with ``es`` (domains) or
        ``aoss`` (Serverless), credentials from ``session`` (default session when omitted).
    alias
        The alias readers and writers use; physical indexes are ``<alias>-v<N>``.
    max_bulk_bytes
        Upper bound of one ``_bulk`` body (managed domains reject > 10 MiB on small instances).
    max_retries, backoff_s, sleep
        Retries of throttled (429) bulks: ``backoff_s * 2**attempt`` seconds apart.

    Examples
    --------
    >>> index = OpenSearchIndex(endpoint="https://search-x.eu-west-1.es.amazonaws.com", region="eu-west-1")
    >>> index.alias
    'docllm-chunks'
    """

    def __init__(
        self,
        *,
        client: OpenSearch | None = None,
        endpoint: str | None = None,
        region: str | None = None,
        signing_service: Literal["es", "aoss"] = "es",
        session: boto3.Session | None = None,
        alias: str = DEFAULT_ALIAS,
        max_bulk_bytes: int = 5 * 1024 * 1024,
        max_retries: int = 6,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if client is None and endpoint is None:
            raise ConfigurationError("OpenSearchIndex needs a client or an endpoint")
        self._client = client
        self._endpoint = endpoint
        self._region = region
        self._signing_service = signing_service
        self._session = session
        self.alias = alias
        self.max_bulk_bytes = max_bulk_bytes
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._ready = False

    # -- client and bootstrap ----------------------------------------------------------------
    @property
    def client(self) -> OpenSearch:
        if self._client is None:
            self._client = self._build_client()
        return self._client

    def _build_client(self) -> OpenSearch:
        import boto3
        from opensearchpy import AWSV4SignerAuth, OpenSearch, RequestsHttpConnection

        session = self._session or boto3.Session()
        region = self._region or session.region_name
        credentials = session.get_credentials()
        if region is None or credentials is None:
            raise ConfigurationError("OpenSearch SigV4 needs an AWS region and credentials")
        return OpenSearch(
            hosts=[self._endpoint],
            http_auth=AWSV4SignerAuth(credentials, region, self._signing_service),
            use_ssl=True,
            verify_certs=True,
            connection_class=RequestsHttpConnection,
            timeout=30,
        )

    def ensure_index(self) -> None:
        """Create the template, and ``<alias>-v1`` behind the alias, unless they exist (idempotent)."""
        if self._ready:
            return
        self.client.indices.put_index_template(name=self.alias, body=index_template(self.alias))
        if not self.client.indices.exists_alias(name=self.alias):
            first = f"{self.alias}-v1"
            if not self.client.indices.exists(index=first):
                self.client.indices.create(index=first, body={"aliases": {self.alias: {}}})
            else:
                self.client.indices.update_aliases(body={"actions": [{"add": {"index": first, "alias": self.alias}}]})
        self._ready = True

    def physical_indexes(self) -> list[str]:
        """Physical indexes of this alias family, oldest first."""
        found = self.client.indices.get(index=f"{self.alias}-v*")
        pattern = re.compile(rf"^{re.escape(self.alias)}-v(\d+)$")
        return sorted((n for n in found if pattern.match(n)), key=lambda n: int(n.rsplit("v", 1)[1]))

    def live_index(self) -> str:
        return next(iter(self.client.indices.get_alias(name=self.alias)))

    # -- bulk with byte limits and 429 backoff -----------------------------------------------
    def _bulk(self, actions: Iterable[tuple[dict[str, Any], dict[str, Any] | None]], index: str) -> None:
        batch: list[str] = []
        size = 0
        for action, source in actions:
            lines = json.dumps(action) + "\n" + (json.dumps(source) + "\n" if source is not None else "")
            n = len(lines.encode())
            if n > self.max_bulk_bytes:
                raise BulkIndexingError(f"one action is {n} bytes, over the {self.max_bulk_bytes} byte bulk limit")
            if batch and size + n > self.max_bulk_bytes:
                self._send_bulk(batch, index)
                batch, size = [], 0
            batch.append(lines)
            size += n
        if batch:
            self._send_bulk(batch, index)

    def _send_bulk(self, entries: list[str], index: str) -> None:
        pending = entries
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.bulk(body="".join(pending), index=index)
            except Exception as e:
                if _status(e) != 429:
                    raise
                retry = pending
            else:
                if not response.get("errors"):
                    return
                retry = []
                for entry, item in zip(pending, response["items"], strict=True):
                    result = next(iter(item.values()))
                    status = result.get("status", 200)
                    if status == 429:
                        retry.append(entry)
                    elif status >= 300 and not (status == 404 and "delete" in item):
                        raise BulkIndexingError(f"bulk item rejected ({status}): {result.get('error')}")
                if not retry:
                    return
            pending = retry
            if attempt < self.max_retries:
                self._sleep(self.backoff_s * (2**attempt))
        raise TransientError(f"OpenSearch still throttling after {self.max_retries} retries")

    # -- port --------------------------------------------------------------------------------
    def _stored_version(self, doc_key: str, index: str) -> str | None:
        from opensearchpy.exceptions import NotFoundError

        try:
            got = self.client.get(index=index, id=document_doc_id(doc_key))
        except NotFoundError:
            return None
        return str(got["_source"]["version"]) if got.get("found") else None

    def _chunk_ids_of(self, doc_key: str, index: str) -> list[str]:
        body = {
            "size": _MAX_RESULT_WINDOW,
            "query": {"bool": {"filter": [{"term": {"kind": "chunk"}}, {"term": {"doc_key": doc_key}}]}},
            "_source": False,
        }
        return [h["_id"] for h in self.client.search(index=index, body=body)["hits"]["hits"]]

    @staticmethod
    def _actions(
        doc_key: str, version: str, chunks: Sequence[IndexedChunk], index: str, stale: Iterable[str]
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        fresh = set()
        for c in chunks:
            _id = chunk_doc_id(doc_key, c.chunk_id)
            fresh.add(_id)
            yield (
                {"index": {"_index": index, "_id": _id}},
                {
                    "kind": "chunk",
                    "chunk_id": c.chunk_id,
                    "doc_key": doc_key,
                    "version": version,
                    "service": c.service,
                    "title": c.title,
                    "headings": " \n ".join(c.heading_path),
                    "heading_path": c.heading_path,
                    "text": c.text,
                },
            )
        for _id in stale:
            if _id not in fresh:
                yield {"delete": {"_index": index, "_id": _id}}, None
        yield (
            {"index": {"_index": index, "_id": document_doc_id(doc_key)}},
            {
                "kind": "document",
                "doc_key": doc_key,
                "version": version,
            },
        )

    def replace_document(self, doc_key: str, version: str, chunks: Sequence[IndexedChunk]) -> None:
        """Swap the chunks of ``doc_key``; a no-op when ``version`` is already indexed."""
        seen: set[str] = set()
        for c in chunks:
            if c.doc_key != doc_key or c.chunk_id in seen:
                raise InvalidChunkError(f"chunk {c.chunk_id!r} does not belong once to {doc_key!r}")
            seen.add(c.chunk_id)
        self.ensure_index()
        index = self.live_index()
        if self._stored_version(doc_key, index) == version:
            return
        stale = self._chunk_ids_of(doc_key, index)
        self._bulk(self._actions(doc_key, version, chunks, index, stale), index)
        self.client.indices.refresh(index=index)

    def delete_document(self, doc_key: str) -> None:
        self.ensure_index()
        index = self.live_index()
        stale = self._chunk_ids_of(doc_key, index)
        actions = [({"delete": {"_index": index, "_id": _id}}, None) for _id in stale]
        actions.append(({"delete": {"_index": index, "_id": document_doc_id(doc_key)}}, None))
        self._bulk(actions, index)
        self.client.indices.refresh(index=index)

    def search(self, query: str, *, k: int = 10, service: str | None = None) -> list[SearchHit]:
        if not query.strip() or k <= 0:
            return []
        self.ensure_index()
        response = self.client.search(index=self.alias, body=search_body(query, k=k, service=service))
        return [
            SearchHit(
                **{f: h["_source"][f] for f in ("chunk_id", "doc_key", "service", "title", "text")},
                heading_path=h["_source"]["heading_path"],
                score=float(h["_score"]),
            )
            for h in response["hits"]["hits"]
        ]

    def document_versions(self) -> dict[str, str]:
        self.ensure_index()
        out: dict[str, str] = {}
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": 1000,
                "query": {"term": {"kind": "document"}},
                "sort": [{"doc_key": "asc"}],
                "_source": ["doc_key", "version"],
            }
            if after is not None:
                body["search_after"] = after
            hits = self.client.search(index=self.alias, body=body)["hits"]["hits"]
            for h in hits:
                out[h["_source"]["doc_key"]] = h["_source"]["version"]
            if len(hits) < 1000:
                return out
            after = hits[-1]["sort"]

    def services(self) -> set[str]:
        self.ensure_index()
        body = {
            "size": 0,
            "query": {"term": {"kind": "chunk"}},
            "aggs": {"services": {"terms": {"field": "service", "size": 1000}}},
        }
        response = self.client.search(index=self.alias, body=body)
        return {b["key"] for b in response["aggregations"]["services"]["buckets"]}

    # -- blue/green full reindex -------------------------------------------------------------
    def reindex_all(
        self, documents: Iterable[tuple[str, str, Sequence[IndexedChunk]]], *, delete_old: bool = True
    ) -> str:
        """Build ``<alias>-v<N+1>`` from ``(doc_key, version, chunks)`` and swap the alias to it atomically.

        Searches keep hitting the old index until the swap. Returns the new index's name.
        """
        self.ensure_index()
        existing = self.physical_indexes()
        next_no = int(existing[-1].rsplit("v", 1)[1]) + 1 if existing else 1
        new = f"{self.alias}-v{next_no}"
        self.client.indices.create(index=new)

        def actions() -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
            for doc_key, version, chunks in documents:
                yield from self._actions(doc_key, version, chunks, new, ())

        self._bulk(actions(), new)
        self.client.indices.refresh(index=new)
        old = list(self.client.indices.get_alias(name=self.alias))
        swap = [{"remove": {"index": o, "alias": self.alias}} for o in old]
        swap.append({"add": {"index": new, "alias": self.alias}})
        self.client.indices.update_aliases(body={"actions": swap})
        if delete_old:
            for o in old:
                self.client.indices.delete(index=o)
        return new
