"""Compressed single-vector (single_dense) indexes: FAISS index types beyond the flat inner-product index.

At 7B scale the flat index decides whether a corpus fits: Dream's 3,584 dimensions cost 14.3 KB per passage in
float32 (126 GB for MS MARCO). Each type here is an ordinary Pyserini FAISS folder (``index`` + ``docid``), so
Pyserini's ``FaissSearcher`` opens it unchanged; the search parameters it needs (``nprobe``, ``efSearch``) are stored
in the index file itself.

| type | FAISS | bytes per dimension |
|---|---|---|
| ``flat`` | IndexFlatIP (exact) | 4 |
| ``sq16`` | IndexScalarQuantizer fp16 | 2 |
| ``sq8`` | IndexScalarQuantizer 8-bit, trained per dimension | 1 |
| ``sq6`` | IndexScalarQuantizer 6-bit, trained per dimension | 3/4 |
| ``pq`` | IndexPQ, one byte per 4 dimensions, scanned exhaustively | 1/4 |
| ``ivfpq`` | IndexIVFPQ: ``pq`` on the residuals of ``nlist`` lists, ``nprobe`` of them searched | 1/4 (+ 8 B id) |
| ``hnsw-sq8`` | IndexHNSWSQ, a 32-neighbour graph over 8-bit codes | 1 (+ the graph) |

The compressed index is built from the encoding's flat index, read memory-mapped and streamed in chunks, so building
needs memory for one chunk and the training sample only. Its ``metadata.json`` records the type, its parameters,
the bytes per document and the build time.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.encode.writers import AtomicDir, describe_files, exclusive, read_metadata, write_metadata

DEFAULT_NPROBE = 32
HNSW_M = 32
HNSW_EF_SEARCH = 128
TRAIN_SAMPLE = 65_536
CHUNK = 16_384
FAISS_MIN_POINTS = 39  # FAISS warns below this many training points per centroid
log = logging.getLogger(__name__)


def pq_m(dim: int) -> int:
    """Sub-quantizers of 4 dimensions (one byte each: 16x fewer bytes than float32), or the nearest that divides."""
    return next(dim // size for size in (4, 2, 1) if dim % size == 0)


def ivf_nlist(n: int) -> int:
    """About sqrt(n) lists, each with at least 39 training points (FAISS's minimum)."""
    return max(1, min(int(np.sqrt(n)), n // 39))


def index_folder(dense_dir: Path, kind: str) -> Path:
    """Where the ``kind`` index of an encoding's dense folder lives (the flat one is the folder itself)."""
    return Path(dense_dir) if kind == "flat" else Path(dense_dir).with_name(f"{Path(dense_dir).name}.{kind}")


def _flat_vectors(dense_dir: Path):
    import faiss

    index = faiss.read_index(str(Path(dense_dir) / "index"), faiss.IO_FLAG_MMAP)
    return index, index.ntotal, index.d


def _quick_pq_training(pq) -> None:
    """k-means of each sub-quantizer on at most 39 points per centroid (FAISS's own minimum), 10 iterations: at
    Dream's 896 sub-quantizers FAISS's defaults (256 points, 25 iterations) take many minutes on a CPU for little
    gain (``make bench-index`` times the build)."""
    pq.cp.max_points_per_centroid = FAISS_MIN_POINTS
    pq.cp.niter = 10
    pq.cp.min_points_per_centroid = 1  # a small sample is said once by write_index, not once per sub-quantizer


def _scalar(qtype: str):
    def make(n: int, dim: int):
        import faiss

        return faiss.IndexScalarQuantizer(dim, getattr(faiss.ScalarQuantizer, qtype), faiss.METRIC_INNER_PRODUCT), {}

    return make


def _pq(n: int, dim: int):
    import faiss

    m = pq_m(dim)
    index = faiss.IndexPQ(dim, m, 8, faiss.METRIC_INNER_PRODUCT)
    _quick_pq_training(index.pq)
    return index, {"m": m, "nbits": 8}


def _ivfpq(n: int, dim: int):
    import faiss

    nlist, m = ivf_nlist(n), pq_m(dim)
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = min(DEFAULT_NPROBE, nlist)
    index.cp.max_points_per_centroid = 64  # k-means on at most 64 points per list (training time)
    _quick_pq_training(index.pq)
    return index, {"nlist": nlist, "m": m, "nbits": 8, "nprobe": index.nprobe}


def _hnsw_sq8(n: int, dim: int):
    import faiss

    index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index, {"hnsw_m": HNSW_M, "ef_search": HNSW_EF_SEARCH}


@dataclass(frozen=True)
class DenseIndexType:
    """``make(documents, dimension)`` -> an untrained FAISS index and its parameters (None: the flat index the
    encoder writes, nothing to build)."""

    name: str
    make: Callable[[int, int], tuple[object, dict]] | None


DENSE_INDEX_TYPES: dict[str, DenseIndexType] = {t.name: t for t in (
    DenseIndexType("flat", None),
    DenseIndexType("sq16", _scalar("QT_fp16")),
    DenseIndexType("sq8", _scalar("QT_8bit")),
    DenseIndexType("sq6", _scalar("QT_6bit")),
    DenseIndexType("pq", _pq),
    DenseIndexType("ivfpq", _ivfpq),
    DenseIndexType("hnsw-sq8", _hnsw_sq8),
)}
"""The dense index types, one entry each (see the module table): adding a type is one entry and its function."""


def get_index_type(kind: str) -> DenseIndexType:
    """The dense index type ``kind``; an unknown one raises UserError naming the known ones and this file."""
    if kind not in DENSE_INDEX_TYPES:
        raise UserError(f"unknown dense index type {kind!r}; choose from {', '.join(DENSE_INDEX_TYPES)} "
                        "(index/dense.py lists them)")
    return DENSE_INDEX_TYPES[kind]


def build_dense_index(dense_dir: str | Path, kind: str, seed: int = 0) -> Path:
    """Write the ``kind`` index of an encoding's dense folder beside it (skipped when complete); returns its folder.

    Trained on a seeded sample of at most 65,536 vectors; vectors are added in chunks read from the memory-mapped
    flat index."""
    dense_dir = Path(dense_dir)
    if kind == "flat":
        return dense_dir
    out = index_folder(dense_dir, kind)
    with exclusive(out):
        if (out / "metadata.json").is_file():
            return out
        flat, n, dim = _flat_vectors(dense_dir)
        rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, TRAIN_SAMPLE), replace=False))
        sample = flat.reconstruct_batch(rows).astype(np.float32)
        chunks = (flat.reconstruct_n(s, min(CHUNK, n - s)) for s in range(0, n, CHUNK))
        write_index(out, kind, n, dim, sample, chunks, dense_dir / "docid",
                    {"source": str(dense_dir), "encoding": read_metadata(dense_dir).get("request")})
    return out


