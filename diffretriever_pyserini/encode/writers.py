"""Representation writers: sparse JsonVectorCollection files and Pyserini FAISS index folders.

Writers are context managers that build their output in a temporary folder beside the target and rename it into
place only when the ``with`` block ends without an error, so an interrupted run never leaves an output that looks
complete. Each finished folder holds a ``metadata.json`` saying how it was made.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from diffretriever_pyserini.errors import UserError, disk_full_error

log = logging.getLogger(__name__)

METADATA = "metadata.json"


class AtomicDir:
    """A folder written under a temporary name and renamed to ``final`` on success (replacing an old one).

    The temporary folder (``.<name>.tmp-<pid>-*`` beside the target) is removed on every failure path; one left by a
    process that was killed (its pid no longer running) is removed the next time the same output is written.
    """

    def __init__(self, final: str | os.PathLike):
        self.final = Path(final)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.final)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.tmp-{os.getpid()}-", dir=self.final.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                error = disk_full_error(exc, self.final)
                if error is not None:
                    raise error from exc
            return False
        try:
            if self.final.exists():
                shutil.rmtree(self.final)
            self.tmp.rename(self.final)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return False


def remove_stale_temporaries(final: Path) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>-*`` folders beside ``final`` whose writing process is gone (killed); returns them."""
    removed = []
    for stale in Path(final).parent.glob(f".{Path(final).name}.tmp-*"):
        pid = stale.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def exclusive(output: str | os.PathLike):
    """Hold the lock of one output (``.<name>.lock`` beside it) while a step writes it: a second process asked
    for the same output waits, saying so, and then finds it complete. The lock dies with its process; the lock
    file is removed when it is released (a waiter that finds its file unlinked opens the new one)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    path = output.parent / f".{output.name}.lock"
    warned = False
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not warned:
                handle.seek(0)
                holder = handle.read().strip() or "?"
                log.warning("%s is being written by another process (pid %s); waiting for it to finish",
                            output, holder)
                warned = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and current.st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()  # the holder removed this file on release: lock the one now at the path
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def check_docids(docids, output) -> None:
    """Refuse document ids a docid file (one per line) or a TREC run cannot hold (whitespace, control characters)."""
    from diffretriever_pyserini.search.runs import id_problem

    for docid in docids:
        problem = id_problem(docid)
        if problem:
            raise UserError(f"document id {docid!r} {problem}", output)


def write_metadata(folder: Path, metadata: dict) -> None:
    (Path(folder) / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def read_metadata(folder: Path) -> dict:
    path = Path(folder) / METADATA
    return json.loads(path.read_text()) if path.is_file() else {}


def file_checksum(paths, algorithm: str = "sha256") -> str:
    """The ``algorithm`` digest (sha256, md5, ...) over the bytes of ``paths`` in the given order (the corpus
    checksum in metadata, a download's checksum)."""
    h = hashlib.new(algorithm)
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def describe_files(folder: Path, names) -> dict[str, dict]:
    """``{name: {"bytes", "sha256"}}`` of the files ``names`` in ``folder``: what a writer records in its metadata
    so that a reader can verify them (:func:`diffretriever_pyserini.integrity.verify_files`)."""
    folder = Path(folder)
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": file_checksum([folder / name])}
            for name in names}


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
        check_docids(docids, self._dir.final)
        for docid, text, vector in zip(docids, contents, vectors):
            if any(not isinstance(v, int) for v in vector.values()):
                raise TypeError(f"document {docid}: impacts must be integers (Lucene truncates floats)")
            self._file.write(json.dumps({"id": docid, "contents": text, "vector": vector}, ensure_ascii=False) + "\n")
            self.count += 1

    def __exit__(self, exc_type, exc, tb):
        try:
            self._file.close()
            if exc_type is None:
                write_metadata(self._dir.tmp, {**self.metadata, "documents": self.count,
                                               "format": "JsonVectorCollection"})
        except BaseException as error:  # a full disk can surface only at close(): nothing half-written stays
            self._dir.__exit__(type(error), error, error.__traceback__)
            raise
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

        check_docids(docids, self._dir.final)
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

        try:
            self._docids.close()
            self._kvec.close()
            if exc_type is None and self._index is None:
                raise UserError("no vectors were written", self._dir.final)
            if exc_type is None:
                tmp = self._dir.tmp
                faiss.write_index(self._index, str(tmp / "index"))
                raw_to_npy(tmp / "kvectors.raw", tmp / "kvectors.npy", (self.count, *self._shape), self._kdtype)
                write_metadata(tmp, {**self.metadata, "documents": self.count, "dimension": int(self._shape[1]),
                                     "k": int(self._shape[0]), "faiss": "IndexFlatIP",
                                     "kvector_dtype": self._kdtype.name,
                                     "single_vector": "mean of the kept normalised K vectors",
                                     "files": describe_files(tmp, ("index", "docid", "kvectors.npy"))})
        except BaseException as error:  # a full disk can surface only when finishing: nothing half-written stays
            self._dir.__exit__(type(error), error, error.__traceback__)
            raise
        return self._dir.__exit__(exc_type, exc, tb)


def write_npy_header(f, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """The .npy header of a C-ordered little-endian ``shape`` array of ``dtype``; its bytes are streamed after it."""
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype).newbyteorder("<")),
                                             "fortran_order": False, "shape": tuple(shape)})


def raw_to_npy(raw: Path, out: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Prefix raw little-endian bytes with an .npy header (streamed, no copy in memory)."""
    with open(out, "wb") as f:
        write_npy_header(f, shape, dtype)
        with open(raw, "rb") as r:
            shutil.copyfileobj(r, f, 1 << 20)
    raw.unlink()
