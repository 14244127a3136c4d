"""Representation writers: sparse JsonVectorCollection files and Pyserini FAISS index folders.

Writers are context managers that build their output in a temporary folder beside the target and rename it into
place only when the ``with`` block ends without an error, so an interrupted run never leaves an output that looks
complete. Each finished folder holds a ``metadata.json`` saying how it was made.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

METADATA = "metadata.json"


class AtomicDir:
    """A folder written under a temporary name and renamed to ``final`` on success (replacing an old one)."""

    def __init__(self, final: str | os.PathLike):
        self.final = Path(final)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.tmp-", dir=self.final.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        if self.final.exists():
            shutil.rmtree(self.final)
        self.tmp.rename(self.final)
        return False


def write_metadata(folder: Path, metadata: dict) -> None:
    (Path(folder) / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def read_metadata(folder: Path) -> dict:
    path = Path(folder) / METADATA
    return json.loads(path.read_text()) if path.is_file() else {}


def file_checksum(paths) -> str:
    """sha256 over the bytes of ``paths`` in the given order (the corpus checksum in metadata)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class SparseWriter:
    """Writes ``{"id", "contents", "vector": {term: int}}`` lines: a ready JsonVectorCollection for
    ``python -m pyserini.index.lucene --collection JsonVectorCollection --impact --pretokenized``."""

    FILENAME = "part-00000.jsonl"

    def __init__(self, folder: str | os.PathLike, metadata: dict | None = None):
        self._dir = AtomicDir(folder)
        self.metadata = dict(metadata or {})
        self.count = 0
        self._file = None

    def __enter__(self) -> "SparseWriter":
        tmp = self._dir.__enter__()
        self._file = open(tmp / self.FILENAME, "w", encoding="utf-8")
        return self

    def write(self, docids, contents, vectors) -> None:
        for docid, text, vector in zip(docids, contents, vectors):
            if any(not isinstance(v, int) for v in vector.values()):
                raise TypeError(f"document {docid}: impacts must be integers (Lucene truncates floats)")
            self._file.write(json.dumps({"id": docid, "contents": text, "vector": vector}, ensure_ascii=False) + "\n")
            self.count += 1

    def __exit__(self, exc_type, exc, tb):
        self._file.close()
        if exc_type is None:
            write_metadata(self._dir.tmp, {**self.metadata, "documents": self.count, "format": "JsonVectorCollection"})
        return self._dir.__exit__(exc_type, exc, tb)


class FaissWriter:
    """A Pyserini FAISS index folder: ``index`` (IndexFlatIP over single vectors) + ``docid`` (one per line),
    plus ``kvectors.npy`` (N, K, H) in float32 or float16, the K normalised vectors per document for MaxSim.
    Rows are streamed to disk: memory stays bounded by the batch (plus the flat single-vector index)."""

    KVECTOR_DTYPES = {"float32": np.float32, "float16": np.float16}

    def __init__(self, folder: str | os.PathLike, metadata: dict | None = None, kvector_dtype: str = "float32"):
        if kvector_dtype not in self.KVECTOR_DTYPES:
            raise ValueError(f"kvector_dtype must be one of {sorted(self.KVECTOR_DTYPES)}, got {kvector_dtype!r}")
        self._kdtype = np.dtype(self.KVECTOR_DTYPES[kvector_dtype])
        self._dir = AtomicDir(folder)
        self.metadata = dict(metadata or {})
        self.count = 0
        self._index = None
        self._shape: tuple[int, int] | None = None

    def __enter__(self) -> "FaissWriter":
        tmp = self._dir.__enter__()
        self._docids = open(tmp / "docid", "w", encoding="utf-8")
        self._kvec = open(tmp / "kvectors.raw", "wb")
        return self

    def write(self, docids, single: np.ndarray, kvectors: np.ndarray) -> None:
        import faiss

        single = np.ascontiguousarray(single, dtype=np.float32)
        kvectors = np.ascontiguousarray(kvectors, dtype=self._kdtype)
        if self._index is None:
            self._index = faiss.IndexFlatIP(single.shape[1])
            self._shape = kvectors.shape[1:]
        if kvectors.shape[1:] != self._shape:
            raise ValueError(f"K vectors of shape {kvectors.shape[1:]} after {self._shape}")
        self._index.add(single)
        self._kvec.write(kvectors.tobytes())
        for docid in docids:
            self._docids.write(f"{docid}\n")
        self.count += len(docids)

    def __exit__(self, exc_type, exc, tb):
        import faiss

        self._docids.close()
        self._kvec.close()
        if exc_type is None and self._index is None:
            self._dir.__exit__(ValueError, None, None)  # discard the empty folder
            raise ValueError(f"{self._dir.final}: no vectors were written")
        if exc_type is None:
            tmp = self._dir.tmp
            faiss.write_index(self._index, str(tmp / "index"))
            _raw_to_npy(tmp / "kvectors.raw", tmp / "kvectors.npy", (self.count, *self._shape), self._kdtype)
            write_metadata(tmp, {**self.metadata, "documents": self.count, "dimension": int(self._shape[1]),
                                 "k": int(self._shape[0]), "faiss": "IndexFlatIP", "kvector_dtype": self._kdtype.name,
                                 "single_vector": "mean of the kept normalised K vectors"})
        return self._dir.__exit__(exc_type, exc, tb)


def _raw_to_npy(raw: Path, out: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Prefix raw little-endian bytes with an .npy header (streamed, no copy in memory)."""
    with open(out, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype.newbyteorder("<")),
                                                 "fortran_order": False, "shape": shape})
        with open(raw, "rb") as r:
            shutil.copyfileobj(r, f, 1 << 20)
    raw.unlink()
