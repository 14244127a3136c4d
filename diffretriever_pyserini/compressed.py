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

Search (:func:`compressed_search`): one FAISS search per query with the mean of its vectors ranks the anchors
as anchor MaxSim does; the best ``ndocs`` are scored with MaxSim over their decoded vectors (anchor + residual) and
ranked first, the other candidates follow in anchor order, up to ``k``; optionally the top ``rerank`` are re-scored
exactly from a float copy of the K vectors. Every max is clamped at 0, as in exact MaxSim. The FAISS lists and the
code arrays are memory-mapped, so a search holds in memory the centroids, the direct map (8 bytes per passage) and
one batch of candidates, whatever the corpus size; when every list is probed (by default, corpora up to about 20,000
passages) the anchors are decoded once per search and kept while it runs if that takes at most 256 MB.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from pathlib import Path

import numpy as np

from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.integrity import verify_files
from diffretriever_pyserini.writers import AtomicDir, _raw_to_npy, describe_files, exclusive

log = logging.getLogger(__name__)

FOLDER = "pq"
KSUB = 16
MIN_DOCUMENTS = KSUB
"""Fewer documents than residual centroids leave nothing to train the codes on."""
TRAIN_DOCS = 4096
TRAIN_VECTORS = 32_768
KMEANS_ITERATIONS = 10
CHUNK_DOCS = 1024
SCAN_DOCUMENTS = 20_000
TABLE_BYTES = 64 << 20
CHUNK_ROWS = 65_536
DECODED_BYTES = 256 << 20
MAX_BATCH = 256
ROWS_PER_BATCH = 102_400
DEFAULT_NDOCS = 100
DEFAULT_RERANK = 0
RESIDUAL_DIMS = 8
SEARCH_FILES = ("anchors.faiss", "residual_pq.npy", "residual_codes.npy", "docstart.npy", "manifest.json")


def default_nlist(documents: int) -> int:
    """The power of two at or below sqrt(documents) and documents / 39 (FAISS's minimum training points per list)."""
    target = max(1.0, min(np.sqrt(documents), documents / 39))
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


# 4-bit product quantization: FAISS's ProductQuantizer encodes and decodes (its 4-bit codes are packed two per
# byte, the even sub-quantizer in the low half); the k-means updates run in NumPy over all sub-quantizers at once

def product_quantizer(tables: np.ndarray):
    """A FAISS ProductQuantizer holding the (m, ksub, d) centroid ``tables``."""
    import faiss

    m, ksub, dsub = tables.shape
    pq = faiss.ProductQuantizer(m * dsub, m, int(np.log2(ksub)))
    faiss.copy_array_to_vector(np.ascontiguousarray(tables, dtype=np.float32).ravel(), pq.centroids)
    return pq


def encode(x: np.ndarray, tables: np.ndarray, pq=None) -> np.ndarray:
    """(n, H) vectors -> (n, m) nearest-centroid codes of each sub-vector (squared L2)."""
    pq = pq or product_quantizer(tables)
    return unpack(pq.compute_codes(np.ascontiguousarray(x, dtype=np.float32)))


