"""Lucene indexes built by Pyserini itself (``python -m pyserini.index.lucene``).

- impact: our sparse JsonVectorCollection -> ``--impact --pretokenized`` index (integer impacts);
- BM25: the prepared corpus (``contents`` = title + ". " + text) -> a standard positional index.
Each index is built under a temporary name and renamed into place when Pyserini succeeds.
"""

from __future__ import annotations

import logging
from pathlib import Path

from diffretriever_pyserini.pyserini_bridge.child import command, run_java_child
from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.pyserini_bridge.hook import prepare_pyserini
from diffretriever_pyserini.encode.writers import AtomicDir, exclusive, read_metadata, write_metadata

log = logging.getLogger(__name__)


def _pyserini_index(source: Path, args: list[str], index_dir: Path, metadata: dict) -> Path:
    """Run ``pyserini.index.lucene args`` into ``index_dir`` (atomically, once); ``source``, the folder ``args``
    name as ``--input``, sizes the Java heap."""
    prepare_pyserini()
    with exclusive(index_dir):
        if index_is_complete(index_dir):  # another process built it while this one waited
            return Path(index_dir)
        with AtomicDir(index_dir) as tmp:
            args = [*args, "--index", str(tmp / "index")]
            cmd = command("pyserini.index.lucene", *args)
            log.info("running %s", " ".join(cmd))
            proc = run_java_child("pyserini.index.lucene", args, source, "pyserini.index.lucene", index_dir,
                                  capture_output=True)
            if proc.returncode != 0:
                log.error("pyserini.index.lucene output:\n%s", proc.stderr[-3000:])
                space = ", no space left on the device" if "No space left" in proc.stderr else ""
                raise UserError(f"pyserini.index.lucene failed (exit code {proc.returncode}{space}; its output is "
                                "logged above)", index_dir)
            _finish_index(tmp, cmd, metadata)
    return Path(index_dir)


def _finish_index(tmp: Path, cmd: list[str], metadata: dict) -> None:
    for item in (tmp / "index").iterdir():
        item.rename(tmp / item.name)
    (tmp / "index").rmdir()
    write_metadata(tmp, {**metadata, "command": " ".join(cmd[4:])})


def build_impact_index(sparse_dir: Path, index_dir: Path, threads: int = 2) -> Path:
    """Lucene impact index of a JsonVectorCollection folder (the sparse output of :mod:`encoding`)."""
    args = ["--collection", "JsonVectorCollection", "--input", str(sparse_dir), "--generator",
            "DefaultLuceneDocumentGenerator", "--threads", str(threads), "--impact", "--pretokenized"]
    return _pyserini_index(sparse_dir, args, index_dir, {"kind": "impact", "source": str(sparse_dir),
                                                         "encoding": read_metadata(sparse_dir)})


def build_bm25_index(corpus_dir: Path, index_dir: Path, threads: int = 2, fields: tuple[str, ...] = ()) -> Path:
    """BM25 index of a corpus folder: flat (``contents`` only, Anserini's ``.flat``), or with extra ``fields``
    indexed separately (``.multifield``: contents = text, plus title)."""
    args = ["--collection", "JsonCollection", "--input", str(corpus_dir), "--generator",
            "DefaultLuceneDocumentGenerator", "--threads", str(threads), "--storePositions", "--storeDocvectors",
            "--storeRaw"] + (["--fields", *fields] if fields else [])
    kind = "bm25-multifield" if fields else "bm25-flat"
    return _pyserini_index(corpus_dir, args, index_dir, {"kind": kind, "source": str(corpus_dir),
                                                         "fields": list(fields)})


def index_is_complete(index_dir: Path) -> bool:
    return (Path(index_dir) / "metadata.json").is_file()


def index_statistics(index_dir: Path) -> dict:
    """Documents, non-empty documents and total terms of a Lucene index, as Anserini's configs state them."""
    prepare_pyserini()
    from pyserini.index.lucene import LuceneIndexReader

    stats = LuceneIndexReader(str(index_dir)).stats()
    return {"documents": int(stats["documents"]), "documents (non-empty)": int(stats["non_empty_documents"]),
            "total terms": int(stats["total_terms"])}
