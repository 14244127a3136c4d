"""Searching through Pyserini's own searchers, returning runs (``{qid: {docid: score}}``).

Dense: ``FaissSearcher`` with our query encoder. Sparse: ``LuceneImpactSearcher`` with its sparse view. BM25:
``LuceneSearcher``. Pyserini hybrid: ``HybridSearcher`` over the two. With ``remove_query`` (ArguAna, Quora) one
extra hit is fetched and a hit whose docid equals the query id is dropped.
"""

from __future__ import annotations

import logging

from tqdm import tqdm

from diffretriever_pyserini.fusion import pyserini_hybrid
from diffretriever_pyserini.pyserini_bridge.hook import prepare_pyserini
from diffretriever_pyserini.search.runs import Run, finish_run, search_depth

log = logging.getLogger(__name__)


def _collect(results) -> Run:
    return {qid: {hit.docid: float(hit.score) for hit in hits} for qid, hits in results.items()}


def dense_searcher(index_dir, query_encoder):
    """Pyserini's ``FaissSearcher`` over a FAISS folder, its files verified first (:mod:`~.integrity`)."""
    from diffretriever_pyserini.integrity import check_docid_count, verify_files
    from diffretriever_pyserini.encode.writers import read_metadata

    meta = read_metadata(index_dir)
    if meta.get("files"):  # the recorded sizes and hashes cover the docid file too
        verify_files(index_dir, meta["files"])
    elif meta.get("documents") is not None:  # a folder from before the files were recorded
        check_docid_count(index_dir, int(meta["documents"]))
    prepare_pyserini()
    from pyserini.search.faiss import FaissSearcher

    return FaissSearcher(str(index_dir), query_encoder)


def meanpool_query_encoder(model_dir: str):
    """Pyserini's own ``AutoQueryEncoder`` with mean pooling and L2 normalisation (the mean-pooling control)."""
    prepare_pyserini()
    from pyserini.encode import AutoQueryEncoder

    return AutoQueryEncoder(model_dir, device="cpu", pooling="mean", l2_norm=True)


def impact_searcher(index_dir, query_encoder):
    prepare_pyserini()
    from pyserini.search.lucene import LuceneImpactSearcher

    return LuceneImpactSearcher(str(index_dir), query_encoder)


def search_topics(searcher, topics: dict[str, str], k: int = 1000, remove_query: bool = False,
                  threads: int = 1, **search_options) -> Run:
    """Batch search with any Pyserini searcher exposing ``batch_search(queries, qids, k, threads)``."""
    qids = list(topics)
    depth = search_depth(k, remove_query)
    results = searcher.batch_search([topics[q] for q in qids], qids, k=depth, threads=threads, **search_options)
    return finish_run(_collect(results), k, remove_query)


def bm25_search(index_dir, topics: dict[str, str], k: int = 1000, remove_query: bool = False,
                threads: int = 1, fields: dict[str, float] | None = None) -> Run:
    """BM25 (k1 = 0.9, b = 0.4, Pyserini's defaults) over a Lucene index; ``fields`` = {field: boost}. Runs in a
    child process with a bounded Java heap, topics in batches, keeping (docid, score) of each hit only
    (:mod:`.bm25`)."""
    from diffretriever_pyserini.pyserini_bridge.bm25 import bm25_run

    depth = search_depth(k, remove_query)
    return finish_run(bm25_run(index_dir, topics, depth, threads, fields), k, remove_query)


def hybrid_search(dense, sparse, topics: dict[str, str], k: int = 1000, alpha: float = 1.0,
                  normalization: bool = True, remove_query: bool = False) -> Run:
    """Pyserini's ``HybridSearcher`` (``alpha * sparse + dense``) over a dense and a sparse searcher.

    With ``remove_query`` a hit equal to the query id is dropped from each list before the lists are normalised
    and fused (as the ``hybrid`` mode does), by the same rule in :func:`~diffretriever_pyserini.fusion.pyserini_hybrid`.
    Pyserini's normalisation divides by zero on one-hit or all-equal lists; such a query is fused by that function
    too (range-0 lists centred at 0) and logged.
    """
    prepare_pyserini()
    from pyserini.search.hybrid import HybridSearcher

    searcher = HybridSearcher(dense, sparse)
    depth = search_depth(k, remove_query)
    run: Run = {}
    degenerate = 0
    for qid, text in tqdm(topics.items(), desc="hybrid search", unit="q", mininterval=2.0):
        if remove_query:
            run[qid] = _fused(dense, sparse, qid, text, k, alpha, normalization, remove_query=True)
            continue
        try:
            # k = 2 x depth keeps every fused document: Pyserini cuts its sorted list at k with ties in set order
            # (which changes with PYTHONHASHSEED); finish_run cuts ours with ties broken by docid
            hits = searcher.search(text, k0=depth, k=2 * depth, alpha=alpha, normalization=normalization)
            run[qid] = {h.docid: float(h.score) for h in hits}
        except ZeroDivisionError:
            degenerate += 1
            run[qid] = _fused(dense, sparse, qid, text, k, alpha, normalization, remove_query=False)
    if degenerate:
        log.warning("%d queries had a one-hit or all-equal list; fused without Pyserini's division by zero",
                    degenerate)
    return finish_run(run, k, remove_query)


def _fused(dense, sparse, qid: str, text: str, k: int, alpha: float, normalization: bool,
           remove_query: bool) -> dict[str, float]:
    """Pyserini's hybrid rule on one query's dense and sparse lists, each cut to its top ``k`` after its self hit
    is dropped (``remove_query``), as the lists the ``hybrid`` mode fuses."""
    depth = search_depth(k, remove_query)
    lists = [finish_run({qid: {h.docid: float(h.score) for h in s.search(text, depth)}}, k, remove_query)
             for s in (dense, sparse)]
    return pyserini_hybrid(lists[0], lists[1], alpha, normalization)[qid]