def write_index(out: Path, kind: str, n: int, dim: int, sample: np.ndarray, chunks, docid_file: Path,
                extra: dict | None = None) -> Path:
    """Train a ``kind`` index on ``sample``, add the (rows, dim) float32 ``chunks`` (``n`` vectors in all) and write
    it with a copy of ``docid_file`` as a Pyserini FAISS folder ``out``; its metadata counts the bytes per document
    a search reads (index and docid file)."""
    import faiss

    start = time.perf_counter()
    index, params = get_index_type(kind).make(n, dim)
    if not index.is_trained:
        centroids = 1 << params["nbits"] if "nbits" in params else 0  # per sub-quantizer (pq, ivfpq)
        if n < centroids:
            raise UserError(f"--dense-index {kind} trains {centroids} centroids per sub-quantizer and needs at least "
                            f"{centroids} documents; this corpus has {n}: use flat, sq16, sq8 or sq6", out)
        if len(sample) < FAISS_MIN_POINTS * centroids:
            log.info("%s: %d training vectors for the %d centroids of each of %d sub-quantizers (FAISS asks for "
                     "%d; the codes fit a small corpus less finely)", kind, len(sample), centroids, params["m"],
                     FAISS_MIN_POINTS * centroids)
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    for chunk in chunks:
        index.add(np.ascontiguousarray(chunk, dtype=np.float32))
    if index.ntotal != n:
        raise ValueError(f"{out}: {index.ntotal} vectors added, {n} expected")
    with AtomicDir(out) as tmp:
        faiss.write_index(index, str(tmp / "index"))
        shutil.copyfile(docid_file, tmp / "docid")
        write_metadata(tmp, {"index_type": kind, **params, "documents": n, "dimension": dim,
                             "files": describe_files(tmp, ("index", "docid")),
                             "bytes_per_doc": round(index_bytes(tmp) / max(n, 1), 2),
                             "build_seconds": round(time.perf_counter() - start, 2), **(extra or {})})
    return out


def describe(folder: Path) -> dict:
    """The index type and parameters of a dense index folder (``flat`` for an encoding's own)."""
    meta = read_metadata(folder)
    return {k: meta[k] for k in ("index_type", "nlist", "m", "nprobe", "hnsw_m", "ef_search", "bytes_per_doc")
            if k in meta} or {"index_type": "flat"}


def index_bytes(folder: Path) -> int:
    """Bytes a search of the folder reads: the FAISS index and the docid file."""
    return sum((Path(folder) / name).stat().st_size for name in ("index", "docid"))