def train_pq(x: np.ndarray, m: int, ksub: int = KSUB, iterations: int = KMEANS_ITERATIONS,
             seed: int = 0) -> np.ndarray:
    """k-means (``ksub`` centroids) on each of the ``m`` sub-vectors of ``x`` (n, H): (m, ksub, H / m)."""
    n, dim = x.shape
    x = np.ascontiguousarray(x, dtype=np.float32)
    picks = np.random.default_rng(seed).choice(n, size=ksub, replace=n < ksub)
    tables = x[picks].reshape(ksub, m, dim // m).transpose(1, 0, 2).copy()
    base = np.arange(m)[None, :] * ksub
    columns = x.reshape(n, m, dim // m).transpose(2, 0, 1).reshape(dim // m, n * m)  # one copy, row d contiguous
    for _ in range(iterations):
        slots = (encode(x, tables).astype(np.int64) + base).ravel()  # sub-quantizer * ksub + code
        counts = np.bincount(slots, minlength=m * ksub)
        sums = np.stack([np.bincount(slots, weights=column, minlength=m * ksub) for column in columns], axis=1)
        filled = counts > 0  # an empty centroid keeps its place
        flat = tables.reshape(m * ksub, -1)
        flat[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    return tables


def unpack(packed: np.ndarray) -> np.ndarray:
    """FAISS's packed 4-bit codes (n, m / 2) -> (n, m), the even sub-quantizer from the low half of each byte."""
    codes = np.empty((len(packed), packed.shape[1] * 2), dtype=np.uint8)
    codes[:, 0::2], codes[:, 1::2] = packed & 15, packed >> 4
    return codes


def pq_decode(codes: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """(n, m) codes -> (n, H) float32 vectors (one gather from the centroids laid end to end)."""
    m, ksub, dsub = tables.shape
    at = np.asarray(codes, dtype=np.intp) + np.arange(m, dtype=np.intp) * ksub
    return np.take(tables.reshape(m * ksub, dsub), at, axis=0).reshape(len(codes), m * dsub)


def _split(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, K, H) block -> float32 block, (n, K) mask of its non-zero vectors (dropped positions are all zero) and
    each document's anchor: the mean of its non-zero vectors (zero for a document without any)."""
    block = np.asarray(block, dtype=np.float32)
    keep = block.any(axis=-1)
    return block, keep, block.sum(1) / np.maximum(keep.sum(1), 1)[:, None]


def _residuals(block: np.ndarray, keep: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """(vectors, H) non-zero vectors minus their document's decoded anchor, contiguous."""
    rest = block - decoded[:, None, :]
    return rest.reshape(-1, rest.shape[-1]) if keep.all() else np.ascontiguousarray(rest[keep])


def _pieces(n: int, want: int, pieces: int = 16) -> list[tuple[int, int]]:
    """``pieces`` contiguous document ranges spread over 0..n, about ``want`` documents in all."""
    size = max(1, -(-want // pieces))
    starts = np.unique(np.linspace(0, max(n - size, 0), num=min(pieces, n), dtype=np.int64))
    return [(int(s), int(min(n, s + size))) for s in starts]


def _training_anchors(vectors, want: int, chunk_docs: int) -> np.ndarray:
    """The anchors of about ``want`` documents (read in chunks, only the anchors kept)."""
    out = []
    for s, e in _pieces(vectors.shape[0], want):
        for c in range(s, e, chunk_docs):
            _, keep, anchors = _split(vectors[c:min(e, c + chunk_docs)])
            out.append(anchors[keep.any(1)])
    return np.concatenate(out)


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


def build_compressed(vectors, out: str | Path, nlist: int | None = None, residual_dims: int = RESIDUAL_DIMS,
                     seed: int = 0, chunk_docs: int = CHUNK_DOCS, progress: bool = False) -> Path:
    """Compress ``vectors`` (N, K, H), anything sliceable by document ranges (a memory-mapped ``kvectors.npy``),
    into the store folder ``out``, reading it in chunks of ``chunk_docs`` documents (memory: one chunk and the
    training sample). ``residual_dims``: dimensions per 4-bit residual sub-quantizer."""
    import faiss

    start = time.perf_counter()
    n, k, dim = vectors.shape
    if n < MIN_DOCUMENTS:
        raise UserError(f"--maxsim compressed needs at least {MIN_DOCUMENTS} documents to train its 4-bit codes "
                        f"({KSUB} centroids); this corpus has {n}: use --maxsim exact", out)
    m = residual_m(dim, residual_dims)
    nlist = nlist or default_nlist(n)
    sample = _training_anchors(vectors, max(TRAIN_DOCS, 64 * nlist), chunk_docs)
    if not len(sample):
        raise UserError("every K vector of the store is zero; nothing to compress", out)
    nlist = min(nlist, len(sample))
    index = _anchor_index(dim, nlist)
    index.train(sample)
    del sample
    block, keep, anchors = _split(np.concatenate([vectors[s:e] for s, e in _pieces(n, TRAIN_DOCS)]))
    # the residual sub-quantizers learn what is left after the anchor as the index decodes it (list centroid + the
    # 4-bit codes of the rest)
    decoded = index.sa_decode(index.sa_encode(anchors))
    residuals = _residuals(block, keep, decoded)
    pick = np.random.default_rng(seed).permutation(len(residuals))[:TRAIN_VECTORS]
    tables = train_pq(residuals[pick], m, seed=seed)
    pq = product_quantizer(tables)
    rows = block[keep][pick]
    approx = rows - residuals[pick] + pq.decode(pq.compute_codes(residuals[pick]))
    relative_error = float(np.median(np.linalg.norm(approx - rows, axis=1) / np.linalg.norm(rows, axis=1)))
    own = np.broadcast_to(anchors[:, None, :], block.shape)[keep][pick]  # each vector's cosine with its anchor
    anchor_cosine = float(np.median((own * rows).sum(1) / np.linalg.norm(own, axis=1) / np.linalg.norm(rows, axis=1)))
    del block, decoded, residuals, approx, own, rows
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
                block, keep, anchors = _split(vectors[s:s + chunk_docs])
                codes = index.sa_encode(anchors)  # each anchor's list and 4-bit codes, computed once
                index.add_sa_codes(codes)  # ids 0, 1, ... in document order
                decoded = index.sa_decode(codes)
                codes_out.write(pq.compute_codes(_residuals(block, keep, decoded)).tobytes())
                doc_counts[s:s + len(block)] = keep.sum(1)
                total += int(keep.sum())
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
        manifest["files"] = describe_files(tmp, [name for name in SEARCH_FILES if name != "manifest.json"])
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
        verify_files(folder, self.manifest.get("files"))
        self.tables = np.load(folder / "residual_pq.npy")
        self.residual_codes = np.load(folder / "residual_codes.npy", mmap_mode="r")
        self.docstart = np.load(folder / "docstart.npy", mmap_mode="r")
        self.index = faiss.read_index(str(folder / "anchors.faiss"), faiss.IO_FLAG_MMAP_IFC)
        self.docids = docids
        self.exact = exact
        self._decoded = None
        if len(docids) != len(self.docstart) - 1:
            raise UserError(f"{len(self.docstart) - 1} documents in the compressed store but {len(docids)} docids; "
                            "rebuild it (delete the folder)", folder)

    def bytes_per_doc(self) -> float:
        return self.manifest["bytes_per_doc"]

    def anchors(self, docs: np.ndarray) -> np.ndarray:
        """(n, H) decoded anchors of ``docs`` (through the index's direct map, or the decoded copy)."""
        if self._decoded is not None:
            return self._decoded[docs]
        return self.index.reconstruct_batch(np.asarray(docs, dtype=np.int64))

    def decode_all(self, limit: int = DECODED_BYTES) -> bool:
        """Keep every anchor decoded in memory when that costs at most ``limit`` bytes (a corpus scanned whole:
        decoded once per search instead of once per batch); whether it did."""
        n, dim = len(self.docids), self.manifest["dimension"]
        if self._decoded is None and n * dim * 4 <= limit:
            self._decoded = self.index.reconstruct_n(0, n)
        return self._decoded is not None

    def document_vectors(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The decoded vectors (anchor + residual) of ``docs`` (n, H), each one's position in ``docs``, and the
        start of each document's run of vectors."""
        rows, owner, run_starts = self._rows(docs)
        residuals = pq_decode(unpack(np.asarray(self.residual_codes[rows])), self.tables)
        return self.anchors(docs)[owner] + residuals, owner, run_starts

    def _rows(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        starts, ends = np.asarray(self.docstart[docs]), np.asarray(self.docstart[docs + 1])
        owner = np.repeat(np.arange(len(docs)), ends - starts)
        return _ranges(starts, ends), owner, np.concatenate([[0], np.cumsum(ends - starts)[:-1]]).astype(np.int64)

    def sub_tables(self, queries: np.ndarray) -> np.ndarray:
        """(B, K_q, H) queries -> (m, B * 16, K_q): [j, b * 16 + c] holds the inner product of each vector of query
        b with centroid c of residual sub-quantizer j, so that a vector's residual score is a sum of m lookups, one
        per 4-bit code."""
        nq, kq, _ = queries.shape
        m, ksub, dsub = self.tables.shape
        per_sub = queries.reshape(nq * kq, m, dsub).transpose(1, 0, 2)  # (m, B K_q, dsub)
        single = np.matmul(per_sub, self.tables.transpose(0, 2, 1))  # (m, B K_q, 16)
        return np.ascontiguousarray(single.reshape(m, nq, kq, ksub).transpose(0, 1, 3, 2)).reshape(m, -1, kq)

    def batch_maxsim(self, queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """(B, K_q, H) queries (zero vectors add nothing), (B, n) documents each (-1: none) -> (B, n) MaxSim over
        the decoded vectors, for the whole batch at once. The residual products come from lookup tables (one
        gather of K_q floats per vector and code: :meth:`_table_products`) for a few query vectors, from the decoded
        residuals and one matrix product per query (one gather of H / m floats per vector and code:
        :meth:`_decoded_products`) when K_q is at least H / m (the same scores, fewer operations at large K_q;
        ``make bench-index`` times both)."""
        nq, kq, dim = queries.shape
        m = self.tables.shape[0]
        step = max(1, TABLE_BYTES // (m * KSUB * kq * 4))  # bounded tables for many query vectors
        if nq > step:
            return np.concatenate([self.batch_maxsim(queries[b:b + step], docs[b:b + step])
                                   for b in range(0, nq, step)])
        docs_or_0 = np.where(docs >= 0, docs, 0)
        flat = docs_or_0.ravel()
        rows, owner, run_starts = self._rows(flat)
        anchor = np.empty((nq, docs.shape[1], kq), dtype=np.float32)
        for b in range(nq):  # one query's anchors at a time: they stay in cache for the product
            np.matmul(self.anchors(docs_or_0[b]), queries[b].T, out=anchor[b])
        sims = anchor.reshape(-1, kq)[owner]  # (rows, K_q): each vector's anchor part, plus its residual part
        if self.decodes_residuals(kq):
            self._decoded_products(queries, rows, np.searchsorted(owner, np.arange(nq + 1) * docs.shape[1]), sims)
        else:
            self._table_products(queries, rows, owner // docs.shape[1], sims)
        scores = np.zeros(len(flat), dtype=np.float32)
        has = np.flatnonzero(np.diff(np.append(run_starts, len(owner))) > 0)  # a document without vectors scores 0
        if len(has):
            scores[has] = np.maximum(np.maximum.reduceat(sims, run_starts[has], axis=0), 0.0).sum(1)
        return np.where(docs >= 0, scores.reshape(docs.shape), 0.0)

    def _table_products(self, queries: np.ndarray, rows: np.ndarray, query_of: np.ndarray, sims: np.ndarray) -> None:
        """Add to ``sims`` (rows, K_q) each row's residual products with its query (``query_of``): m lookups per
        row in :meth:`sub_tables`, gathered into reused buffers."""
        m = self.tables.shape[0]
        tables = self.sub_tables(queries)
        first = query_of * KSUB  # each row's query's first row in a sub-quantizer's table
        where, looked = np.empty_like(first), np.empty_like(sims)
        for s in range(0, len(rows), CHUNK_ROWS):
            packed = np.asarray(self.residual_codes[rows[s:s + CHUNK_ROWS]]).T.copy()  # (m / 2, chunk)
            n = packed.shape[1]
            part, at, out = sims[s:s + n], where[:n], looked[:n]
            for j in range(m):  # FAISS packs sub-quantizer 2 i in the low half of byte i, 2 i + 1 in the high
                np.add(first[s:s + n], packed[j // 2] >> 4 if j % 2 else packed[j // 2] & 15, out=at)
                np.take(tables[j], at, axis=0, out=out)
                part += out

    def _decoded_products(self, queries: np.ndarray, rows: np.ndarray, bounds: np.ndarray, sims: np.ndarray) -> None:
        """Add to ``sims`` (rows, K_q) each row's residual products with its query: the rows of query b
        (``bounds[b]:bounds[b + 1]``) decoded and multiplied by its vectors."""
        for b in range(len(queries)):
            s, e = bounds[b], bounds[b + 1]
            if e > s:
                sims[s:e] += pq_decode(unpack(np.asarray(self.residual_codes[rows[s:e]])), self.tables) @ queries[b].T

    def decodes_residuals(self, k_q: int) -> bool:
        """Whether :meth:`batch_maxsim` scores ``k_q`` query vectors from decoded residuals (BLAS) rather than from
        lookup tables: from K_q = H / m on, where a decoded code gathers fewer floats than a looked-up one."""
        return k_q >= self.tables.shape[2]

    def scan(self, queries: np.ndarray, k: int, head: int | None = None,
             block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Inner products of ``queries`` (B, H) with every anchor, decoded block by block and shared by the batch
        (what the IVF search computes with every list probed, at a fraction of its cost): the top ``k`` scores and
        document numbers (-1 past the corpus, at the end). Best first when ``head`` is None; else only partitioned:
        the best ``head`` first, then the rest, each part in any order (the run is sorted when it is written)."""
        n = len(self.docids)
        negated = np.empty((len(queries), n), dtype=np.float32)  # negated: ascending selection, no extra copy
        minus = -np.asarray(queries, dtype=np.float32)
        for s in range(0, n, block):
            part = self._decoded[s:s + block] if self._decoded is not None else \
                self.anchors(np.arange(s, min(n, s + block)))
            np.matmul(minus, part.T, out=negated[:, s:s + block])
        k_real = min(k, n)
        top = np.argpartition(negated, k_real - 1, axis=1)[:, :k_real] if k_real < n else \
            np.broadcast_to(np.arange(n), negated.shape)
        values = np.take_along_axis(negated, top, axis=1)
        if head is None:
            order = np.argsort(values, axis=1)  # (equal scores in either order: the run writer breaks ties by docid)
        elif head < k_real:
            order = np.argpartition(values, head - 1, axis=1)
        else:
            order = None
        found = np.full((len(queries), k), -1, dtype=np.int64)
        best = np.full((len(queries), k), -np.inf, dtype=np.float32)
        found[:, :k_real] = top if order is None else np.take_along_axis(top, order, axis=1)
        np.negative(values if order is None else np.take_along_axis(values, order, axis=1), out=best[:, :k_real])
        return best, found

    def maxsim(self, q: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """MaxSim of the query vectors ``q`` (K_q, H) with each of ``docs`` over their decoded vectors."""
        return self.batch_maxsim(np.asarray(q, dtype=np.float32)[None], np.asarray(docs)[None])[0]


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
    from diffretriever_pyserini.multivector import maxsim_block

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
