"""TREC run files: deterministic writing (score desc, ties by docid) and reading.

A run is ``{qid: {docid: score}}`` in memory; on disk ``qid Q0 docid rank score tag``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

Run = dict[str, dict[str, float]]


def ranked(hits: dict[str, float], k: int | None = None) -> list[tuple[str, float]]:
    """Hits sorted by score descending, ties by docid ascending; at most ``k``."""
    order = sorted(hits.items(), key=lambda item: (-item[1], item[0]))
    return order if k is None else order[:k]


def write_run(path: str | os.PathLike, run: Run, tag: str, k: int = 1000, topic_order=None) -> Path:
    """Write a TREC run atomically; topics in ``topic_order`` (default: sorted), ranks from 1, ``k`` hits each."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    topics = list(topic_order) if topic_order is not None else sorted(run)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for qid in topics:
                for rank, (docid, score) in enumerate(ranked(run.get(qid, {}), k), start=1):
                    f.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_run(path: str | os.PathLike) -> Run:
    """Read a TREC run; a malformed line raises ValueError naming file and line."""
    run: Run = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise ValueError(f"{path}:{lineno}: expected 6 fields 'qid Q0 docid rank score tag'")
            try:
                run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: score {parts[4]!r} is not a number") from exc
    return run


def remove_self_hits(run: Run) -> Run:
    """Drop every hit whose docid equals its query id (ArguAna, Quora; Pyserini's ``--remove-query``)."""
    return {qid: {d: s for d, s in hits.items() if d != qid} for qid, hits in run.items()}
