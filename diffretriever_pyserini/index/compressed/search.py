"""Searching the compressed store: anchor ranking, MaxSim over the decoded vectors of the best ``ndocs``, optional
exact re-scoring, in query batches over threads (see the package docstring)."""

from __future__ import annotations

from functools import partial

import numpy as np

from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.index.compressed.store import CompressedStore

MAX_BATCH = 256


ROWS_PER_BATCH = 102_400


DEFAULT_NDOCS = 100


DEFAULT_RERANK = 0


def _below(scores: np.ndarray, floor: float) -> np.ndarray:
    """``scores`` (descending) shifted so the first is just below ``floor``, their order and gaps unchanged."""
    if not len(scores):
        return scores
    return scores - max(0.0, float(scores[0]) - floor + 1e-3)


def compressed_search(store: CompressedStore, queries: dict[str, np.ndarray], k: int = 1000,
                      nprobe: int | None = None, ndocs: int = DEFAULT_NDOCS, rerank: int = DEFAULT_RERANK,
                      batch: int | None = None, threads: int = 2) -> dict[str, dict[str, float]]:
    """MaxSim over the compressed store (see the module docstring); ``nprobe`` defaults to the store's own.

    Candidates come from one FAISS search per query with the mean of its vectors: against a passage's anchor,
    MaxSim is sum_i max(0, q_i . a), which equals K_q (mean q) . a whenever no product is negative, so the mean
    vector ranks the anchors as anchor MaxSim does (at 1 / K_q of the cost of searching every query vector). When
    every list is probed (a small corpus, by default) the anchors are decoded once per batch and scanned with one
    matrix product instead (:meth:`CompressedStore.scan`: the same scores). The work is done for ``batch`` queries
    at a time (default: the queries split evenly over ``threads``, at most 256 a batch and at most about
    ROWS_PER_BATCH scored vectors, which keeps a batch's work in cache at K_p = 16; zero query vectors pad a query
    to the longest: they add 0)."""
    import faiss

    if rerank and store.exact is None:
        raise UserError("re-scoring (--maxsim-rerank) needs the float K vectors (kvectors.npy) beside the store")
    ndocs = max(ndocs, rerank, 1)
    ivf = faiss.extract_index_ivf(store.index)
    ivf.nprobe = nprobe or store.manifest["nprobe"]
    scan_all = ivf.nprobe >= ivf.nlist
    if scan_all:
        store.decode_all()
    docids = np.asarray(store.docids, dtype=object)
    qids = list(queries)
    # the lookup tables are NumPy gathers, one core each: batches spread over threads; the decoded residuals'
    # products are BLAS's, already on every core: batches in turn (threads on top of them only wait for each other)
    width = max((int(np.asarray(q).any(axis=-1).sum()) for q in queries.values()), default=0)
    threads = 1 if store.decodes_residuals(width) else threads
    if not batch:  # one batch per thread, if it fits
        rows = max(1, ndocs * store.manifest["k_p"])
        batch = min(MAX_BATCH, max(1, ROWS_PER_BATCH // rows), max(1, -(-len(qids) // max(threads, 1))))
    batches = [qids[b:b + batch] for b in range(0, len(qids), batch)]
    work = partial(_search_batch, store, queries, k, ndocs, rerank, scan_all, docids)
    if threads > 1 and len(batches) > 1:  # NumPy's gathers and FAISS release the GIL
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(work, batches))
    else:
        parts = [work(names) for names in batches]
    return {qid: hits for part in parts for qid, hits in part.items()}


def _search_batch(store: CompressedStore, queries: dict[str, np.ndarray], k: int, ndocs: int, rerank: int,
                  scan_all: bool, docids: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """One batch of :func:`compressed_search`."""
    block = [np.asarray(queries[q], dtype=np.float32) for q in names]
    block = [q[q.any(axis=-1)] for q in block]  # a dropped query position scores 0 against everything
    width = max(1, max(len(q) for q in block))
    padded = np.zeros((len(block), width, block[0].shape[1]), dtype=np.float32)
    for i, q in enumerate(block):
        padded[i, :len(q)] = q
    counts = np.array([len(q) for q in block])
    means = padded.sum(1) / np.maximum(counts, 1)[:, None]
    if scan_all:
        approx, found = store.scan(means, max(k, ndocs), head=ndocs)
    else:
        approx, found = store.index.search(np.ascontiguousarray(means), max(k, ndocs))
    approx = np.maximum(approx, 0.0) * counts[:, None]  # anchor MaxSim
    head = found[:, :ndocs]
    scored = store.batch_maxsim(padded, head)
    if rerank:
        scored = _rescored(store, block, head, scored, rerank)
    return _ranked(names, counts, head, scored, found[:, ndocs:k], approx[:, ndocs:k], k, docids)


def _rescored(store: CompressedStore, block: list[np.ndarray], head: np.ndarray, scored: np.ndarray,
              rerank: int) -> np.ndarray:
    """``scored`` with each query's top ``rerank`` head documents re-scored exactly from the float K vectors and
    the rest of its head shifted just below them (their order kept)."""
    from diffretriever_pyserini.index.multivector import maxsim_block

    scored = scored.copy()
    for i, q in enumerate(block):
        ok = np.flatnonzero(head[i] >= 0)
        if not len(q) or not len(ok):
            continue
        order = ok[np.lexsort((head[i, ok], -scored[i, ok]))]
        top, rest = order[:rerank], order[rerank:]
        scored[i, top] = maxsim_block(q[None], np.asarray(store.exact[head[i, top]], dtype=np.float32))[0]
        scored[i, rest] = _below(scored[i, rest], float(scored[i, top].min()))
    return scored


def _ranked(names: list[str], counts: np.ndarray, head: np.ndarray, scored: np.ndarray, tail: np.ndarray,
            tail_scores: np.ndarray, k: int, docids: np.ndarray) -> dict[str, dict[str, float]]:
    """The batch's runs: the scored ``head`` (its best ``k`` when it holds more), then the ``tail`` (anchor order,
    -1 past the end; sorted or not) shifted just below the lowest head score of its query (as :func:`_below`).
    Each run's hits come in no particular order (the head's best first): the run writer ranks them, ties by docid."""
    ok, tail_ok = head >= 0, tail >= 0
    values = np.where(ok, scored, -np.inf)
    order = np.argsort(-values, axis=1)
    head, values = np.take_along_axis(head, order, axis=1), np.take_along_axis(values, order, axis=1)
    n_head, n_tail = ok.sum(1), tail_ok.sum(1)
    floor = values[np.arange(len(head)), np.maximum(n_head - 1, 0)]
    first = np.where(tail_ok, tail_scores, -np.inf).max(1) if tail.shape[1] else np.full(len(head), -np.inf)
    shift = np.maximum(0.0, first.astype(np.float64) - floor + 1e-3)  # as _below computes it
    width = head.shape[1]  # converted for the whole batch at once, then cut per query
    ids = docids[np.where(np.concatenate([ok, tail_ok], axis=1), np.concatenate([head, tail], axis=1), 0)].tolist()
    scores = np.concatenate([values, tail_scores - shift[:, None]], axis=1).tolist()
    run: dict[str, dict[str, float]] = {}
    for i, qid in enumerate(names):
        if not counts[i] or not n_head[i]:
            run[qid] = {}
            continue
        top = min(int(n_head[i]), k)
        more = min(int(n_tail[i]), k - top)
        if top == width:  # the whole head: the kept hits are one slice
            run[qid] = dict(zip(ids[i][:top + more], scores[i][:top + more]))
        else:
            keep = slice(width, width + more)
            run[qid] = dict(zip(ids[i][:top] + ids[i][keep], scores[i][:top] + scores[i][keep]))
    return run
