"""An opened compressed store: memory-mapped codes and FAISS lists, and MaxSim of query batches over decoded vectors
(lookup tables or decoded residuals, whichever gathers fewer floats)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.index.compressed.codec import KSUB, pq_decode, unpack
from diffretriever_pyserini.integrity import verify_files

TABLE_BYTES = 64 << 20


CHUNK_ROWS = 65_536


DECODED_BYTES = 256 << 20


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """concatenate(arange(s, e) for s, e in zip(starts, ends)), vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + shift


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
