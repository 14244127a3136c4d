"""Building the compressed K-vector store from a dense encoding folder: anchors (mean of each passage's K vectors) in
a FAISS IVF index with 4-bit scalar codes, residuals through :mod:`~diffretriever_pyserini.index.compressed.codec`,
written atomically with a manifest of shapes, errors and bytes per document."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from diffretriever_pyserini.encode.writers import AtomicDir, describe_files, exclusive, raw_to_npy
from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.index.compressed.codec import (KSUB, RESIDUAL_DIMS, TRAIN_VECTORS, _residuals, _split,
                                                           product_quantizer, residual_m, train_pq)

log = logging.getLogger(__name__)


FOLDER = "pq"


MIN_DOCUMENTS = KSUB
"""Fewer documents than residual centroids leave nothing to train the codes on."""


TRAIN_DOCS = 4096


CHUNK_DOCS = 1024


SCAN_DOCUMENTS = 20_000


SEARCH_FILES = ("anchors.faiss", "residual_pq.npy", "residual_codes.npy", "docstart.npy", "manifest.json")


def default_nlist(documents: int) -> int:
    """The power of two at or below sqrt(documents) and documents / 39 (FAISS's minimum training points per list)."""
    target = max(1.0, min(np.sqrt(documents), documents / 39))
    return 1 << int(np.floor(np.log2(target)))


def default_nprobe(nlist: int, documents: int) -> int:
    """Lists that hold about SCAN_DOCUMENTS anchors (all of them in a small corpus, where inverted lists cost
    recall and buy little), at least 8."""
    return int(min(nlist, max(8, np.ceil(nlist * SCAN_DOCUMENTS / max(documents, 1)))))


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
        raw_to_npy(tmp / "residual_codes.raw", tmp / "residual_codes.npy", (total, m // 2), np.dtype(np.uint8))
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
    from diffretriever_pyserini.index.multivector import MultiVectorStore

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
