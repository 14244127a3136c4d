"""Reading collection files line by line with errors that name the file, the line and the field: JSONL corpora
(BEIR ``_id``/``title``/``text`` or Pyserini ``id``/``contents``), queries, topics TSV and BEIR qrels."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Iterator

from diffretriever_pyserini.datasets.registry import DatasetError
from diffretriever_pyserini.datasets.sources import find_file

DOC_SEPARATOR = ". "
"""Document text = title + DOC_SEPARATOR + text (as the authors' code joins a BEIR document)."""


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)``; malformed JSON, bad UTF-8 or a broken gzip stream raises DatasetError
    naming file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DatasetError(f"invalid UTF-8 ({exc.reason} at byte {exc.start})", path, lineno) from exc
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"malformed JSON ({exc.msg}, column {exc.colno})", path, lineno) from exc
                if not isinstance(obj, dict):
                    raise DatasetError(f"expected a JSON object, got {type(obj).__name__}", path, lineno)
                yield lineno, obj
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        what = "is not gzip-compressed" if isinstance(exc, gzip.BadGzipFile) and lineno == 0 else \
            "ends early or is corrupted" if lineno == 0 else f"is truncated or corrupted after line {lineno}"
        raise DatasetError(f"the gzip stream {what} ({type(exc).__name__}: {exc}); copy or download it again",
                           path) from exc


def check_id(value: str, path, lineno: int, what: str = "id") -> str:
    """``value`` if it can live in TREC run, qrels and FAISS docid files (no whitespace, no control character, not
    empty); else a DatasetError naming file and line."""
    from diffretriever_pyserini.search.runs import id_problem

    problem = id_problem(value)
    if problem:
        raise DatasetError(f"{what} {value!r} {problem}, which TREC run and qrels files and FAISS docid files "
                           "cannot hold", path, lineno)
    return value


def record_id(obj: dict, path: Path, lineno: int) -> str:
    for key in ("_id", "id", "docid"):
        if key in obj and obj[key] is not None and str(obj[key]) != "":
            return check_id(str(obj[key]), path, lineno, f"field {key!r}")
    raise DatasetError("record has no id (expected field '_id')", path, lineno)


def iter_corpus(folder: Path) -> Iterator[dict]:
    """BEIR corpus records as ``{"id", "title", "text"}``; rejects missing and duplicate ids."""
    path = find_file(folder, "corpus.jsonl")
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        docid = record_id(obj, path, lineno)
        if docid in seen:
            raise DatasetError(f"{path}:{lineno}: duplicate document id {docid!r} (first at line {seen[docid]})")
        seen[docid] = lineno
        yield {"id": docid, "title": str(obj.get("title") or ""), "text": str(obj.get("text") or "")}


def document_text(title: str, text: str) -> str:
    """``title + ". " + text`` exactly as the reference joins BEIR fields (no stripping); an empty title or text
    gives the other alone."""
    if title and text:
        return title + DOC_SEPARATOR + text
    return title or text


QRELS_HEADERS = ("query-id", "qid", "query_id")


def read_qrels(path) -> dict[str, dict[str, int]]:
    """Relevance judgements as ``{qid: {docid: rel}}``: TREC (``qid 0 docid rel``) or BEIR TSV (``query-id corpus-id
    score``, its header line skipped), plain or .gz, a byte-order mark ignored. A malformed line, an id TREC files
    cannot hold or a file without any judgment raises an error naming file and line."""
    from diffretriever_pyserini.search.runs import open_text

    qrels: dict[str, dict[str, int]] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts or (not qrels and parts[0] in QRELS_HEADERS):
                continue
            if len(parts) not in (3, 4):
                raise DatasetError(f"expected 'qid 0 docid rel' (TREC) or 'query-id corpus-id score' (BEIR), got "
                                   f"{len(parts)} fields", path, lineno)
            qid, docid, rel = parts[0], parts[-2], parts[-1]
            try:
                value = int(rel)
            except ValueError as exc:
                raise DatasetError(f"relevance {rel!r} is not an integer", path, lineno) from exc
            qrels.setdefault(check_id(qid, path, lineno, "query id"), {})[
                check_id(docid, path, lineno, "document id")] = value
    if not qrels:
        raise DatasetError("no judgments in the qrels file", path)
    return qrels


def read_beir_qrels(folder: Path, split: str) -> dict[str, dict[str, int]]:
    """BEIR ``qrels/<split>.tsv`` (header ``query-id corpus-id score``) as ``{qid: {docid: rel}}``."""
    path = folder / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise DatasetError(f"missing qrels file {path}")
    return read_qrels(path)


def read_queries(folder: Path) -> dict[str, str]:
    """``queries.jsonl`` as ``{qid: text}``, texts exactly as given (the reference encodes them unchanged)."""
    path = find_file(folder, "queries.jsonl")
    queries: dict[str, str] = {}
    for lineno, obj in read_jsonl(path):
        qid = record_id(obj, path, lineno)
        if qid in queries:
            raise DatasetError(f"{path}:{lineno}: duplicate query id {qid!r}")
        queries[qid] = str(obj.get("text") or "")
    return queries


def one_line(text: str) -> str:
    """Whitespace runs collapsed to single spaces: a query as a topics TSV line can hold it."""
    return " ".join(text.split())


def natural_key(qid: str):
    return (0, int(qid), qid) if qid.isdigit() else (1, 0, qid)


def iter_tsv(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line number, qid, text)`` of a topics TSV (``qid TAB text``; plain or .gz, a byte-order mark dropped, blank
    lines skipped); a line without a tab raises DatasetError naming file and line."""
    from diffretriever_pyserini.search.runs import open_text

    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            qid, sep, text = line.rstrip("\n").partition("\t")
            if not sep:
                raise DatasetError("expected 'qid<TAB>text'", path, lineno)
            yield lineno, qid, text


def read_topics(path: Path) -> dict[str, str]:
    """A topics TSV (qid TAB text) as an ordered dict."""
    return {qid: text for _, qid, text in iter_tsv(path)}
