"""Training data: one documented JSONL format, builders for it, and BM25 hard-negative mining.

Format, one example per line::

    {"query_id": "2", "query": "1 in 5 million in UK have abnormal PrP positivity.",
     "positive_ids": ["13734012"], "negative_ids": ["1234", "5678"]}

``negative_ids`` is optional (mined by ``training.build.mine_bm25_negatives``). Document ids refer to a prepared corpus
(``corpus/part-*.jsonl``); a Tevatron file carries its texts inline and is converted to the same format plus a
small corpus of the passages it names.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from diffretriever_pyserini.datasets import (DatasetError, document_text, read_beir_qrels, read_jsonl, read_queries,
                                             record_id)

log = logging.getLogger(__name__)


@dataclass
class TrainingExample:
    query_id: str
    query: str
    positive_ids: list[str]
    negative_ids: list[str] = field(default_factory=list)


def write_examples(path: Path, examples: Iterable[TrainingExample]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(asdict(ex), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def read_examples(path: Path) -> list[TrainingExample]:
    """Read and validate the training JSONL; a bad line raises DatasetError naming file, line and field."""
    examples = []
    for lineno, obj in read_jsonl(Path(path)):
        for key, kind in (("query_id", str), ("query", str), ("positive_ids", list)):
            if not isinstance(obj.get(key), kind):
                raise DatasetError(f"{path}:{lineno}: field {key!r} must be a {kind.__name__}")
        if not obj["positive_ids"]:
            raise DatasetError(f"{path}:{lineno}: 'positive_ids' is empty")
        negatives = obj.get("negative_ids", [])
        if not isinstance(negatives, list):
            raise DatasetError(f"{path}:{lineno}: field 'negative_ids' must be a list")
        examples.append(TrainingExample(obj["query_id"], obj["query"], [str(x) for x in obj["positive_ids"]],
                                        [str(x) for x in negatives]))
    return examples


def scifact_training_claims(folder: Path, test_split: str = "test") -> list[TrainingExample]:
    """SciFact's training claims: claims outside ``qrels/<test_split>.tsv`` whose metadata names evidence documents.

    Never returns a test claim (the official SciFact files give 505 claims, 564 claim-document pairs).
    """
    test = set(read_beir_qrels(folder, test_split))
    examples = []
    path = next(p for p in (folder / "queries.jsonl", folder / "queries.jsonl.gz") if p.exists())
    for lineno, obj in read_jsonl(path):
        qid = record_id(obj, path, lineno)
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise DatasetError("field 'metadata' must be an object naming the evidence documents", path, lineno)
        evidence = sorted(metadata.keys(), key=lambda d: (len(d), d))
        if qid in test or not evidence:
            continue
        examples.append(TrainingExample(qid, " ".join(str(obj["text"]).split()), evidence))
    return examples


def beir_train_qrels(folder: Path, split: str = "train") -> list[TrainingExample]:
    """Examples from a BEIR dataset's ``qrels/train.tsv`` (relevance > 0 are positives); judged queries without
    text are counted and left out."""
    qrels = read_beir_qrels(folder, split)
    queries = read_queries(folder)
    textless = sorted(q for q in qrels if q not in queries)
    if textless:
        log.warning("%s: %d queries of qrels/%s.tsv have no text in queries.jsonl (e.g. %s); left out", folder,
                    len(textless), split, textless[:3])
    return [TrainingExample(qid, queries[qid], sorted(d for d, rel in docs.items() if rel > 0))
            for qid, docs in qrels.items() if qid in queries and any(rel > 0 for rel in docs.values())]


def keep_known_documents(examples: list[TrainingExample], corpus_ids: set[str], source: str) -> list[TrainingExample]:
    """Drop positives (and negatives) missing from the corpus, saying how many, and the examples left without a
    positive."""
    missing = sorted({d for ex in examples for d in ex.positive_ids if d not in corpus_ids})
    if missing:
        log.warning("%s: %d positive document ids are not in the corpus (e.g. %s); those pairs are left out",
                    source, len(missing), missing[:3])
    kept = []
    for ex in examples:
        positives = [d for d in ex.positive_ids if d in corpus_ids]
        if positives:
            kept.append(TrainingExample(ex.query_id, ex.query, positives,
                                        [d for d in ex.negative_ids if d in corpus_ids]))
    if len(kept) < len(examples):
        log.warning("%s: %d of %d examples have no positive left in the corpus and are dropped", source,
                    len(examples) - len(kept), len(examples))
    return kept


def tevatron(path: Path, corpus_out: Path) -> list[TrainingExample]:
    """Convert a Tevatron msmarco-passage-aug JSONL (``query_id``, ``query``, ``positive_passages``,
    ``negative_passages`` with ``docid``/``title``/``text``) and write the passages it names as a corpus."""
    examples, seen = [], set()
    corpus_out = Path(corpus_out)
    corpus_out.mkdir(parents=True, exist_ok=True)
    with open(corpus_out / "part-00000.jsonl", "w", encoding="utf-8") as out:
        for lineno, obj in read_jsonl(Path(path)):
            try:
                pos, neg = obj["positive_passages"], obj.get("negative_passages", [])
                ex = TrainingExample(str(obj["query_id"]), str(obj["query"]), [str(p["docid"]) for p in pos],
                                     [str(p["docid"]) for p in neg])
            except (KeyError, TypeError) as exc:
                raise DatasetError(f"{path}:{lineno}: not a Tevatron record ({exc})") from exc
            for p in pos + neg:
                if str(p["docid"]) not in seen:
                    seen.add(str(p["docid"]))
                    title, text = str(p.get("title") or ""), str(p.get("text") or "")
                    out.write(json.dumps({"id": str(p["docid"]), "title": title, "text": text,
                                          "contents": document_text(title, text)}, ensure_ascii=False) + "\n")
            examples.append(ex)
    return examples


def negatives_from_run(examples: list[TrainingExample], run: dict[str, dict[str, float]],
                       n: int = 1) -> list[TrainingExample]:
    """Hard negatives from a first-stage run (``{qid: {docid: score}}``): the n top-ranked documents that are not
    positives (ties by docid), so the same inputs always give the same negatives."""
    out = []
    for ex in examples:
        positives = set(ex.positive_ids)
        ranked = [d for d, _ in sorted(run.get(ex.query_id, {}).items(), key=lambda x: (-x[1], x[0]))
                  if d not in positives]
        out.append(TrainingExample(ex.query_id, ex.query, ex.positive_ids, ranked[:n]))
    return out


def per_pair(examples: list[TrainingExample]) -> list[TrainingExample]:
    """One example per (query, positive) pair (SciFact: 505 claims -> 564 pairs)."""
    return [TrainingExample(ex.query_id, ex.query, [pos], ex.negative_ids) for ex in examples
            for pos in ex.positive_ids]


def load_documents(corpus_dir: Path, ids: set[str]) -> dict[str, str]:
    """``{docid: contents}`` for the ids needed, streamed from a prepared corpus folder."""
    from diffretriever_pyserini.datasets import iter_prepared_corpus

    docs = {d["id"]: d.get("contents") or document_text(d.get("title", ""), d.get("text", ""))
            for d in iter_prepared_corpus(corpus_dir) if d["id"] in ids}
    missing = ids - set(docs)
    if missing:
        raise DatasetError(f"{len(missing)} training document ids are not in {corpus_dir}, e.g. {sorted(missing)[:3]}")
    return docs
