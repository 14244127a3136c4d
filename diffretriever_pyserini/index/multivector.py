"""Multi-vector (MaxSim) dense retrieval: K_q query vectors against K_p passage vectors per document.

score(q, p) = sum_i max(0, max_j <q_i, p_j>)   (arXiv 2605.07210; ColBERT-style, each max clamped at 0)

Storage: the encoder's ``kvectors.npy`` (N, K_p, H), written streaming in float32 or float16 (memory bounded by the
batch), is the exact store; :func:`build_row_index` adds a FAISS index over its non-zero rows with a ``docid`` file
holding one line per row (Pyserini's repeated-docid convention) and a ``manifest.json``.
Search: :func:`exact_search` is brute force in blocks (bounded memory); :func:`candidate_search` takes each query
vector's nearest rows from the (approximate) row index, maps them to documents, and re-scores those candidates with
exact MaxSim. Both return runs (``{qid: {docid: score}}``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffretriever_pyserini.integrity import verify_files
from diffretriever_pyserini.encode.writers import AtomicDir, read_metadata

log = logging.getLogger(__name__)

DEFAULT_DEPTH = 256
"""Rows fetched per query vector for candidate generation (the candidate depth)."""
DEFAULT_NPROBE = 32
DOC_BLOCK = 2048
QUERY_BLOCK = 64


def maxsim_block(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """(nq, K_q, H) queries, (nd, K_p, H) documents -> (nq, nd) MaxSim scores, each max clamped at 0."""
    sims = np.einsum("aqh,dph->adqp", queries, docs, optimize=True)  # (nq, nd, K_q, K_p)
    return np.maximum(sims.max(axis=3), 0.0).sum(axis=2)


@dataclass
class MultiVectorStore:
    """The exact store of one dense encoding folder: K vectors per document and the document ids."""

    folder: Path
    vectors: np.ndarray  # (N, K_p, H), memory-mapped
    docids: list[str]

    @classmethod
    def open(cls, dense_dir) -> "MultiVectorStore":
        folder = Path(dense_dir)
        files = read_metadata(folder).get("files") or {}
        verify_files(folder, {name: files[name] for name in ("kvectors.npy", "docid") if name in files})
        vectors = np.load(folder / "kvectors.npy", mmap_mode="r")
        docids = (folder / "docid").read_text(encoding="utf-8").split("\n")[: vectors.shape[0]]
        if len(docids) != vectors.shape[0]:
            raise ValueError(f"{folder}: {len(docids)} docids for {vectors.shape[0]} K-vector rows")
        return cls(folder, vectors, docids)

    def bytes_per_doc(self) -> float:
        return self.vectors.shape[1] * self.vectors.shape[2] * self.vectors.dtype.itemsize


def _ranked_run(qids, scores: np.ndarray, docids, k: int) -> dict[str, dict[str, float]]:
    """Top-k per row of (nq, n) scores; ties broken by docid through the run writer."""
    run = {}
    k = min(k, scores.shape[1])
    for i, qid in enumerate(qids):
        top = np.argpartition(-scores[i], k - 1)[:k] if k < scores.shape[1] else np.arange(scores.shape[1])
        run[qid] = {docids[j]: float(scores[i, j]) for j in top}
    return run


def exact_search(store: MultiVectorStore, queries: dict[str, np.ndarray], k: int = 1000,
                 doc_block: int = DOC_BLOCK, query_block: int = QUERY_BLOCK) -> dict[str, dict[str, float]]:
    """Brute-force MaxSim of every query against every document, in blocks; memory O(query_block * doc_block)."""
    qids = list(queries)
    run: dict[str, dict[str, float]] = {}
    n = store.vectors.shape[0]
    for qs in range(0, len(qids), query_block):
        block_ids = qids[qs:qs + query_block]
        q = np.stack([queries[x] for x in block_ids]).astype(np.float32)
        scores = np.empty((len(block_ids), n), dtype=np.float32)
        for ds in range(0, n, doc_block):
            scores[:, ds:ds + doc_block] = maxsim_block(q, np.asarray(store.vectors[ds:ds + doc_block],
                                                                      dtype=np.float32))
        run.update(_ranked_run(block_ids, scores, store.docids, k))
    return run


def build_row_index(dense_dir, kind: str = "ivf", nlist: int | None = None, dtype: str = "float32") -> Path:
    """FAISS index over the non-zero K vectors of ``dense_dir`` -> ``dense_dir/rows`` (``index``, ``docid`` with one
    line per row, ``rowdoc.npy`` row -> document number, ``manifest.json``).

    ``kind``: ``flat`` (exact inner product) or ``ivf`` (inverted lists, trained on the rows; searched with nprobe).
    ``dtype`` float16 stores the vectors as a 16-bit scalar quantizer.
    """
    import faiss

    store = MultiVectorStore.open(dense_dir)
    n, kp, dim = store.vectors.shape
    keep = np.abs(np.asarray(store.vectors, dtype=np.float32)).sum(-1) > 0  # (N, K_p): dropped positions are zero
    rowdoc = np.repeat(np.arange(n), kp)[keep.reshape(-1)]
    rows = np.asarray(store.vectors, dtype=np.float32).reshape(-1, dim)[keep.reshape(-1)]
    if kind == "flat":
        index = (faiss.IndexFlatIP(dim) if dtype == "float32" else
                 faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT))
    elif kind == "ivf":
        nlist = nlist or max(1, min(4096, len(rows) // 39, int(4 * np.sqrt(len(rows)))))  # FAISS: >= 39 points/list
        quantizer = faiss.IndexFlatIP(dim)
        index = (faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT) if dtype == "float32" else
                 faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                               faiss.METRIC_INNER_PRODUCT))
        rng = np.random.default_rng(0)
        sample = rows[rng.choice(len(rows), size=min(len(rows), 256 * nlist), replace=False)]
        index.train(sample)
    else:
        raise ValueError(f"unknown row index kind {kind!r}; use flat or ivf")
    index.add(rows)
    out = Path(dense_dir) / "rows"
    with AtomicDir(out) as tmp:
        faiss.write_index(index, str(tmp / "index"))
        np.save(tmp / "rowdoc.npy", rowdoc.astype(np.int64))
        with open(tmp / "docid", "w", encoding="utf-8") as f:
            for d in rowdoc:
                f.write(store.docids[d] + "\n")
        manifest = {"k_p": kp, "dimension": dim, "dtype": dtype, "documents": n, "rows": int(len(rows)),
                    "kind": kind, "nlist": nlist, "vectors_dtype": str(store.vectors.dtype),
                    "bytes_per_doc_exact_store": store.bytes_per_doc(),
                    "bytes_per_doc_row_index": (tmp / "index").stat().st_size / n}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


class RowIndex:
    """A built row index: FAISS index + row -> document map."""

    def __init__(self, dense_dir, nprobe: int = DEFAULT_NPROBE):
        import faiss

        folder = Path(dense_dir) / "rows"
        self.index = faiss.read_index(str(folder / "index"))
        if hasattr(self.index, "nprobe"):
            self.index.nprobe = nprobe
        self.rowdoc = np.load(folder / "rowdoc.npy")
        self.manifest = json.loads((folder / "manifest.json").read_text())


def candidate_search(store: MultiVectorStore, rows: RowIndex, queries: dict[str, np.ndarray], k: int = 1000,
                     depth: int = DEFAULT_DEPTH) -> dict[str, dict[str, float]]:
    """Candidates from each query vector's ``depth`` nearest rows, re-scored with exact MaxSim."""
    qids = list(queries)
    q_all = np.stack([queries[x] for x in qids]).astype(np.float32)  # (nq, K_q, H)
    nq, kq, dim = q_all.shape
    _, hits = rows.index.search(q_all.reshape(-1, dim), depth)  # (nq * K_q, depth)
    hits = hits.reshape(nq, kq * depth)
    run = {}
    for i, qid in enumerate(qids):
        docs = np.unique(rows.rowdoc[hits[i][hits[i] >= 0]])
        if len(docs) == 0:
            run[qid] = {}
            continue
        scores = maxsim_block(q_all[i:i + 1], np.asarray(store.vectors[docs], dtype=np.float32))
        run.update(_ranked_run([qid], scores, [store.docids[d] for d in docs], k))
    return run


