"""``train-data``: build the training JSONL of a dataset with BM25 hard negatives (and a held-out slice)."""

from __future__ import annotations

import logging
from pathlib import Path

from diffretriever_pyserini.datasets import DatasetError, get_dataset, iter_prepared_corpus, source_dir
from diffretriever_pyserini.training.data import (TrainingExample, beir_train_qrels, keep_known_documents,
                                                  negatives_from_run, per_pair, scifact_training_claims, tevatron,
                                                  write_examples)

log = logging.getLogger(__name__)


def mine_bm25_negatives(examples: list[TrainingExample], index_dir: Path, n: int = 1, depth: int = 100,
                        threads: int = 2) -> list[TrainingExample]:
    """Hard negatives from Pyserini BM25 on the same corpus: the n top-ranked documents that are not positives."""
    if not 1 <= n <= 100:
        raise ValueError(f"hard negatives per query must be 1 to 100, got {n}")
    from diffretriever_pyserini.pyserini_bridge.search import bm25_search

    run = bm25_search(index_dir, {ex.query_id: ex.query for ex in examples}, k=max(depth, n + 50), threads=threads)
    return negatives_from_run(examples, run, n)


def build_training_data(cfg, source: str, negatives: int, out: str | None, tevatron_file: str | None = None,
                        holdout: int = 0, pairs: bool = False):
    """Write ``<work>/train/<dataset>.<source>.jsonl`` (and, with ``holdout``, the last N examples in query-id order
    to ``<same>.heldout.jsonl`` instead); ``pairs`` writes one example per (query, positive) pair. Returns (path,
    number of training examples)."""
    dataset = get_dataset(cfg.dataset)
    suffix = ".pairs" if pairs else ""
    out_path = Path(out) if out else Path(cfg.work) / "train" / f"{dataset.name}.{source}{suffix}.jsonl"
    if source == "scifact-claims":
        if dataset.name != "scifact":
            raise ValueError("source scifact-claims needs --dataset scifact")
        examples = scifact_training_claims(source_dir(dataset, cfg.mirror), dataset.split)
    elif source == "beir-train":
        examples = beir_train_qrels(source_dir(dataset, cfg.mirror))
    elif source == "tevatron":
        if not tevatron_file:
            raise ValueError("source tevatron needs --tevatron <file>")
        examples = tevatron(Path(tevatron_file), out_path.parent / f"{out_path.stem}.corpus")
        return out_path, write_examples(out_path, examples)  # Tevatron files carry their own hard negatives
    else:
        raise ValueError(f"unknown training source {source!r}")
    from diffretriever_pyserini.pipeline.controls import bm25_index
    from diffretriever_pyserini.pipeline.steps import step_prepare

    corpus_ids = {d["id"] for d in iter_prepared_corpus(step_prepare(cfg).corpus_dir)}
    examples = keep_known_documents(examples, corpus_ids, f"{dataset.name} ({source})")
    if not examples:
        raise DatasetError(f"no training example of {source} has a positive in the {dataset.name} corpus")
    examples = mine_bm25_negatives(examples, bm25_index(cfg), n=negatives, threads=cfg.threads)
    if holdout:
        examples.sort(key=lambda e: (len(e.query_id), e.query_id))
        write_examples(out_path.with_suffix(".heldout.jsonl"), examples[-holdout:])
        examples = examples[:-holdout]
    if pairs:
        examples = per_pair(examples)
    n = write_examples(out_path, examples)
    log.info("%d examples (%d pairs) with %d BM25 negatives each -> %s", n,
             sum(len(e.positive_ids) for e in examples), negatives, out_path)
    return out_path, n
