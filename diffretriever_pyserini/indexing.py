"""Lucene indexes built by Pyserini itself (``python -m pyserini.index.lucene``).

- impact: our sparse JsonVectorCollection -> ``--impact --pretokenized`` index (integer impacts);
- BM25: the prepared corpus (``contents`` = title + ". " + text) -> a standard positional index.
Each index is built under a temporary name and renamed into place when Pyserini succeeds.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from diffretriever_pyserini.java import ensure_java
from diffretriever_pyserini.writers import AtomicDir, read_metadata, write_metadata

log = logging.getLogger(__name__)


def _pyserini_index(args: list[str], index_dir: Path, metadata: dict) -> Path:
    ensure_java()
    with AtomicDir(index_dir) as tmp:
        cmd = [sys.executable, "-m", "pyserini.index.lucene", *args, "--index", str(tmp / "index")]
        log.info("running %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            raise RuntimeError(f"pyserini.index.lucene failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        for item in (tmp / "index").iterdir():
            item.rename(tmp / item.name)
        (tmp / "index").rmdir()
        write_metadata(tmp, {**metadata, "command": " ".join(cmd[1:])})
    return Path(index_dir)


def build_impact_index(sparse_dir: Path, index_dir: Path, threads: int = 2) -> Path:
    """Lucene impact index of a JsonVectorCollection folder (the sparse output of :mod:`encoding`)."""
    args = ["--collection", "JsonVectorCollection", "--input", str(sparse_dir), "--generator",
            "DefaultLuceneDocumentGenerator", "--threads", str(threads), "--impact", "--pretokenized"]
    return _pyserini_index(args, index_dir, {"kind": "impact", "source": str(sparse_dir),
                                             "encoding": read_metadata(sparse_dir)})


def build_bm25_index(corpus_dir: Path, index_dir: Path, threads: int = 2, fields: tuple[str, ...] = ()) -> Path:
    """BM25 index of a corpus folder: flat (``contents`` only, Anserini's ``.flat``), or with extra ``fields``
    indexed separately (``.multifield``: contents = text, plus title)."""
    args = ["--collection", "JsonCollection", "--input", str(corpus_dir), "--generator",
            "DefaultLuceneDocumentGenerator", "--threads", str(threads), "--storePositions", "--storeDocvectors",
            "--storeRaw"] + (["--fields", *fields] if fields else [])
    kind = "bm25-multifield" if fields else "bm25-flat"
    return _pyserini_index(args, index_dir, {"kind": kind, "source": str(corpus_dir), "fields": list(fields)})


def index_is_complete(index_dir: Path) -> bool:
    return (Path(index_dir) / "metadata.json").is_file()
