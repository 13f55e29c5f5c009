"""OpenSearch adapter of the search port (managed domains with SigV4 ``es``, Serverless with ``aoss``).

Layout: an index template ``docllm-chunks`` applies settings and mappings to
every physical index ``docllm-chunks-v<N>``; readers and writers use the
alias ``docllm-chunks``. :meth:`OpenSearchIndex.reindex_all` builds
``v<N+1>`` beside the live one and swaps the alias in one ``_aliases`` call
(blue/green), so searches never see a half-built index. OpenSearch Serverless
supports index templates and aliases (they are "collection items" there), so
the layout is the same on both services.

Each physical index holds two kinds of documents, told apart by ``kind``:
``chunk`` (one per chunk) and ``document`` (one per ``doc_key``: its version
and the ids of its chunks, so :meth:`document_versions`, idempotency and the
next replacement need no second index).

Writers and readers. The indexer builds the index with ``read_only=False``
(the default): its first write puts the template and creates ``<alias>-v1``.
The API builds it with ``read_only=True``: searches only, never a template,
alias, mapping or index write, so its role needs read permissions alone.
Reads never create anything in either mode; before the first write they
answer empty.

Visibility of writes depends on the service (``signing_service``):

- **managed domain** (``es``): periodic refresh is off (``refresh_interval:
  -1``) and the adapter calls ``_refresh`` after each document's bulk, so on
  a single-shard index searchers flip from the old chunks to the new ones at
  once (read-your-writes for the writer);
- **Serverless** (``aoss``): there is no ``_refresh`` API and no control of
  the refresh interval; the service makes writes searchable on its own,
  seconds later. The adapter never calls ``_refresh`` there, sets no
  ``refresh_interval`` and promises no read-your-writes: a search right after
  :meth:`~OpenSearchIndex.replace_document` may still see the old chunks, or
  for a moment a mix. What it needs to be correct does not depend on search
  visibility: the ids of a document's previous chunks come from its record
  (a realtime ``GET``) as well as from a search, and a full reindex waits
  until the new index counts every document before it swaps the alias.

See ``docs/retrieval.md`` for the limits of these guarantees and for what
only a real cluster can prove.

Hybrid (vector + BM25) retrieval, issue 18. With an ``encoder_source`` that answers a versioned
encoder (the platform's gated one), a physical index is created *for* that encoder version: its
mapping adds the ``knn_vector`` field (:func:`embedding_mapping`, the dimension is fixed at
creation) and the keyword ``encoder_version``, and records the version and dimension in its
``_meta`` (:func:`hybrid_index_body`). Writes then carry each chunk's vector; searches send
:func:`hybrid_query_body` with ``?search_pipeline=docllm-hybrid-rrf`` (:func:`hybrid_search_pipeline`,
put by the writer before such an index goes live). An index built for another version (or for
none) is searched with BM25 alone until a blue/green :meth:`OpenSearchIndex.reindex_all` builds
one for the active encoder: :meth:`OpenSearchIndex.search` explains why this fallback and not a
filtered mix. Managed domains only; on Serverless the path is off (see :data:`SERVERLESS_HYBRID`).
``docs/operating-aws.md`` ("Hybrid retrieval on OpenSearch") says what only a real cluster proves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from docllm.exceptions import ConfigurationError, TransientError
from docllm.ports.search import IndexedChunk, SearchHit, SearchIndex
from docllm.search.analyzer import STOPWORDS
from docllm.search.exceptions import BulkIndexingError, InvalidChunkError

if TYPE_CHECKING:
    import boto3
    from opensearchpy import OpenSearch

    from docllm.search.encoder import TextEncoder

log = logging.getLogger(__name__)

DEFAULT_ALIAS = "docllm-chunks"
ANALYZER = "docllm_english"
#: Same field weights as the embedded engine's defaults (title, headings, body).
FIELD_BOOSTS = {"title": 1.0, "headings": 1.0, "text": 1.0}
#: Page size of the id lookups (search_after pages): well under the 10,000-hit result window.
DEFAULT_PAGE_SIZE = 1000
#: Stored in the ``kind=document`` record only (``_source``): not searchable, no doc values.
CHUNK_IDS_MAPPING: dict[str, Any] = {"type": "keyword", "index": False, "doc_values": False}

# The embedded analyzer's compound-token pattern in Java regex syntax.
_COMPOUND_JAVA = r"[\p{L}\p{N}](?:[\p{L}\p{N}_.:/\-]*[\p{L}\p{N}])?"


def index_settings(shards: int = 1, *, serverless: bool = False) -> dict[str, Any]:
    """Settings of every physical index: the analysis chain closest to :mod:`docllm.search.analyzer`.

    ``pattern`` tokenizer: the same compound tokens (``s3:PutObject``,
    ``1.2.3``, ``dry-run``). ``word_delimiter_graph`` with ``preserve_original``
    keeps the compound and emits its parts, split on delimiters and on
    lower-to-upper case changes but not at letter/digit boundaries (``ec2``
    stays whole); ``catenate_words`` adds the run of word parts joined
    (``s3:PutObject`` -> ``s3PutObject``, ``--dry-run`` -> ``dryrun``). Then
    lowercase, Lucene's English stop words, and the Porter ``english``
    stemmer, kept off tokens holding digits or delimiters by
    ``keyword_marker`` as the embedded analyzer does. Where this chain and
    the embedded analyzer differ is pinned down, token by token, in
    ``tests/unit/search/test_search_opensearch_analysis.py``.

    ``serverless`` leaves out what OpenSearch Serverless manages itself: the
    shard count and the refresh interval (a ``-1`` there, with no
    ``_refresh`` API to make up for it, would be the wrong thing to ask for).

    Examples
    --------
    >>> index_settings()["analysis"]["analyzer"]["docllm_english"]["tokenizer"]
    'docllm_compound'
    >>> sorted(set(index_settings()) - set(index_settings(serverless=True)))
    ['number_of_shards', 'refresh_interval']
    """
    settings: dict[str, Any] = {}
    if not serverless:
        settings["number_of_shards"] = shards
        # One shard + explicit refresh = searchers see whole bulks (see module docstring).
        settings["refresh_interval"] = "-1"
    settings["analysis"] = {
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
    }
    return settings


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
            # kind=document only: the chunk ids of the version the record names.
            "chunk_ids": CHUNK_IDS_MAPPING,
        },
    }


def index_template(alias: str = DEFAULT_ALIAS, shards: int = 1, *, serverless: bool = False) -> dict[str, Any]:
    return {
        "index_patterns": [f"{alias}-v*"],
        "template": {"settings": index_settings(shards, serverless=serverless), "mappings": index_mappings()},
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


#: Name of the vector field the hybrid path adds (issue 18): the encoder's chunk vectors.
EMBEDDING_FIELD = "embedding"
#: Search pipeline that fuses the hybrid query's sub-queries by reciprocal rank, as the embedded engine does.
HYBRID_PIPELINE = "docllm-hybrid-rrf"


def embedding_mapping(dim: int) -> dict[str, Any]:
    """The ``knn_vector`` field of a hybrid index version (merged into :func:`index_mappings`' properties).

    The encoder's vectors are unit length, so inner product is cosine; HNSW on Lucene (the engine
    OpenSearch Serverless supports too). Needs ``index.knn: true`` in the index settings.

    Examples
    --------
    >>> embedding_mapping(256)["embedding"]["method"]["space_type"]
    'innerproduct'
    """
    return {
        EMBEDDING_FIELD: {
            "type": "knn_vector",
            "dimension": dim,
            "method": {
                "name": "hnsw",
                "engine": "lucene",
                "space_type": "innerproduct",
                "parameters": {"m": 16, "ef_construction": 128},
            },
        }
    }


def hybrid_search_pipeline(
    *, lexical_weight: float = 1.0, dense_weight: float = 1.0, rank_constant: int = 60
) -> dict[str, Any]:
    """Body of ``PUT /_search/pipeline/docllm-hybrid-rrf``: reciprocal rank fusion of the sub-queries.

    ``score-ranker-processor`` with ``rrf`` (OpenSearch 2.19+; per-query weights 3.x) is the
    cluster-side twin of :func:`docllm.search.fusion.reciprocal_rank_fusion` with ``k = 60``.

    Examples
    --------
    >>> hybrid_search_pipeline()["phase_results_processors"][0]["score-ranker-processor"]["combination"]["technique"]
    'rrf'
    """
    return {
        "description": "docllm: BM25 and the learned encoder fused by reciprocal rank (issue 18)",
        "phase_results_processors": [
            {
                "score-ranker-processor": {
                    "combination": {
                        "technique": "rrf",
                        "rank_constant": rank_constant,
                        "parameters": {"weights": [lexical_weight, dense_weight]},
                    }
                }
            }
        ],
    }


def hybrid_query_body(
    query: str,
    vector: Iterable[float],
    *,
    k: int,
    service: str | None,
    depth: int = 100,
    encoder_version: str | None = None,
) -> dict[str, Any]:
    """BM25 (as :func:`search_body`) and k-NN on ``embedding`` as one ``hybrid`` query.

    Sent with ``?search_pipeline=docllm-hybrid-rrf`` (:func:`hybrid_search_pipeline`): each
    sub-query returns its best ``depth`` chunks, the pipeline fuses them and the first ``k`` come
    back. The k-NN clause carries the same filter (chunks, and the service) as an efficient
    pre-filter, so a service filter never empties the vector side's candidates. ``vector`` is the
    query encoded by the same encoder version whose vectors the index holds; ``encoder_version``
    adds that version to the k-NN side's filter only (the BM25 side keeps every chunk), so a vector
    of another encoder can never be compared with the query even if one were in the index.

    Examples
    --------
    >>> body = hybrid_query_body("bucket", [0.6, 0.8], k=5, service="s3")
    >>> [next(iter(q)) for q in body["query"]["hybrid"]["queries"]]
    ['bool', 'knn']
    >>> body["query"]["hybrid"]["queries"][1]["knn"]["embedding"]["filter"]["bool"]["filter"][1]
    {'term': {'service': 's3'}}
    """
    lexical = search_body(query, k=depth, service=service)
    filters = list(lexical["query"]["bool"]["filter"])
    if encoder_version is not None:
        filters.append({"term": {ENCODER_VERSION_FIELD: encoder_version}})
    knn: dict[str, Any] = {
        "knn": {
            EMBEDDING_FIELD: {"vector": [float(x) for x in vector], "k": depth, "filter": {"bool": {"filter": filters}}}
        }
    }
    return {
        "size": k,
        # pagination_depth (2.19+, as the RRF processor): each sub-query contributes its best
        # ``depth`` chunks per shard, as the embedded engine fuses ``fusion_depth`` of each; the
        # default would be ``size``, a much shallower fusion.
        "query": {"hybrid": {"queries": [lexical["query"], knn], "pagination_depth": depth}},
        "_source": lexical["_source"],
    }


#: Keyword field of every chunk written with a vector: the encoder version that computed it.
ENCODER_VERSION_FIELD = "encoder_version"
#: Key under the physical index's mapping ``_meta`` where the hybrid layout is recorded.
META_KEY = "docllm"

#: Whether the adapter sends the hybrid path to OpenSearch Serverless (``aoss``): no. AWS's
#: "Configure Neural Search and Hybrid Search on OpenSearch Serverless" lists, for hybrid search,
#: the hybrid query and the *normalization* search processor only (min_max/l2 with
#: arithmetic/geometric/harmonic mean), not the ``score-ranker-processor`` whose ``rrf`` technique
#: this path needs (OpenSearch 2.19+ docs, "Score ranker processor"); and ``knn_vector`` fields
#: need a VECTORSEARCH collection, while ``template.yaml`` deploys a SEARCH collection. A
#: normalization pipeline is not the same fusion as the embedded engine's reciprocal rank, so
#: rather than a different ranking under the same name, Serverless keeps BM25 and says so once
#: in the log. ``tests/integration/search/test_search_opensearch_hybrid_path.py`` pins it.
SERVERLESS_HYBRID = False


def hybrid_index_body(encoder_version: str, dim: int, alias: str | None = None) -> dict[str, Any]:
    """Body of ``PUT <alias>-v<N>`` for an index that holds ``encoder_version``'s ``dim``-wide vectors.

    The whole mapping is sent (the template's fields plus ``embedding`` and ``encoder_version``),
    so the index is the same whether the service merges the body into the template's mapping (it
    does) or not; ``index.knn`` is a static setting, and the vector's dimension cannot change
    after creation: a new encoder means a new index (blue/green). ``_meta`` records what the index
    holds; readers and writers read it back (``GET <alias>/_mapping``).

    Examples
    --------
    >>> body = hybrid_index_body("enc-1", 8, alias="docllm-chunks")
    >>> body["mappings"]["_meta"]
    {'docllm': {'encoder_version': 'enc-1', 'embedding_dim': 8}}
    >>> body["mappings"]["properties"]["embedding"]["dimension"], body["aliases"]
    (8, {'docllm-chunks': {}})
    """
    mappings = index_mappings()
    mappings["properties"] = {
        **mappings["properties"],
        **embedding_mapping(dim),
        ENCODER_VERSION_FIELD: {"type": "keyword"},
    }
    mappings["_meta"] = {META_KEY: {"encoder_version": encoder_version, "embedding_dim": dim}}
    body: dict[str, Any] = {"settings": {"index.knn": True}, "mappings": mappings}
    if alias is not None:
        body["aliases"] = {alias: {}}
    return body


@dataclass(frozen=True)
class IndexLayout:
    """What the live physical index holds: its name and, for a hybrid index, its encoder's version and width."""

    name: str
    encoder_version: str | None = None
    dim: int | None = None

    @classmethod
    def of(cls, name: str, mappings: dict[str, Any]) -> IndexLayout:
        meta = (mappings.get("_meta") or {}).get(META_KEY) or {}
        version, dim = meta.get("encoder_version"), meta.get("embedding_dim")
        if not isinstance(version, str) or not isinstance(dim, int):
            return cls(name)
        return cls(name, version, dim)

    def holds(self, encoder: TextEncoder | None) -> bool:
        """Whether this index's vectors are ``encoder``'s (same version and width)."""
        version = versioned(encoder)
        if version is None or encoder is None:
            return False
        return (version, encoder.dim) == (self.encoder_version, self.dim)


