"""Converting a dataset once into what Pyserini reads (a prepared folder): ``corpus/part-NNNNN.jsonl`` (``id``,
``title``, ``text``, ``contents`` = title + ". " + text), ``topics.tsv`` (qid TAB text, the judged queries of the
split) and ``qrels.txt`` (TREC: qid 0 docid rel); a complete folder is reused."""

from __future__ import annotations

import logging
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from diffretriever_pyserini.datasets.registry import BeirDataset, DatasetError
from diffretriever_pyserini.datasets.sources import fingerprint, source_dir, source_files, verify_sources
from diffretriever_pyserini.datasets.files import (_natural_key, document_text, iter_corpus, one_line, read_beir_qrels,
                                                   read_jsonl, read_queries)

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


def prepare(dataset: BeirDataset, out_root: Path, mirror=None, shard_size: int = CORPUS_SHARD_SIZE) -> PreparedDataset:
    """Convert a BEIR dataset into Pyserini inputs under ``out_root/<name>`` (skipped when already complete).

    Writes into a temporary folder renamed into place at the end, so an interrupted run leaves no folder that looks
    complete. Documents with an empty title and text are kept (their prompt still encodes) and counted in the log.
    The source files' fingerprints (path, size, time) and checksums are recorded: a prepared folder is reused only
    for the same sources, so another mirror or an edited file is prepared again. One process prepares at a time.
    """
    from diffretriever_pyserini.encode.writers import exclusive

    prepared = PreparedDataset(dataset, Path(out_root) / dataset.name)
    with exclusive(prepared.root):
        return _prepare(dataset, prepared, mirror, shard_size)


def _prepare(dataset: BeirDataset, prepared: PreparedDataset, mirror, shard_size: int) -> PreparedDataset:
    src = source_dir(dataset, mirror)
    files = source_files(dataset, src)
    if prepared.is_complete():
        made = json.loads((prepared.root / "dataset.json").read_text())
        if made.get("format") == PREPARE_FORMAT and made.get("sources") == fingerprint(files):
            log.info("%s already prepared in %s", dataset.name, prepared.root)
            return prepared
        why = (f"by an older version (format {made.get('format')}, now {PREPARE_FORMAT})"
               if made.get("format") != PREPARE_FORMAT else f"from other source files than {src}")
        log.warning("%s in %s was prepared %s; preparing it again", dataset.name, prepared.root, why)
    verdicts = verify_sources(dataset, files)
    qrels = read_beir_qrels(src, dataset.split)
    queries = read_queries(src)
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise DatasetError(f"{src}: {len(missing)} judged queries have no text in queries.jsonl, e.g. {missing[:3]}")
    empty = sorted(q for q in qrels if not queries[q].strip())
    if empty:
        log.warning("%s: %d judged queries have empty text (e.g. %s); they are encoded from the prompt alone",
                    files["queries.jsonl"], len(empty), empty[:3])
    from diffretriever_pyserini.encode.writers import AtomicDir

    with AtomicDir(prepared.root) as tmp:
        (tmp / "corpus").mkdir()
        n_docs = n_empty = 0
        out = None
        judged = {d for rels in qrels.values() for d in rels}
        for doc in iter_corpus(src):
            judged.discard(doc["id"])
            if n_docs % shard_size == 0:
                if out:
                    out.close()
                out = open(tmp / "corpus" / f"part-{n_docs // shard_size:05d}.jsonl", "w", encoding="utf-8")
            contents = document_text(doc["title"], doc["text"])
            n_empty += not contents
            out.write(json.dumps({**doc, "contents": contents}, ensure_ascii=False) + "\n")
            n_docs += 1
        if out:
            out.close()
        if n_docs == 0:
            raise DatasetError(f"{src}: the corpus is empty")
        if judged:
            log.warning("%s: %d judged documents are not in the corpus (e.g. %s); they can never be retrieved",
                        files[f"qrels/{dataset.split}.tsv"], len(judged), sorted(judged)[:3])
        with open(tmp / "topics.tsv", "w", encoding="utf-8") as f, \
                open(tmp / "queries.jsonl", "w", encoding="utf-8") as exact:
            for qid in sorted(qrels, key=_natural_key):
                f.write(f"{qid}\t{one_line(queries[qid])}\n")
                exact.write(json.dumps({"id": qid, "text": queries[qid]}, ensure_ascii=False) + "\n")
        with open(tmp / "qrels.txt", "w", encoding="utf-8") as f:
            for qid in sorted(qrels, key=_natural_key):
                for docid, rel in sorted(qrels[qid].items()):
                    f.write(f"{qid} 0 {docid} {rel}\n")
        stats = {"format": PREPARE_FORMAT, "dataset": dataset.name, "source": str(src),
                 "sources": fingerprint(files), "verification": verdicts, "documents": n_docs,
                 "empty_documents": n_empty, "queries": len(qrels), "qrels": sum(len(v) for v in qrels.values())}
        (tmp / "dataset.json").write_text(json.dumps(stats, indent=2) + "\n")
        (tmp / ".complete").write_text("")
    if n_empty:
        log.warning("%s: %d documents have neither title nor text; they are kept and encoded from the prompt alone",
                    dataset.name, n_empty)
    log.info("prepared %s: %d documents, %d queries -> %s", dataset.name, n_docs, len(qrels), prepared.root)
    return prepared


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
