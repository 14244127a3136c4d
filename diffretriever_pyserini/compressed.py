"""A compressed multi-vector store searched with MaxSim: each passage as an anchor (the mean of its K vectors) in a
FAISS IVF index with 4-bit scalar codes, each of its K vectors as a 4-bit product-quantized residual from the decoded
anchor.

Why anchors: the K mask vectors of one passage are nearly parallel (the fine-tuned CPU model's four have median
cosine 0.998 with their mean on SciFact), so one precise anchor per passage plus K cheap residuals costs far less
than K independent codes at the same error (ColBERTv2 and PLAID code residuals from shared centroids; here the
centroid is the passage's own anchor). Vectors that are not alike still decode correctly, with a larger error, which
the manifest reports (``relative_error`` and ``anchor_cosine``, measured on the training sample).

At Dream's shape (3,584 dimensions, K_p = 16) the float16 K vectors cost 115 KB per passage (about 1 TB for MS
MARCO); here a passage costs about 5.4 KB: half a byte per anchor dimension, 16 bytes of FAISS ids, and half a byte
per 8 dimensions of each residual. Layout of ``<dense>/pq/``:

- ``anchors.faiss``: IndexIVFScalarQuantizer (inner product, 4 bits per dimension of the anchor's residual from its
  list centroid, ``nprobe`` stored, ids = document numbers, a direct map to decode any anchor);
- ``residual_pq.npy`` (m, 16, H / m) float32: the residual sub-quantizer centroids;
- ``residual_codes.npy`` (vectors, m / 2) uint8: two 4-bit codes per byte, in document order;
- ``docstart.npy`` (N + 1,) int64: document d owns vectors ``docstart[d]:docstart[d + 1]``;
- ``manifest.json``: shapes, parameters, errors, bytes per document (every file above), build time.

Search (:func:`compressed_search`): one batched FAISS search of every query vector over the anchors gives the
candidates and their anchor scores (a vector's score for a candidate it did not return taken as its lowest returned
one); the best ``ndocs`` candidates by that anchor MaxSim are scored with MaxSim over their decoded vectors (anchor +
residual) and ranked first, the other candidates follow in anchor order, up to ``k``; optionally the top ``rerank``
are re-scored exactly from a float copy of the K vectors. Every max is clamped at 0, as in exact MaxSim. The FAISS
lists and the code arrays are memory-mapped, so a search holds in memory the centroids, the direct map (8 bytes per
passage) and one batch of candidates, whatever the corpus size.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.writers import AtomicDir, _raw_to_npy, exclusive

log = logging.getLogger(__name__)

FOLDER = "pq"
KSUB = 16
TRAIN_DOCS = 8192
TRAIN_VECTORS = 32_768
KMEANS_ITERATIONS = 10
CHUNK_DOCS = 1024
SCAN_DOCUMENTS = 20_000
DEFAULT_NDOCS = 256
DEFAULT_RERANK = 0
RESIDUAL_DIMS = 8
SEARCH_FILES = ("anchors.faiss", "residual_pq.npy", "residual_codes.npy", "docstart.npy", "manifest.json")


def default_nlist(documents: int) -> int:
    """A power of two near 4 sqrt(documents), at most documents / 39 (FAISS's minimum training points per list)."""
    target = max(1.0, min(4 * np.sqrt(documents), documents / 39))
    return 1 << int(np.floor(np.log2(target)))


def default_nprobe(nlist: int, documents: int) -> int:
    """Lists that hold about SCAN_DOCUMENTS anchors (all of them in a small corpus, where inverted lists cost
    recall and buy little), at least 8."""
    return int(min(nlist, max(8, np.ceil(nlist * SCAN_DOCUMENTS / max(documents, 1)))))


def residual_m(dim: int, size: int = RESIDUAL_DIMS) -> int:
    """An even number of sub-quantizers of about ``size`` dimensions (two 4-bit codes share a byte)."""
    for s in range(size, 0, -1):
        if dim % s == 0 and (dim // s) % 2 == 0:
            return dim // s
    raise UserError(f"no even number of residual sub-quantizers divides the dimension {dim}")


# 4-bit product quantization in NumPy, batched over all sub-quantizers at once

def _assign(x: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """(n, H) vectors, (m, ksub, d) tables -> (n, m) uint8 nearest-centroid codes (squared L2), in bounded chunks."""
    m, ksub, dsub = tables.shape
    half_norms = 0.5 * (tables ** 2).sum(-1)[:, None, :]  # (m, 1, ksub)
    codes = np.empty((len(x), m), dtype=np.uint8)
    step = max(1, (1 << 24) // (m * ksub))
    for s in range(0, len(x), step):
        sub = np.asarray(x[s:s + step], dtype=np.float32).reshape(-1, m, dsub).transpose(1, 0, 2)  # (m, n, d)
        codes[s:s + step] = np.argmax(np.matmul(sub, tables.transpose(0, 2, 1)) - half_norms, axis=2).T
    return codes


def train_pq(x: np.ndarray, m: int, ksub: int = KSUB, iterations: int = KMEANS_ITERATIONS,
             seed: int = 0) -> np.ndarray:
    """k-means (``ksub`` centroids) on each of the ``m`` sub-vectors of ``x`` (n, H), all at once: (m, ksub, H/m)."""
    n, dim = x.shape
    x = np.ascontiguousarray(x, dtype=np.float32)
    picks = np.random.default_rng(seed).choice(n, size=ksub, replace=n < ksub)
    tables = x[picks].reshape(ksub, m, dim // m).transpose(1, 0, 2).copy()
    base = np.arange(m)[None, :] * ksub
    subs = x.reshape(n, m, dim // m)
    for _ in range(iterations):
        slots = (_assign(x, tables).astype(np.int64) + base).ravel()  # sub-quantizer * ksub + code
        counts = np.bincount(slots, minlength=m * ksub)
        sums = np.stack([np.bincount(slots, weights=subs[:, :, d].ravel(), minlength=m * ksub)
                         for d in range(dim // m)], axis=1)
        filled = counts > 0  # an empty centroid keeps its place
        flat = tables.reshape(m * ksub, -1)
        flat[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    return tables


def pack(codes: np.ndarray) -> np.ndarray:
    """(n, m) codes below 16 -> (n, m / 2) bytes, the even sub-quantizer in the low half."""
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)


def unpack(packed: np.ndarray) -> np.ndarray:
    codes = np.empty((len(packed), packed.shape[1] * 2), dtype=np.uint8)
    codes[:, 0::2], codes[:, 1::2] = packed & 15, packed >> 4
    return codes


def pq_decode(codes: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """(n, m) codes -> (n, H) float32 vectors."""
    m = tables.shape[0]
    return tables[np.arange(m)[None, :], np.asarray(codes, dtype=np.intp)].reshape(len(codes), -1)


def _nonzero(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, K, H) block -> its non-zero vectors (rows, H) float32 (dropped positions are all zero) and (n,) counts."""
    block = np.asarray(block, dtype=np.float32)
    keep = np.abs(block).sum(-1) > 0
    return block[keep], keep.sum(1)


def _anchors(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The mean of each document's non-zero vectors (zero for a document without any)."""
    sums = np.zeros((len(counts), rows.shape[1]), dtype=np.float32)
    has = counts > 0
    if has.any():  # the rows come grouped by document
        sums[has] = np.add.reduceat(rows, np.concatenate([[0], np.cumsum(counts)[:-1]])[has], axis=0)
    return sums / np.maximum(counts, 1)[:, None]


def _training_docs(vectors, want: int, pieces: int = 16) -> np.ndarray:
    """About ``want`` documents' K vectors from ``pieces`` contiguous ranges spread over the store."""
    n = vectors.shape[0]
    per_piece = max(1, -(-want // pieces))
    starts = np.unique(np.linspace(0, max(n - per_piece, 0), num=min(pieces, n), dtype=np.int64))
    return np.concatenate([np.asarray(vectors[s:s + per_piece], dtype=np.float32) for s in starts])


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """concatenate(arange(s, e) for s, e in zip(starts, ends)), vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + shift


def _anchor_index(dim: int, nlist: int):
    import faiss

    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_4bit,
                                          faiss.METRIC_INNER_PRODUCT)
    index.sq.rangestat = faiss.ScalarQuantizer.RS_optim  # per-dimension ranges fitted to the data
    index.cp.max_points_per_centroid = 64  # k-means on at most 64 anchors per list (training time)
    return index


def _decoded_anchors(index, centroids: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """The anchors as the index stores them: list centroid + the 4-bit codes of the rest, decoded."""
    _, lists = index.quantizer.search(np.ascontiguousarray(anchors), 1)
    base = centroids[lists[:, 0]]
    return base + index.sq.decode(index.sq.compute_codes(np.ascontiguousarray(anchors - base)))


def build_compressed(vectors, out: str | Path, nlist: int | None = None, residual_dims: int = RESIDUAL_DIMS,
                     seed: int = 0, chunk_docs: int = CHUNK_DOCS, progress: bool = False) -> Path:
    """Compress ``vectors`` (N, K, H), anything sliceable by document ranges (a memory-mapped ``kvectors.npy``),
    into the store folder ``out``, reading it in chunks of ``chunk_docs`` documents (memory: one chunk and the
    training sample). ``residual_dims``: dimensions per 4-bit residual sub-quantizer."""
    import faiss

    start = time.perf_counter()
    n, k, dim = vectors.shape
    if n == 0:
        raise UserError("cannot compress an empty multi-vector store", out)
    m = residual_m(dim, residual_dims)
    rows, counts = _nonzero(_training_docs(vectors, TRAIN_DOCS))
    if not len(rows):
        raise UserError("every K vector of the store is zero; nothing to compress", out)
    anchors = _anchors(rows, counts)
    nlist = min(nlist or default_nlist(n), int((counts > 0).sum()))
    index = _anchor_index(dim, nlist)
    index.train(np.ascontiguousarray(anchors[counts > 0]))
    centroids = index.quantizer.reconstruct_n(0, nlist)
    # the residual sub-quantizers learn what is left after the anchor as the index decodes it
    decoded = np.repeat(_decoded_anchors(index, centroids, anchors), counts, axis=0)
    pick = np.random.default_rng(seed).permutation(len(rows))[:TRAIN_VECTORS]
    tables = train_pq(rows[pick] - decoded[pick], m, seed=seed)
    approx = decoded + pq_decode(_assign(rows - decoded, tables), tables)
    relative_error = float(np.median(np.linalg.norm(approx - rows, axis=1) / np.linalg.norm(rows, axis=1)))
    own = np.repeat(anchors, counts, axis=0)  # each vector's cosine with its passage's anchor
    anchor_cosine = float(np.median((own * rows).sum(1) / np.linalg.norm(own, axis=1) / np.linalg.norm(rows, axis=1)))
    del decoded, approx, own, rows
    index.nprobe = default_nprobe(nlist, n)
    with AtomicDir(out) as tmp:
        doc_counts = np.zeros(n, dtype=np.int64)
        total = 0
        chunks = range(0, n, chunk_docs)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="compress K vectors", unit="chunk")
        with open(tmp / "residual_codes.raw", "wb") as codes_out:
            for s in chunks:
                rows, per_doc = _nonzero(vectors[s:s + chunk_docs])
                anchors = _anchors(rows, per_doc)
                index.add(anchors)  # ids 0, 1, ... in document order
                decoded = np.repeat(_decoded_anchors(index, centroids, anchors), per_doc, axis=0)
                codes_out.write(pack(_assign(rows - decoded, tables)).tobytes())
                doc_counts[s:s + len(per_doc)] = per_doc
                total += len(rows)
        _raw_to_npy(tmp / "residual_codes.raw", tmp / "residual_codes.npy", (total, m // 2), np.dtype(np.uint8))
        docstart = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(doc_counts, out=docstart[1:])
        np.save(tmp / "docstart.npy", docstart)
        np.save(tmp / "residual_pq.npy", tables)
        index.make_direct_map()
        faiss.write_index(index, str(tmp / "anchors.faiss"))
        manifest = {"documents": int(n), "k_p": int(k), "vectors": int(total), "dimension": int(dim),
                    "anchor_bits": 4, "residual_m": m, "residual_bits": 4, "nlist": int(nlist),
                    "nprobe": int(index.nprobe), "relative_error": round(relative_error, 4),
                    "anchor_cosine": round(anchor_cosine, 4), "seed": seed,
                    "build_seconds": round(time.perf_counter() - start, 2)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        size = sum((tmp / name).stat().st_size for name in SEARCH_FILES)
        manifest["bytes_per_doc"] = round((size + 32) / n, 2)  # (+ the digits of bytes_per_doc itself)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Path(out)


def build_store(dense_dir: str | Path, nlist: int | None = None) -> Path:
    """The compressed store of an encoding's dense folder (``<dense>/pq``), built once; returns its folder."""
    from diffretriever_pyserini.multivector import MultiVectorStore

    out = Path(dense_dir) / FOLDER
    with exclusive(out):
        if (out / "manifest.json").is_file():
            manifest = json.loads((out / "manifest.json").read_text())
            if nlist is None or manifest["nlist"] == nlist:
                return out
        store = MultiVectorStore.open(dense_dir)
        log.info("compressing %d x %d K vectors of %s into %s", *store.vectors.shape[:2], dense_dir, out)
        build_compressed(store.vectors, out, nlist, progress=True)
    return out


class CompressedStore:
    """An opened store: code arrays and FAISS lists memory-mapped; centroids, tables and direct map in memory.

    ``exact``: an (N, K, H) float array (memory-mapped ``kvectors.npy`` or a float16 copy) for re-scoring."""

    def __init__(self, folder: str | Path, docids: list[str], exact: np.ndarray | None = None):
        import faiss

        folder = Path(folder)
        self.folder = folder
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.tables = np.load(folder / "residual_pq.npy")
        self.residual_codes = np.load(folder / "residual_codes.npy", mmap_mode="r")
        self.docstart = np.load(folder / "docstart.npy", mmap_mode="r")
        self.index = faiss.read_index(str(folder / "anchors.faiss"), faiss.IO_FLAG_MMAP_IFC)
        self.docids = docids
        self.exact = exact
        if len(docids) != len(self.docstart) - 1:
            raise UserError(f"{len(self.docstart) - 1} documents in the compressed store but {len(docids)} docids; "
                            "rebuild it (delete the folder)", folder)

    def bytes_per_doc(self) -> float:
        return self.manifest["bytes_per_doc"]

    def anchors(self, docs: np.ndarray) -> np.ndarray:
        """(n, H) decoded anchors of ``docs`` (through the index's direct map)."""
        return self.index.reconstruct_batch(np.asarray(docs, dtype=np.int64))

    def document_vectors(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The decoded vectors (anchor + residual) of ``docs`` (n, H), each one's position in ``docs``, and the
        start of each document's run of vectors."""
        starts, ends = np.asarray(self.docstart[docs]), np.asarray(self.docstart[docs + 1])
        rows = _ranges(starts, ends)
        owner = np.repeat(np.arange(len(docs)), ends - starts)
        residuals = pq_decode(unpack(np.asarray(self.residual_codes[rows])), self.tables)
        decoded = self.anchors(docs)[owner] + residuals
        return decoded, owner, np.concatenate([[0], np.cumsum(ends - starts)[:-1]]).astype(np.int64)

    def maxsim(self, q: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """MaxSim of the query vectors ``q`` (K_q, H) with each of ``docs`` over their decoded vectors."""
        vectors, owner, run_starts = self.document_vectors(docs)
        scores = np.zeros(len(docs), dtype=np.float32)
        has = np.flatnonzero(np.diff(np.append(run_starts, len(owner))) > 0)  # a document without vectors scores 0
        if len(has):
            best = np.maximum.reduceat(q @ vectors.T, run_starts[has], axis=1)
            scores[has] = np.maximum(best, 0.0).sum(0)
        return scores


def _below(scores: np.ndarray, floor: float) -> np.ndarray:
    """``scores`` (descending) shifted so the first is just below ``floor``, their order and gaps unchanged."""
    if not len(scores):
        return scores
    return scores - max(0.0, float(scores[0]) - floor + 1e-3)


def compressed_search(store: CompressedStore, queries: dict[str, np.ndarray], k: int = 1000,
                      nprobe: int | None = None, ndocs: int = DEFAULT_NDOCS, rerank: int = DEFAULT_RERANK,
                      batch: int = 256) -> dict[str, dict[str, float]]:
    """MaxSim over the compressed store (see the module docstring); ``nprobe`` defaults to the store's own."""
    import faiss

    from diffretriever_pyserini.multivector import maxsim_block

    if rerank and store.exact is None:
        raise UserError("re-scoring (--maxsim-rerank) needs the float K vectors (kvectors.npy) beside the store")
    ndocs = max(ndocs, rerank, 1)
    depth = max(k, ndocs)
    faiss.extract_index_ivf(store.index).nprobe = nprobe or store.manifest["nprobe"]
    run: dict[str, dict[str, float]] = {}
    qids = list(queries)
    for b in range(0, len(qids), batch):
        block = [np.asarray(queries[q], dtype=np.float32) for q in qids[b:b + batch]]
        block = [q[np.abs(q).sum(-1) > 0] for q in block]  # a dropped query position scores 0 against everything
        flat = np.concatenate(block)
        found_scores, found = store.index.search(np.ascontiguousarray(flat), depth) if len(flat) else (None, None)
        offset = 0
        for qid, q in zip(qids[b:b + batch], block):
            part = slice(offset, offset + len(q))
            offset += len(q)
            run[qid] = _rank(store, q, found[part], found_scores[part], k, ndocs, rerank, maxsim_block) \
                if len(q) else {}
    return run


def _rank(store: CompressedStore, q: np.ndarray, ids: np.ndarray, sims: np.ndarray, k: int, ndocs: int,
          rerank: int, maxsim_block) -> dict[str, float]:
    """One query's hits from its vectors' anchor candidates (see :func:`compressed_search`)."""
    valid = ids >= 0
    docs = np.unique(ids[valid])
    if not len(docs):
        return {}
    # approximate anchor MaxSim: a vector's score for a candidate it did not return is its lowest returned score
    floor = np.where(valid, sims, np.inf).min(axis=1)
    approx = np.repeat(floor[:, None], len(docs), axis=1)
    rows, cols = np.nonzero(valid)
    approx[rows, np.searchsorted(docs, ids[rows, cols])] = sims[rows, cols]
    approx = np.maximum(approx, 0.0).sum(0)
    order = np.lexsort((docs, -approx))[:max(k, ndocs)]
    head, tail = docs[order[:ndocs]], docs[order[ndocs:]]
    scored = store.maxsim(q, head)
    first = np.lexsort((head, -scored))
    ids, values = head[first], scored[first]
    if rerank:  # the top ``rerank`` re-scored exactly and ranked first; the rest keep their order below them
        top = ids[:rerank]
        exact = maxsim_block(q[None], np.asarray(store.exact[top], dtype=np.float32))[0]
        resort = np.lexsort((top, -exact))
        ids = np.concatenate([top[resort], ids[rerank:]])
        values = np.concatenate([exact[resort], _below(values[rerank:], float(exact.min()))])
    ids = np.concatenate([ids, tail])[:k]
    values = np.concatenate([values, _below(approx[order[ndocs:]], float(values[-1]))])[:k]
    return dict(zip([store.docids[i] for i in ids.tolist()], values.tolist()))
