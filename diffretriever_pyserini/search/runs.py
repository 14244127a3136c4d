"""TREC run files: deterministic writing (score desc, ties by docid) and reading.

A run is ``{qid: {docid: score}}`` in memory; on disk ``qid Q0 docid rank score tag``.
"""

from __future__ import annotations

import gzip
import math
import os
import tempfile
import unicodedata
import zlib
from pathlib import Path

from diffretriever_pyserini.errors import UserError

Run = dict[str, dict[str, float]]


def ranked(hits: dict[str, float], k: int | None = None) -> list[tuple[str, float]]:
    """Hits sorted by score descending, ties by docid ascending; at most ``k``."""
    order = sorted(hits.items(), key=lambda item: (-item[1], item[0]))
    return order if k is None else order[:k]


def write_run(path: str | os.PathLike, run: Run, tag: str, k: int = 1000, topic_order=None) -> Path:
    """Write a TREC run atomically; topics in ``topic_order`` (default: sorted), ranks from 1, ``k`` hits each.

    A path ending in ``.gz`` is written gzip-compressed (deterministically: no name or time in the header).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if any(c.isspace() for c in tag) or not tag:
        raise UserError(f"run tag {tag!r} must be one word (TREC submissions reject spaces)", path)
    topics = list(topic_order) if topic_order is not None else sorted(run)
    for qid in topics:  # nothing a TREC run cannot hold: ids with whitespace, scores that are not finite numbers
        for docid, score in run.get(qid, {}).items():
            if not math.isfinite(score) or id_problem(qid) or id_problem(docid):
                raise UserError(f"topic {qid!r}, document {docid!r}: score {score} or an id cannot be written to a "
                                "TREC run (ids must be one word, scores finite)", path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        raw = os.fdopen(fd, "wb")
        stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if path.suffix == ".gz" else raw
        with raw, stream, _text(stream) as f:
            for qid in topics:
                for rank, (docid, score) in enumerate(ranked(run.get(qid, {}), k), start=1):
                    f.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _text(binary):
    import io

    return io.TextIOWrapper(binary, encoding="utf-8", newline="\n")


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a topic or document id of TREC runs, qrels and FAISS docid files (None if it can):
    empty, or holding whitespace or a control character."""
    if not value:
        return "is empty"
    bad = next((c for c in value if c.isspace() or unicodedata.category(c) == "Cc"), None)
    return None if bad is None else f"contains whitespace or a control character ({bad!r})"


class _CheckedText:
    """Lines of a text file (plain or gzip, a byte-order mark dropped); a broken gzip stream or bad UTF-8 raises
    UserError naming the file."""

    def __init__(self, path):
        self.path = path
        self.handle = (gzip.open(path, "rt", encoding="utf-8-sig") if str(path).endswith(".gz")
                       else open(path, encoding="utf-8-sig"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()

    def __iter__(self):
        try:
            yield from self.handle
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise UserError(f"not a complete gzip file ({type(exc).__name__}: {exc})", self.path) from exc
        except UnicodeDecodeError as exc:
            raise UserError(f"not UTF-8 text ({exc.reason})", self.path) from exc


def open_text(path) -> _CheckedText:
    """Open a run, qrels or topics file (plain or .gz) for reading lines, with errors that name the file."""
    if not Path(path).is_file():
        raise UserError("no such file", path)
    return _CheckedText(path)


def read_run(path: str | os.PathLike) -> Run:
    """Read a TREC run (plain or .gz); a malformed line or a score that is not a finite number raises UserError
    naming file and line."""
    run: Run = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise UserError(f"expected 6 fields 'qid Q0 docid rank score tag', got {len(parts)}", path, lineno)
            try:
                score = float(parts[4])
            except ValueError as exc:
                raise UserError(f"score {parts[4]!r} is not a number", path, lineno) from exc
            if not math.isfinite(score):
                raise UserError(f"score {parts[4]!r} is not a finite number", path, lineno)
            run.setdefault(parts[0], {})[parts[2]] = score
    return run


def search_depth(k: int, remove_query: bool) -> int:
    """Hits to ask a searcher for so that ``k`` remain once a self hit is dropped: one more when self hits are
    removed (a query's own document can take at most one place)."""
    return k + 1 if remove_query else k


def remove_self_hits(run: Run) -> Run:
    """Drop every hit whose docid equals its query id (ArguAna, Quora; Pyserini's ``--remove-query``)."""
    return {qid: {d: s for d, s in hits.items() if d != qid} for qid, hits in run.items()}


def finish_run(run: Run, k: int, remove_query: bool) -> Run:
    """Drop self hits when asked (ArguAna, Quora), keep the top ``k`` per query in deterministic order."""
    if remove_query:
        run = remove_self_hits(run)
    return {qid: dict(ranked(hits, k)) for qid, hits in run.items()}


def check_run(path, topics, max_hits: int = 1000) -> list[str]:
    """Problems that would get a TREC submission rejected; an empty list means the run is fit to submit.

    Checks every line's 6 fields and ``Q0``, ranks 1..n in order, non-increasing scores, unique docids per topic,
    at most ``max_hits`` per topic, one run tag, every topic present and no unknown topic.
    """
    problems: list[str] = []
    seen: dict[str, set] = {}
    hits: dict[str, int] = {}
    last: dict[str, tuple[int, float]] = {}
    tags = set()
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            where = f"{path}:{lineno}"
            if len(parts) != 6:
                problems.append(f"{where}: expected 6 fields 'qid Q0 docid rank score tag', got {len(parts)}")
                continue
            qid, q0, docid, rank, score, tag = parts
            if q0 != "Q0":
                problems.append(f"{where}: second field must be Q0, got {q0!r}")
            try:
                rank_i, score_f = int(rank), float(score)
            except ValueError:
                problems.append(f"{where}: rank {rank!r} must be an integer and score {score!r} a number")
                continue
            if not math.isfinite(score_f):
                problems.append(f"{where}: score {score!r} is not a finite number")
                continue
            tags.add(tag)
            hits[qid] = hits.get(qid, 0) + 1
            docs = seen.setdefault(qid, set())
            if docid in docs:
                problems.append(f"{where}: duplicate docid {docid} for topic {qid}")
            docs.add(docid)
            prev_rank, prev_score = last.get(qid, (0, float("inf")))
            if rank_i != prev_rank + 1:
                problems.append(f"{where}: topic {qid} rank {rank_i} follows rank {prev_rank}")
            if score_f > prev_score:
                problems.append(f"{where}: topic {qid} score {score_f} rises above the previous {prev_score}")
            last[qid] = (rank_i, score_f)
    for qid, n in hits.items():
        if n > max_hits:
            problems.append(f"{path}: topic {qid} has {n} hits, more than {max_hits}")
    missing = [q for q in topics if q not in seen]
    if missing:
        problems.append(f"{path}: {len(missing)} topics have no hits, e.g. {missing[:5]}")
    unknown = sorted(set(seen) - set(topics))
    if unknown:
        problems.append(f"{path}: {len(unknown)} topics are not in the topic file, e.g. {unknown[:5]}")
    if len(tags) > 1:
        problems.append(f"{path}: {len(tags)} different run tags: {sorted(tags)[:5]}")
    return problems
