"""Your own collection: a corpus, topics and (optionally) qrels given as files, prepared into the same folder layout
as a registry dataset, with the same checks (ids, encodings, duplicates; errors name file and line).

Accepted files:

- corpus: a Pyserini ``JsonCollection`` folder (``*.jsonl``, ``*.json`` with one object per line, or their ``.gz``)
  or one such file; records ``id`` + ``contents`` (Pyserini) or ``_id`` + ``title`` + ``text`` (BEIR);
- topics: TSV (``qid TAB text``, as Pyserini's and MS MARCO's), JSON (``{qid: text}``, ``{qid: {"title": text}}`` as
  Pyserini's ``get_topics`` returns, or a list of records) or JSONL / JSONL.gz records (``_id`` / ``id`` / ``qid`` and
  ``text`` / ``title`` / ``query``);
- qrels: TREC (``qid 0 docid rel``) or BEIR TSV (``query-id corpus-id score``, header optional), read by
  :func:`~diffretriever_pyserini.datasets.files.read_qrels`.

The pipeline first turns a topics or qrels name that is not a file (``beir-v1.0.0-scifact-test``) into the file
Pyserini holds on this machine, if any (:mod:`diffretriever_pyserini.pyserini_bridge.topics`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from diffretriever_pyserini.datasets.files import check_id, iter_tsv, read_jsonl, record_id
from diffretriever_pyserini.datasets.registry import DatasetError

CORPUS_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
TOPIC_TEXT_FIELDS = ("text", "title", "query", "contents")
DEFAULT_METRICS = ("ndcg_cut_10", "recall_100", "recall_1000")


@dataclass(frozen=True)
class CustomCollection:
    """A collection given as files (absolute paths); it reads like a registry dataset to the pipeline."""

    name: str
    corpus: str
    topics: str
    qrels: str | None = None
    remove_query: bool = False
    metrics: tuple[str, ...] = DEFAULT_METRICS
    archive = None
    split = "custom"

    @property
    def pyserini_name(self) -> str:
        return self.name

    @property
    def run_prefix(self) -> str:
        """Folder name under runs/: the collection's name."""
        return self.name

    @property
    def files(self) -> dict[str, str]:
        return {"corpus": self.corpus, "topics": self.topics, **({"qrels": self.qrels} if self.qrels else {})}


def collection_name(corpus: str | Path) -> str:
    """The default name of a corpus file or folder: its name without ``.jsonl`` / ``.gz`` suffixes."""
    name = Path(corpus).name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name or "collection"


def custom_dataset(corpus: str, topics: str, qrels: str | None = None, name: str | None = None) -> CustomCollection:
    """The collection of these files; a missing file (or an unknown topic / qrels name) raises DatasetError now,
    before any step starts."""
    corpus_path = Path(corpus).expanduser()
    if not corpus_path.exists():
        raise DatasetError("corpus not found (a JsonCollection folder or a JSONL / JSONL.gz file)", corpus_path)
    if corpus_path.is_dir() and not corpus_files(corpus_path):
        raise DatasetError(f"no corpus files ({', '.join('*' + s for s in CORPUS_SUFFIXES)}) in this folder",
                           corpus_path)
    name = name or collection_name(corpus_path)
    if not re.fullmatch(r"[\w.+-]+", name):
        raise DatasetError(f"collection name {name!r} must be letters, digits and . _ + - only (it names folders)")
    return CustomCollection(name, str(corpus_path.resolve()), _resolve(topics, "topics"),
                            _resolve(qrels, "qrels") if qrels else None)


def _resolve(value: str, kind: str) -> str:
    path = Path(value).expanduser()
    if not path.is_file():
        raise DatasetError(f"{kind} {value!r} is neither a file nor a {kind} name Pyserini holds on this machine")
    return str(path.resolve())


def corpus_files(corpus: Path) -> list[Path]:
    """The files of a corpus folder (name order) or the corpus file itself."""
    if corpus.is_file():
        return [corpus]
    return sorted(p for p in corpus.iterdir() if p.is_file() and p.name.endswith(CORPUS_SUFFIXES))


def iter_custom_corpus(corpus: Path) -> Iterator[dict]:
    """Records as ``{"id", "title", "text"}``: BEIR records keep title and text; a Pyserini ``contents`` record
    becomes text alone (so ``contents`` comes back unchanged). Missing or duplicate ids raise DatasetError naming
    file and line."""
    seen: dict[str, tuple[Path, int]] = {}
    for path in corpus_files(corpus):
        for lineno, obj in read_jsonl(path):
            docid = record_id(obj, path, lineno)
            if docid in seen:
                first = seen[docid]
                raise DatasetError(f"duplicate document id {docid!r} (first at {first[0]}:{first[1]})", path, lineno)
            seen[docid] = (path, lineno)
            if "contents" in obj and "text" not in obj and "title" not in obj:
                yield {"id": docid, "title": "", "text": str(obj.get("contents") or "")}
            else:
                yield {"id": docid, "title": str(obj.get("title") or ""), "text": str(obj.get("text") or "")}


def _topic_text(obj: dict, path: Path, lineno: int | None) -> str:
    for key in TOPIC_TEXT_FIELDS:
        if isinstance(obj.get(key), str):
            return obj[key]
    raise DatasetError(f"topic has no text field (one of {', '.join(TOPIC_TEXT_FIELDS)})", path, lineno)


def read_custom_topics(path: Path) -> dict[str, str]:
    """``{qid: text}`` in file order from a TSV, JSON or JSONL topics file; duplicates and bad ids name the line."""
    path = Path(path)
    topics: dict[str, str] = {}

    def add(qid: str, text: str, lineno: int | None) -> None:
        check_id(qid, path, lineno or 0, "query id")
        if qid in topics:
            raise DatasetError(f"duplicate query id {qid!r}", path, lineno)
        topics[qid] = text

    name = path.name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        for lineno, obj in read_jsonl(path):
            qid = next((str(obj[k]) for k in ("_id", "id", "qid") if obj.get(k) not in (None, "")), None)
            if qid is None:
                raise DatasetError("topic has no id (expected '_id', 'id' or 'qid')", path, lineno)
            add(qid, _topic_text(obj, path, lineno), lineno)
    elif name.endswith(".json"):
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"not a JSON topics file ({exc})", path) from exc
        items = data.items() if isinstance(data, dict) else \
            ((next((str(r[k]) for k in ("_id", "id", "qid") if k in r), ""), r) for r in data)
        for qid, value in items:
            add(str(qid), value if isinstance(value, str) else _topic_text(value, path, None), None)
    else:
        for lineno, qid, text in iter_tsv(path):
            add(qid, text, lineno)
    if not topics:
        raise DatasetError("no topics in this file", path)
    return topics