def versioned(encoder: TextEncoder | None) -> str | None:
    """The version an encoder's vectors are recorded under: its card's; ``None`` without a card.

    An encoder without a card cannot be told from another one, so it never writes or queries
    vectors here (the embedded index likewise keeps no stored vectors for it).
    """
    return encoder.card.version if encoder is not None and encoder.card is not None else None


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
        ``signing_service`` also says which service's rules apply (``_refresh`` or not,
        see the module docstring), including when ``client`` is injected.
    alias
        The alias readers and writers use; physical indexes are ``<alias>-v<N>``.
    read_only
        Searches only: every write method raises :class:`~docllm.exceptions.ConfigurationError`
        and nothing (template, alias, mapping, index) is ever written. For the API.
    page_size
        Hits per page of the ``search_after`` lookups (a document's chunk ids, all versions).
    max_bulk_bytes
        Upper bound of one ``_bulk`` body (managed domains reject > 10 MiB on small instances).
    max_retries, backoff_s, sleep
        Retries of throttled (429) bulks: ``backoff_s * 2**attempt`` seconds apart.
    searchable_timeout_s, poll_s, clock
        Serverless only: how long :meth:`reindex_all` waits, polling ``_count`` every
        ``poll_s`` seconds, for the new index to make every document searchable
        before it swaps the alias. ``clock`` also times ``layout_ttl_s``.
    encoder_source
        Asked before each write and search which learned encoder to use (the platform's gated
        one, ``service_layer.retriever.ActiveEncoder``, as the embedded index is given); ``None``
        or an answer of ``None``: BM25 alone, exactly as without it. An encoder is used only
        where the live index was created for its version (module docstring); never on Serverless.
    layout_ttl_s
        How long a search trusts what it last read of the live index (``GET <alias>/_mapping``:
        its name and encoder version) before reading it again; writers always read it afresh.

    Examples
    --------
    >>> index = OpenSearchIndex(endpoint="https://search-x.eu-west-1.es.amazonaws.com", region="eu-west-1")
    >>> index.alias, index.serverless, index.read_only
    ('docllm-chunks', False, False)
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
        read_only: bool = False,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_bulk_bytes: int = 5 * 1024 * 1024,
        max_retries: int = 6,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        searchable_timeout_s: float = 120.0,
        poll_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        encoder_source: Callable[[], TextEncoder | None] | None = None,
        layout_ttl_s: float = 5.0,
    ) -> None:
        if client is None and endpoint is None:
            raise ConfigurationError("OpenSearchIndex needs a client or an endpoint")
        if page_size < 1:
            raise ConfigurationError("page_size must be at least 1")
        self._client = client
        self._endpoint = endpoint
        self._region = region
        self._signing_service = signing_service
        self._session = session
        self.alias = alias
        self.read_only = read_only
        self.serverless = signing_service == "aoss"
        self.page_size = page_size
        self.max_bulk_bytes = max_bulk_bytes
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self.searchable_timeout_s = searchable_timeout_s
        self.poll_s = poll_s
        self._clock = clock
        self._ready = False
        self._encoder_source = encoder_source
        self.layout_ttl_s = layout_ttl_s
        self._layout: IndexLayout | None = None
        self._layout_at = float("-inf")
        self._pipeline_put = False
        self._noted: set[tuple[str, ...]] = set()

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

    def _require_writer(self, what: str) -> None:
        if self.read_only:
            raise ConfigurationError(f"{what}: this OpenSearchIndex is read-only (the API's); only the indexer writes")

    def ensure_index(self) -> None:
        """Put the template, and create ``<alias>-v1`` behind the alias unless it exists (idempotent).

        An index that predates a mapping field added since (``chunk_ids``) gets it by a
        ``PUT _mapping``; adding a field is the one mapping change that needs no reindex.
        """
        self._require_writer("ensure_index")
        if self._ready:
            return
        self.client.indices.put_index_template(
            name=self.alias, body=index_template(self.alias, serverless=self.serverless)
        )
        if not self.client.indices.exists_alias(name=self.alias):
            first = f"{self.alias}-v1"
            if not self.client.indices.exists(index=first):
                self.client.indices.create(index=first, body=self._create_body(self.active_encoder(), self.alias))
            else:
                self.client.indices.update_aliases(body={"actions": [{"add": {"index": first, "alias": self.alias}}]})
                self._add_missing_fields(first)
        else:
            self._add_missing_fields(self.live_index())
        self._ready = True

    def _add_missing_fields(self, index: str) -> None:
        self.client.indices.put_mapping(index=index, body={"properties": {"chunk_ids": CHUNK_IDS_MAPPING}})

    # -- hybrid retrieval (issue 18) ---------------------------------------------------------
    def active_encoder(self) -> TextEncoder | None:
        """The encoder the source answers now, if this index may use one; ``None``: BM25 alone.

        ``None`` without a source (the source is not even asked), on Serverless (see
        :data:`SERVERLESS_HYBRID`) and for an encoder without a card (no version to record).
        """
        if self._encoder_source is None:
            return None
        if self.serverless and not SERVERLESS_HYBRID:
            self._note(
                ("serverless",),
                "hybrid retrieval is off on OpenSearch Serverless (no rrf score-ranker-processor there, and a SEARCH"
                " collection holds no knn_vector): %s searches with BM25 alone",
                self.alias,
            )
            return None
        encoder = self._encoder_source()
        if encoder is not None and versioned(encoder) is None:
            self._note(("unversioned",), "an encoder without a card has no version to record: %s uses BM25", self.alias)
            return None
        return encoder

    def _note(self, key: tuple[str, ...], message: str, *args: object) -> None:
        """Log ``message`` once per ``key`` in this process (a fallback explained, not repeated per search)."""
        if key not in self._noted:
            self._noted.add(key)
            log.warning(message, *args)

    def layout(self, *, max_age_s: float = 0.0) -> IndexLayout | None:
        """The live physical index and the encoder version it was created for, or ``None`` before any write.

        One ``GET <alias>/_mapping`` (the ``_meta`` of :func:`hybrid_index_body`), reused for
        ``max_age_s`` seconds of ``clock``; ``0`` always reads.
        """
        now = self._clock()
        if self._layout is not None and max_age_s > 0 and now - self._layout_at < max_age_s:
            return self._layout
        from opensearchpy.exceptions import NotFoundError

        try:
            found = self.client.indices.get_mapping(index=self.alias)
        except NotFoundError:
            return None
        if not found:
            return None
        # One index behind the alias (swaps are atomic); the newest if a hand-made alias held more.
        name = max(found, key=lambda n: (len(n), n))
        self._layout, self._layout_at = IndexLayout.of(name, found[name].get("mappings") or {}), now
        return self._layout

    def _ensure_pipeline(self) -> None:
        """``PUT _search/pipeline/docllm-hybrid-rrf``, once per process (the PUT itself is idempotent).

        The writer puts it before it creates an index for an encoder, so it exists before any
        reader can send a hybrid query. Weights as the embedded engine's hybrid ranking.
        """
        if self._pipeline_put:
            return
        from docllm.search.fusion import RRF_K
        from docllm.search.sqlite_index import HYBRID_RANKING

        body = hybrid_search_pipeline(dense_weight=HYBRID_RANKING.dense_weight, rank_constant=RRF_K)
        self.client.search_pipeline.put(id=HYBRID_PIPELINE, body=body)
        self._pipeline_put = True

    def _create_body(self, encoder: TextEncoder | None, alias: str | None) -> dict[str, Any] | None:
        """Body of a new physical index: today's (template only) without an encoder, else one for its vectors."""
        version = versioned(encoder)
        if encoder is None or version is None:
            return {"aliases": {alias: {}}} if alias is not None else None
        self._ensure_pipeline()
        return hybrid_index_body(version, encoder.dim, alias)

    @staticmethod
    def _vectors(encoder: TextEncoder | None, chunks: Sequence[IndexedChunk]) -> list[list[float] | None] | None:
        """Each chunk's unit vector (as the embedded index encodes passages); ``None`` for a text with no pieces.

        A zero vector has no direction to rank by: the chunk is left off the k-NN side and found by
        BM25 alone (the embedded engine ranks it last on that side, which RRF weighs about the same).
        """
        if encoder is None or not chunks:
            return None
        from docllm.search.encoder import passage_text

        rows = encoder.encode([passage_text(c.title, c.heading_path, c.text) for c in chunks])
        return [[float(x) for x in row] if row.any() else None for row in rows]

    def physical_indexes(self) -> list[str]:
        """Physical indexes of this alias family, oldest first (``_resolve/index``, supported on both services)."""
        found = self.client.indices.resolve_index(name=f"{self.alias}-v*")
        pattern = re.compile(rf"^{re.escape(self.alias)}-v(\d+)$")
        names = [i["name"] for i in found.get("indices", []) if pattern.match(i["name"])]
        return sorted(names, key=lambda n: int(n.rsplit("v", 1)[1]))

    def live_index(self) -> str:
        return next(iter(self.client.indices.get_alias(name=self.alias)))

    def _refresh(self, index: str) -> None:
        """Make writes searchable now: managed domains only (Serverless has no ``_refresh`` API)."""
        if not self.serverless:
            self.client.indices.refresh(index=index)

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

    # -- lookups -----------------------------------------------------------------------------
    def _stored_record(self, doc_key: str, index: str) -> dict[str, Any] | None:
        """The ``kind=document`` record, by a realtime ``GET`` (sees writes not yet searchable)."""
        from opensearchpy.exceptions import NotFoundError

        try:
            got = self.client.get(index=index, id=document_doc_id(doc_key))
        except NotFoundError:
            return None
        source = got.get("_source") if got.get("found") else None
        return source if isinstance(source, dict) else None

    def _search_pages(
        self, index: str, query: dict[str, Any], sort_field: str, source: Any
    ) -> Iterator[dict[str, Any]]:
        """Every hit of ``query``, ``page_size`` at a time, by ``search_after`` on a unique keyword.

        No cap (unlike ``size``, which the 10,000-hit result window bounds) and no server-side
        state: scroll and point-in-time contexts are not available on Serverless, ``search_after``
        is a plain search on both services.
        """
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": self.page_size,
                "query": query,
                "sort": [{sort_field: "asc"}],
                "_source": source,
            }
            if after is not None:
                body["search_after"] = after
            hits = self.client.search(index=index, body=body)["hits"]["hits"]
            yield from hits
            if len(hits) < self.page_size:
                return
            after = hits[-1]["sort"]

    def _searched_chunk_ids(self, doc_key: str, index: str) -> list[str]:
        """Physical ids of the *searchable* chunks of ``doc_key`` (``chunk_id`` is unique per document)."""
        query = {"bool": {"filter": [{"term": {"kind": "chunk"}}, {"term": {"doc_key": doc_key}}]}}
        return [h["_id"] for h in self._search_pages(index, query, "chunk_id", False)]

    def _stale_ids(self, doc_key: str, index: str, record: dict[str, Any] | None) -> list[str]:
        """Every chunk of ``doc_key`` that may be in ``index``: the record's list, plus what a search finds.

        The record (read in real time) covers writes a search cannot see yet, which on Serverless
        is the last several seconds; the search covers records from before ``chunk_ids``
        existed and chunks a failed, partly applied bulk left behind.
        """
        recorded = [chunk_doc_id(doc_key, c) for c in (record or {}).get("chunk_ids", [])]
        return list(dict.fromkeys([*recorded, *self._searched_chunk_ids(doc_key, index)]))

    @staticmethod
    def _actions(
        doc_key: str,
        version: str,
        chunks: Sequence[IndexedChunk],
        index: str,
        stale: Iterable[str],
        *,
        vectors: Sequence[list[float] | None] | None = None,
        encoder_version: str | None = None,
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        fresh = set()
        for i, c in enumerate(chunks):
            _id = chunk_doc_id(doc_key, c.chunk_id)
            fresh.add(_id)
            source: dict[str, Any] = {
                "kind": "chunk",
                "chunk_id": c.chunk_id,
                "doc_key": doc_key,
                "version": version,
                "service": c.service,
                "title": c.title,
                "headings": " \n ".join(c.heading_path),
                "heading_path": c.heading_path,
                "text": c.text,
            }
            vector = vectors[i] if vectors is not None else None
            if vector is not None and encoder_version is not None:
                source[EMBEDDING_FIELD] = vector
                source[ENCODER_VERSION_FIELD] = encoder_version
            yield {"index": {"_index": index, "_id": _id}}, source
        for _id in stale:
            if _id not in fresh:
                yield {"delete": {"_index": index, "_id": _id}}, None
        # Last: the record is the commit marker of the whole bulk.
        yield (
            {"index": {"_index": index, "_id": document_doc_id(doc_key)}},
            {
                "kind": "document",
                "doc_key": doc_key,
                "version": version,
                "chunk_ids": [c.chunk_id for c in chunks],
            },
        )

    # -- port --------------------------------------------------------------------------------
    def replace_document(self, doc_key: str, version: str, chunks: Sequence[IndexedChunk]) -> None:
        """Swap the chunks of ``doc_key``; a no-op when ``version`` and these chunk ids are already indexed.

        Searchable at once afterwards on a managed domain; on Serverless within the
        service's refresh (seconds), with no read-your-writes.
        """
        self._require_writer("replace_document")
        seen: set[str] = set()
        for c in chunks:
            if c.doc_key != doc_key or c.chunk_id in seen:
                raise InvalidChunkError(f"chunk {c.chunk_id!r} does not belong once to {doc_key!r}")
            seen.add(c.chunk_id)
        self.ensure_index()
        encoder = self.active_encoder()
        if encoder is None:
            index = self.live_index()
        else:
            layout = self.layout()  # afresh: a writer must never put one encoder's vectors in another's index
            index = layout.name if layout is not None else self.live_index()
            if layout is None or not layout.holds(encoder):
                self._note_stale(layout, encoder)
                encoder = None
        record = self._stored_record(doc_key, index)
        if (
            record is not None
            and str(record.get("version")) == version
            and sorted(record.get("chunk_ids") or []) == sorted(seen)
        ):
            return  # a redelivery; the same version with other chunks (boilerplate changed) is replaced
        stale = self._stale_ids(doc_key, index, record)
        if encoder is not None:
            self._ensure_pipeline()
        vectors = self._vectors(encoder, chunks)
        tag = versioned(encoder)
        actions = self._actions(doc_key, version, chunks, index, stale, vectors=vectors, encoder_version=tag)
        self._bulk(actions, index)
        self._refresh(index)

    def _note_stale(self, layout: IndexLayout | None, encoder: TextEncoder) -> None:
        name = layout.name if layout is not None else self.alias
        held = layout.encoder_version if layout is not None else None
        self._note(
            ("stale", name, versioned(encoder) or ""),
            "%s holds %s, the active encoder is %s: BM25 alone, no vectors written, until a blue/green"
            " reindex_all builds an index for it (docs/operating-aws.md, 'Hybrid retrieval on OpenSearch')",
            name,
            f"vectors of {held}" if held else "no vectors",
            versioned(encoder),
        )

    def delete_document(self, doc_key: str) -> None:
        self._require_writer("delete_document")
        self.ensure_index()
        index = self.live_index()
        stale = self._stale_ids(doc_key, index, self._stored_record(doc_key, index))
        actions: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
            ({"delete": {"_index": index, "_id": _id}}, None) for _id in stale
        ]
        actions.append(({"delete": {"_index": index, "_id": document_doc_id(doc_key)}}, None))
        self._bulk(actions, index)
        self._refresh(index)

    def _read(self, body: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """A search on the alias, or ``None`` before anything was ever indexed (no alias yet)."""
        from opensearchpy.exceptions import NotFoundError

        try:
            if params is None:
                response: dict[str, Any] = self.client.search(index=self.alias, body=body)
            else:
                response = self.client.search(index=self.alias, body=body, params=params)
        except NotFoundError:
            return None
        return response

    def search(self, query: str, *, k: int = 10, service: str | None = None) -> list[SearchHit]:
        """The best ``k`` chunks: BM25 alone, or BM25 and the encoder fused by reciprocal rank.

        Hybrid exactly when the live index was created for the active encoder's version (its
        ``_meta``): the query is encoded and :func:`hybrid_query_body` is sent with
        ``search_pipeline=docllm-hybrid-rrf``. Any other index (created for no encoder, or for
        another version) gets the BM25 :func:`search_body`, logged once. Why that fallback rather
        than a hybrid query whose k-NN side is filtered to the active version's chunks: vectors are
        only ever written into an index created for their version, so such an index holds *no*
        chunk of the active version and the filtered k-NN side would be empty; the pipeline would
        then fuse BM25 with nothing, the same ranking at a higher cost, and a query vector of
        another width than the index's field is rejected outright. The version term stays in the
        k-NN filter as a second guard. Readers trust the layout for ``layout_ttl_s``; a hybrid
        request the service rejects (400: a pipeline deleted by hand, a layout older than an alias
        swap) is answered with BM25 and logged, and the layout is read again.
        """
        if not query.strip() or k <= 0:
            return []
        encoder = self.active_encoder()
        if encoder is not None:
            layout = self.layout(max_age_s=self.layout_ttl_s)
            if layout is None:
                return []
            if not layout.holds(encoder):
                self._note_stale(layout, encoder)
            else:
                hybrid = self._hybrid(query, encoder, layout, k=k, service=service)
                if hybrid is not None:
                    return hybrid
        response = self._read(search_body(query, k=k, service=service))
        if response is None:
            return []
        return self._hits(response)

    def _hybrid(
        self, query: str, encoder: TextEncoder, layout: IndexLayout, *, k: int, service: str | None
    ) -> list[SearchHit] | None:
        """The hybrid search, or ``None`` when BM25 must answer (a query with no pieces, a 400)."""
        from opensearchpy.exceptions import RequestError

        vector = encoder.encode([query])[0]
        if not vector.any():
            return None  # no piece of the query is known to the encoder: BM25 alone, as the embedded engine
        from docllm.search.sqlite_index import HYBRID_RANKING

        body = hybrid_query_body(
            query,
            [float(x) for x in vector],
            k=k,
            service=service,
            depth=max(k, HYBRID_RANKING.fusion_depth),
            encoder_version=layout.encoder_version,
        )
        try:
            response = self._read(body, {"search_pipeline": HYBRID_PIPELINE})
        except RequestError as e:
            self._layout = None
            log.warning("hybrid search on %s rejected (%s): answered with BM25 alone", layout.name, e.error)
            return None
        return [] if response is None else self._hits(response)

    @staticmethod
    def _hits(response: dict[str, Any]) -> list[SearchHit]:
        return [
            SearchHit(
                **{f: h["_source"][f] for f in ("chunk_id", "doc_key", "service", "title", "text")},
                heading_path=h["_source"]["heading_path"],
                score=float(h["_score"]),
            )
            for h in response["hits"]["hits"]
        ]

    def document_versions(self) -> dict[str, str]:
        from opensearchpy.exceptions import NotFoundError

        query = {"term": {"kind": "document"}}
        try:
            return {
                h["_source"]["doc_key"]: h["_source"]["version"]
                for h in self._search_pages(self.alias, query, "doc_key", ["doc_key", "version"])
            }
        except NotFoundError:
            return {}

    def services(self) -> set[str]:
        body = {
            "size": 0,
            "query": {"term": {"kind": "chunk"}},
            "aggs": {"services": {"terms": {"field": "service", "size": 1000}}},
        }
        response = self._read(body)
        if response is None:
            return set()
        return {b["key"] for b in response["aggregations"]["services"]["buckets"]}

    # -- blue/green full reindex -------------------------------------------------------------
    def reindex_all(
        self, documents: Iterable[tuple[str, str, Sequence[IndexedChunk]]], *, delete_old: bool = True
    ) -> str:
        """Build ``<alias>-v<N+1>`` from ``(doc_key, version, chunks)`` and swap the alias to it atomically.

        Searches keep hitting the old index until the swap. On a managed domain the new index is
        refreshed first; on Serverless the swap waits until ``_count`` on the new index reaches
        every document written (up to ``searchable_timeout_s``, else :class:`TransientError` and
        the alias stays where it was). Returns the new index's name.

        An operator's action: creating and deleting indexes needs more than the indexer's role.
        """
        self._require_writer("reindex_all")
        self.ensure_index()
        existing = self.physical_indexes()
        next_no = int(existing[-1].rsplit("v", 1)[1]) + 1 if existing else 1
        new = f"{self.alias}-v{next_no}"
        # One encoder for the whole build, the one the new index's _meta names (the source may move on).
        encoder = self.active_encoder()
        body = self._create_body(encoder, None)
        if body is None:
            self.client.indices.create(index=new)
        else:
            self.client.indices.create(index=new, body=body)
        written = 0

        def actions() -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
            nonlocal written
            for doc_key, version, chunks in documents:
                vectors = self._vectors(encoder, chunks)
                for action in self._actions(
                    doc_key, version, chunks, new, (), vectors=vectors, encoder_version=versioned(encoder)
                ):
                    written += 1
                    yield action

        self._bulk(actions(), new)
        if self.serverless:
            self._await_searchable(new, written)
        else:
            self._refresh(new)
        old = list(self.client.indices.get_alias(name=self.alias))
        swap = [{"remove": {"index": o, "alias": self.alias}} for o in old]
        swap.append({"add": {"index": new, "alias": self.alias}})
        self.client.indices.update_aliases(body={"actions": swap})
        self._layout = None  # the live index changed: read its layout again
        if delete_old:
            for o in old:
                self.client.indices.delete(index=o)
        return new

    def _await_searchable(self, index: str, expected: int) -> None:
        """Poll ``_count`` until ``expected`` documents of ``index`` are searchable (Serverless)."""
        deadline = self._clock() + self.searchable_timeout_s
        while True:
            count = int(self.client.count(index=index)["count"])
            if count >= expected:
                return
            if self._clock() >= deadline:
                raise TransientError(
                    f"{index}: {count} of {expected} documents searchable after {self.searchable_timeout_s:g} s;"
                    " the alias was not swapped"
                )
            self._sleep(self.poll_s)