def top10_agreement(exact: dict, approx: dict) -> float:
    """Fraction of (query, rank) positions of the exact top-10 that ``approx`` reproduces at the same rank."""
    from diffretriever_pyserini.search.runs import ranked

    same = total = 0
    for qid, hits in exact.items():
        truth = [d for d, _ in ranked(hits, 10)]
        got = [d for d, _ in ranked(approx.get(qid, {}), 10)]
        total += len(truth)
        same += sum(1 for r, d in enumerate(truth) if r < len(got) and got[r] == d)
    return same / total if total else 1.0


def agreement(exact: dict, approx: dict, k: int) -> dict:
    """How an approximate run reproduces exact search on the same queries: mean recall of the exact top ``k`` in
    the approximate top ``k``, the same at 10, and the top-10 rank agreement (:func:`top10_agreement`)."""
    from diffretriever_pyserini.search.runs import ranked

    def recall(depth: int) -> float:
        values = []
        for qid, hits in exact.items():
            truth = {d for d, _ in ranked(hits, depth)}
            if truth:
                values.append(len(truth & {d for d, _ in ranked(approx.get(qid, {}), depth)}) / len(truth))
        return float(np.mean(values)) if values else 1.0

    return {"queries": len(exact), f"recall@{k}": round(recall(k), 6), "recall@10": round(recall(10), 6),
            "top10_agreement": round(top10_agreement(exact, approx), 6)}
