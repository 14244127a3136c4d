"""The residual codec of the compressed K-vector store: 4-bit product quantization (k-means sub-quantizers, codes
packed two per byte), pure numpy/FAISS functions with shapes in the docstrings (see the package docstring)."""

from __future__ import annotations

import numpy as np

from diffretriever_pyserini.errors import UserError

KSUB = 16


TRAIN_VECTORS = 32_768


KMEANS_ITERATIONS = 10


RESIDUAL_DIMS = 8


def residual_m(dim: int, size: int = RESIDUAL_DIMS) -> int:
    """An even number of sub-quantizers of about ``size`` dimensions (two 4-bit codes share a byte)."""
    for s in range(size, 0, -1):
        if dim % s == 0 and (dim // s) % 2 == 0:
            return dim // s
    raise UserError(f"no even number of residual sub-quantizers divides the dimension {dim}")


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
