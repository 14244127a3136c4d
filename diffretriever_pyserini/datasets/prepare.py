"""Converting a dataset once into what Pyserini reads (a prepared folder): ``corpus/part-NNNNN.jsonl`` (``id``,
``title``, ``text``, ``contents`` = title + ". " + text), ``topics.tsv`` (qid TAB text, the judged queries of the
split, or every topic of your own collection) and ``qrels.txt`` (TREC: qid 0 docid rel; absent when a collection
has none); a complete folder is reused."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from diffretriever_pyserini.datasets.custom import (CustomCollection, corpus_files, iter_custom_corpus,
                                                    read_custom_topics)
from diffretriever_pyserini.datasets.files import (document_text, iter_corpus, natural_key, one_line, read_beir_qrels,
                                                   read_qrels,
                                                   read_jsonl, read_queries)
from diffretriever_pyserini.datasets.registry import BeirDataset, DatasetError
from diffretriever_pyserini.datasets.sources import fingerprint, source_dir, source_files, verify_sources

PREPARE_FORMAT = 2
"""Version of the prepared layout; a prepared folder of another version is prepared again (2: contents joined
without stripping title and text, and queries.jsonl with the exact query texts, as the reference reads them)."""

log = logging.getLogger(__name__)


CORPUS_SHARD_SIZE = 500_000


@dataclass(frozen=True)
class PreparedDataset:
    """Paths of a converted dataset (what Pyserini reads)."""

    dataset: BeirDataset
    root: Path

    @property
    def corpus_dir(self) -> Path:
        return self.root / "corpus"

    @property
    def topics(self) -> Path:
        return self.root / "topics.tsv"

    @property
    def qrels(self) -> Path:
        return self.root / "qrels.txt"

    @property
    def queries(self) -> Path:
        return self.root / "queries.jsonl"

    def query_texts(self) -> dict[str, str]:
        """The judged queries ``{qid: text}`` in topic order, texts exactly as in the source (``topics.tsv`` holds
        them on one line each, for Pyserini's command-line tools)."""
        return {obj["id"]: obj["text"] for _, obj in read_jsonl(self.queries)}

    def is_complete(self) -> bool:
        return (self.root / ".complete").exists()


def prepare(dataset: BeirDataset | CustomCollection, out_root: Path, mirror=None,
            shard_size: int = CORPUS_SHARD_SIZE) -> PreparedDataset:
    """Convert a BEIR dataset (or your own collection) into Pyserini inputs under ``out_root/<name>`` (skipped when
    already complete).

    Writes into a temporary folder renamed into place at the end, so an interrupted run leaves no folder that looks
    complete. Documents with an empty title and text are kept (their prompt still encodes) and counted in the log.
    The source files' fingerprints (path, size, time) and checksums are recorded: a prepared folder is reused only
    for the same sources, so another mirror or an edited file is prepared again. One process prepares at a time.
    """
    from diffretriever_pyserini.encode.writers import exclusive

    prepared = PreparedDataset(dataset, Path(out_root) / dataset.name)
    with exclusive(prepared.root):
        return _prepare(dataset, prepared, mirror, shard_size)


@dataclass
class _Sources:
    """What one dataset is prepared from: the files (fingerprinted), their checks, the judged topics and qrels, and
    a corpus reader."""

    label: str
    files: dict[str, Path]
    verdicts: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    topic_ids: list[str]
    corpus: Callable[[], Iterator[dict]]
    qrels_file: Path | None


def _registry_sources(dataset: BeirDataset, mirror) -> _Sources:
    src = source_dir(dataset, mirror)
    files = source_files(dataset, src)
    return _Sources(str(src), files, {}, {}, {}, [], lambda: iter_corpus(src), files[f"qrels/{dataset.split}.tsv"])


def _read_registry(dataset: BeirDataset, s: _Sources) -> None:
    s.verdicts = verify_sources(dataset, s.files)
    src = Path(s.label)
    s.qrels = read_beir_qrels(src, dataset.split)
    s.queries = read_queries(src)
    missing = sorted(set(s.qrels) - set(s.queries))
    if missing:
        raise DatasetError(f"{src}: {len(missing)} judged queries have no text in queries.jsonl, e.g. {missing[:3]}")
    s.topic_ids = sorted(s.qrels, key=natural_key)


def _custom_sources(dataset: CustomCollection) -> _Sources:
    corpus = Path(dataset.corpus)
    files = {f"corpus/{p.name}": p for p in corpus_files(corpus)}
    files.update({"topics": Path(dataset.topics), **({"qrels": Path(dataset.qrels)} if dataset.qrels else {})})
    return _Sources(dataset.corpus, files, {}, {}, {}, [], lambda: iter_custom_corpus(corpus),
                    Path(dataset.qrels) if dataset.qrels else None)


def _read_custom(dataset: CustomCollection, s: _Sources) -> None:
    s.queries = read_custom_topics(Path(dataset.topics))
    s.qrels = read_qrels(Path(dataset.qrels)) if dataset.qrels else {}
    unknown = sorted(set(s.qrels) - set(s.queries), key=natural_key)
    if unknown:
        log.warning("%s: %d judged topics are not in %s (e.g. %s); they are not searched", dataset.qrels,
                    len(unknown), dataset.topics, unknown[:3])
    s.topic_ids = sorted(s.queries, key=natural_key)


def _prepare(dataset, prepared: PreparedDataset, mirror, shard_size: int) -> PreparedDataset:
    custom = isinstance(dataset, CustomCollection)
    s = _custom_sources(dataset) if custom else _registry_sources(dataset, mirror)
    if prepared.is_complete():
        made = json.loads((prepared.root / "dataset.json").read_text())
        if made.get("format") == PREPARE_FORMAT and made.get("sources") == fingerprint(s.files):
            log.info("%s already prepared in %s", dataset.name, prepared.root)
            return prepared
        why = (f"by an older version (format {made.get('format')}, now {PREPARE_FORMAT})"
               if made.get("format") != PREPARE_FORMAT else f"from other source files than {s.label}")
        log.warning("%s in %s was prepared %s; preparing it again", dataset.name, prepared.root, why)
    (_read_custom if custom else _read_registry)(dataset, s)
    empty = [q for q in s.topic_ids if not s.queries[q].strip()]
    if empty:
        log.warning("%s: %d queries have empty text (e.g. %s); they are encoded from the prompt alone",
                    s.files.get("queries.jsonl", s.files.get("topics")), len(empty), empty[:3])
    from diffretriever_pyserini.encode.writers import AtomicDir

    with AtomicDir(prepared.root) as tmp:
        n_docs, n_empty = _write_corpus(tmp / "corpus", s, shard_size)
        with open(tmp / "topics.tsv", "w", encoding="utf-8") as f, \
                open(tmp / "queries.jsonl", "w", encoding="utf-8") as exact:
            for qid in s.topic_ids:
                f.write(f"{qid}\t{one_line(s.queries[qid])}\n")
                exact.write(json.dumps({"id": qid, "text": s.queries[qid]}, ensure_ascii=False) + "\n")
        if s.qrels_file is not None:
            with open(tmp / "qrels.txt", "w", encoding="utf-8") as f:
                for qid in sorted(s.qrels, key=natural_key):
                    for docid, rel in sorted(s.qrels[qid].items()):
                        f.write(f"{qid} 0 {docid} {rel}\n")
        stats = {"format": PREPARE_FORMAT, "dataset": dataset.name, "source": s.label,
                 "sources": fingerprint(s.files), "verification": s.verdicts, "documents": n_docs,
                 "empty_documents": n_empty, "queries": len(s.topic_ids),
                 "qrels": sum(len(v) for v in s.qrels.values())}
        (tmp / "dataset.json").write_text(json.dumps(stats, indent=2) + "\n")
        (tmp / ".complete").write_text("")
    if n_empty:
        log.warning("%s: %d documents have neither title nor text; they are kept and encoded from the prompt alone",
                    dataset.name, n_empty)
    log.info("prepared %s: %d documents, %d queries -> %s", dataset.name, n_docs, len(s.topic_ids), prepared.root)
    return prepared


def _write_corpus(folder: Path, s: _Sources, shard_size: int) -> tuple[int, int]:
    """The corpus as ``part-NNNNN.jsonl`` files of ``shard_size`` records; (documents, empty documents)."""
    folder.mkdir()
    n_docs = n_empty = 0
    out = None
    judged = {d for rels in s.qrels.values() for d in rels}
    try:
        for doc in s.corpus():
            judged.discard(doc["id"])
            if n_docs % shard_size == 0:
                if out:
                    out.close()
                out = open(folder / f"part-{n_docs // shard_size:05d}.jsonl", "w", encoding="utf-8")
            contents = document_text(doc["title"], doc["text"])
            n_empty += not contents
            out.write(json.dumps({**doc, "contents": contents}, ensure_ascii=False) + "\n")
            n_docs += 1
    finally:
        if out:
            out.close()
    if n_docs == 0:
        raise DatasetError(f"{s.label}: the corpus is empty")
    if judged:
        log.warning("%s: %d judged documents are not in the corpus (e.g. %s); they can never be retrieved",
                    s.qrels_file, len(judged), sorted(judged)[:3])
    return n_docs, n_empty


def iter_prepared_corpus(corpus_dir: Path) -> Iterator[dict]:
    """Records of a prepared corpus folder (``part-*.jsonl`` in name order)."""
    parts = sorted(Path(corpus_dir).glob("*.jsonl"))
    if not parts:
        raise DatasetError(f"no *.jsonl corpus files in {corpus_dir}")
    for part in parts:
        for lineno, obj in read_jsonl(part):
            if "id" not in obj:
                raise DatasetError(f"{part}:{lineno}: record has no 'id'")
            yield obj
