"""BM25 search in a child process with a bounded Java heap: ``python -m diffretriever_pyserini.pyserini_bridge.bm25``.

Anserini's searcher loads every hit's stored document, so searching all topics at once at 1,000 hits holds
topics x hits documents on the Java heap (long BEIR queries made that 7 GB and a JVM stuck in garbage collection).
Here topics are searched in batches through Pyserini's ``LuceneSearcher.batch_search`` and only (docid, score) is
kept of each hit; the heap is set from the machine and the index (:func:`~.java.default_heap`,
``DIFFRETRIEVER_JAVA_HEAP`` overrides), and the JVM exits on its first OutOfMemoryError, which the parent reports
as one line naming the step and the heap (:func:`bm25_run`).

The child reads topics as ``qid TAB text`` lines and writes ``qid TAB docid TAB score`` lines (scores as Python
floats, no rounding), atomically.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.pyserini_bridge.child import run_java_child

HITS_PER_BATCH = 16_000
"""Hits (each with its stored document on the Java heap) alive at once: topics per ``batch_search`` call =
``HITS_PER_BATCH // hits`` (16 topics at 1,000 hits)."""


def bm25_run(index_dir: Path, topics: dict[str, str], k: int, threads: int = 1,
             fields: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """BM25 (Pyserini's k1 = 0.9, b = 0.4) of ``topics`` over ``index_dir`` in a child process:
    ``{qid: {docid: score}}`` with at most ``k`` hits per topic."""
    with tempfile.TemporaryDirectory(prefix="bm25-") as tmp:
        src, out = Path(tmp) / "topics.tsv", Path(tmp) / "run.tsv"
        with open(src, "w", encoding="utf-8") as f:
            for qid, text in topics.items():
                f.write(f"{qid}\t{' '.join(text.split())}\n")
        args = ["--index", str(index_dir), "--topics", str(src), "--output", str(out), "--hits", str(k),
                "--threads", str(threads), "--batch-size", str(max(1, HITS_PER_BATCH // max(k, 1)))]
        for field, boost in (fields or {}).items():
            args += ["--field", f"{field}={boost}"]
        proc = run_java_child("diffretriever_pyserini.pyserini_bridge.bm25", args, index_dir, "BM25 search", index_dir,
                              detail=f", {len(topics)} topics, {k} hits", advice=" or search fewer hits",
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"BM25 search failed (exit code {proc.returncode}): {tail[0]}", index_dir)
        return read_scores(out)


def read_scores(path: Path) -> dict[str, dict[str, float]]:
    """``qid TAB docid TAB score`` lines -> ``{qid: {docid: score}}``."""
    run: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            qid, docid, score = line.rstrip("\n").split("\t")
            run.setdefault(qid, {})[docid] = float(score)
    return run


def search_batches(index: str, topics: list[tuple[str, str]], k: int, threads: int, batch: int,
                   fields: dict[str, float], out) -> None:
    """The child's loop: one ``batch_search`` per ``batch`` topics, each hit reduced to (docid, score) at once."""
    from tqdm import tqdm

    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(index)
    options = {"fields": fields} if fields else {}
    for start in tqdm(range(0, len(topics), batch), desc="bm25 search", unit="batch", mininterval=2.0):
        chunk = topics[start:start + batch]
        results = searcher.batch_search([t for _, t in chunk], [q for q, _ in chunk], k=k, threads=threads,
                                        **options)
        for qid, _ in chunk:
            for hit in results.get(qid, []):
                out.write(f"{qid}\t{hit.docid}\t{float(hit.score)!r}\n")
        del results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="Lucene index folder")
    parser.add_argument("--topics", required=True, help="topics: qid TAB text per line")
    parser.add_argument("--output", required=True, help="qid TAB docid TAB score per line (written atomically)")
    parser.add_argument("--hits", type=int, default=1000, help="hits per topic")
    parser.add_argument("--threads", type=int, default=1, help="search threads")
    parser.add_argument("--batch-size", type=int, default=16, help="topics per batch_search call")
    parser.add_argument("--field", action="append", default=[], help="FIELD=BOOST (repeat for multifield)")
    args = parser.parse_args(argv)
    fields = {f.split("=")[0]: float(f.split("=")[1]) for f in args.field}
    with open(args.topics, encoding="utf-8") as f:
        topics = [tuple(line.rstrip("\n").split("\t", 1)) for line in f if line.strip()]
    tmp = Path(args.output).with_name(Path(args.output).name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        search_batches(args.index, topics, args.hits, args.threads, args.batch_size, fields, out)
    os.replace(tmp, args.output)


if __name__ == "__main__":
    from diffretriever_pyserini.pyserini_bridge.hook import prepare_pyserini

    prepare_pyserini()
    main(sys.argv[1:])
